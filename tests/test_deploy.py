"""The systemd files in deploy/: the unit passes `systemd-analyze verify` with nothing to
say, and the environment-file example names only settings that exist."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import BaseModel, SecretStr

from visitorflow.settings import CONFIG_ENV, PROJECT_ROOT, Settings, load_settings

DEPLOY = PROJECT_ROOT / "deploy"
UNIT = DEPLOY / "visitorflow.service"
ENV_EXAMPLE = DEPLOY / "visitorflow.env.example"
INSTALL_ROOT = "/opt/visitorflow"
ENV_FILE = "/etc/visitorflow/visitorflow.env"
# Commented-out lines count too: they are the settings an operator is invited to change.
ASSIGNMENT = re.compile(r"^#?\s*(VISITORFLOW_[A-Z0-9_]+)=(.*)$")


def systemd_analyze() -> str:
    found = shutil.which("systemd-analyze") or "/usr/bin/systemd-analyze"
    if not Path(found).exists():
        pytest.fail("systemd-analyze is missing: `make system-deps-test` installs it "
                    "(Debian package systemd)")
    return found


def verify(unit_text: str, tmp_path: Path) -> tuple[int, str]:
    """`systemd-analyze verify` on a copy of the unit whose paths point into tmp_path: the
    install folder with a venv python (a symlink to this interpreter) and the environment
    file. verify refuses an ExecStart binary that does not exist, so the copy needs one."""
    root = tmp_path / "visitorflow"
    (root / ".venv" / "bin").mkdir(parents=True, exist_ok=True)
    python = root / ".venv" / "bin" / "python"
    if not python.exists():
        python.symlink_to(sys.executable)
    env_file = tmp_path / "visitorflow.env"
    shutil.copy(ENV_EXAMPLE, env_file)
    text = unit_text.replace(ENV_FILE, str(env_file)).replace(INSTALL_ROOT, str(root))
    assert INSTALL_ROOT not in text and "/etc/visitorflow" not in text
    unit = tmp_path / "units" / "visitorflow.service"
    unit.parent.mkdir(exist_ok=True)
    unit.write_text(text, encoding="utf-8")
    done = subprocess.run(
        [systemd_analyze(), "verify", str(unit)], capture_output=True, text=True, timeout=60,
        # Its messages in English and without colour, whatever the caller's locale.
        env={**os.environ, "LC_ALL": "C", "SYSTEMD_COLORS": "0"},
    )
    return done.returncode, (done.stdout + done.stderr).strip()


def test_the_unit_verifies_cleanly(tmp_path: Path) -> None:
    # Exit 0 alone proves little: verify also exits 0 on a line it cannot parse ("Failed to
    # parse ..., ignoring"), so the unit must also draw no message at all.
    code, output = verify(UNIT.read_text(encoding="utf-8"), tmp_path)
    assert (code, output) == (0, "")


@pytest.mark.parametrize(("line", "replacement", "expected"), [
    ("Restart=on-failure", "Restart=sometimes", "restart specifier"),
    ("KillSignal=SIGTERM", "KillSignal=SIGTREM", "SIGTREM"),
    ("RestartSec=5", "RestartSecs=5", "Unknown key"),
])
def test_a_broken_unit_is_caught(
    tmp_path: Path, line: str, replacement: str, expected: str,
) -> None:
    # The same check as above on a deliberately broken copy: it must complain, or the clean
    # result of the test above would mean nothing.
    text = UNIT.read_text(encoding="utf-8")
    assert f"\n{line}\n" in text
    _, output = verify(text.replace(f"\n{line}\n", f"\n{replacement}\n"), tmp_path)
    assert expected in output


def test_the_unit_runs_the_supervisor_as_asked() -> None:
    lines = {ln.split("=", 1)[0]: ln.split("=", 1)[1]
             for ln in UNIT.read_text(encoding="utf-8").splitlines()
             if "=" in ln and not ln.startswith("#")}
    assert lines["ExecStart"] == f"{INSTALL_ROOT}/.venv/bin/python -m orchestration.serve"
    assert lines["WorkingDirectory"] == INSTALL_ROOT
    assert lines["EnvironmentFile"] == ENV_FILE
    assert lines["User"] == "visitorflow"
    assert (lines["Restart"], lines["RestartSec"]) == ("on-failure", "5")
    assert (lines["KillSignal"], lines["TimeoutStopSec"]) == ("SIGTERM", "20")
    assert lines["WantedBy"] == "multi-user.target"


def example_assignments() -> dict[str, str]:
    found = {}
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        match = ASSIGNMENT.match(line.strip())
        if match:
            found[match.group(1)] = match.group(2)
    return found


def field_path(name: str) -> list[str]:
    """VISITORFLOW_MQTT__TLS_PORT -> ["mqtt", "tls_port"], checked against the models; an
    AssertionError names the first part that is not a field."""
    parts = name.removeprefix("VISITORFLOW_").lower().split("__")
    model: type[BaseModel] = Settings
    for i, part in enumerate(parts):
        assert part in model.model_fields, f"{name}: {part!r} is not a field of {model.__name__}"
        annotation = model.model_fields[part].annotation
        last = i == len(parts) - 1
        if not last:
            assert isinstance(annotation, type) and issubclass(annotation, BaseModel), (
                f"{name}: {part!r} is a value, not a section")
            model = annotation
        else:
            assert not (isinstance(annotation, type) and issubclass(annotation, BaseModel)), (
                f"{name}: {part!r} is a whole section, not a field")
    return parts


def test_the_env_example_names_only_settings_that_exist() -> None:
    names = example_assignments()
    # The settings an operator changes on a server are all there.
    for expected in ("VISITORFLOW_MQTT__PORT", "VISITORFLOW_PUBLIC__PORT",
                     "VISITORFLOW_STORE__PATH", "VISITORFLOW_MQTT__TLS",
                     "VISITORFLOW_MQTT__SECRETS_DIR"):
        assert expected in names
    for name in names:
        if name != CONFIG_ENV:  # the settings file's own path, not a field
            field_path(name)


def test_a_misspelt_name_is_caught() -> None:
    with pytest.raises(AssertionError, match="'prot' is not a field"):
        field_path("VISITORFLOW_MQTT__PROT")
    with pytest.raises(AssertionError, match="not a section"):
        field_path("VISITORFLOW_TIMEZONE__X")


def test_the_env_example_values_are_valid(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Every line uncommented at once must still make valid settings, each value in force.
    for name in [n for n in os.environ if n.startswith("VISITORFLOW_")]:
        monkeypatch.delenv(name)
    values = {n: v for n, v in example_assignments().items() if n != CONFIG_ENV}
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    empty = tmp_path / "visitorflow.toml"
    empty.write_text("", encoding="utf-8")  # no settings file of the machine's in the way
    monkeypatch.setenv(CONFIG_ENV, str(empty))
    settings = load_settings()
    for name, value in values.items():
        obj: object = settings
        for part in field_path(name):
            obj = getattr(obj, part)
        if isinstance(obj, SecretStr):  # shown masked; its value is what was set
            obj = obj.get_secret_value()
        if isinstance(obj, tuple):  # a list setting is written as JSON
            assert list(obj) == json.loads(value), (name, obj, value)
            continue
        shown = str(obj).lower() if isinstance(obj, bool) else str(obj)
        assert shown == value or str(obj).endswith(value), (name, obj, value)
