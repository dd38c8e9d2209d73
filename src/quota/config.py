"""Every knob of quota in one dataclass, with named presets.

The preset ``paper`` is the default and reproduces the settings of the QuoTA paper
(arXiv 2503.08689). Our own improvements are options that stay off in ``paper``; other presets
switch them on so they can be compared with ``quota eval``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from .errors import ConfigError

RESIZE_METHODS = ("bilinear", "adaptive_pool", "linspace", "merge")
ALLOCATION_MODES = ("paper", "exact")
NEWLINE_POLICIES = ("auto", "none", "row", "frame", "video")
DECOUPLE_MODES = ("entity", "event", "none")
SCORE_NORMALIZATIONS = ("none", "pair")


@dataclass(frozen=True)
class QuotaConfig:
    """Settings of one QuoTA run.

    Attributes:
        base_frames: frames sampled from any video (paper: 96).
        frames_per_hour: extra frames per hour of video (paper: 64).
        max_frames: hard cap on sampled frames, ``None`` for none.
        scorer: scoring model id or folder, ``"base"`` to reuse the base model, ``"uniform"``.
        scorer_max_pixels: most pixels per frame given to a Qwen-VL scorer (paper: 1280·28·28).
        scorer_batch_size: frames per scoring forward pass (paper: 64).
        scorer_vision_batch: frames per vision-tower pass inside a scoring batch (ours; bounds memory, the
            scores do not depend on it).
        scorer_prefill_chunk: the scorer's language model reads each prompt this many tokens at a time on
            an attention cache (ours; ``None``: one pass, as the paper). Bounds activation memory; scores
            agree with one-pass scores to float rounding.
        score_normalize: ``"none"`` P(yes) over the whole vocabulary (paper), ``"pair"`` P(yes)/(P(yes)+P(no)).
        weight_scale, weight_power: weights ∝ (scale·score)^power (paper: 100, 2).
        budget: total visual tokens over all frames (paper: 12,544 = 64 × 196).
        allocation: ``"paper"`` (floors, square grids) or ``"exact"`` (ours: uses the leftover).
        cap: no frame gets more tokens than its native grid (paper: off for bilinear).
        resize: how features are resized to a frame's grid.
        newline: newline token policy; ``"auto"`` is the model family's own.
        decouple: ``"entity"`` (paper), ``"event"`` (the paper's alternative) or ``"none"`` (no CoT:
            the scorer asks whether each frame holds enough to answer).
        max_new_tokens: tokens generated for an answer.
        decouple_max_new_tokens: tokens generated for the chain of thought.
        time_prompt: put the video length and frame times into the answer prompt (paper: on).
        baseline_frames: uniform frames the baseline mode (no QuoTA) gives the model (paper: 64).
        decode_max_side: scale frames while decoding so the longest side is at most this many
            pixels (``None``: full size, as the paper; the processors resize afterwards anyway).
    """

    base_frames: int = 96
    frames_per_hour: int = 64
    max_frames: int | None = None
    scorer: str = "Qwen/Qwen2-VL-2B-Instruct"
    scorer_max_pixels: int = 1280 * 28 * 28
    scorer_batch_size: int = 64
    scorer_vision_batch: int = 8
    scorer_prefill_chunk: int | None = None
    score_normalize: str = "none"
    weight_scale: float = 100.0
    weight_power: float = 2.0
    budget: int = 12544
    allocation: str = "paper"
    cap: bool = False
    resize: str = "bilinear"
    newline: str = "auto"
    decouple: str = "entity"
    max_new_tokens: int = 64
    decouple_max_new_tokens: int = 256
    time_prompt: bool = True
    baseline_frames: int = 64
    decode_max_side: int | None = None

    def __post_init__(self) -> None:
        checks = {
            "allocation": ALLOCATION_MODES,
            "resize": RESIZE_METHODS,
            "newline": NEWLINE_POLICIES,
            "decouple": DECOUPLE_MODES,
            "score_normalize": SCORE_NORMALIZATIONS,
        }
        for name, allowed in checks.items():
            value = getattr(self, name)
            if value not in allowed:
                raise ConfigError(f"{name}={value!r} is not one of {', '.join(allowed)}")
        for name in ("base_frames", "budget", "scorer_batch_size", "max_new_tokens", "baseline_frames",
                     "decouple_max_new_tokens", "scorer_vision_batch", "frames_per_hour"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{name} must be an integer, got {value!r}")
        for name in ("base_frames", "budget", "scorer_batch_size", "max_new_tokens", "baseline_frames"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)!r}")
        if self.frames_per_hour < 0:
            raise ConfigError(f"frames_per_hour must be >= 0, got {self.frames_per_hour}")
        if self.scorer_vision_batch < 1:
            raise ConfigError(f"scorer_vision_batch must be >= 1, got {self.scorer_vision_batch}")
        if self.scorer_prefill_chunk is not None and self.scorer_prefill_chunk < 1:
            raise ConfigError(f"scorer_prefill_chunk must be >= 1 or None, got {self.scorer_prefill_chunk}")
        if self.max_frames is not None and self.max_frames < 1:
            raise ConfigError(f"max_frames must be >= 1 or None, got {self.max_frames}")
        if self.weight_scale <= 0 or self.weight_power <= 0:
            raise ConfigError("weight_scale and weight_power must be positive")

    def replace(self, **overrides: Any) -> "QuotaConfig":
        """A copy with some fields changed; unknown names raise :class:`ConfigError`."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ConfigError(f"unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return replace(self, **overrides)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def fingerprint_fields(self) -> dict[str, Any]:
        """The settings that change results (everything here does)."""
        return self.to_dict()


PRESETS: dict[str, QuotaConfig] = {
    # The paper's settings (the default).
    "paper": QuotaConfig(),
    # The paper's cheaper setting: half the budget (reported faster than the baseline, and better).
    "paper-half": QuotaConfig(budget=6272),
    # Ours: every frame keeps at most its native grid and the budget is spent exactly.
    "exact": QuotaConfig(allocation="exact", cap=True),
    # Ours: the paper's settings with a scorer that needs far less memory (same scores to float rounding).
    "paper-lowmem": QuotaConfig(scorer_vision_batch=2, scorer_prefill_chunk=64),
}


def get_config(preset: str | QuotaConfig = "paper", **overrides: Any) -> QuotaConfig:
    """The named preset (or a given config) with ``overrides`` applied (``None`` is a value too: it
    switches off ``max_frames``, ``scorer_prefill_chunk`` and ``decode_max_side``)."""
    if isinstance(preset, QuotaConfig):
        base = preset
    else:
        try:
            base = PRESETS[preset]
        except KeyError:
            raise ConfigError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}") from None
    return base.replace(**overrides) if overrides else base


__all__ = ["QuotaConfig", "PRESETS", "get_config", "RESIZE_METHODS", "ALLOCATION_MODES", "NEWLINE_POLICIES"]
