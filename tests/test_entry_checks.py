"""What every entry point checks before loading, and how the command line speaks: budget bounds (one
preflight for ``quota ask``/``plan``/``demo`` and the page), a port in use, out of memory, warnings beside a
progress bar, ``--options`` out of place or lettered out of order, control characters and emoji in reports."""

from __future__ import annotations

import io
import os
import re
import socket
import sys

import pytest

from quota import cli
from quota.cli import main
from quota.testing.videos import make_video


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_video(tmp_path_factory.mktemp("entry") / "clip.mp4", n_frames=30, fps=10, size=(64, 48))


def _error(capsys, argv) -> str:
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("quota: error: "), err
    return err[0]


def _no_loading(monkeypatch):
    from quota import commands

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the checks")

    monkeypatch.setattr(commands, "load_pipeline", refuse)
    monkeypatch.setattr(cli, "load_pipeline", refuse)


# --- budget (row 7) ----------------------------------------------------------------------------------------


def test_max_budget_is_the_largest_that_fits():
    from quota.preflight import max_budget, text_reserve

    for context, frames, answer in ((32768, 96, 16), (8192, 96, 1024), (4096, 6, 4), (300, 6, 4)):
        top = max_budget(context, frames, answer)
        assert top + text_reserve(frames, top, answer) <= context
        assert top + 1 + text_reserve(frames, top + 1, answer) > context
    assert max_budget(100, 96, 16) == 0


def test_budget_advice_is_true_at_every_entry_point(clip, tiny_llava_ov, capsys, monkeypatch):
    from quota.models.loading import load_config
    from quota.preflight import PLAN_ONLY_MAX_BUDGET, context_tokens, max_budget

    _no_loading(monkeypatch)
    context = context_tokens(load_config(str(tiny_llava_ov)))
    base = ["--base", str(tiny_llava_ov), "--scorer", "uniform", "--frames", "6", "--set", "max_new_tokens=4"]
    top = max_budget(context, 6, 4)
    assert top > 6
    line = _error(capsys, ["plan", str(clip), "q?", *base, "--budget", "1000000000"])
    assert f"use at most {top} for 6 frames" in line  # was "use at most 0": the reserve grew with the budget
    assert main(["plan", str(clip), "q?", *base, "--budget", str(top + 1)]) == 2
    assert f"use at least 6" in _error(capsys, ["plan", str(clip), "q?", *base, "--budget", "5"])
    # no base model: still bounded
    line = _error(capsys, ["plan", str(clip), "q?", "--scorer", "uniform", "--budget", "999999999999"])
    assert f"use at most {PLAN_ONLY_MAX_BUDGET}" in line
    # quota demo checks its budget against the model's context at start-up, before loading anything
    line = _error(capsys, ["demo", *base, "--budget", "1000000000", "--port", str(_free_port())])
    assert f"use at most {top} for 6 frames" in line


# --- port (row 10) -----------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_port_in_use_is_named_before_loading(tiny_llava_ov, capsys, monkeypatch):
    _no_loading(monkeypatch)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        line = _error(capsys, ["demo", "--base", str(tiny_llava_ov), "--scorer", "uniform", "--port", str(port)])
    assert f"--port {port} is in use" in line and "--port" in line and "GRADIO_SERVER_PORT" not in line
    line = _error(capsys, ["demo", "--base", str(tiny_llava_ov), "--scorer", "uniform", "--host", "203.0.113.7"])
    assert "--host 203.0.113.7" in line


# --- out of memory (row 12) --------------------------------------------------------------------------------


@pytest.mark.parametrize("error", ["cuda", "cpu", "python"])
def test_out_of_memory_is_one_line_naming_what_to_lower(clip, capsys, monkeypatch, error):
    import torch

    from quota.pipeline import QuoTA

    raised = {"cuda": torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB"),
              "cpu": RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory"),
              "python": MemoryError()}[error]

    def plan(self, *args, **kwargs):
        raise raised

    monkeypatch.setattr(QuoTA, "plan", plan)
    line = _error(capsys, ["plan", str(clip), "q?", "--scorer", "uniform", "-q"])
    assert line.startswith("quota: error: out of memory")
    for knob in ("--frames", "--budget", "decode_max_pixels", "--dtype"):
        assert knob in line


def test_other_runtime_errors_are_not_called_out_of_memory():
    from quota.commands import memory_error

    assert memory_error(RuntimeError("shape mismatch")) is None
    assert memory_error(ValueError("out of memory")) is None


# --- terminal (row 14) -------------------------------------------------------------------------------------


def test_a_warning_gets_a_line_of_its_own_beside_a_progress_bar(monkeypatch):
    from tqdm import tqdm

    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    with tqdm(total=10, desc="Decoding frames", file=sys.stderr, mininterval=0, ascii=True) as bar:
        bar.update(3)
        cli._show_warning("frame 7 could not be decoded", RuntimeWarning, "x.py", 1)
        bar.update(3)
    pieces = re.split(r"[\r\n]", err.getvalue())
    assert "quota: warning: frame 7 could not be decoded" in [p.rstrip() for p in pieces]


def test_options_before_the_video_are_named(clip, capsys):
    line = _error(capsys, ["ask", "--options", "A. a cup", "B. a book", str(clip), "what is it?"])
    assert "--options takes every word after it" in line and "VIDEO" in line
    line = _error(capsys, ["plan", "--budget", "64", "--options", "A. x", "B. y", str(clip), "q?"])
    assert "--options takes every word after it" in line


