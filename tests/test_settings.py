"""Settings: defaults, the TOML file, environment overrides, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from visitorflow.settings import PROJECT_ROOT, SettingsError, load_settings


@pytest.fixture(autouse=True)
def empty_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    config = tmp_path / "visitorflow.toml"
    config.write_text("", encoding="utf-8")
    monkeypatch.setenv("VISITORFLOW_CONFIG", str(config))
    for name in ("VISITORFLOW_MQTT__PORT", "VISITORFLOW_STORE__PATH"):
        monkeypatch.delenv(name, raising=False)
    return config


def test_defaults() -> None:
    s = load_settings()
    assert s.store.path == PROJECT_ROOT / "data" / "visitorflow.duckdb"
    assert s.mqtt.topic_prefix == "langson/v1"
    assert str(s.tz) == "Asia/Ho_Chi_Minh"


def test_file_then_environment(empty_config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty_config.write_text("[mqtt]\nport = 1999\nhost = 'broker.local'\n", encoding="utf-8")
    assert load_settings().mqtt.port == 1999
    monkeypatch.setenv("VISITORFLOW_MQTT__PORT", "2001")
    s = load_settings()
    assert (s.mqtt.port, s.mqtt.host) == (2001, "broker.local")


def test_bad_value_names_field_and_where_to_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VISITORFLOW_MQTT__PORT", "99999")
    with pytest.raises(SettingsError, match=r"mqtt\.port.*VISITORFLOW_"):
        load_settings()


def test_thresholds_must_rise(empty_config: Path) -> None:
    empty_config.write_text("[load]\nbusy = 0.9\ncrowded = 0.8\n", encoding="utf-8")
    with pytest.raises(SettingsError, match="busy < crowded < overload"):
        load_settings()


def test_missing_config_file_is_an_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("VISITORFLOW_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(SettingsError, match="does not exist"):
        load_settings()
