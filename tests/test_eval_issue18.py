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
from test_eval_cli import child_env, count_rows, rows, write_benchmark


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


# ---------------------------------------------------------------------------------------------------------
# Row 2: the budget is checked before any model loads; a run where every question failed is not a success

SMALL = ["--set", "base_frames=8", "--budget", "40", "--set", "decouple_max_new_tokens=12", "--device", "cpu", "-q"]


def _argv(bench, out, base, *extra):
    ann, root = bench
    return ["eval", "--benchmark", "videomme", "--annotations", str(ann), "--videos", str(root),
            "--out", str(out), "--base", str(base), "--scorer", "uniform", *SMALL, *map(str, extra)]


def test_row2_budget_above_the_context_is_refused_before_loading(tmp_path, capsys, tiny_llava_ov, monkeypatch):
    import quota.commands as qcommands

    bench = write_benchmark(tmp_path / "b", 1, 1)
    loaded = []
    monkeypatch.setattr(qcommands, "load_pipeline", lambda *a, **k: loaded.append(1))
    assert main(_argv(bench, tmp_path / "run", tiny_llava_ov, "--budget", "10000000")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("quota: error:") and "context" in err
    assert not loaded and not (tmp_path / "run" / "results.sqlite").exists()


def test_row2_every_question_failing_exits_non_zero(tmp_path, capsys, tiny_llava_ov):
    ann, root = write_benchmark(tmp_path / "b", 2, 1)
    for video in (root / "data").glob("*.mp4"):
        video.write_bytes(b"not a video at all")
    run = tmp_path / "run"
    assert main(_argv((ann, root), run, tiny_llava_ov)) == 1
    err = capsys.readouterr().err
    assert "every one of the 2 questions asked failed" in err
    assert "status: failed" in (run / "report.md").read_text()


# ---------------------------------------------------------------------------------------------------------
# Row 3: ranks started by hand work in any order; a rank that waits says so and stops after a stated time


@pytest.mark.slow
def test_row3_hand_started_ranks_finish_and_merge(tmp_path, capsys, tiny_llava_ov, monkeypatch):
    from quota.eval import cli as ecli

    monkeypatch.setattr(ecli, "RANK_ABSENT_S", 1.0)
    monkeypatch.setattr(ecli, "WAIT_POLL_S", 0.2)
    bench = write_benchmark(tmp_path / "b", 4, 1)
    run = tmp_path / "run"
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")  # rank 1 first, by hand: not refused as "another launch"
    assert main(_argv(bench, run, tiny_llava_ov)) == 0
    assert len(rows(run)) == 2 and not (run / "report.md").exists()  # rank 0 not done: no report yet
    monkeypatch.setenv("RANK", "0")
    start = time.monotonic()
    assert main(_argv(bench, run, tiny_llava_ov)) == 0  # the last to finish writes the full report
    assert time.monotonic() - start < 60
    assert len(rows(run)) == 4 and "status: complete" in (run / "report.md").read_text()
    capsys.readouterr()
    # rank 0 alone of a new world of 2: it waits for rank 1 (saying so), then stops after RANK_ABSENT_S
    run2 = tmp_path / "run2"
    start = time.monotonic()
    assert main(_argv(bench, run2, tiny_llava_ov).copy()[:-1] + ["-q"]) == 0
    err = capsys.readouterr().err
    assert time.monotonic() - start < 60
    assert "stopped waiting: rank(s) 1 of 2 not running" in err and "RANK=<r> WORLD_SIZE=2" in err
    assert "incomplete" in (run2 / "report.md").read_text()
    monkeypatch.setenv("RANK", "1")
    assert main(_argv(bench, run2, tiny_llava_ov)) == 0
    assert "status: complete" in (run2 / "report.md").read_text()


# ---------------------------------------------------------------------------------------------------------
# Row 5 and row 10: a read that never returns; Ctrl-C and SIGTERM say what is saved and how to resume

HANG = """
import sys, threading
import quota.video
real = quota.video.load_frames
def load_frames(path, *a, **k):
    if str(path).endswith(sys.argv[1]):
        threading.Event().wait()  # a read that never returns (a dead network mount)
    return real(path, *a, **k)
quota.video.load_frames = load_frames
from quota.cli import main
print("started", flush=True)
sys.exit(main(sys.argv[2:]))
"""


def _start(tmp_path, hang_on, argv):
    env = child_env()
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1] / "src") + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.Popen([sys.executable, "-c", HANG, hang_on, *argv], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_row5_a_hung_read_becomes_an_error_row_and_the_run_finishes(tmp_path, tiny_llava_ov):
    bench = write_benchmark(tmp_path / "b", 3, 1)
    run = tmp_path / "run"
    proc = _start(tmp_path, "vid1.mp4", _argv(bench, run, tiny_llava_ov, "--read-timeout", "2"))
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    stored = rows(run)
    assert "VideoReadTimeoutError" in stored["001-0"]["error"] and "--read-timeout" in stored["001-0"]["error"]
    assert stored["000-0"]["error"] is None and stored["002-0"]["error"] is None


@pytest.mark.slow
@pytest.mark.parametrize("sig, status, said", [(signal.SIGINT, 130, "interrupted"),
                                               (signal.SIGTERM, 143, "stopped by SIGTERM")])
def test_row5_row10_stopping_a_hung_run_is_prompt_and_says_how_to_resume(tmp_path, tiny_llava_ov, sig, status, said):
    bench = write_benchmark(tmp_path / "b", 3, 1)
    run = tmp_path / "run"
    argv = _argv(bench, run, tiny_llava_ov)
    proc = _start(tmp_path, "vid1.mp4", argv)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # wait until the first video's answer is stored
        if count_rows(run / "results.sqlite"):  # 0 while the store is being made: never reads it half-made
            break
        time.sleep(0.2)
    time.sleep(1.0)
    sent = time.monotonic()
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    assert time.monotonic() - sent < 10
    assert proc.returncode == status
    line = next(line for line in err.splitlines() if said in line)
    assert "1 answers are saved in" in line and str(run) in line
    assert "resume with: quota eval --benchmark videomme" in line and f"--out {run}" in line
    assert len(rows(run)) == 1


# ---------------------------------------------------------------------------------------------------------
# Row 7: a full disk gives one line and exit 2, leaves nothing behind, and never runs without the lock


def test_row7_full_disk_while_writing_the_lock_owner(tmp_path, capsys, tiny_llava_ov, monkeypatch):
    import errno

    from quota.eval import runlock

    real = Path.write_text

    def full(self, *a, **k):
        if self.name.startswith(".writer.owner"):
            real(self, "")  # the temporary file exists, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, *a, **k)

    monkeypatch.setattr(Path, "write_text", full)
    bench = write_benchmark(tmp_path / "b", 1, 1)
    run = tmp_path / "run"
    assert main(_argv(bench, run, tiny_llava_ov)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "quota: error: cannot lock the run folder" in err and "No space" in err
    assert not list(run.glob(".writer.owner*")) and not (run / "results.sqlite").exists()
    monkeypatch.setattr(Path, "write_text", real)
    lock = runlock.RunLock(run).acquire()  # the failed run released the lock
    assert lock.held
    lock.release()


def test_row7_full_database_during_rank_bookkeeping_is_a_typed_error(tmp_path):
    st = RunStore(tmp_path / "r", {"benchmark": "videomme"})
    pages = st._conn.execute("PRAGMA page_count").fetchone()[0]
    st._conn.execute(f"PRAGMA max_page_count = {pages}")  # the disk is full from now on
    with pytest.raises(RunStoreError, match="cannot write to results store .*full"):
        st.set_meta("rank/0", {"state": "running", "pad": "x" * 200_000})
    st.close()


# ---------------------------------------------------------------------------------------------------------
# Row 9: the official nested Video-MME template; a bad row named by index; duplicate ids reported


def test_row9_official_videomme_template_is_read(tmp_path):
    from quota.eval import load_benchmark
    from quota.testing.videos import make_video

    root = tmp_path / "Video-MME"
    make_video(root / "data" / "fFjv93ACGo8.mp4", n_frames=10, fps=10, size=(32, 24))
    make_video(root / "data" / "JRqX2S7Oio8.mp4", n_frames=10, fps=10, size=(32, 24))
    # the release table maps the template's numbers to file names
    table = [{"video_id": "001", "videoID": "fFjv93ACGo8", "question_id": "001-1"},
             {"video_id": "002", "videoID": "JRqX2S7Oio8", "question_id": "002-1"}]
    (root / "videomme").mkdir()
    (root / "videomme" / "test-00000-of-00001.json").write_text(json.dumps(table))
    # evaluation/output_test_template.json of BradyFU/Video-MME, with its own field names
    template = [{"video_id": f"00{v}", "duration_category": "short", "video_category": "Knowledge",
                 "video_subcategory": "Humanity & History",
                 "questions": [{"question_id": f"00{v}-1", "task_type": "Object Reasoning", "question": "Which?",
                                "choices": ["A. one.", "B. two.", "C. three.", "D. four."], "answer": "A",
                                "response": "D"}]} for v in (1, 2)]
    ann = tmp_path / "output_test_template.json"
    ann.write_text(json.dumps(template))
    bench = load_benchmark("videomme", ann, root)
    assert [s.id for s in bench] == ["001-1", "002-1"] and not bench.missing
    assert bench.samples[0].video.endswith("fFjv93ACGo8.mp4") and bench.samples[0].options[0] == "one."
    assert bench.samples[0].fields["domain"] == "Knowledge"
    assert bench.samples[0].fields["sub_category"] == "Humanity & History"
    assert "A. one.\nB. two." in bench.samples[0].formatted


def test_row9_bad_row_is_named_and_duplicates_are_reported(tmp_path, capsys, tiny_llava_ov):
    from quota.errors import BenchmarkError
    from quota.eval import load_benchmark

    ann, root = write_benchmark(tmp_path / "b", 2, 1)
    data = json.loads(ann.read_text())
    ann.write_text(json.dumps(data[:1] + ["oops"] + data[1:]))
    with pytest.raises(BenchmarkError, match=r"row 1 \(counted from 0\) is a JSON str"):
        load_benchmark("videomme", ann, root)
    ann.write_text(json.dumps(data + [dict(data[1], question="again")]))
    bench = load_benchmark("videomme", ann, root)
    assert bench.duplicates == ["question id '001-0' occurs 2 times; the repeats are named 001-0~2"]
    run = tmp_path / "run"
    assert main(_argv((ann, root), run, tiny_llava_ov)) == 0
    err = capsys.readouterr().err
    assert err.count("occur more than once") == 1 and "'001-0' occurs 2 times" in err
    assert json.loads((run / "metrics.json").read_text())["run"]["duplicate_ids"] == bench.duplicates


# ---------------------------------------------------------------------------------------------------------
# Row 1: MVBench's combined test.json as {"root", "meta"}; release JSON finding lmms-eval's <id>_<start>_<end> clips

from test_mvbench_layouts import RELEASE, clip_folders, row as mv_row, touch, video_name  # noqa: E402


@pytest.mark.parametrize("meta", ["by_task", "rows"])
def test_row1_mvbench_root_meta_test_json_reads_all_twenty_tasks(tmp_path, meta):
    from quota.eval import load_benchmark

    root = tmp_path / "mvbench_video"
    folders = clip_folders()
    by_task = {}
    for task, (_, bounded) in RELEASE.items():
        name = video_name(task) if task != "episodic_reasoning" else f"{video_name(task)}.mp4"
        by_task[task] = [mv_row(task, bounded, name)]
        touch(root / folders[task] / name)
    rows_ = by_task if meta == "by_task" else [dict(r, task_type=t) for t, rs in by_task.items() for r in rs]
    (root / "test.json").write_text(json.dumps({"root": "/mnt/MVBench/video", "meta": rows_}))
    for ann in (root / "test.json", root):
        bench = load_benchmark("mvbench", ann, root)
        assert not bench.missing and not bench.skipped
        assert sorted(s.fields["task"] for s in bench) == sorted(RELEASE)


def test_row1_release_json_finds_lmms_eval_clips_named_by_their_bounds(tmp_path):
    from quota.eval import load_benchmark

    root = tmp_path / "MVBench"
    folders = clip_folders()
    bounded = {t: v for t, v in RELEASE.items() if v[1]}
    assert len(bounded) == 5
    for task, (folder, _) in RELEASE.items():
        (root / "json").mkdir(parents=True, exist_ok=True)
        name = video_name(task) if task != "episodic_reasoning" else f"{video_name(task)}.mp4"
        (root / "json" / f"{task}.json").write_text(json.dumps([mv_row(task, task in bounded, name)]))
        if task in bounded:  # only lmms-eval's pre-cut clip is there: <id>_<start>_<end>.mp4
            stem = name.rsplit(".", 1)[0]
            touch(root / folders[task] / f"{stem}_2.0_6.5.mp4")
        else:
            touch(root / folders[task] / name)
    bench = load_benchmark("mvbench", root / "json", root)
    assert not bench.missing and sorted(s.fields["task"] for s in bench) == sorted(RELEASE)
    for s in bench:
        if s.fields["task"] in bounded:
            assert s.video.endswith("_2.0_6.5.mp4") and (s.start, s.end) == (None, None)  # the clip is the part


# ---------------------------------------------------------------------------------------------------------
# Row 4: workers whose launcher is killed stop within a minute and free the lock; a rerun resumes


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc to find the workers")
def test_row4_killing_the_launcher_stops_the_workers(tmp_path, tiny_llava_ov):
    from quota.eval.runlock import rank_running
    from test_eval_cli import free_port

    bench = write_benchmark(tmp_path / "b", 4, 1)
    run = tmp_path / "run"
    script = tmp_path / "hang.py"
    script.write_text(HANG)
    env = child_env()
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1] / "src") + os.pathsep + env.get("PYTHONPATH", "")
    launcher = subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
         str(script), "vid3.mp4", *_argv(bench, run, tiny_llava_ov)],
        env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and not (rank_running(run, 0) and rank_running(run, 1)):
        time.sleep(0.3)
    workers = _children(launcher.pid)
    assert len(workers) == 2
    launcher.kill()  # SIGKILL: the launcher cannot pass anything on to its workers
    launcher.wait()
    start = time.monotonic()
    while time.monotonic() - start < 60 and any(Path(f"/proc/{w}").exists() and
                                                 "Z" not in Path(f"/proc/{w}/stat").read_text().split()[2]
                                                 for w in workers):
        time.sleep(0.5)
    assert time.monotonic() - start < 60
    assert not rank_running(run, 0) and not rank_running(run, 1)  # the lock is free
    # a plain rerun resumes: the hung video is gone now, everything gets answered
    assert main(_argv(bench, run, tiny_llava_ov)) == 0
    assert len(rows(run)) == 4