def test_options_lettered_out_of_order_are_refused(clip, capsys, monkeypatch):
    line = _error(capsys, ["plan", str(clip), "q?", "--options", "C. x", "A. y", "--scorer", "uniform"])
    assert "labelled C" in line and "would be A" in line
    capsys.readouterr()
    # in order, or bare texts: accepted
    assert main(["plan", str(clip), "q?", "--options", "A. x", "B. y", "--scorer", "uniform", "-q"]) == 0
    assert main(["plan", str(clip), "q?", "--options", "a cup", "a book", "--scorer", "uniform", "-q"]) == 0


# --- reports (row 11) --------------------------------------------------------------------------------------


def test_reports_drop_control_characters_and_draw_emoji(clip):
    from matplotlib import ft2font
    from matplotlib.font_manager import findfont, FontProperties

    from quota.config import get_config
    from quota.pipeline import QuoTA
    from quota.report import RunInfo, font_families, render_html
    from quota.scoring import UniformScorer

    qa = QuoTA(None, UniformScorer(), get_config("paper", base_frames=4, budget=16), quiet=True)
    question = "Is the \x1b[31mred\x1b[0m ball \x07there? 🙂"
    plan = qa.plan(str(clip), question)
    page = render_html(plan, info=RunInfo(answer="yes\x00\x1b]0;title\x07 🙂", warnings=("a \x08note",)))
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]", page)
    assert "🙂" in page and "a note" in page
    # the picture: some font of the fallback list has the emoji's glyph
    from matplotlib.font_manager import findSystemFonts

    if not any(os.path.basename(f).startswith("Symbola") for f in findSystemFonts()):
        pytest.skip("needs an emoji font matplotlib can draw: the fonts-symbola package (.ci/run installs it)")
    has = []
    for family in font_families():
        path = findfont(FontProperties(family=family), fallback_to_default=False)
        has.append(ord("🙂") in ft2font.FT2Font(path).get_charmap())
    assert any(has), font_families()


# --- the Python entry point (row 13) -----------------------------------------------------------------------


def test_from_pretrained_fails_at_once_when_the_hub_is_out_of_reach(monkeypatch):
    from huggingface_hub import constants

    from quota import QuoTA
    from quota.errors import ModelNotFoundError

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "0")
    with socket.socket() as closed:  # a port nothing listens on: connections are refused
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{port}")
    with pytest.raises(ModelNotFoundError, match="cannot be reached"):  # the preflight's line, not the loader's
        QuoTA.from_pretrained("llava-hf/LLaVA-Video-7B-Qwen2-hf", scorer="Qwen/Qwen2-VL-2B-Instruct")


# --- downloads (row 6) -------------------------------------------------------------------------------------


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("terminal", [True, False])
def test_a_first_run_shows_its_downloads(monkeypatch, terminal):
    from huggingface_hub import utils as hub_utils

    from quota import preflight
    from quota.pipeline import QuoTA

    err = _Terminal() if terminal else io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    monkeypatch.setattr(preflight, "_in_cache", lambda model_id: False)  # neither model downloaded yet
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "0")
    loaded = {}
    monkeypatch.setattr(QuoTA, "from_pretrained", classmethod(lambda cls, **kw: loaded.update(kw) or "qa"))
    # the hub itself (no network here): a file listing and a download that records what was asked for
    import huggingface_hub
    from types import SimpleNamespace

    listing = [("config.json", 2048), ("model-00001-of-00002.safetensors", 5 * 2**30),
               ("model-00002-of-00002.safetensors", 2**30), ("pytorch_model.bin", 6 * 2**30),
               ("tokenizer.json", 7 * 2**20), ("chat_template.jinja", 1024), ("modeling_custom.py", 4096),
               ("README.md", 512)]
    fetched = []
    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", lambda self, repo, files_metadata=False: SimpleNamespace(
        sha="abc", siblings=[SimpleNamespace(rfilename=n, size=z) for n, z in listing]))
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda repo, name, revision=None: fetched.append(
        (repo, name, revision)))
    args = cli.build_parser().parse_args(["ask", "v.mp4", "q?", "--base", "org/base-7b", "--scorer", "org/scorer-2b"])
    try:
        from quota.commands import load_pipeline

        assert load_pipeline(args) == "qa" and loaded["base"] == "org/base-7b"
        # the hub's download bars stay on at a terminal; elsewhere a line per model and then a line per file
        assert hub_utils.are_progress_bars_disabled() is (not terminal)
        lines = err.getvalue().splitlines()
        assert any(line.startswith("quota: downloading the base model org/base-7b from the Hugging Face hub")
                   for line in lines)
        assert any("downloading the scorer model org/scorer-2b" in line for line in lines)
        needed = ["config.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
                  "tokenizer.json", "chat_template.jinja"]  # no .bin beside safetensors, no code, no README
        if terminal:
            assert fetched == []  # the bars show the downloads while the models load
        else:
            assert fetched == [(repo, name, "abc") for repo in ("org/base-7b", "org/scorer-2b") for name in needed]
            assert "quota: downloading org/base-7b/model-00001-of-00002.safetensors (5120.0 MB, file 2 of 5)" in lines
    finally:
        hub_utils.disable_progress_bars()
