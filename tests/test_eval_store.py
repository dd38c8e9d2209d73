"""The results store (commit, resume, fingerprint refusal, errors, concurrent writers) and the
reports made from stores (metrics, tables, chart)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from quota.errors import RunStoreError
from quota.eval.metrics import compute_metrics, metrics_from_store
from quota.eval.store import DB_NAME, RunStore, open_run
from quota.eval.table import comparison_rows, format_table, plot_comparison, to_markdown

FP = {"benchmark": "videomme", "model": "llava-hf/LLaVA-Video-7B-Qwen2-hf", "preset": "paper",
      "config": {"budget": 12544, "resize": "bilinear"}}


def test_commit_and_resume(tmp_path: Path):
    store = RunStore(tmp_path / "run", FP)
    store.record("q1", prediction="B.", choice="B", answer="B", plan={"kept": 10}, timings={"generate": 1.5},
                 fields={"duration": "short"}, rank=0)
    store.record("q2", prediction="C", choice="C", answer="A", fields={"duration": "long"}, rank=1)
    store.close()
    assert (tmp_path / "run" / DB_NAME).is_file()

    again = RunStore(tmp_path / "run", dict(reversed(list(FP.items()))))  # key order does not matter
    assert again.done_ids() == {"q1", "q2"}
    r1, r2 = again.results()
    assert (r1.sample_id, r1.correct, r1.plan, r1.timings, r1.fields) == (
        "q1", True, {"kept": 10}, {"generate": 1.5}, {"duration": "short"})
    assert (r2.correct, r2.rank, r2.error) == (False, 1, None)
    assert again.counts() == {"rows": 2, "answered": 2, "correct": 1, "errors": 0}
    assert len(again) == 2
    again.close()


def test_sqlite_settings(tmp_path: Path):
    with RunStore(tmp_path, FP) as store:
        assert store.journal_mode == "wal"
        assert store._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert store._conn.execute("PRAGMA busy_timeout").fetchone()[0] >= 1000


def test_fingerprint_mismatch_is_refused(tmp_path: Path):
    RunStore(tmp_path, FP).close()
    other = dict(FP, config={"budget": 6272, "resize": "bilinear"})
    with pytest.raises(RunStoreError, match=r"config\.budget: 12544 -> 6272"):
        RunStore(tmp_path, other)
    with pytest.raises(RunStoreError, match="benchmark"):
        RunStore(tmp_path, dict(FP, benchmark="mlvu"))
    with pytest.raises(RunStoreError, match="model"):
        RunStore(tmp_path, {k: v for k, v in FP.items() if k != "model"})
    # a path in the fingerprint is stored as its string, and matches it later
    RunStore(tmp_path / "p", {"videos": tmp_path / "v"}).close()
    RunStore(tmp_path / "p", {"videos": str(tmp_path / "v")}).close()


def test_open_without_fingerprint(tmp_path: Path):
    with pytest.raises(RunStoreError, match="no results store"):
        open_run(tmp_path / "nothing")
    with RunStore(tmp_path, FP) as s:
        s.record("q", prediction="A", choice="A", answer="A")
    with open_run(tmp_path) as s:
        assert s.fingerprint == RunStore(tmp_path, FP).fingerprint
        assert s.done_ids() == {"q"}


def test_not_a_database_is_a_clear_error(tmp_path: Path):
    (tmp_path / DB_NAME).write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(RunStoreError, match="not a usable results store"):
        RunStore(tmp_path, FP)


def test_errors_recorded_and_retried_only_when_asked(tmp_path: Path):
    store = RunStore(tmp_path, FP)
    store.record("bad", answer="A", error="RuntimeError: CUDA out of memory", traceback="Traceback ...")
    store.record("ok", prediction="A", choice="A", answer="A")
    (bad,) = [r for r in store.results() if r.sample_id == "bad"]
    assert bad.is_error and bad.correct is None and bad.error.startswith("RuntimeError")
    assert store.done_ids() == {"bad", "ok"}
    assert store.done_ids(retry_errors=True) == {"ok"}
    assert RunStore(tmp_path, FP, retry_errors=True).done_ids() == {"ok"}
    assert store.error_ids() == {"bad"}
    # a later answer replaces the error row ...
    store.record("bad", prediction="B", choice="B", answer="A")
    (bad,) = [r for r in store.results() if r.sample_id == "bad"]
    assert (bad.error, bad.correct, bad.attempts) == (None, False, 2)
    # ... but an error never replaces an answer
    store.record("ok", answer="A", error="ValueError: late duplicate")
    (ok,) = [r for r in store.results() if r.sample_id == "ok"]
    assert ok.error is None and ok.correct is True
    store.close()


def test_meta_values(tmp_path: Path):
    with RunStore(tmp_path, FP) as store:
        store.set_meta("note", {"gpu": "H100"})
        assert store.get_meta("note") == {"gpu": "H100"}
        assert store.meta()["fingerprint"] == store.fingerprint
        with pytest.raises(RunStoreError, match="reserved"):
            store.set_meta("fingerprint", {})


def test_waits_for_a_writer_while_switching_to_wal(tmp_path: Path):
    """Switching to WAL ignores SQLite's busy timeout; two ranks creating one store at once
    must still both get in."""
    holder = sqlite3.connect(str(tmp_path / DB_NAME), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("CREATE TABLE other (x)")
    opened: list[RunStore] = []
    thread = threading.Thread(target=lambda: opened.append(RunStore(tmp_path, FP)))
    thread.start()
    time.sleep(0.3)
    assert not opened  # still waiting for the lock
    holder.execute("COMMIT")
    holder.close()
    thread.join(timeout=30)
    (store,) = opened
    assert store.journal_mode == "wal"
    store.close()


WRITER = textwrap.dedent(
    """
    import sys
    from quota.eval.store import RunStore
    run_dir, tag, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    store = RunStore(run_dir, {"benchmark": "videomme", "who": "test"})
    for i in range(n):
        store.record(f"{tag}-{i:03d}", prediction="A", choice="A", answer="A" if i % 2 else "B",
                     fields={"writer": tag}, rank=int(tag == "w1"))
    store.close()
    """
)


def test_two_processes_write_one_store(tmp_path: Path):
    script = tmp_path / "writer.py"
    script.write_text(WRITER, encoding="utf-8")
    run = tmp_path / "run"
    procs = [subprocess.Popen([sys.executable, str(script), str(run), tag, "60"]) for tag in ("w0", "w1")]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    with open_run(run) as store:
        results = store.results()
        assert len(results) == 120
        assert {r.sample_id for r in results} == {f"w{t}-{i:03d}" for t in (0, 1) for i in range(60)}
        assert {r.rank for r in results if r.fields["writer"] == "w1"} == {1}
        assert store.counts()["correct"] == 60
    # the file is a sound SQLite database
    with sqlite3.connect(str(run / DB_NAME)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


# ---------------------------------------------------------------------------------------------
# reports


def fill(store: RunStore, outcomes: dict[str, tuple[str, str | None, str]]) -> None:
    """outcomes: id -> (duration, chosen letter or 'ERR', answer)."""
    for sid, (duration, choice, answer) in outcomes.items():
        if choice == "ERR":
            store.record(sid, answer=answer, error="RuntimeError: boom", fields={"duration": duration,
                         "domain": "Knowledge", "sub_category": "x", "task_type": "OCR Problems"})
        else:
            store.record(sid, prediction=str(choice), choice=choice, answer=answer,
                         fields={"duration": duration, "domain": "Knowledge", "sub_category": "x",
                                 "task_type": "OCR Problems"})


def two_runs(tmp_path: Path):
    base = RunStore(tmp_path / "base", dict(FP, name="baseline", mode="base"))
    quota = RunStore(tmp_path / "quota", dict(FP, name="QuoTA", mode="quota"))
    fill(base, {"1": ("short", "A", "A"), "2": ("short", "B", "A"), "3": ("long", "C", "C"),
                "4": ("long", "ERR", "D"), "5": ("medium", None, "B")})
    fill(quota, {"1": ("short", "A", "A"), "2": ("short", "A", "A"), "3": ("long", "C", "C"),
                 "4": ("long", "D", "D"), "5": ("medium", "A", "B")})
    base.close()
    quota.close()
    return metrics_from_store(tmp_path / "base"), metrics_from_store(tmp_path / "quota")


def test_metrics_from_two_stores(tmp_path: Path):
    base, quota = two_runs(tmp_path)
    assert (base.name, quota.name, base.benchmark) == ("baseline", "QuoTA", "videomme")
    assert (base.overall.correct, base.overall.total, base.overall.errors, base.overall.unparsed) == (2, 5, 1, 1)
    assert base.overall.accuracy == pytest.approx(40.0)
    assert quota.overall.accuracy == pytest.approx(80.0) and quota.headline == pytest.approx(80.0)
    assert list(base.by_field["duration"]) == ["short", "medium", "long"]
    long = base.by_field["duration"]["long"]
    assert (long.correct, long.total, long.errors) == (1, 2, 1)
    assert base.fields == ["duration", "domain", "sub_category", "task_type"]


def test_tables_and_chart_from_two_stores(tmp_path: Path):
    runs = two_runs(tmp_path)
    text = format_table(runs)
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["videomme", "baseline", "QuoTA"] and lines[0].split()[-1] == "delta"
    overall = next(line for line in lines if line.startswith("all questions"))
    assert "40.0 (2/5)" in overall and "80.0 (4/5)" in overall and overall.rstrip().endswith("+40.0")
    errors = next(line for line in lines if line.startswith("errors"))
    assert errors.split()[-3:] == ["1", "0", "-1"]
    assert any(line.strip().startswith("long") and "50.0 (1/2)" in line and "100.0 (2/2)" in line for line in lines)

    md = to_markdown(runs)
    assert md.splitlines()[0] == "| videomme | baseline | QuoTA | delta |"
    assert md.splitlines()[1] == "|---|---:|---:|---:|"
    assert "| **duration** |  |  |  |" in md

    png = plot_comparison(runs, tmp_path / "out" / "vmme.png")
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000

    rows = comparison_rows(runs, fields=["duration"])
    assert [r.label for r in rows if r.kind == "section"] == ["duration"]


def test_official_scores_mlvu_macro_and_vnbench_groups():
    mlvu = [
        {"correct": True, "choice": "A", "fields": {"task": "plotQA"}},
        {"correct": True, "choice": "A", "fields": {"task": "plotQA"}},
        {"correct": True, "choice": "A", "fields": {"task": "plotQA"}},
        {"correct": False, "choice": "B", "fields": {"task": "count"}},
    ]
    m = compute_metrics(mlvu, benchmark="mlvu")
    assert m.overall.accuracy == pytest.approx(75.0)
    assert m.headline == pytest.approx(50.0)  # mean of 100 (plotQA) and 0 (count)

    vn = []
    for group, task, rights in [("v1_ret_insert1", "ret_insert1", [1, 1, 1, 1]),
                                ("v2_ret_insert1", "ret_insert1", [1, 1, 0, 1]),
                                ("v3_cnt_edit1", "cnt_edit1", [1, 1, 1, 1])]:
        for ok in rights:
            vn.append({"correct": bool(ok), "choice": "A", "fields": {"task": task, "group": group,
                                                                      "category": task[:3]}})
    m = compute_metrics(vn, benchmark="vnbench")
    assert m.overall.accuracy == pytest.approx(100.0 * 11 / 12)
    assert (m.grouped.correct, m.grouped.total) == (2, 3)
    assert m.headline == pytest.approx((50.0 + 100.0) / 2)  # per type: ret 1/2, cnt 1/1
    assert "group" not in m.fields
    text = format_table([m, m])
    assert "all-right units" in text


def test_metrics_without_benchmark_use_seen_fields():
    rows = [{"correct": True, "choice": "A", "fields": {"task": "a"}},
            {"correct": False, "error": "X: y", "choice": None, "fields": {"task": "b"}}]
    m = compute_metrics(rows, name="plain")
    assert m.fields == ["task"] and m.benchmark is None and m.headline == pytest.approx(50.0)
    assert m.overall.errors == 1 and m.overall.unparsed == 0


def test_run_lock_one_writer_and_freed_by_a_killed_process(tmp_path: Path):
    import signal
    import subprocess
    import sys
    import time

    from quota.eval.runlock import RunLock, RunLockedError

    run = tmp_path / "run"
    with RunLock(run) as held:
        assert held.held
        with pytest.raises(RunLockedError, match="in use by another quota eval"):
            RunLock(run).acquire()
    RunLock(run).acquire().release()  # released on exit
    # a process killed while holding the lock does not leave it stuck
    code = ("import sys, time; from quota.eval.runlock import RunLock; lock = RunLock(sys.argv[1]).acquire(); "
            "print('held', flush=True); time.sleep(60)")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.Popen([sys.executable, "-c", code, str(run)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(RunLockedError, match=f"pid {proc.pid}"):
            RunLock(run).acquire()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()
    deadline = time.monotonic() + 10
    lock = None
    while lock is None:
        try:
            lock = RunLock(run).acquire()
        except RunLockedError:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    lock.release()


def test_run_lock_ranks_of_one_launch(tmp_path: Path, monkeypatch):
    from quota.eval import runlock
    from quota.eval.runlock import RunLock, RunLockedError, launch_id

    monkeypatch.setattr(runlock, "RANK_WAIT_S", 0.5)
    ours = {"TORCHELASTIC_RUN_ID": "abc"}
    assert launch_id(ours) == "torchelastic:abc" and launch_id({}) == ""
    run = tmp_path / "run"
    rank0 = RunLock(run, rank=0, world_size=2, env=ours).acquire()
    rank1 = RunLock(run, rank=1, world_size=2, env=ours).acquire()  # same launch: allowed
    with pytest.raises(RunLockedError):  # the same rank of another launch
        RunLock(run, rank=1, world_size=2, env={"TORCHELASTIC_RUN_ID": "other"}).acquire()
    rank1.release()
    with pytest.raises(RunLockedError, match="another launch"):
        RunLock(run, rank=1, world_size=2, env={"TORCHELASTIC_RUN_ID": "other"}).acquire()
    rank0.release()


def _planned_run(root: Path, name: str, answers: dict, *, plan: list[str], missing=(), skipped=()) -> None:
    """A store as ``quota eval`` leaves it: rows, the planned question ids, missing videos, skipped rows."""
    st = RunStore(root / name, dict(FP, name=name))
    fill(st, answers)
    st.set_meta("plan", {"ids": plan, "limit": None})
    st.set_meta("missing", [{"id": i, "video": f"{i}.mp4", "fields": {"duration": "long"}} for i in missing])
    st.set_meta("skipped", list(skipped))
    st.close()


def test_report_marks_incomplete_runs_and_missing_videos(tmp_path: Path):
    answers = {"1": ("short", "A", "A"), "2": ("short", "B", "A"), "3": ("long", "C", "C")}
    _planned_run(tmp_path, "done", answers, plan=["1", "2", "3"], missing=["9"],
                 skipped=["videomme.jsonl line 4: fewer than two options"])
    _planned_run(tmp_path, "half", dict(list(answers.items())[:2]), plan=["1", "2", "3"], missing=["9"])
    done, half = metrics_from_store(tmp_path / "done"), metrics_from_store(tmp_path / "half")
    # the missing video's question counts as wrong, and is counted apart
    assert (done.overall.correct, done.overall.total, done.overall.missing) == (2, 4, 1)
    assert done.by_field["duration"]["long"].total == 2 and done.complete
    assert done.run["skipped"] == ["videomme.jsonl line 4: fewer than two options"]
    assert (half.run["total"], half.run["pending"], half.complete) == (4, 1, False)
    text = format_table([done, half])
    header = text.splitlines()[0].split()
    assert header[-2:] == ["half", "*"] and "delta" not in header  # incomplete: marked, and no delta
    assert "2/3 incomplete" in text and "half is incomplete: 3 of 4 questions counted" in text
    assert "no delta: the runs did not count the same questions" in text
    line = next(x for x in text.splitlines() if x.startswith("missing videos"))
    assert line.split()[-2:] == ["1", "1"]
    assert next(x for x in text.splitlines() if x.startswith("skipped annotation rows")).split()[-2:] == ["1", "0"]
    md = to_markdown([done, half])
    assert "delta" not in md.splitlines()[0] and "- no delta" in md


def test_delta_only_between_runs_that_counted_the_same_questions(tmp_path: Path):
    a = {"1": ("short", "A", "A"), "2": ("short", "B", "A"), "3": ("long", "C", "C")}
    b = {"1": ("short", "A", "A"), "2": ("short", "A", "A"), "4": ("long", "C", "C")}
    _planned_run(tmp_path, "a", a, plan=["1", "2", "3"])
    _planned_run(tmp_path, "b", b, plan=["1", "2", "4"])
    _planned_run(tmp_path, "c", {**a, "2": ("short", "A", "A")}, plan=["1", "2", "3"])
    ra, rb, rc = (metrics_from_store(tmp_path / n) for n in "abc")
    assert ra.complete and rb.complete
    assert "delta" not in format_table([ra, rb]).splitlines()[0]
    same = format_table([ra, rc])
    assert same.splitlines()[0].split()[-1] == "delta"
    overall = next(x for x in same.splitlines() if x.startswith("all questions"))
    assert overall.rstrip().endswith("+33.3")


def test_claim_is_granted_once_per_key_across_processes(tmp_path):
    """Two ranks that both see a run finish claim its report: exactly one gets it (the race of two tables)."""
    import multiprocessing

    RunStore(tmp_path / "run", {"benchmark": "videomme"}).close()
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(4) as pool:
        granted = pool.map(_claim_in_child, [str(tmp_path / "run")] * 8)
    assert sum(granted) == 1
    with RunStore(tmp_path / "run", {"benchmark": "videomme"}) as store:
        assert store.claim("report/other") and not store.claim("report/other")
        with pytest.raises(RunStoreError):
            store.claim("fingerprint")


def _claim_in_child(run: str) -> bool:
    with RunStore(run, {"benchmark": "videomme"}) as store:
        return store.claim("report/2/abc")
