"""The benchmark runner (skip done, errors recorded, sharding, kill-and-resume, several ranks) and
the multiple-choice helpers it uses."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest

from quota.errors import ConfigError
from quota.eval.benchmarks import Benchmark, Sample, load_benchmark
from quota.choices import extract_choice, format_options, option_letters, strip_option_prefix
from quota.eval.metrics import metrics_from_store
from quota.eval.runner import (
    dist_info,
    order_samples,
    run_benchmark,
    shard_samples,
    unpack_answer,
    video_key,
    wait_for_ranks,
)
from quota.eval.store import RunStore, open_run
from quota.types import Answer, Plan

FP = {"benchmark": "videomme", "model": "tiny", "preset": "paper"}

# ---------------------------------------------------------------------------------------------
# choices


@pytest.mark.parametrize(
    "text, expected",
    [
        ("A", "A"), ("(B)", "B"), ("Answer: C", "C"), ("The answer is D.", "D"), ("B. The man is walking", "B"),
        ("b", "B"), ("  c\n", "C"), ("(C) because it rains", "C"), ("Best option: (a)", "A"),
        ("The correct answer is (B) a dog.", "B"), ("**D**", "D"), ("Option C", "C"), ("C)", "C"),
        ("I think it is B", "B"), ("answer: c.", "C"),
        ("A man is walking", None), ("the answer is a cat", None), ("none of them", None), ("", None),
        ("E", None), (None, None),
    ],
)
def test_extract_choice(text, expected):
    assert extract_choice(text, "ABCD") == expected


def test_extract_choice_more_letters_and_option_text():
    assert extract_choice("E", "ABCDE") == "E"
    assert extract_choice("The man is walking", "ABCD", ["a dog runs", "the man is walking", "x", "y"]) == "B"
    assert extract_choice("red or blue", "AB", ["red", "blue"]) is None  # two options named: no guess


def test_format_options_and_letters():
    assert format_options(["cat", " dog "]) == "A. cat\nB. dog"
    assert option_letters(5) == "ABCDE"
    assert strip_option_prefix("(C) a bird") == "a bird"
    assert strip_option_prefix("A cat sat", "A") == "A cat sat"
    with pytest.raises(ValueError):
        option_letters(27)


# ---------------------------------------------------------------------------------------------
# a tiny benchmark


def make_samples(n_videos: int = 5, per_video: int = 3, root: str = "/data/vids") -> list[Sample]:
    out = []
    for v in range(n_videos):
        for q in range(per_video):
            out.append(Sample(
                id=f"{v:03d}-{q}", video=f"{root}/vid{v:03d}.mp4", question=f"Q{q}?",
                options=["w", "x", "y", "z"], answer="ABCD"[(v + q) % 4],
                fields={"duration": ["short", "medium", "long"][v % 3]}, benchmark="videomme",
            ))
    return out


def guess(sample: Sample) -> str:
    """A deterministic answer, right for about half of the questions."""
    right = (int(sample.id[:3]) + int(sample.id[-1])) % 2 == 0
    return sample.answer if right else "ABCD"[(ord(sample.answer) - 64) % 4]


def write_videomme(root: Path, n_videos: int, per_video: int) -> tuple[Path, Path]:
    rows = []
    for v in range(n_videos):
        (root / "data").mkdir(parents=True, exist_ok=True)
        (root / "data" / f"vid{v:03d}.mp4").write_bytes(b"\x00")
        for q in range(per_video):
            rows.append({"videoID": f"vid{v:03d}", "question_id": f"{v:03d}-{q}", "duration": "short",
                         "domain": "Knowledge", "sub_category": "x", "task_type": "OCR Problems",
                         "question": f"Q{q}?", "options": ["A. w", "B. x", "C. y", "D. z"],
                         "answer": "ABCD"[(v + q) % 4]})
    ann = root / "videomme.json"
    ann.write_text(json.dumps(rows), encoding="utf-8")
    return ann, root


# ---------------------------------------------------------------------------------------------
# runner


def test_run_skips_done_and_records(tmp_path: Path):
    samples = make_samples()
    store = RunStore(tmp_path, FP)
    calls: list[str] = []

    def answer(s: Sample):
        calls.append(s.id)
        return (f"The answer is {guess(s)}.", None, {"kept": 3}, {"generate": 0.01})

    first = run_benchmark(samples, answer, store, limit=6, quiet=True)
    assert (first.total, first.assigned, first.answered, first.errors, first.already_done) == (6, 6, 6, 0, 0)
    assert calls == [s.id for s in order_samples(samples)[:6]]
    second = run_benchmark(samples, answer, store, quiet=True)
    assert (second.already_done, second.answered) == (6, 9)
    assert sorted(calls) == sorted(s.id for s in samples)  # nobody asked twice
    results = {r.sample_id: r for r in store.results()}
    assert len(results) == 15
    r = results["000-0"]
    assert (r.choice, r.answer, r.correct, r.plan, r.fields) == ("A", "A", True, {"kept": 3}, {"duration": "short"})
    assert r.timings["generate"] == 0.01 and r.timings["total"] >= 0
    third = run_benchmark(samples, answer, store, quiet=True)
    assert third.answered == 0 and third.already_done == 15


def test_errors_are_recorded_and_the_run_goes_on(tmp_path: Path):
    samples = make_samples()
    store = RunStore(tmp_path, FP)
    state = {"broken": True}

    def answer(s: Sample):
        if state["broken"] and s.id.endswith("-1"):
            raise RuntimeError(f"decoder failed on {s.id}")
        return guess(s)

    summary = run_benchmark(samples, answer, store, quiet=True)
    assert (summary.answered, summary.errors) == (10, 5)
    errors = [r for r in store.results() if r.error]
    assert len(errors) == 5 and errors[0].error.startswith("RuntimeError: decoder failed")
    assert "Traceback" in errors[0].traceback and errors[0].correct is None
    state["broken"] = False
    assert run_benchmark(samples, answer, store, quiet=True).ran == 0  # errors are done unless retried
    again = run_benchmark(samples, answer, store, quiet=True, retry_errors=True)
    assert (again.answered, again.errors, again.already_done) == (5, 0, 10)
    assert not store.error_ids()
    assert {r.attempts for r in store.results() if r.sample_id.endswith("-1")} == {2}


def test_keyboard_interrupt_stops_and_keeps_finished(tmp_path: Path):
    samples = make_samples()
    store = RunStore(tmp_path, FP)

    def answer(s: Sample):
        if s.id == "001-1":
            raise KeyboardInterrupt
        return guess(s)

    with pytest.raises(KeyboardInterrupt):
        run_benchmark(samples, answer, store, quiet=True)
    assert store.done_ids() == {"000-0", "000-1", "000-2", "001-0"}


def test_answer_forms(tmp_path: Path):
    plan = Plan(indices=[0, 5], timestamps=[0.0, 5.0], scores=[0.9, 0.1], weights=[0.9, 0.1],
                grids=[(4, 4), (0, 0)], budget=16, native=(4, 4))
    assert unpack_answer(Answer(text="B", plan=plan, timings={"generate": 1.0}, choice="B")) == (
        "B", "B", plan.summary(), {"generate": 1.0})
    assert unpack_answer("C. yes") == ("C. yes", None, {}, {})
    assert unpack_answer(("D", "D")) == ("D", "D", {}, {})
    with pytest.raises(TypeError, match="expected"):
        unpack_answer(42)
    samples = make_samples(1, 2)
    store = RunStore(tmp_path, FP)
    run_benchmark(samples, lambda s: ("whatever", "(b)", plan, None), store, quiet=True)
    assert {r.choice for r in store.results()} == {"B"}
    with pytest.raises(TypeError):
        run_benchmark(make_samples(2, 1)[1:], lambda s: 42, store, quiet=True)


def test_sharding_covers_every_sample_once_by_video():
    samples = make_samples(7, 3)
    for world in (1, 2, 3, 8):
        shards = [shard_samples(samples, r, world) for r in range(world)]
        ids = [s.id for shard in shards for s in shard]
        assert sorted(ids) == sorted(s.id for s in samples) and len(ids) == len(set(ids))
        for shard in shards:
            videos = [s.video for s in shard]
            assert videos == sorted(videos)  # questions of a video are next to each other
        owner = {s.video: r for r, shard in enumerate(shards) for s in shard}
        assert all(owner[s.video] == r for r, shard in enumerate(shards) for s in shard)
    # the same shards wherever the dataset is mounted, and whatever the input order
    moved = make_samples(7, 3, root="/mnt/other")
    a = [s.id for s in shard_samples(samples, 1, 3, root="/data/vids")]
    b = [s.id for s in shard_samples(list(reversed(moved)), 1, 3, root="/mnt/other")]
    assert a == b
    assert video_key(samples[0], "/data/vids") == "vid000.mp4"
    with pytest.raises(ConfigError):
        shard_samples(samples, 2, 2)


def test_dist_info_from_env():
    assert dist_info({}) == dist_info({"RANK": "0", "WORLD_SIZE": "1"})
    info = dist_info({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"})
    assert (info.rank, info.world_size, info.local_rank, info.is_main) == (3, 4, 1, False)
    assert info.shard == {"rank": 3, "world_size": 4}
    with pytest.raises(ConfigError):
        dist_info({"RANK": "4", "WORLD_SIZE": "4"})
    with pytest.raises(ConfigError):
        dist_info({"RANK": "x"})


def test_runner_on_loaded_benchmark_reports_missing(tmp_path: Path):
    ann, root = write_videomme(tmp_path / "vmme", 3, 2)
    (root / "data" / "vid002.mp4").unlink()
    bench = load_benchmark("videomme", ann, root)
    assert isinstance(bench, Benchmark) and len(bench.missing) == 2
    store = RunStore(tmp_path / "run", FP)
    summary = run_benchmark(bench, guess, store, quiet=True)
    assert (summary.total, summary.missing, summary.answered) == (4, 2, 4)
    assert "4 answered" in str(summary)


# ---------------------------------------------------------------------------------------------
# processes: kill -9 and resume; two ranks at once

SCRIPT = textwrap.dedent(
    """
    import os, sys, time
    from quota.eval import load_benchmark, RunStore, run_benchmark, dist_info, wait_for_ranks
    ann, videos, run_dir, log_path, delay = sys.argv[1:6]
    bench = load_benchmark("videomme", ann, videos)
    log = open(log_path, "a")

    def answer(sample):
        log.write(sample.id + "\\n")
        log.flush()
        time.sleep(float(delay))
        v, q = sample.id.split("-")
        right = (int(v) + int(q)) % 2 == 0
        letter = sample.answer if right else "ABCD"[(ord(sample.answer) - 64) % 4]
        return (f"The answer is {letter}.", None, {"kept": 1}, None)

    info = dist_info()
    store = RunStore(run_dir, {"benchmark": "videomme", "model": "tiny"})
    run_benchmark(bench, answer, store, quiet=True, **info.shard)
    if info.is_main:
        assert wait_for_ranks(store, info.world_size, [s.id for s in bench], poll_s=0.05, timeout_s=60)
        open(os.path.join(run_dir, "report.txt"), "w").write(str(store.counts()))
    """
)


def _spawn(tmp_path: Path, ann: Path, root: Path, run: Path, log: Path, delay: float, env=None):
    script = tmp_path / "run_eval.py"
    script.write_text(SCRIPT, encoding="utf-8")
    return subprocess.Popen([sys.executable, str(script), str(ann), str(root), str(run), str(log), str(delay)],
                            env={**os.environ, **(env or {})})


def test_kill_and_resume_loses_nothing(tmp_path: Path):
    ann, root = write_videomme(tmp_path / "vmme", 8, 3)
    run, log = tmp_path / "run", tmp_path / "calls.log"
    proc = _spawn(tmp_path, ann, root, run, log, delay=0.05)
    deadline = time.monotonic() + 60
    rows = 0
    while time.monotonic() < deadline and proc.poll() is None:
        if (run / "results.sqlite").exists():
            try:
                with open_run(run) as st:
                    rows = len(st)
            except Exception:
                rows = 0
            if rows >= 5:
                break
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    with open_run(run) as st:
        killed_at = len(st)
    assert 5 <= killed_at < 24
    with sqlite3.connect(str(run / "results.sqlite")) as conn:  # the killed writer left a sound file
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    # resume in a new process, without the delay
    resume = _spawn(tmp_path, ann, root, run, log, delay=0.0)
    assert resume.wait(timeout=120) == 0
    with open_run(run) as st:
        results = st.results()
    ids = [r.sample_id for r in results]
    assert len(ids) == 24 == len(set(ids))
    calls = Counter(log.read_text().split())
    assert set(calls) == set(ids)
    assert sum(n - 1 for n in calls.values()) <= 1  # only the question in flight was asked twice

    # the same metrics as a run that was never interrupted
    straight = _spawn(tmp_path, ann, root, tmp_path / "straight", tmp_path / "calls2.log", delay=0.0)
    assert straight.wait(timeout=120) == 0
    resumed, uninterrupted = metrics_from_store(run), metrics_from_store(tmp_path / "straight")
    assert resumed.to_dict()["overall"] == uninterrupted.to_dict()["overall"]
    assert resumed.to_dict()["by_field"] == uninterrupted.to_dict()["by_field"]
    assert resumed.overall.total == 24 and 0 < resumed.overall.correct < 24


def test_two_ranks_share_one_store(tmp_path: Path):
    ann, root = write_videomme(tmp_path / "vmme", 9, 2)
    run = tmp_path / "run"
    procs = [
        _spawn(tmp_path, ann, root, run, tmp_path / f"calls{r}.log", delay=0.0,
               env={"RANK": str(r), "WORLD_SIZE": "2", "LOCAL_RANK": str(r)})
        for r in (0, 1)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    with open_run(run) as st:
        results = st.results()
        assert wait_for_ranks(st, 2, poll_s=0.01, timeout_s=1)
        assert not wait_for_ranks(st, 3, poll_s=0.01, timeout_s=0.05)
    assert len(results) == 18
    by_rank = Counter(r.rank for r in results)
    assert set(by_rank) == {0, 1}
    calls = [Counter((tmp_path / f"calls{r}.log").read_text().split()) for r in (0, 1)]
    assert not set(calls[0]) & set(calls[1])  # no question asked on both ranks
    videos = {r.sample_id.split("-")[0]: r.rank for r in results}
    assert all(videos[r.sample_id.split("-")[0]] == r.rank for r in results)
    assert (run / "report.txt").read_text() == str({"rows": 18, "answered": 18, "correct": 9, "errors": 0})
