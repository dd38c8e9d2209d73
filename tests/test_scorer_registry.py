"""The one table of scorers: every entry point reads scorer names from it, and a new scorer is one class plus one
registry line. The brightness scorer below is the exercise of issue 19, written as a test fixture: it touches this
file only (in the package it would be its module, one line in ``SCORERS`` and its test)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from quota import QuoTA
from quota.cli import main
from quota.errors import ConfigError, UnsupportedModelError
from quota.scoring import SCORERS, UniformScorer, build_scorer, read_scorer, register_scorer, scorer_class
from quota.testing.videos import make_video


class BrightnessScorer:
    """Scores each frame by its mean brightness in [0, 1]; runs no model and ignores the clue."""

    needs_checkpoint = False
    uses_clue = False
    options: tuple[str, ...] = ()
    model_id = "brightness"

    @staticmethod
    def options_from_config(config):
        return {}

    def reconfigured(self, config):
        return self

    def score(self, frames, clue=None):
        return frames.pixels.reshape(len(frames), -1).mean(axis=1) / 255.0


@pytest.fixture
def brightness(monkeypatch):
    monkeypatch.setitem(SCORERS, "brightness", BrightnessScorer)
    return BrightnessScorer


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return make_video(tmp_path_factory.mktemp("reg") / "clip.mp4", n_frames=30, fps=10, size=(64, 48))


def test_read_scorer_names_checkpoints_and_refusals():
    assert read_scorer("uniform") == read_scorer(" Uniform ") and not read_scorer("uniform").loads_checkpoint
    assert read_scorer("base").is_base and read_scorer("base").uses_clue
    assert read_scorer("clip:/models/siglip").checkpoint == "/models/siglip"
    assert read_scorer("lvlm:llava-hf/x").name == "lvlm" and read_scorer("lvlm:llava-hf/x").loads_checkpoint
    assert read_scorer("Qwen/Qwen2-VL-2B-Instruct") == read_scorer("Qwen/Qwen2-VL-2B-Instruct")
    assert read_scorer("Qwen/Qwen2-VL-2B-Instruct").name == "" and read_scorer("C:/models/x").checkpoint == "C:/models/x"
    for bad, words in [("", "empty"), ("uniform:/x", "takes no checkpoint"), ("clip:", "needs a checkpoint"),
                       ("clip", "needs a checkpoint")]:
        with pytest.raises(ConfigError, match=words):
            read_scorer(bad)


def test_register_scorer_refuses_bad_names(brightness):
    register_scorer("brightness", BrightnessScorer)  # the same class again is fine
    for bad in ("", "base", "a:b"):
        with pytest.raises(ConfigError):
            register_scorer(bad, BrightnessScorer)
    with pytest.raises(ConfigError, match="taken"):
        register_scorer("uniform", BrightnessScorer)


def test_a_checkpoint_of_no_scorer_family_is_one_clear_error(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "qwen3_vl"}))
    with pytest.raises(UnsupportedModelError, match="qwen3_vl.*not a supported scorer"):
        scorer_class(str(tmp_path))


def test_brightness_scorer_through_the_api_and_with_config(brightness, video):
    qa = QuoTA.from_pretrained(base=None, scorer="brightness", quiet=True, base_frames=6, budget=30)
    assert isinstance(qa.scorer, BrightnessScorer) and not qa.uses_clue
    plan = qa.plan(video, "Which frame is brightest?")
    frames = qa.load_video(video)
    np.testing.assert_allclose(plan.scores, frames.pixels.reshape(6, -1).mean(axis=1) / 255.0)
    # another clue-blind scorer must not be served the brightness scores from the shared cache
    uniform = qa.with_config(scorer="uniform")
    assert isinstance(uniform.scorer, UniformScorer)
    again = uniform.plan(video, "Which frame is brightest?")
    assert again.scores == [1.0] * 6 and "score" not in again.reused
    assert isinstance(build_scorer("brightness", qa.config), BrightnessScorer)


def test_brightness_scorer_from_the_command_line(brightness, video, capsys, tmp_path):
    code = main(["plan", str(video), "Which frame is brightest?", "--scorer", "brightness", "--frames", "6",
                 "--budget", "30", "--quiet", "--out", str(tmp_path / "plan.json")])
    out, err = capsys.readouterr()
    assert code == 0, err
    scores = json.loads((tmp_path / "plan.json").read_text())["scores"]
    assert len(scores) == 6 and len(set(scores)) > 1 and all(0 <= s <= 1 for s in scores)


@pytest.mark.slow
def test_prefixed_checkpoints_work_on_the_command_line(video, tiny_qwen2_vl, tiny_siglip, capsys, tmp_path):
    """`--scorer clip:<folder>` and `lvlm:<folder>` were refused by quota plan ("no such folder")."""
    for k, scorer in enumerate((f"clip:{tiny_siglip}", f"lvlm:{tiny_qwen2_vl}")):
        out_file = tmp_path / f"plan{k}.json"
        code = main(["plan", str(video), "Where is the ball?", "--base", str(tiny_qwen2_vl), "--scorer", scorer,
                     "--frames", "4", "--budget", "20", "--set", "decouple_max_new_tokens=4", "--quiet",
                     "--out", str(out_file)])
        out, err = capsys.readouterr()
        assert code == 0, err
        assert len(json.loads(out_file.read_text())["scores"]) == 4
