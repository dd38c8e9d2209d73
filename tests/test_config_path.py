"""One way from user input to settings: every entry point gives the same QuotaConfig, and a pipeline's
settings never change under it (``with_config`` makes a new pipeline that shares the models)."""

from __future__ import annotations

import dataclasses

import pytest

from quota import QuoTA
from quota.cli import build_parser, command_config
from quota.config import PRESETS, QuotaConfig, field_names, resolve_config
from quota.errors import ConfigError
from quota.eval.cli import run_config
from quota.scoring import LVLMScorer, UniformScorer
from quota.testing.videos import make_video

FAST = dict(base_frames=6, budget=30, max_new_tokens=3, decouple_max_new_tokens=16, scorer_batch_size=4)

#: The same settings, as each entry point is given them.
PRESET = "paper-half"
TYPED = {"budget": 5000, "resize": "adaptive_pool", "max_frames": 32, "cap": True, "weight_power": 1.5,
         "decode_max_side": None, "scorer": "uniform"}
CLI_FLAGS = ["--preset", PRESET, "--budget", "5000", "--scorer", "uniform", "--set", "resize=adaptive_pool",
             "--set", "max_frames=32", "--set", "cap=yes", "--set", "weight-power=1.5", "--set", "decode_max_side=none"]


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return make_video(tmp_path_factory.mktemp("cfg") / "clip.mp4", n_frames=30, fps=10, size=(64, 48))


@pytest.fixture(scope="module")
def qwen_qa(tiny_qwen2_vl):
    return QuoTA.from_pretrained(str(tiny_qwen2_vl), scorer="base", device="cpu", quiet=True, **FAST)


def test_every_entry_point_resolves_the_same_config(tiny_qwen2_vl, tmp_path):
    expected = dataclasses.replace(PRESETS[PRESET], **TYPED)
    api = QuoTA.from_pretrained(base=None, preset=PRESET, quiet=True, **TYPED).config
    api_strings = QuoTA.from_pretrained(base=None, preset=PRESET, quiet=True,
                                        **{k: "none" if v is None else str(v) for k, v in TYPED.items()}).config
    ask = command_config(build_parser().parse_args(["ask", "v.mp4", "q?", *CLI_FLAGS]))
    plan = command_config(build_parser().parse_args(["plan", "v.mp4", "q?", *CLI_FLAGS]))
    evaluated = run_config(build_parser().parse_args(
        ["eval", "--benchmark", "videomme", "--annotations", "a.json", "--videos", str(tmp_path),
         "--out", str(tmp_path / "run"), *CLI_FLAGS]))[2]
    pytest.importorskip("lmms_eval")
    from quota.integrations.lmms_eval import QuotaLMM

    # lmms-eval hands model_args over as strings, numbers or bools
    plugin = QuotaLMM(base=str(tiny_qwen2_vl), device="cpu", preset=PRESET, budget=5000, resize="adaptive_pool",
                      max_frames="32", cap=True, weight_power="1.5", decode_max_side="None", scorer="uniform").config
    # quota eval answers with the benchmark's own answer length (quota.eval.generation), all else the same
    assert evaluated.max_new_tokens == 16
    evaluated = dataclasses.replace(evaluated, max_new_tokens=expected.max_new_tokens)
    assert api == api_strings == ask == plan == evaluated == plugin == expected


def test_resolve_config_converts_checks_and_orders():
    config = resolve_config("paper", {"budget": "6272"}, ["budget=100", "cap=on", "max_fps=2"])
    assert (config.budget, config.cap, config.max_fps) == (6272, True, 2.0)  # overrides win over settings
    assert config.sampling == {"base": 96, "per_hour": 64, "max_frames": None, "max_fps": 2.0}
    for bad in (["budget=nan"], ["weight_scale=inf"], ["budget=1.5"], ["nope=1"], ["budget"], ["resize=cubic"],
                ["decode_max_side=0"], ["scorer_max_pixels=0"], ["max_fps=-1"]):
        with pytest.raises(ConfigError):
            resolve_config("paper", settings=bad)
    with pytest.raises(ConfigError, match="preset"):
        resolve_config("no-such-preset")
    with pytest.raises(ConfigError):
        QuotaConfig(budget=True)  # a bool is not an integer
    with pytest.raises(ConfigError):
        QuotaConfig(weight_scale=float("nan"))


def test_config_is_read_only(qwen_qa):
    with pytest.raises(AttributeError):
        qwen_qa.config = qwen_qa.config.replace(budget=10)
    with pytest.raises(dataclasses.FrozenInstanceError):
        qwen_qa.config.budget = 10


