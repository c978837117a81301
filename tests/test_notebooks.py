"""The analysts' notebooks: each runs top to bottom with nbclient on a store built
by the real pipeline (backfill, backtest, forecast run); a failing cell fails the test; the
committed files carry no outputs and no logic; a running notebook does not stall a
collector-like writer, while a held connection does."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from tests.analysis_support import build_notebook_store, notebook_settings, stop_file
from visitorflow.settings import PROJECT_ROOT, Settings, get_settings

NOTEBOOK_DIR = PROJECT_ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))


@pytest.fixture(scope="module")
def notebook_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One store for the module (building it takes a few seconds): each test copies it."""
    folder = tmp_path_factory.mktemp("notebook_store")
    path = folder / "visitorflow.duckdb"
    (folder / "none.toml").write_text("", encoding="utf-8")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VISITORFLOW_STORE__PATH", str(path))
        mp.setenv("VISITORFLOW_CONFIG", str(folder / "none.toml"))
        get_settings.cache_clear()
        timings = build_notebook_store(notebook_settings())
    get_settings.cache_clear()
    print(f"notebook store built: {json.dumps({k: round(v, 1) for k, v in timings.items()})}")
    yield path


@pytest.fixture
def nb_settings(settings: Settings, notebook_store: Path) -> Settings:
    """The conftest settings (temp store via the environment, which the kernel inherits)
    holding a copy of the module's store."""
    shutil.copy(notebook_store, settings.store.path)
    return settings


def execute(path: Path) -> tuple[nbformat.NotebookNode, float]:
    """Run a notebook in a fresh kernel from the notebooks folder; raises on a failing cell."""
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(notebook, timeout=240, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOK_DIR)}})
    started = time.perf_counter()
    client.execute()
    return notebook, time.perf_counter() - started


def printed(notebook: nbformat.NotebookNode) -> str:
    return "".join(out.get("text", "") for cell in notebook.cells
                   for out in cell.get("outputs", []) if out.get("output_type") == "stream")


def test_the_three_notebooks_are_there() -> None:
    assert [p.name for p in NOTEBOOKS] == [
        "01_visitor_flows.ipynb", "02_forecast_quality.ipynb", "03_festival_review.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_stripped_and_imports_its_logic(path: Path) -> None:
    """Outputs stripped before commit; no functions, classes or SQL in cells (reusable
    code lives in visitorflow.analysis, queries in visitorflow.store)."""
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code
    for cell in code:
        assert cell.outputs == [] and cell.execution_count is None, cell.source[:60]
        assert "execution" not in cell.metadata, cell.source[:60]
        for banned in ("def ", "class ", "duckdb", "SELECT ", "lambda"):
            assert banned not in cell.source, f"{banned!r} in a cell of {path.name}"
    assert any("from visitorflow import analysis" in cell.source for cell in code)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom(nb_settings: Settings, path: Path) -> None:
    notebook, seconds = execute(path)
    errors = [out for cell in notebook.cells for out in cell.get("outputs", [])
              if out.get("output_type") == "error"]
    assert not errors
    headline = [line for line in printed(notebook).splitlines() if line.startswith("HEADLINE")]
    assert len(headline) == 1, printed(notebook)[-2000:]
    # What an analyst would quote, and the run time, for the closing note (pytest -s).
    print(f"\n{path.name}: {seconds:.1f} s; {headline[0]}")


def test_notebooks_report_the_festival_they_were_given(nb_settings: Settings) -> None:
    """The review's numbers come from the store: the Kỳ Cùng–Tả Phủ festival of 2026
    (lunar 22–27/1 = 10–15 Mar) overloads Tả Phủ on its procession days."""
    notebook, _ = execute(NOTEBOOK_DIR / "03_festival_review.ipynb")
    text = printed(notebook)
    assert "ky_cung_ta_phu 2026-03-10 to 2026-03-15" in text
    assert "overloaded" in text and " 0.0 h overloaded" not in text
    # Alerts the real evaluation raised over the festival, and the simulated operator's
    # acknowledgements (tests/analysis_support.py): counted, and timed in minutes.
    alerts_line = re.search(r"ALERTS: (\d+) raised, (\d+) acknowledged, median (\d+) min", text)
    assert alerts_line, text[-2000:]
    raised, acknowledged, median = map(int, alerts_line.groups())
    assert 0 < acknowledged < raised and 2 <= median <= 40


def test_a_failing_cell_fails_the_run(nb_settings: Settings, tmp_path: Path) -> None:
    """The harness itself can fail: a notebook whose cell raises is reported."""
    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("from visitorflow import analysis as va\n"
                                  "ws = va.open_workspace()"),
        nbformat.v4.new_code_cell("va.latest_covered_occurrence(ws, 'no_such_festival')"),
    ])
    path = tmp_path / "broken.ipynb"
    nbformat.write(notebook, path)
    with pytest.raises(CellExecutionError, match="no_such_festival"):
        execute(path)


