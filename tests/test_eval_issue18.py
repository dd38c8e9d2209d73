"""quota eval at benchmark scale (issue 18): one test (or more) per row of the issue's table."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from quota.cli import main
from quota.errors import RunStoreError
from quota.eval import RunStore
from quota.eval.metrics import compute_metrics, metrics_from_store
from quota.eval.table import format_table
from test_eval_cli import FAST, child_env, eval_argv, rows, write_benchmark


# ---------------------------------------------------------------------------------------------------------
# Row 6: a partial VNBench run counts only complete groups


def _vnbench_rows(tries: dict[str, list[bool]]) -> list[dict]:
    out = []
    for group, outcomes in tries.items():
        for t, ok in enumerate(outcomes):
            out.append({"sample_id": f"{group}_{t}", "correct": ok, "choice": "A",
                        "fields": {"group": group, "task": group.split("/")[0], "category": "retrieval"}})
    return out


def test_row6_partial_vnbench_run_counts_only_complete_groups():
    # group a: the first two tries answered (right), the last two not yet (they will be wrong)
    partial = _vnbench_rows({"ret_insert1/a": [True, True], "ret_insert1/b": [False, True, True, True]})
    finished = _vnbench_rows({"ret_insert1/a": [True, True, False, True], "ret_insert1/b": [False, True, True, True]})
    m_partial = compute_metrics(partial, benchmark="vnbench")
    m_finished = compute_metrics(finished, benchmark="vnbench")
    assert m_finished.headline == 0.0 and m_finished.units_left_out == 0
    # before: group a counted as a right unit (50.0); now it is left out until its four tries are in
    assert m_partial.headline == 0.0
    assert (m_partial.grouped.total, m_partial.units_left_out) == (1, 1)
    table = format_table([m_partial])
    assert "units left out" in table and "1 units left out of the unit scores" in table
    assert m_partial.to_dict()["units_left_out"] == 1


# ---------------------------------------------------------------------------------------------------------
# Row 8: no delta between runs made from different annotation files


def _finished_run(path: Path, sha: str, right: list[bool]) -> None:
    with RunStore(path, {"benchmark": "videomme", "annotations_sha256": sha}) as st:
        for i, ok in enumerate(right):
            st.record(f"q{i}", prediction="A", choice="A", answer="A" if ok else "B", correct=ok,
                      fields={"duration": "short"})
        st.set_meta("plan", {"ids": [f"q{i}" for i in range(len(right))], "limit": None})


def test_row8_no_delta_across_different_annotation_hashes(tmp_path, capsys):
    _finished_run(tmp_path / "a", "1" * 64, [True, False, False])
    _finished_run(tmp_path / "b", "2" * 64, [True, True, False])
    _finished_run(tmp_path / "c", "1" * 64, [True, True, False])
    assert main(["report", str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    assert "delta" not in out.splitlines()[0] and "+33.3" not in out
    assert "no delta: the runs were made from different annotation files" in out
    assert main(["report", str(tmp_path / "a"), str(tmp_path / "c")]) == 0  # same annotations: a delta
    out = capsys.readouterr().out
    assert "delta" in out.splitlines()[0] and "+33.3" in out


# ---------------------------------------------------------------------------------------------------------
# Row 10 (cell): the progress cell counts what was asked


def test_row10_progress_cell_counts_what_was_asked(tmp_path):
    with RunStore(tmp_path / "r", {"benchmark": "videomme"}) as st:
        for i in range(3):
            st.record(f"q{i}", prediction="A", choice="A", answer="A", correct=True, fields={})
        st.set_meta("plan", {"ids": ["q0", "q1", "q2"], "limit": None})
        st.set_meta("missing", [{"id": f"m{i}", "video": f"v{i}", "fields": {}} for i in range(3)])
        m = metrics_from_store(st)
    line = next(line for line in format_table([m]).splitlines() if line.startswith("asked / to ask"))
    assert line.split()[-1] == "3/3"  # 3 asked of the 3 whose video exists (was 6/6)
    assert m.overall.total == 6 and m.overall.missing == 3
