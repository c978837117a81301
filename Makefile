# Entry points of the Lạng Sơn visitor-flow platform. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT := DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get

.PHONY: help setup system-deps-demo system-deps-test demo test lint broker collector simulator \
	dashboard backfill forecast backtest export notebooks-strip bench clean-data

help:  ## list the entry points
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

# --- installation ------------------------------------------------------------------------
# System packages are installed only when missing (apt-get update first, as a fresh
# machine has no package lists).
define apt_install_missing
	@missing=""; for pair in $(1); do bin=$${pair%%:*}; pkg=$${pair##*:}; \
	  command -v $$bin >/dev/null 2>&1 || [ -x /usr/sbin/$$bin ] || missing="$$missing $$pkg"; done; \
	$(PYTHON) -c "import ensurepip" 2>/dev/null || missing="$$missing python3-venv"; \
	if [ -n "$$missing" ]; then echo "installing system packages:$$missing"; \
	  $(APT) update -qq && $(APT) install -y -qq $$missing >/dev/null; fi
endef

system-deps-demo:  ## install Mosquitto if missing (apt-get)
	$(call apt_install_missing,mosquitto:mosquitto)

system-deps-test:  ## install Mosquitto, its clients and Chromium if missing (apt-get)
	$(call apt_install_missing,mosquitto:mosquitto mosquitto_pub:mosquitto-clients chromium:chromium)

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

setup: system-deps-test $(VENV)/.installed  ## install everything (system packages and Python venv)

# --- the demo and its parts --------------------------------------------------------------
demo: system-deps-demo $(VENV)/.installed  ## broker + simulator + collector + dashboard on http://localhost:8501
	$(PY) -m visitorflow.demo

broker: $(VENV)/.installed  ## Mosquitto with the project's config, foreground
	$(PY) -m ingest.broker

collector: $(VENV)/.installed  ## MQTT → store
	$(PY) -m ingest.collector

simulator: $(VENV)/.installed  ## simulated gate counters, back-filling today
	$(PY) -m ingest.simulator --start midnight

dashboard: $(VENV)/.installed  ## the officials' live dashboard
	$(PY) -m streamlit run dashboard/app.py --server.headless true --browser.gatherUsageStats false

backfill: $(VENV)/.installed  ## 3 years of simulated history straight into the store (collector stopped)
	$(PY) -m ingest.simulator --mode backfill --years 3

forecast: $(VENV)/.installed  ## refit every site's Prophet models, write a forecast run
	$(PY) -m forecasting.run

backtest: $(VENV)/.installed  ## rolling-origin backtests against the weekly seasonal-naive forecast
	$(PY) -m forecasting.backtest --festivals

export: $(VENV)/.installed  ## open-data export (Parquet, CSV, NGSI-LD): see --help
	$(PY) -m visitorflow.export --help

notebooks-strip: $(VENV)/.installed  ## strip notebook outputs before a commit
	$(PY) -m visitorflow.analysis strip-outputs notebooks/*.ipynb

bench: system-deps-test $(VENV)/.installed  ## benchmarks; figures go to bench/results.md
	$(PY) -m bench.ingest_throughput --runs 3 --messages 60000
	$(PY) bench/forecast_bench.py

clean-data:  ## delete generated data (the store, run folder)
	rm -rf data/visitorflow.duckdb data/visitorflow.duckdb.wal data/generated run

# --- quality -----------------------------------------------------------------------------
lint: $(VENV)/.installed  ## ruff
	$(VENV)/bin/ruff check .

# pytest exits 5 when it collected no test: that must fail, not pass silently.
test: system-deps-test $(VENV)/.installed  ## the whole test suite (lint, unit, end-to-end, browser)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest; rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "error: pytest collected no tests" >&2; exit 1; fi; exit $$rc