def _start_writer(store: Path, seconds: float) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.analysis_support", "writer", str(store), str(seconds),
         "0.1"],
        cwd=PROJECT_ROOT, stdout=subprocess.PIPE, text=True)


def _writer_report(proc: subprocess.Popen) -> dict:
    out, _ = proc.communicate(timeout=90)
    assert proc.returncode == 0
    return json.loads(out.strip().splitlines()[-1])


def test_a_running_notebook_does_not_stall_the_collector(nb_settings: Settings) -> None:
    """A collector-like writer commits every 0.1 s in its own process while notebook 1 runs
    its queries in the kernel's process: no commit waits long, none is lost."""
    store = nb_settings.store.path
    before = duckdb_count(store)
    writer = _start_writer(store, 120)
    try:
        time.sleep(0.5)
        execute(NOTEBOOK_DIR / "01_visitor_flows.ipynb")
    finally:
        stop_file(store).touch()
    report = _writer_report(writer)
    assert report["batches"] >= 10
    assert duckdb_count(store) - before == report["rows"]
    # Each reader holds the file for one query (tens of ms); a stall is seconds (below).
    assert report["max_wall_s"] < 1.5, report


def test_a_held_connection_does_stall_the_collector(nb_settings: Settings) -> None:
    """The control for the test above: a notebook that keeps a read-only connection open
    blocks the writer for as long as it holds it (what the analysts' helper prevents)."""
    store = nb_settings.store.path
    writer = _start_writer(store, 6)
    time.sleep(1.0)
    con = _connect_between_commits(store)
    try:
        time.sleep(2.5)
    finally:
        con.close()
    time.sleep(0.5)  # a few commits after the hold, then stop
    stop_file(store).touch()
    report = _writer_report(writer)
    assert report["max_wall_s"] >= 2.0, report


def _connect_between_commits(store: Path) -> duckdb.DuckDBPyConnection:
    """A plain read-only connection, as a careless notebook would hold one (retried: the
    writer may hold the file at this very moment)."""
    deadline = time.monotonic() + 10
    while True:
        try:
            return duckdb.connect(str(store), read_only=True)
        except duckdb.IOException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def duckdb_count(store: Path) -> int:
    from visitorflow.store import Store

    return Store(store).table_counts()["readings"]


def test_strip_outputs_clears_what_a_run_leaves(tmp_path: Path) -> None:
    from visitorflow.analysis import strip_outputs

    cell = nbformat.v4.new_code_cell("print(1)", execution_count=3, outputs=[
        nbformat.v4.new_output("stream", name="stdout", text="1\n")])
    cell.metadata["execution"] = {"iopub.status.busy": "2026-11-21T23:49:30Z"}
    path = tmp_path / "ran.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[cell]), path)
    assert strip_outputs([path]) == [path]
    (stripped,) = nbformat.read(path, as_version=4).cells
    assert stripped.outputs == [] and stripped.execution_count is None
    assert "execution" not in stripped.metadata
    assert strip_outputs([path]) == []  # already clean: untouched
