"""Reading counts as people export them (`forecasting/csv_input.py`): date + hour-range
columns, daylight saving, thousands separators, wide files; and clear errors that name the
lines and columns, never a traceback (`python -m forecasting.backtest --csv`)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from forecasting.csv_input import CsvInputError, read_counts_csv


def _read(text: str, columns: list[str] | None = None):
    return read_counts_csv(io.StringIO(text), columns, name="test.csv")


def test_date_and_hour_range_columns_in_a_wide_file() -> None:
    table = _read(
        "date,hour,year,Quay Street,K Road\n"
        "2024-03-01,0:00-0:59,2024,12,3\n"
        "2024-03-01,1:00-1:59,2024,\"1,234\",4\n"
        "2024-03-01,2:00-2:59,2024,,5\n")
    assert table.series == ["Quay Street", "K Road"]  # `year` is a calendar column
    frame = table.frame
    assert frame["ds"].tolist() == list(pd.date_range("2024-03-01", periods=3, freq="h"))
    assert frame["Quay Street"].iloc[1] == 1234  # thousands separator
    assert np.isnan(frame["Quay Street"].iloc[2])  # empty cell: missing, not an error
    assert frame["K Road"].tolist() == [3, 4, 5]


@pytest.mark.parametrize("hour", ["6", "06:00", "6:00-6:59", "06:00 - 06:59"])
def test_hour_spellings(hour: str) -> None:
    table = _read(f"date,hour,y\n01-02-2024,{hour},7\n")
    assert table.frame["ds"].tolist() == [pd.Timestamp("2024-02-01 06:00")]  # day first


def test_daylight_saving_repeat_is_averaged_and_gap_left_missing() -> None:
    # NZ: 2024-04-07 02:00 happens twice (clocks back), 2024-09-29 02:00 never happens.
    table = _read(
        "date,hour,y\n"
        "2024-04-07,1:00-1:59,10\n2024-04-07,2:00-2:59,20\n2024-04-07,2:00-2:59,40\n"
        "2024-04-07,3:00-3:59,50\n"
        "2024-09-29,1:00-1:59,10\n2024-09-29,3:00-3:59,30\n")
    frame = table.frame.set_index("ds")["y"]
    assert frame[pd.Timestamp("2024-04-07 02:00")] == 30
    assert pd.Timestamp("2024-09-29 02:00") not in frame.index
    assert len(frame) == 5
    assert any("repeated" in note for note in table.notes)


def test_days_that_start_in_the_morning_put_the_small_hours_on_the_next_date() -> None:
    # A trading-day file: each date's rows run 6:00 … 23:00, then 0:00 … 5:00 of the night
    # after (as the Auckland export does: New Year's midnight crowd is under 31 December).
    hours = [*range(6, 24), *range(0, 6)]
    rows = [f"2023-12-31,{h}:00-{h}:59,{1000 if h == 0 else 10}" for h in hours]
    rows += [f"2024-01-01,{h}:00-{h}:59,10" for h in hours]
    table = _read("date,hour,y\n" + "\n".join(rows) + "\n")
    frame = table.frame.set_index("ds")["y"]
    assert frame[pd.Timestamp("2024-01-01 00:00")] == 1000
    assert frame.index.is_unique and len(frame) == 48
    assert any("start at 6:00" in note for note in table.notes)


def test_thousands_separators_and_a_ds_column() -> None:
    table = _read('ds,y\n2024-01-01 10:00,"12,345"\n2024-01-01 11:00,12 345\n'
                  "2024-01-01 12:00,2'500\n")
    assert table.frame["y"].tolist() == [12345, 12345, 2500]


def test_bad_cells_are_named_by_line_and_column() -> None:
    with pytest.raises(CsvInputError) as err:
        _read("date,hour,a,b\n2024-01-01,0,1,2\n2024-01-01,1,x,2\n2024-01-01,2,3,-4\n"
              "2024-01-01,3,4,1.2.3\n")
    message = str(err.value)
    assert "column 'a': line 3 ('x')" in message
    assert "column 'b': line 4 ('-4'), line 5 ('1.2.3')" in message


def test_bad_dates_and_hours_are_named() -> None:
    with pytest.raises(CsvInputError) as err:
        _read("date,hour,y\n2024-01-01,0:00-0:59,1\n2024-13-45,1:00-1:59,1\n"
              "2024-01-01,25:00-25:59,1\n")
    message = str(err.value)
    assert "unreadable date(s) in column 'date': line 3 ('2024-13-45')" in message
    assert "unreadable hour(s) in column 'hour'" in message and "line 4" in message


def test_bad_times_and_bad_counts_are_named_in_one_message() -> None:
    with pytest.raises(CsvInputError) as err:
        _read("date,hour,Gate A,Gate B\n2024-04-06,23:00-23:59,\"1,200\",5\n"
              "2024-04-07,0:00-0:59,900,x\n2024-04-07,30:00-30:59,1,1\n")
    message = str(err.value)
    assert "hour(s) in column 'hour'" in message and "line 4 ('30:00-30:59')" in message
    assert "column 'Gate B': line 3 ('x')" in message


def test_missing_columns_and_time_columns_are_named() -> None:
    with pytest.raises(CsvInputError, match=r"no column\(s\) \['gate'\]"):
        _read("ds,y\n2024-01-01,1\n", ["gate"])
    with pytest.raises(CsvInputError, match="no time column"):
        _read("when,y\n2024-01-01,1\n")


def test_the_backtest_command_says_what_it_cannot_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from forecasting.backtest import main

    bad = tmp_path / "counts.csv"
    bad.write_text("date,hour,gate\n2024-01-01,6:00-6:59,12\n2024-01-01,7:00-7:59,lots\n")
    assert main(["--csv", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "cannot backtest" in err and "column 'gate': line 3 ('lots')" in err
    assert "Traceback" not in err
    assert main(["--csv", str(tmp_path / "nowhere.csv")]) == 2
    assert "no such file" in capsys.readouterr().err