#: A valid value different from FAST/paper's for every field (the scorer is tested on its own below).
CHANGES = {
    "base_frames": 5, "frames_per_hour": 30, "max_frames": 4, "max_fps": 1.5, "scorer_max_pixels": 56 * 56,
    "scorer_batch_size": 2, "scorer_vision_batch": 3, "scorer_prefill_chunk": 7, "score_normalize": "pair",
    "weight_scale": 10.0, "weight_power": 1.0, "budget": 20, "allocation": "exact", "cap": True,
    "resize": "linspace", "newline": "none", "decouple": "none", "max_new_tokens": 2,
    "decouple_max_new_tokens": 9, "time_prompt": False, "baseline_frames": 3, "decode_max_side": 32,
    "grid_shape": "square", "time_frames": "kept",
    "decode_max_pixels": 40 * 30, "decode_max_bytes": 10**6, "decode_colors": "bt601",
    "encode_kept_only": False, "scorer_feature_cache": False, "decouple_early_stop": False,
    "scorer_prefix_cache": False, "scorer_prefix_cache_bytes": 1024, "overlap_stages": True,
    "prompts": "quota", "clue_parser": "quota", "chat_template": "model",
}


def test_changes_cover_every_field():
    # the scorer and attn_implementation belong to the loaded models (tested on their own)
    assert set(CHANGES) | {"scorer", "attn_implementation"} == set(field_names())


@pytest.mark.parametrize("name", sorted(CHANGES))
def test_with_config_rebuilds_what_depends_on_the_field(qwen_qa, name):
    value = CHANGES[name]
    other = qwen_qa.with_config(**{name: value})
    assert getattr(other.config, name) == value
    assert getattr(qwen_qa.config, name) != value  # the original keeps its settings
    for field in field_names():
        if field != name:
            assert getattr(other.config, field) == getattr(qwen_qa.config, field)
    assert other.adapter is qwen_qa.adapter and other.scorer.model is qwen_qa.scorer.model  # models shared
    # what was built from the settings follows them
    assert other.decoupler.mode == other.config.decouple
    assert other.decoupler.max_new_tokens == other.config.decouple_max_new_tokens
    assert (other.decoupler.prompts, other.decoupler.parser) == (other.config.prompts, other.config.clue_parser)
    scorer = other.scorer
    assert isinstance(scorer, LVLMScorer)
    assert (scorer.max_pixels, scorer.batch_size, scorer.vision_batch_size, scorer.prefill_chunk, scorer.normalize) == (
        other.config.scorer_max_pixels, other.config.scorer_batch_size, other.config.scorer_vision_batch,
        other.config.scorer_prefill_chunk, other.config.score_normalize)


def test_with_config_shares_cached_work_only_where_the_settings_agree(qwen_qa, video):
    first = qwen_qa.plan(video, "Where is the ball?")
    cheaper = qwen_qa.with_config(budget=12)
    plan = cheaper.plan(video, "Where is the ball?")
    assert plan.reused == ["decode", "decouple", "score"] and plan.scores == first.scores
    assert plan.tokens <= 12 < first.tokens
    fewer = qwen_qa.with_config(base_frames=4)  # other frames: decoded and scored again
    assert "decode" not in fewer.plan(video, "Where is the ball?").reused
    assert len(fewer.plan(video, "Where is the ball?").indices) == 4
    smaller = qwen_qa.with_config(decode_max_pixels=40 * 30)  # other decode size: decoded again
    assert "decode" not in smaller.plan(video, "Where is the ball?").reused
    assert smaller.plan(video, "Where is the ball?").frames.pixels.shape[1:3] == (30, 40)
    recoloured = qwen_qa.with_config(decode_colors="bt601")  # other colour conversion: decoded again
    assert "decode" not in recoloured.plan(video, "Where is the ball?").reused
    paired = qwen_qa.with_config(score_normalize="pair")  # other scores, same frames and clue
    again = paired.plan(video, "Where is the ball?")
    assert "score" not in again.reused and "decouple" in again.reused


def test_with_config_scorer_swaps(qwen_qa, video):
    uniform = qwen_qa.with_config(scorer="uniform")
    assert isinstance(uniform.scorer, UniformScorer) and not uniform.uses_clue
    plan = uniform.plan(video, "What is here?")
    assert plan.clue.mode == "none" and len(set(plan.grids)) == 1
    with pytest.raises(ConfigError, match="scorer"):
        qwen_qa.with_config(scorer="Qwen/Qwen2-VL-7B-Instruct")
    with pytest.raises(ConfigError):
        qwen_qa.with_config(no_such_setting=1)


def test_docs_list_every_preset_and_setting():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "pipeline.md").read_text(encoding="utf-8")
    settings = text[text.index("## Settings"):]
    missing = [name for name in field_names() if f"`{name}`" not in settings]
    missing += [name for name in PRESETS if f"| `{name}` |" not in settings]
    assert not missing, f"docs/pipeline.md does not describe: {', '.join(missing)}"
