"""The ``quota`` command line: ``ask`` and ``plan`` on generated videos with the tiny real models.

One run goes through a real subprocess (``python -m quota.cli``), as a user would run it, to check the
one-line error and the exit status; everything else calls :func:`quota.cli.main` in this process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from quota import __version__
from quota.cli import COMMANDS, build_parser, main, parse_setting
from quota.errors import ConfigError
from quota.testing.tiny_models import CACHE_ENV
from quota.testing.videos import make_video
from quota.types import Plan

FAST = ["--frames", "6", "--budget", "30", "--set", "max_new_tokens=4", "--set", "decouple_max_new_tokens=16",
        "--set", "scorer_batch_size=6", "--device", "cpu"]


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    return make_video(tmp_path_factory.mktemp("cli") / "clip.mp4", n_frames=30, fps=10, size=(96, 72))


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``python -m quota.cli ARGS`` in a child process, offline, sharing this session's tiny checkpoints."""
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               OMP_NUM_THREADS=env.get("OMP_NUM_THREADS", "2"))
    if os.environ.get(CACHE_ENV):
        env[CACHE_ENV] = os.environ[CACHE_ENV]
    return subprocess.run([sys.executable, "-m", "quota.cli", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def _assert_clean_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("quota: error:")]
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0]


def _png_ok(path: Path) -> Image.Image:
    img = Image.open(path)
    img.load()
    assert img.format == "PNG" and img.width >= 1000 and img.height >= 400
    return img


# ---------------------------------------------------------------------------------------------------------
# In-process: parser, settings, early errors
# ---------------------------------------------------------------------------------------------------------


