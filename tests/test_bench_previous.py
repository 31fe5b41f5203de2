"""Issue 20 asks for the MLLP and HPRIM figures "with the ratio to the previous figures":
each stage keeps the run it replaces beside its own, and the table says by how much."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench.figures import figures, ingest_figures
from bench.previous import compare, last_run

# Reads and writes JSON in a temporary folder: the same on both passes.
pytestmark = pytest.mark.sqlite_only


def test_a_figure_is_kept_beside_the_previous_runs_with_their_ratio() -> None:
    result: dict[str, Any] = {"messages_per_s": 600.0, "cpu_ms_per_message": 2.0}
    last = {"messages_per_s": 400.0, "cpu_ms_per_message": 2.5, "when": "then", "other": 1}
    compare(result, last, "messages_per_s", ("when", "cpu_ms_per_message"))
    assert result["ratio_to_previous"] == pytest.approx(1.5)
    assert result["previous"] == {
        "messages_per_s": 400.0,
        "cpu_ms_per_message": 2.5,
        "when": "then",
    }


@pytest.mark.parametrize(
    "last", [None, {}, {"messages_per_s": 0}, {"messages_per_s": "fast"}, {"skipped": "no server"}]
)
def test_no_ratio_without_a_usable_previous_run(last: Any) -> None:
    result: dict[str, Any] = {"messages_per_s": 600.0}
    compare(result, last, "messages_per_s")
    assert result == {"messages_per_s": 600.0}


def test_last_run_reads_what_a_run_left_and_nothing_else(tmp_path: Path) -> None:
    path = tmp_path / "mllp-latest.json"
    assert last_run(path) == {}
    path.write_text("{not json", encoding="utf-8")
    assert last_run(path) == {}
    path.write_text(json.dumps({"when": "then"}), encoding="utf-8")
    assert last_run(path) == {"when": "then"}


def test_the_table_shows_the_mllp_and_hprim_ratios() -> None:
    mllp = {"messages_per_s": 600.0, "cpu_ms_per_message": 2.0, "target": 1000.0}
    compare(mllp, {"messages_per_s": 480.0}, "messages_per_s")
    rows = {row["key"]: row for row in ingest_figures({"mllp": mllp})}
    assert rows["ingest.mllp"]["display"].endswith("(1.25 x the previous run)")
    hprim = {"files_per_s": 700.0, "files": 500, "cpu_ms_per_file": 1.3}
    compare(hprim, {"files_per_s": 350.0}, "files_per_s")
    shown = {row["key"]: row for row in figures({"hprim": {"result": hprim}})}
    assert shown["hprim.folder"]["display"].endswith("(2.00 x the previous run)")
