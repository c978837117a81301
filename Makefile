# Entry points of the Lạng Sơn visitor-flow platform. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT := DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get

.PHONY: help setup system-deps-demo system-deps-test demo test lint broker collector simulator \
	dashboard public qr system-deps-fonts backfill forecast backtest early-warning export notebooks-strip bench \
	clean-data

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

system-deps-test: system-deps-fonts  ## install Mosquitto, its clients, Chromium, systemd-analyze, the CJK font if missing
	$(call apt_install_missing,mosquitto:mosquitto mosquitto_pub:mosquitto-clients chromium:chromium systemd-analyze:systemd)

# A font has no command to look for: check its file. Noto Sans CJK draws the QR sheet's
# Vietnamese and Chinese site names (public/qr.py).
CJK_FONT := /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc
system-deps-fonts:  ## install the CJK font of the QR sheet if missing (apt-get fonts-noto-cjk)
	@[ -e $(CJK_FONT) ] || { echo "installing system packages: fonts-noto-cjk"; \
	  $(APT) update -qq && $(APT) install -y -qq fonts-noto-cjk >/dev/null; }

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

setup: system-deps-test $(VENV)/.installed  ## install everything (system packages and Python venv)

# --- the demo and its parts --------------------------------------------------------------
demo: system-deps-demo $(VENV)/.installed  ## broker + simulator + collector + dashboard on http://localhost:8501 (SCENARIO=ky-cung|tet|mau-son-frost, SPEED=n)
	$(PY) -m orchestration.demo $(if $(SCENARIO),--scenario $(SCENARIO)) $(if $(SPEED),--speed $(SPEED))

# The platform for real (no simulator): broker, collector, dashboard, public pages and the
# refit scheduler, each supervised (orchestration/supervisor.py); deploy/ runs it under systemd.
.PHONY: serve
serve: system-deps-demo $(VENV)/.installed  ## the platform as one supervised service (broker, collector, dashboard, public, scheduled jobs)
	$(PY) -m orchestration.serve

# What the scheduler does each night, by hand: a backup (kept in schedule.backup_dir), a
# restore (the platform stopped), and raw readings older than schedule.readings_kept_days
# moved to Parquet, read back for an analyst with `make archive-read`.
.PHONY: backup restore retention archive-read
backup: $(VENV)/.installed  ## back up the store now (schedule.backup_dir keeps the newest N)
	$(PY) -m visitorflow.backup create
restore: $(VENV)/.installed  ## replace the store with a backup, platform stopped: make restore BACKUP=file
	@[ -n "$(BACKUP)" ] || { echo "usage: make restore BACKUP=run/backups/visitorflow-….duckdb (python -m visitorflow.backup list)" >&2; exit 2; }
	$(PY) -m visitorflow.backup restore "$(BACKUP)"
retention: $(VENV)/.installed  ## move raw readings older than schedule.readings_kept_days to Parquet
	$(PY) -m visitorflow.retention run
archive-read: $(VENV)/.installed  ## archived readings back: make archive-read START=2025-01-01 END=2025-01-31 OUT=jan.parquet
	@[ -n "$(START)" ] && [ -n "$(END)" ] && [ -n "$(OUT)" ] || { echo "usage: make archive-read START=YYYY-MM-DD END=YYYY-MM-DD OUT=file.parquet|.csv [SITES=a,b]" >&2; exit 2; }
	$(PY) -m visitorflow.retention read --start $(START) --end $(END) --out $(OUT) $(if $(SITES),--sites $(SITES))

broker: $(VENV)/.installed  ## Mosquitto with the project's config, accounts and ACL, foreground
	$(PY) -m ingest.broker

.PHONY: broker-auth broker-tls soak
broker-auth: $(VENV)/.installed  ## broker accounts + ACL from the catalogue into run/secrets (0600)
	$(PY) -m ingest.broker_auth generate

broker-tls: $(VENV)/.installed  ## a demo CA and server certificate for the TLS listener (mqtt.tls)
	$(PY) -m ingest.broker_auth tls

collector: $(VENV)/.installed  ## MQTT → store
	$(PY) -m ingest.collector

simulator: $(VENV)/.installed  ## simulated gate counters, back-filling today
	$(PY) -m ingest.simulator --start midnight

dashboard: $(VENV)/.installed  ## the officials' live dashboard
	$(PY) -m streamlit run dashboard/app.py --server.headless true --browser.gatherUsageStats false