def test_version_help_and_usage_errors(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out.strip() == f"quota {__version__}"
    for argv in ([], ["plan", "v.mp4"], ["ask", "v.mp4", "q", "--preset", "nope"], ["frobnicate"],
                 ["plan", "v.mp4", "q", "--budget", "many"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2, argv
        assert "usage: quota" in capsys.readouterr().err
    commands = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert {"ask", "plan"} <= set(commands)
    assert ("quota.eval.cli", "add_eval_parser") in COMMANDS
    from quota import cli, pipeline

    assert cli.DEFAULT_BASE == pipeline.DEFAULT_BASE


def test_parse_setting_converts_to_the_field_type():
    assert parse_setting("budget=6272") == ("budget", 6272)
    assert parse_setting("cap=true") == ("cap", True)
    assert parse_setting("time-prompt=off") == ("time_prompt", False)
    assert parse_setting("weight_scale=50") == ("weight_scale", 50.0)
    assert parse_setting("max_frames=none") == ("max_frames", None)
    assert parse_setting("max_frames=128") == ("max_frames", 128)
    assert parse_setting("resize = adaptive_pool") == ("resize", "adaptive_pool")
    for bad in ("budget", "budget=lots", "cap=maybe", "no_such_knob=1"):
        with pytest.raises(ConfigError):
            parse_setting(bad)


def test_input_errors_exit_2_before_any_model_loads(tmp_path, capsys, video):
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"this is not a video" * 50)
    cases = [
        (["plan", str(tmp_path / "missing.mp4"), "q?", "--scorer", "uniform"], "missing.mp4"),
        (["ask", str(garbage), "q?"], "garbage.mp4"),
        (["plan", str(video), "q?", "--scorer", "uniform", "--set", "no_such_knob=1"], "no_such_knob"),
        (["plan", str(video), "q?", "--scorer", "uniform", "--budget", "0"], "budget"),
        (["plan", str(video), "q?", "--scorer", "uniform", "--report", str(tmp_path / "r.pdf")], ".html or .png"),
        (["ask", str(video), "   "], "question"),
        (["ask", str(video), "q?", "--baseline", "--report", str(tmp_path / "r.html")], "--baseline"),
    ]
    for argv, needle in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith("quota: error:") and needle in err[-1], (argv, err)
    assert not (tmp_path / "r.pdf").exists() and not (tmp_path / "r.html").exists()


def test_plan_prints_json_without_out(capsys, video):
    # --set scorer=uniform is the same as --scorer uniform: no model is loaded
    assert main(["plan", str(video), "q?", "--set", "scorer=uniform", "--frames", "4", "--budget", "20"]) == 0
    captured = capsys.readouterr()
    plan = Plan.from_json(captured.out)
    assert len(plan.indices) == 4 and plan.tokens <= 20 and plan.grids[0] == plan.grids[-1]
    assert "loading" not in captured.err


def test_plan_with_models_in_process(tmp_path, capsys, video, tiny_llava_ov, tiny_qwen2_vl):
    out = tmp_path / "plan.json"
    argv = ["plan", str(video), "Where is the red ball?", "--base", str(tiny_llava_ov), "--scorer",
            str(tiny_qwen2_vl), "--out", str(out), *FAST]
    assert main(argv) == 0
    plan = Plan.from_json(out.read_text())
    assert len(plan.indices) == 6 and plan.tokens <= plan.budget == 30
    assert plan.clue is not None and plan.clue.mode == "entity"
    assert plan.question == "Where is the red ball?" and plan.video == str(video)
    err = capsys.readouterr().err
    assert "frames kept" in err and plan.newline == "video"  # LLaVA-OneVision: one newline after the video
    assert f"{plan.tokens:,} of 30 visual tokens (+1 newline token: {plan.tokens + 1:,} positions)" in err


# ---------------------------------------------------------------------------------------------------------
# What a user runs: whole commands (in this process, and one real subprocess)
# ---------------------------------------------------------------------------------------------------------


def test_plan_uniform_needs_no_model(tmp_path, capsys, monkeypatch, video):
    monkeypatch.chdir(tmp_path)  # --out and --report are relative to the working directory
    assert main(["plan", str(video), "What happens <first>?", "--scorer", "uniform", "--frames", "5", "--budget",
                 "50", "--out", "out/plan.json", "--report", "out/plan.html"]) == 0
    assert capsys.readouterr().out == ""
    plan = Plan.from_json((tmp_path / "out/plan.json").read_text())
    assert len(plan.indices) == 5 and len(set(plan.grids)) == 1 and plan.tokens <= 50
    assert plan.clue is not None and plan.clue.mode == "none"
    page = (tmp_path / "out/plan.html").read_text(encoding="utf-8")
    assert page.count("data:image/png;base64,") >= 2  # the chart and the thumbnails of the frames
    assert "&lt;first&gt;" in page and "<first>" not in page
    assert "no answer was asked for" in page and "scorer uniform · preset paper" in page  # report_info


def test_ask_json_and_report(tmp_path, capsys, monkeypatch, video, tiny_llava_ov, tiny_qwen2_vl):
    monkeypatch.chdir(tmp_path)
    argv = ["ask", video, "What colour is the ball?", "--options", "A. red", "B. blue", "C. green",
            "--base", tiny_llava_ov, "--scorer", tiny_qwen2_vl, *FAST, "--json", "--quiet", "--report", "plan.png"]
    code = main(list(map(str, argv)))
    out, err = capsys.readouterr()
    assert code == 0, err
    assert err.strip() == ""  # --quiet: no bars, no status lines
    data = json.loads(out)
    assert isinstance(data["text"], str) and data["choice"] in (None, "A", "B", "C")
    assert data["options"] == ["A. red", "B. blue", "C. green"] and data["question"] == "What colour is the ball?"
    plan = Plan.from_dict(data["plan"])
    assert len(plan.indices) == 6 and plan.tokens <= plan.budget == 30
    assert all(0.0 <= s <= 1.0 for s in plan.scores)
    for stage in ("decode", "decouple", "score", "encode", "generate", "total"):
        assert data["timings"][stage] >= 0.0
    _png_ok(tmp_path / "plan.png")


def test_errors_in_a_subprocess_are_one_line(tmp_path, capsys, video):
    garbage = tmp_path / "broken.mp4"
    garbage.write_bytes(bytes(range(256)) * 8)
    _assert_clean_error(_run("ask", garbage, "q?", "--scorer", "uniform", cwd=tmp_path), "broken.mp4")
    # the same checks on a model that is not there, in this process (the exit path is the one above)
    argv = ["plan", str(video), "q?", "--base", str(tmp_path / "no_such_model"), "--scorer", "uniform", "-q"]
    code = main(argv)
    _assert_clean_error(subprocess.CompletedProcess(argv, code, *capsys.readouterr()), "no_such_model")
