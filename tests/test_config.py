"""Settings and presets."""

from __future__ import annotations

import pytest

from quota.config import PRESETS, QuotaConfig, get_config
from quota.errors import ConfigError


def test_paper_preset_is_the_default_and_holds_the_papers_settings():
    cfg = get_config()
    assert cfg == QuotaConfig() == PRESETS["paper"]
    assert (cfg.base_frames, cfg.frames_per_hour, cfg.budget) == (96, 64, 12544)
    assert cfg.scorer == "Qwen/Qwen2-VL-2B-Instruct" and cfg.scorer_max_pixels == 1280 * 28 * 28
    assert (cfg.weight_scale, cfg.weight_power, cfg.scorer_batch_size) == (100.0, 2.0, 64)
    assert (cfg.resize, cfg.allocation, cfg.cap, cfg.decouple) == ("bilinear", "paper", False, "entity")
    assert cfg.score_normalize == "none" and cfg.scorer_prefill_chunk is None and cfg.time_prompt
    # the reference lists every sampled frame's time; newlines and grid shapes follow the base model
    assert (cfg.time_frames, cfg.newline, cfg.grid_shape) == ("sampled", "auto", "auto")


def test_our_presets_differ_from_the_paper_only_where_they_say():
    paper = PRESETS["paper"].to_dict()
    changed = {name: {k for k, v in PRESETS[name].to_dict().items() if paper[k] != v} for name in PRESETS}
    assert changed == {
        "paper": set(),
        "paper-half": {"budget"},
        "exact": {"allocation", "cap"},
        "paper-lowmem": {"scorer_vision_batch", "scorer_prefill_chunk"},
        "kept-times": {"time_frames"},
        "fast": {"scorer", "decouple_max_new_tokens"},
        "fast-qwen": {"scorer_max_pixels", "decouple_max_new_tokens"},
        "our-prompts": {"prompts", "clue_parser", "decouple_max_new_tokens"},
        "event": {"decouple", "prompts", "clue_parser", "decouple_max_new_tokens"},
        "small": {"scorer", "budget", "scorer_batch_size"},
    }


def test_overrides_and_none_values():
    cfg = get_config("paper", budget=6272, max_frames=200)
    assert cfg.budget == 6272 and cfg.max_frames == 200
    assert get_config(cfg, max_frames=None).max_frames is None
    assert get_config("paper-lowmem", scorer_prefill_chunk=None).scorer_prefill_chunk is None


@pytest.mark.parametrize(
    "overrides",
    [dict(budget=0), dict(budget=None), dict(budget=1.5), dict(resize="nearest"), dict(allocation="greedy"),
     dict(newline="page"), dict(decouple="objects"), dict(score_normalize="softmax"), dict(max_frames=0),
     dict(weight_power=0), dict(scorer_prefill_chunk=0), dict(budgett=3), dict(grid_shape="round"),
     dict(time_frames="all")],
)
def test_bad_settings_raise_config_error(overrides):
    with pytest.raises(ConfigError):
        get_config("paper", **overrides)


def test_unknown_preset():
    with pytest.raises(ConfigError, match="paper"):
        get_config("fastest")