# The password is asked at a prompt (never on the command line, where `ps` shows it).
.PHONY: user
user: $(VENV)/.installed  ## add a dashboard account: make user NAME=nguyen.van.a ROLE=operator
	@[ -n "$(NAME)" ] || { echo "usage: make user NAME=... ROLE=viewer|operator|admin" >&2; exit 2; }
	$(PY) -m visitorflow.users add "$(NAME)" --role $(or $(ROLE),viewer)

public: $(VENV)/.installed  ## the public visitor pages and JSON feed (behind the QR codes) on :8502
	$(PY) -m public.server

qr: system-deps-fonts $(VENV)/.installed  ## QR codes (PNG per site, A4 PDF sheet) into run/qr
	$(PY) -m public.qr --out run/qr

backfill: $(VENV)/.installed  ## 3 years of simulated history straight into the store (collector stopped)
	$(PY) -m ingest.simulator --mode backfill --years 3

forecast: $(VENV)/.installed  ## refit every site's Prophet models, write a forecast run
	$(PY) -m forecasting.run

backtest: $(VENV)/.installed  ## rolling-origin backtests against the weekly seasonal-naive forecast
	$(PY) -m forecasting.backtest --festivals

early-warning: $(VENV)/.installed system-deps-demo  ## festival-season early-warning evaluation: SEED=n (results in data/generated/early_warning/)
	$(PY) -m orchestration.season_eval --seed $(or $(SEED),202) --out data/generated/early_warning/seed$(or $(SEED),202).json

export: $(VENV)/.installed  ## open-data export (Parquet, CSV, NGSI-LD): see --help
	$(PY) -m visitorflow.export --help

notebooks-strip: $(VENV)/.installed  ## strip notebook outputs before a commit
	$(PY) -m visitorflow.analysis strip-outputs notebooks/*.ipynb

bench: system-deps-test $(VENV)/.installed  ## benchmarks; figures go to bench/results.md
	$(PY) -m bench.ingest_throughput --runs 3 --messages 60000
	$(PY) bench/forecast_bench.py

soak: system-deps-test $(VENV)/.installed  ## 10 min of the whole pipeline at 2 k msg/s with faults
	$(PY) -m bench.soak --minutes 10

# What the nightly backup and retention cost the collector: p99 publish→queryable during each
# against none (a year of history back-filled into a scratch store first, ~2 min).
.PHONY: bench-jobs
bench-jobs: system-deps-test $(VENV)/.installed  ## backup's and retention's effect on ingest latency (bench/results.md)
	$(PY) -m bench.jobs_ingest --window-s 20

# The forecasters side by side on real counter series (data/real/): a year of weekly folds
# per series, one process; FOLDS=4 for a quick look.
.PHONY: bench-real
bench-real: $(VENV)/.installed  ## forecasts vs baselines on real hourly counts (FOLDS=52 STEP=7; bench/results.md)
	nice -n 19 $(PY) -m bench.real_series --folds $(or $(FOLDS),52) --step-days $(or $(STEP),7)

# The live and site pages' server time on a year of minute data (a scratch store in /tmp,
# built once: ~2 min backfill + a forecast run), and the README's screenshots.
.PHONY: bench-dashboard screenshots
bench-dashboard: $(VENV)/.installed  ## live/site page server time on a year of minute data (bench/results.md)
	$(PY) -m bench.dashboard_pages --dir /tmp/bench_dashboard --reuse --runs 7

# The sidebar's page icons are emoji: without an emoji font Chromium draws boxes.
EMOJI_FONT := /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf
screenshots: system-deps-test $(VENV)/.installed  ## a PNG of every dashboard page into docs/screenshots (STORE=path)
	@[ -e $(EMOJI_FONT) ] || { echo "installing system packages: fonts-noto-color-emoji"; \
	  $(APT) update -qq && $(APT) install -y -qq fonts-noto-color-emoji >/dev/null; }
	$(PY) -m bench.screenshots $(if $(STORE),--store $(STORE))

clean-data:  ## delete generated data (the store, run folder)
	rm -rf data/visitorflow.duckdb data/visitorflow.duckdb.wal data/generated run

# --- quality -----------------------------------------------------------------------------
# ruff for the code, import-linter for the layers (pyproject.toml [tool.importlinter]).
lint: $(VENV)/.installed  ## ruff and the import contracts
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

# pytest exits 5 when it collected no test: that must fail, not pass silently.
test: system-deps-test lint  ## the whole test suite (lint, unit, end-to-end, browser)
	$(PY) -m pytest; rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "error: pytest collected no tests" >&2; exit 1; fi; exit $$rc
