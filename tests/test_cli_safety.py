"""Careless and hostile input on the command line: every case ends with one clear line and the documented
exit status, before any model loads where the problem is knowable, and never costs a file or an answer."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import pytest

from quota.cli import main, terminal_text
from quota.outputs import check_outputs, write_atomic
from quota.testing.videos import make_video

FAST = ["--frames", "6", "--budget", "30", "--set", "max_new_tokens=3", "--set", "decouple_max_new_tokens=12",
        "--set", "scorer_batch_size=6", "--device", "cpu"]


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    return make_video(tmp_path_factory.mktemp("safe") / "clip.mp4", n_frames=30, fps=10, size=(64, 48))


@pytest.fixture
def base(tiny_qwen2_vl) -> list[str]:
    return ["--base", str(tiny_qwen2_vl), "--scorer", "base"]


def _error(capsys, argv: list[str], *needles: str, code: int = 2, loads: bool = False) -> str:
    """Run ``quota ARGV``; check the exit status, one error line holding ``needles``, and that no model loaded
    (unless ``loads``: the problem needs the tokenizer to be seen)."""
    assert main(argv) == code, argv
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("quota: error:")]
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    assert loads or "loading" not in err, err  # failed before any model load
    assert "decoded" not in err, err  # and before any frame was decoded
    assert "Traceback" not in err
    return lines[0]


# --------------------------------------------------------------------------------------------- files


def test_output_that_is_the_input_is_refused_even_with_force(capsys, video, base, tmp_path):
    before = video.read_bytes()
    for extra in ([], ["--force"]):
        _error(capsys, ["plan", str(video), "q?", "--out", str(video), *base, *FAST, *extra], "input")
    link = tmp_path / "same.mp4"
    link.symlink_to(video)
    _error(capsys, ["plan", str(video), "q?", "--out", str(link), *base, *FAST, "--force"], "input")
    assert video.read_bytes() == before


def test_existing_outputs_need_force_and_are_replaced_whole(capsys, video, base, tmp_path):
    out = tmp_path / "plan.json"
    out.write_text("keep me")
    _error(capsys, ["plan", str(video), "q?", "--out", str(out), *base, *FAST], "already exists", "--force")
    assert out.read_text() == "keep me"
    assert main(["plan", str(video), "q?", "--out", str(out), *base, *FAST, "--force", "-q"]) == 0
    assert json.loads(out.read_text())["budget"] == 30
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plan.json"]  # no temporary file left behind


def test_bad_output_places(capsys, video, base, tmp_path):
    page = tmp_path / "page.html"
    _error(capsys, ["plan", str(video), "q?", "--out", str(page), "--report", str(page), *base, *FAST], "same file")
    _error(capsys, ["plan", str(video), "q?", "--out", str(tmp_path), *base, *FAST], "folder")
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    _error(capsys, ["plan", str(video), "q?", "--out", str(blocker / "plan.json"), *base, *FAST], "not a folder")
    assert blocker.read_text() == "x" and not page.exists()


def test_failing_report_keeps_the_answer(capsys, video, base, tmp_path, monkeypatch):
    import quota.report

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(quota.report, "save_report", broken)
    code = main(["ask", str(video), "What is shown?", "--options", "a", "b", "--report", str(tmp_path / "r.html"),
                 "--json", *base, *FAST])
    captured = capsys.readouterr()
    assert code == 1
    answer = json.loads(captured.out)
    assert isinstance(answer["text"], str) and answer["plan"]["budget"] == 30
    assert "warning" in captured.err and "No space left" in captured.err


def test_write_atomic_and_check_outputs_directly(tmp_path):
    target = tmp_path / "deep" / "er" / "x.txt"
    write_atomic(target, "one")
    write_atomic(target, b"two")
    assert target.read_text() == "two" and [p.name for p in target.parent.iterdir()] == ["x.txt"]
    check_outputs({"--out": "-", "--report": None}, [target])  # standard output and absent options pass
    with pytest.raises(Exception, match="already exists"):
        check_outputs({"--out": target}, [])
    check_outputs({"--out": target}, [], force=True)


# --------------------------------------------------------------------------------------------- settings


@pytest.mark.parametrize("extra, needle", [
    (["--set", "budget=nan"], "budget"),
    (["--set", "weight_scale=inf"], "weight_scale"),
    (["--set", "decode_max_side=0"], "decode_max_side"),
    (["--set", "scorer_max_pixels=0"], "scorer_max_pixels"),
    (["--budget", "1"], "at least 6"),
    (["--budget", "100000"], "context of 8192"),
    (["--device", "quantum"], "not a device"),
    (["--device", "meta"], "meta"),
])
def test_settings_are_checked_before_models_load(capsys, video, base, extra, needle):
    _error(capsys, ["plan", str(video), "q?", *base, *FAST, *extra], needle)


def test_cuda_without_a_gpu_and_too_many_options(capsys, video, base):
    import torch

    if not torch.cuda.is_available():
        _error(capsys, ["ask", str(video), "q?", *base, *FAST, "--device", "cuda"], "no CUDA")
    letters = [f"option {i}" for i in range(27)]
    _error(capsys, ["ask", str(video), "q?", "--options", *letters, *base, *FAST], "26")


def test_question_too_long_for_the_context(capsys, video, base):
    # the tiny tokenizer spends one token per byte; its context is 8192 positions
    line = _error(capsys, ["plan", str(video), "x" * 9000, *base, *FAST], "context of 8192", loads=True)
    assert "question" in line


def test_baseline_never_loads_the_scorer(capsys, video, tiny_qwen2_vl, tmp_path):
    missing = tmp_path / "no-such-scorer"
    code = main(["ask", str(video), "What is shown?", "--baseline", "--base", str(tiny_qwen2_vl), "--scorer",
                 str(missing), "--set", "baseline_frames=4", "--set", "max_new_tokens=2", "--device", "cpu"])
    assert code == 0, capsys.readouterr().err
    assert "scorer" not in capsys.readouterr().err


# --------------------------------------------------------------------------------------------- models


def test_unreachable_hub_fails_fast_naming_both_models(capsys, video, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    line = _error(capsys, ["ask", str(video), "What is shown?", "--device", "cpu"],
                  "llava-hf/LLaVA-Video-7B-Qwen2-hf", "Qwen/Qwen2-VL-2B-Instruct", "--base", "--scorer")
    assert len(line) < 400


def _copy_checkpoint(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_broken_checkpoints_say_what_to_do(capsys, video, tiny_qwen2_vl, tmp_path):
    bad_json = _copy_checkpoint(tiny_qwen2_vl, tmp_path / "bad-json")
    (bad_json / "config.json").write_text('{"model_type": "qwen2_vl",', encoding="utf-8")
    _error(capsys, ["plan", str(video), "q?", "--base", str(bad_json), "--scorer", "base", *FAST],
           "not valid JSON", "save_pretrained")

    remote = _copy_checkpoint(tiny_qwen2_vl, tmp_path / "remote-code")
    data = json.loads((remote / "config.json").read_text())
    data.update(model_type="my_own_vlm", auto_map={"AutoConfig": "modeling_mine.MyConfig"})
    (remote / "config.json").write_text(json.dumps(data))
    line = _error(capsys, ["plan", str(video), "q?", "--base", str(remote), "--scorer", "base", *FAST],
                  "--trust-remote-code", "auto_map")
    assert "trust_remote_code=True" not in line


def test_pickled_weights_are_refused_without_running_them(capsys, video, tiny_qwen2_vl, tmp_path):
    evil = _copy_checkpoint(tiny_qwen2_vl, tmp_path / "evil")
    for weights in list(evil.glob("*.safetensors")) + list(evil.glob("*.index.json")):
        weights.unlink()
    marker = tmp_path / "PWNED"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    with open(evil / "pytorch_model.bin", "wb") as fh:
        pickle.dump({"weight": Payload()}, fh)
    assert main(["plan", str(video), "q?", "--base", str(evil), "--scorer", "base", *FAST]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("quota: error:") and "pickle" in err[-1] and "safetensors" in err[-1]
    assert not marker.exists()


# --------------------------------------------------------------------------------------------- terminal


def test_terminal_text_strips_escapes_and_control_characters():
    hostile = "ok\x1b[31mred\x1b[0m\x1b]0;title\x07 bell\x07 back\x08 nul\x00 c1\x9b2J\ttab\nline"
    assert terminal_text(hostile) == "okred bell back nul c12J\ttab\nline"
    assert terminal_text("中文 café") == "中文 café"


def test_eval_and_report_outputs(capsys, tmp_path):
    ann = tmp_path / "videomme.json"
    ann.write_text("[]")
    videos = tmp_path / "videos"
    videos.mkdir()
    common = ["eval", "--benchmark", "videomme", "--annotations", str(ann), "--videos", str(videos)]
    _error(capsys, [*common, "--out", str(ann)], "is a file")
    _error(capsys, [*common, "--out", str(videos)], "its own folder")
    _error(capsys, [*common, "--out", str(tmp_path / "run"), "--device", "meta"], "meta")
    assert ann.read_text() == "[]"
    table = tmp_path / "table.md"
    table.write_text("mine")
    _error(capsys, ["report", str(tmp_path / "run"), "--markdown", str(table)], "already exists")
    assert table.read_text() == "mine"


def test_truncated_upload_is_one_warning_line_with_both_figures(capsys, tmp_path):
    from quota.testing import videos as tv
    from quota.video import clear_cache

    src = tv.make_video(tmp_path / "full.mp4", n_frames=200, fps=25, gop=50, faststart=True)  # 8 s
    path = tv.truncate_file(src, tmp_path / "cut.mp4", 0.5)
    clear_cache()
    assert main(["plan", str(path), "q?", "--scorer", "uniform", "--frames", "8", "--out", str(tmp_path / "p.json")]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("quota: warning:")]
    assert len(warnings) == 1 and "lasts 8.00s" in warnings[0] and "frames end at" in warnings[0], warnings
    assert json.loads((tmp_path / "p.json").read_text())["stated_duration"] == pytest.approx(8.0)
