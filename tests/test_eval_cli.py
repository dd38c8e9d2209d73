"""``quota eval`` and ``quota report``: benchmark runs through the command line with the tiny real models.

A tiny Video-MME (generated videos, a JSON annotation file) is run end to end: full run and report files,
rerun that skips everything, a damaged video that becomes an error row, a changed configuration that is
refused, kill -9 and resume, two ranks under torchrun. Cheap runs call :func:`quota.cli.main` in this
process; the kill and the torchrun launch use real subprocesses.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from quota.cli import COMMANDS, main
from quota.errors import VideoError
from quota.eval import RunStore, load_benchmark, open_run, run_benchmark
from quota.eval.pipeline_answer import PipelineAnswer, clip_frames
from quota.testing.tiny_models import CACHE_ENV
from quota.testing.videos import make_video, read_frame_number

FAST = ["--set", "base_frames=8", "--budget", "40", "--set", "max_new_tokens=4",
        "--set", "decouple_max_new_tokens=16", "--set", "scorer_batch_size=8", "--device", "cpu"]
STAGES = ("decode", "decouple", "score", "encode", "generate", "total")


def write_benchmark(root: Path, n_videos: int, per_video: int, *, missing: bool = False) -> tuple[Path, Path]:
    """A Video-MME-format benchmark: ``n_videos`` generated videos in ``root/data`` with ``per_video``
    four-option questions each (and, with ``missing``, one question about a video that is not there)."""
    (root / "data").mkdir(parents=True, exist_ok=True)
    rows = []
    for v in range(n_videos):
        make_video(root / "data" / f"vid{v}.mp4", n_frames=20 + 4 * v, fps=10, size=(64, 48))
        for q in range(per_video):
            rows.append({
                "videoID": f"vid{v}", "question_id": f"{v:03d}-{q}",
                "duration": ["short", "medium", "long"][v % 3], "domain": "Knowledge", "sub_category": "Counting",
                "task_type": ["Counting Problem", "Object Recognition"][q % 2],
                "question": f"How many squares are there in part {q}?",
                "options": ["A. one", "B. two", "C. three", "D. four"], "answer": "ABCD"[(v + q) % 4],
            })
    if missing:
        rows.append({**rows[0], "videoID": "gone", "question_id": "999-0"})
    ann = root / "videomme.json"
    ann.write_text(json.dumps(rows), encoding="utf-8")
    return ann, root


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> tuple[Path, Path]:
    return write_benchmark(tmp_path_factory.mktemp("vmme"), 3, 2, missing=True)


def eval_argv(bench: tuple[Path, Path], out: Path, base: Path, *extra: str) -> list[str]:
    ann, root = bench
    return ["eval", "--benchmark", "videomme", "--annotations", str(ann), "--videos", str(root),
            "--out", str(out), "--base", str(base), *FAST, *map(str, extra)]


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               OMP_NUM_THREADS=env.get("OMP_NUM_THREADS", "2"))
    if os.environ.get(CACHE_ENV):
        env[CACHE_ENV] = os.environ[CACHE_ENV]
    return env


def rows(run: Path) -> dict[str, dict]:
    with open_run(run) as st:
        return {r.sample_id: r.to_dict() for r in st.results()}


def count_rows(db: Path) -> int:
    """Rows in a store another process is writing (0 while it does not exist yet)."""
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM results").fetchone()[0])
    except sqlite3.Error:
        return 0


def table_count(text: str) -> int:
    """How many accuracy tables ``text`` holds (one "all questions" row each)."""
    return sum(line.startswith("all questions") for line in text.splitlines())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------------------------------------------------
# quota eval in this process
# ---------------------------------------------------------------------------------------------------------


def test_eval_runs_reports_and_a_rerun_skips_everything(tmp_path, capsys, bench, tiny_llava_ov, tiny_qwen2_vl):
    assert ("quota.eval.cli", "add_report_parser") in COMMANDS
    run = tmp_path / "quota"
    argv = eval_argv(bench, run, tiny_llava_ov, "--scorer", tiny_qwen2_vl)
    assert main(argv) == 0
    out, err = capsys.readouterr()
    # the missing video is reported before anything runs, with counts
    assert "1 of 4 videos not found" in err and "1 of 7 questions" in err and "gone" in err
    assert err.index("not found") < err.index("loading")
    # the table on stdout: accuracy overall and per reporting field; the question whose video is
    # missing counts as wrong (as the lmms-eval route does), and the table says so
    assert table_count(out) == 1 and "/7)" in out
    assert [line.split()[-1] for line in out.splitlines() if line.startswith("missing videos")] == ["1"]
    assert [line.split()[-1] for line in out.splitlines() if line.startswith("asked / to ask")] == ["6/6"]
    for field in ("duration", "task_type", "short", "medium", "long"):
        assert field in out

    stored = rows(run)
    assert sorted(stored) == ["000-0", "000-1", "001-0", "001-1", "002-0", "002-1"]
    for r in stored.values():
        assert r["error"] is None and r["attempts"] == 1
        assert r["plan"]["sampled"] == 8 and r["plan"]["tokens"] <= r["plan"]["budget"] == 40
        assert all(r["timings"][s] >= 0.0 for s in STAGES)
        assert r["choice"] in (None, "A", "B", "C", "D") and r["correct"] == (r["choice"] == r["answer"])
    with open_run(run) as st:
        fp = st.fingerprint
    assert fp["benchmark"] == "videomme" and fp["annotations"] == "videomme.json" and fp["baseline"] is False
    assert fp["base"] == str(tiny_llava_ov) and fp["scorer"] == str(tiny_qwen2_vl)
    assert fp["config"]["budget"] == 40 and fp["config"]["scorer"] == str(tiny_qwen2_vl) and fp["quota_version"]
    # precision, device class and the annotation file's content are part of it; result-neutral settings not
    import hashlib

    assert (fp["device"], fp["dtype"]) == ("cpu", "float32")
    assert fp["annotations_sha256"] == hashlib.sha256(bench[0].read_bytes()).hexdigest()
    assert "scorer_vision_batch" not in fp["config"] and "preset" not in fp

    exported = [json.loads(line) for line in (run / "results.jsonl").read_text().splitlines()]
    assert {r["sample_id"]: r for r in exported} == stored
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["benchmark"] == "videomme" and metrics["overall"]["total"] == 7
    assert metrics["overall"]["missing"] == 1 and metrics["complete"] is True
    assert metrics["overall"]["correct"] == sum(r["correct"] for r in stored.values())
    assert set(metrics["by_field"]["duration"]) == {"short", "medium", "long"}
    assert metrics["run"]["questions"] == 6 and metrics["run"]["missing_videos"] == 1
    assert (metrics["run"]["total"], metrics["run"]["answered"], metrics["run"]["pending"]) == (7, 6, 0)
    report = (run / "report.md").read_text()
    assert "# Video-MME" in report and "mode: QuoTA" in report and "| all questions |" in report

    # the same command again: nothing is asked, no model is loaded, no row changes
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert "nothing left to answer" in err and "loading" not in err
    assert rows(run) == stored
    assert table_count(out) == 1


def test_eval_damaged_video_changed_settings_and_missing_videos(tmp_path, capsys, tiny_llava_ov):
    ann, root = write_benchmark(tmp_path / "vmme", 3, 2)
    (root / "data" / "vid1.mp4").write_bytes(b"not a video at all " * 64)
    run = tmp_path / "base"
    argv = eval_argv((ann, root), run, tiny_llava_ov, "--baseline", "--scorer", "uniform", "-q")
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert "/6)" in out  # error rows count as wrong
    stored = rows(run)
    assert len(stored) == 6
    errors = {k: r for k, r in stored.items() if r["error"]}
    assert sorted(errors) == ["001-0", "001-1"]  # the damaged video's questions only; the run went on
    assert all("VideoDecodeError" in r["error"] and "vid1.mp4" in r["error"] for r in errors.values())
    assert all(r["error"] is None and r["plan"] == {} for k, r in stored.items() if k not in errors)
    assert "2 questions failed" in err
    assert json.loads((run / "metrics.json").read_text())["overall"]["errors"] == 2
    assert "mode: baseline" in (run / "report.md").read_text()

    # the baseline does not depend on the scorer: naming one still resumes the same run
    assert main(argv[:-3] + ["--scorer", "some/scorer", "-q"]) == 0
    capsys.readouterr()
    # other settings in the same run folder are refused before any model loads
    for changed, needle in ((argv + ["--budget", "50"], "budget"), ([a for a in argv if a != "--baseline"], "baseline")):
        assert main(changed) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith("quota: error:") and "another configuration" in err[-1] and needle in err[-1]
    assert rows(run) == stored

    # missing videos are fatal with --on-missing error, before the store is touched
    (root / "data" / "vid2.mp4").unlink()
    assert main(eval_argv((ann, root), tmp_path / "strict", tiny_llava_ov, "--on-missing", "error", "-q")) == 2
    err = capsys.readouterr().err
    assert "quota: error:" in err and "1 videos (2 questions) not found" in err and "vid2" in err
    assert not (tmp_path / "strict").exists()
    assert main(eval_argv((ann, root), tmp_path / "neg", tiny_llava_ov, "--limit", "-1", "-q")) == 2
    assert "--limit" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------------
# The answer function
# ---------------------------------------------------------------------------------------------------------


def test_pipeline_answer_decodes_each_video_once(tmp_path, bench, tiny_llava_ov, tiny_qwen2_vl):
    from quota import QuoTA

    qa = QuoTA.from_pretrained(str(tiny_llava_ov), scorer=str(tiny_qwen2_vl), device="cpu", quiet=True,
                               base_frames=8, budget=40, max_new_tokens=4, decouple_max_new_tokens=16,
                               baseline_frames=6)
    benchmark = load_benchmark("videomme", *bench)
    for baseline in (False, True):
        answer_fn = PipelineAnswer(qa, baseline=baseline)
        store = RunStore(tmp_path / f"run{baseline}", {"benchmark": "videomme", "baseline": baseline})
        summary = run_benchmark(benchmark, answer_fn, store, quiet=True)
        assert summary.answered == 6 and summary.errors == 0
        # six questions on three videos, asked video by video: three decodes, the rest from the cache
        assert (answer_fn.stats.questions, answer_fn.stats.decodes) == (6, 3)
        plans = [r.plan for r in store.results()]
        assert all(p == {} for p in plans) if baseline else all(p["sampled"] == 8 for p in plans)
    # the baseline's frames read here once per video give the pipeline's own baseline answer
    sample = benchmark.samples[1]
    own = qa.answer(sample.video, sample.question, sample.options, baseline=True, formatted=sample.formatted)
    text, choice, plan, timings = PipelineAnswer(qa, baseline=True)(sample)
    assert (text, choice, plan) == (own.text, own.choice, {}) and timings["decode"] >= 0.0


def test_clip_frames_reads_only_the_part_asked_about(tmp_path):
    path = make_video(tmp_path / "long.mp4", n_frames=60, fps=10, size=(64, 48))
    frames = clip_frames(path, 2.0, 4.0, n=5)
    assert frames.indices.tolist() == [20, 25, 30, 35, 40]
    assert [read_frame_number(p) for p in frames.pixels] == [20, 25, 30, 35, 40]
    assert np.allclose(frames.timestamps, [0.0, 0.5, 1.0, 1.5, 2.0]) and frames.duration == pytest.approx(2.1)
    ruled = clip_frames(path, 1.0, None, sampling={"base": 4, "per_hour": 64, "max_frames": None})
    assert ruled.indices.tolist() == [10, 26, 42, 59] and ruled.timestamps[0] == 0.0
    with pytest.raises(VideoError, match="no frame between"):
        clip_frames(path, 30.0, 40.0, n=4)


# ---------------------------------------------------------------------------------------------------------
# Subprocesses: kill -9 and resume; two ranks under torchrun
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_kill_and_resume_through_the_cli(tmp_path, capsys, tiny_llava_ov):
    big = write_benchmark(tmp_path / "vmme", 4, 3)
    run, straight = tmp_path / "run", tmp_path / "straight"
    argv = eval_argv(big, run, tiny_llava_ov, "--scorer", "uniform", "-q")
    proc = subprocess.Popen([sys.executable, "-m", "quota.cli", *argv], env=child_env(), cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None and count_rows(run / "results.sqlite") < 1:
            time.sleep(0.01)
        assert proc.poll() is None, f"the run ended before it could be killed: {proc.communicate()[1]}"
        # one writer per run folder: a second quota eval on the live run is refused, before any model loads
        assert main(argv) == 2
        refused = capsys.readouterr().err
        assert "in use by another quota eval" in refused and f"pid {proc.pid}" in refused
        assert "loading" not in refused
        assert proc.poll() is None, "the run ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        proc.stderr.close()
    killed_at = count_rows(run / "results.sqlite")
    assert 1 <= killed_at < 12
    assert not (run / "metrics.json").exists()

    assert main(argv) == 0  # the same command resumes: the killed run left no lock behind
    err = capsys.readouterr().err
    assert main(eval_argv(big, straight, tiny_llava_ov, "--scorer", "uniform", "-q")) == 0
    capsys.readouterr()
    resumed, uninterrupted = rows(run), rows(straight)
    assert len(resumed) == 12 and all(r["attempts"] == 1 for r in resumed.values())  # each exactly once
    assert {r["rank"] for r in resumed.values()} == {0}
    assert "error" not in err.lower()
    # greedy decoding: the resumed run answered exactly as the uninterrupted one
    assert {k: r["prediction"] for k, r in resumed.items()} == {k: r["prediction"] for k, r in uninterrupted.items()}
    m1, m2 = (json.loads((d / "metrics.json").read_text()) for d in (run, straight))
    assert (m1["overall"], m1["by_field"], m1["headline"]) == (m2["overall"], m2["by_field"], m2["headline"])
    assert m1["overall"]["total"] == 12


@pytest.mark.slow
def test_torchrun_two_ranks_write_one_run(tmp_path, bench, tiny_llava_ov):
    run = tmp_path / "run"
    argv = eval_argv(bench, run, tiny_llava_ov, "--scorer", "uniform", "-q")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
           str(free_port()), "-m", "quota.cli", *argv]
    proc = subprocess.run(cmd, env=child_env(), cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    stored = rows(run)
    assert sorted(stored) == ["000-0", "000-1", "001-0", "001-1", "002-0", "002-1"]  # each once
    assert all(r["attempts"] == 1 and r["error"] is None for r in stored.values())
    by_video = {}
    for k, r in stored.items():
        by_video.setdefault(k.split("-")[0], set()).add(r["rank"])
    assert all(len(ranks) == 1 for ranks in by_video.values())  # a video's questions on one rank
    assert {r["rank"] for r in stored.values()} == {0, 1}
    # the report once, after both ranks finished
    assert table_count(proc.stdout) == 1 and "/7)" in proc.stdout  # the missing video's question counts wrong
    assert proc.stderr.count("videos not found") == 1
    assert json.loads((run / "metrics.json").read_text())["overall"]["total"] == 7
    assert len((run / "results.jsonl").read_text().splitlines()) == 6


# ---------------------------------------------------------------------------------------------------------
# quota report
# ---------------------------------------------------------------------------------------------------------


def fake_run(run: Path, right: dict[str, bool], *, benchmark: str = "videomme", error: str | None = None) -> Path:
    """A finished run folder with the given right/wrong answers (no model needed)."""
    with RunStore(run, {"benchmark": benchmark, "baseline": "base" in run.name}) as st:
        for i, (sid, ok) in enumerate(right.items()):
            duration = ["short", "medium", "long"][i % 3]
            if error and sid == error:
                st.record(sid, answer="A", error="VideoDecodeError: broken", fields={"duration": duration})
            else:
                st.record(sid, prediction="A" if ok else "B", choice="A" if ok else "B", answer="A",
                          fields={"duration": duration, "task_type": "Counting"})
    return run


def test_report_puts_runs_side_by_side(tmp_path, capsys):
    ids = [f"{i:03d}-0" for i in range(6)]
    base = fake_run(tmp_path / "vmme-base", {s: i % 2 == 0 for i, s in enumerate(ids)}, error=ids[5])
    quota = fake_run(tmp_path / "vmme-quota", {s: i != 4 for i, s in enumerate(ids)})
    md, png = tmp_path / "out" / "cmp.md", tmp_path / "out" / "cmp.png"
    assert main(["report", str(base), str(quota), "--markdown", str(md), "--png", str(png)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split() == ["videomme", "vmme-base", "vmme-quota", "delta"]
    overall = next(line for line in lines if line.startswith("all questions"))
    assert "50.0 (3/6)" in overall and "83.3 (5/6)" in overall and overall.rstrip().endswith("+33.3")
    assert next(line for line in lines if line.startswith("errors")).split()[1:] == ["1", "0", "-1"]
    assert "duration" in out and "  long" in out
    text = md.read_text()
    assert text.startswith("# Video-MME: vmme-base vs vmme-quota") and "| all questions | 50.0 (3/6) |" in text
    img = Image.open(png)
    img.load()
    assert img.format == "PNG" and img.width > 300 and img.height > 200

    assert main(["report", str(base), str(quota), "--names", "baseline", "QuoTA", "--fields", "duration"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["videomme", "baseline", "QuoTA", "delta"] and "task_type" not in out

    other = fake_run(tmp_path / "mlvu-run", {"x-1": True}, benchmark="mlvu")
    for argv, needle in (
        (["report", str(tmp_path / "nowhere")], "no results store"),
        (["report", str(base), str(other)], "different benchmarks"),
        (["report", str(base), "--names", "a", "b"], "--names"),
        (["report", str(base), "--fields", "colour"], "colour"),
        (["report", str(base), "--png", str(tmp_path / "x.pdf")], "--png"),
    ):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith("quota: error:") and needle in err[-1], (argv, err)


# ---------------------------------------------------------------------------------------------------------
# Small pieces
# ---------------------------------------------------------------------------------------------------------


def test_device_per_rank_and_letters_outside_the_options():
    import torch

    from quota.errors import ConfigError
    from quota.eval import DistInfo, Sample
    from quota.runtime import choose_device
    from quota.eval.runner import _letter

    one, two = DistInfo(0, 1, 0), DistInfo(1, 2, 1)
    assert choose_device(None, one) is None and choose_device("cuda", one) == "cuda"
    assert choose_device("cpu", two) == "cpu" and choose_device("cuda:0", two) == "cuda:0"
    if torch.cuda.is_available():
        assert choose_device(None, two) == choose_device("cuda", two) == "cuda:1"
    else:
        assert choose_device(None, two) == "cpu"
        with pytest.raises(ConfigError, match="CUDA"):
            choose_device("cuda", two)
    # a letter the question has no option for is no choice; the text is read instead
    sample = Sample(id="1", video="v.mp4", question="q", options=["a", "b", "c", "d"], answer="C")
    assert _letter(sample, "", "E") is None and _letter(sample, "The answer is C.", "E") == "C"
    assert _letter(sample, "", "(b)") == "B"


def test_lowmem_preset_resumes_a_paper_run(tmp_path, capsys, bench, tiny_llava_ov, tiny_qwen2_vl):
    """The result-neutral settings (quota.config.RESULT_NEUTRAL) are left out of the fingerprint: a run
    started with ``paper`` goes on with ``paper-lowmem`` and ends with the answers of a plain ``paper`` run."""
    from quota.config import PRESETS, RESULT_NEUTRAL

    changed = {k for k, v in PRESETS["paper-lowmem"].to_dict().items() if PRESETS["paper"].to_dict()[k] != v}
    assert changed and changed <= RESULT_NEUTRAL
    run, straight = tmp_path / "mixed", tmp_path / "straight"
    argv = eval_argv(bench, run, tiny_llava_ov, "--scorer", tiny_qwen2_vl, "-q")
    assert main([*argv, "--limit", "3"]) == 0
    first = rows(run)
    assert len(first) == 3
    assert main([*argv, "--preset", "paper-lowmem"]) == 0
    capsys.readouterr()
    mixed = rows(run)
    assert len(mixed) == 6 and all(mixed[k] == first[k] for k in first)  # nothing asked twice
    with open_run(run) as st:
        assert st.get_meta("settings")["preset"] == "paper-lowmem"
        assert st.get_meta("settings")["config"]["scorer_prefill_chunk"] == 64
    assert main(eval_argv(bench, straight, tiny_llava_ov, "--scorer", tiny_qwen2_vl, "-q")) == 0
    capsys.readouterr()
    plain = rows(straight)
    assert {k: (r["prediction"], r["plan"]) for k, r in mixed.items()} == \
        {k: (r["prediction"], r["plan"]) for k, r in plain.items()}

    # what does change the answers is refused: precision, and the annotation file's content
    assert main([*argv, "--dtype", "bfloat16"]) == 2
    assert "dtype: 'float32' -> 'bfloat16'" in capsys.readouterr().err
    ann, root = bench
    edited = tmp_path / "edited"
    edited.mkdir()
    (edited / ann.name).write_text(ann.read_text().replace("part 0", "part zero"), encoding="utf-8")
    argv_edited = eval_argv((edited / ann.name, root), run, tiny_llava_ov, "--scorer", tiny_qwen2_vl, "-q")
    assert main(argv_edited) == 2
    assert "annotations_sha256" in capsys.readouterr().err


def test_report_files_list_skipped_rows_and_missing_videos(tmp_path):
    """report.md and metrics.json of a run (no model needed: the rows are stored by hand)."""
    from argparse import Namespace

    from quota.config import get_config
    from quota.eval.cli import record_plan, write_run_report

    ann, root = write_benchmark(tmp_path / "vmme", 2, 1, missing=True)
    data = json.loads(ann.read_text())
    data.append({**data[0], "question_id": "bad", "options": ["A. only"]})
    ann.write_text(json.dumps(data))
    bench = load_benchmark("videomme", ann, root)
    store = RunStore(tmp_path / "run", {"benchmark": "videomme", "baseline": False})
    ids = [s.id for s in bench.samples]
    record_plan(store, bench, ids, Namespace(limit=None, preset="paper"), get_config("paper"))
    for s in bench.samples:
        store.record(s.id, prediction=s.answer, choice=s.answer, answer=s.answer, fields=s.fields)
    metrics, paths = write_run_report(store, bench, ids)
    store.close()
    report = paths["report"].read_text()
    assert "## Skipped annotation rows (1)" in report and "videomme.json row 3: fewer than two options" in report
    assert "missing videos, counted wrong" in report and "status: complete" in report
    saved = json.loads(paths["metrics"].read_text())
    assert saved["run"]["skipped"] == ["videomme.json row 3: fewer than two options"]
    assert saved["run"]["skipped_rows"] == 1 and saved["run"]["missing"] == 1
    assert (saved["overall"]["correct"], saved["overall"]["total"], saved["overall"]["missing"]) == (2, 3, 1)
