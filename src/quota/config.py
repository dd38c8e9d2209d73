"""Every knob of quota in one dataclass, with named presets.

The preset ``paper`` is the default and reproduces the settings of the QuoTA paper
(arXiv 2503.08689). Our own improvements are options that stay off in ``paper``; other presets
switch them on so they can be compared with ``quota eval``.
"""

from __future__ import annotations

import math
import typing
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Iterable, Mapping

from .errors import ConfigError

#: The paper's base model (Hugging Face format); every entry point defaults to it.
DEFAULT_BASE = "llava-hf/LLaVA-Video-7B-Qwen2-hf"

# The choices of the string settings: the one list each, used by the config checks, the math in
# :mod:`quota.assign` and the command lines' help.
RESIZE_METHODS = ("bilinear", "adaptive_pool", "linspace", "merge")
ALLOCATION_MODES = ("paper", "exact")
#: Where newline tokens go in the language model's input (see :func:`quota.assign.token_count`).
NEWLINE_LAYOUTS = ("none", "row", "frame", "video")
#: ``auto`` resolves to the base model family's own layout.
NEWLINE_POLICIES = ("auto",) + NEWLINE_LAYOUTS
DECOUPLE_MODES = ("entity", "event", "none")
SCORE_NORMALIZATIONS = ("none", "pair")
#: ``attn_implementation`` values: transformers' own names, plus ``"auto"`` (flash_attention_2 when the
#: flash-attn package is installed and a CUDA device is used, else sdpa).
ATTN_IMPLEMENTATIONS = ("sdpa", "eager", "flash_attention_2", "auto")
#: How a frame's token count becomes a grid (see :func:`quota.assign.allocate_grids`).
GRID_SHAPE_RULES = ("square", "aspect")
#: ``auto`` resolves to the base model family's own rule (``aspect`` for Qwen, ``square`` for LLaVA).
GRID_SHAPES = ("auto",) + GRID_SHAPE_RULES
#: Which frames' times the answer prompt lists.
TIME_FRAMES = ("sampled", "kept")
#: Whose wording the decoupling prompt and the frame question use: the reference's (``quota.reference``) or ours.
PROMPT_STYLES = ("paper", "quota")
#: How the decoupling output becomes objects: the reference's reading or our richer one (docs/decouple.md).
CLUE_PARSERS = ("paper", "quota")
#: The conversation around a LLaVA base model's turns: LLaVA-NeXT's ``qwen_1_5`` (``paper``) or the checkpoint's
#: own chat template (``model``). Qwen bases always use their own.
CHAT_TEMPLATES = ("paper", "model")
#: How decoded frames are converted to RGB (see :mod:`quota.video.colors`): ``decord`` as the paper's
#: decoder did (follows the stream's colour tags), ``bt601`` as quota did before (ignores them).
DECODE_COLORS = ("decord", "bt601")
CHOICES: dict[str, tuple[str, ...]] = {
    "allocation": ALLOCATION_MODES,
    "resize": RESIZE_METHODS,
    "newline": NEWLINE_POLICIES,
    "grid_shape": GRID_SHAPES,
    "decouple": DECOUPLE_MODES,
    "score_normalize": SCORE_NORMALIZATIONS,
    "time_frames": TIME_FRAMES,
    "decode_colors": DECODE_COLORS,
    "attn_implementation": ATTN_IMPLEMENTATIONS,
    "prompts": PROMPT_STYLES,
    "clue_parser": CLUE_PARSERS,
    "chat_template": CHAT_TEMPLATES,
}
_NONE_WORDS = ("none", "null", "")
_TRUE_WORDS = ("1", "true", "yes", "on")
_FALSE_WORDS = ("0", "false", "no", "off")


#: The automatic ``decode_max_pixels`` is this many times ``scorer_max_pixels`` (2x per side): frames
#: above it are shrunk while decoding; the models shrink them further anyway.
DECODE_CAP_FACTOR = 4
#: Default ``decode_max_bytes``: 1.5 GiB for all decoded frames of one video.
DEFAULT_DECODE_MAX_BYTES = 1536 * 2**20


#: The stages a setting can feed: which frames are decoded (``frames``), the query decoupling (``decouple``), the
#: frame scores (``score``), the token assignment (``assign``), the answer (``answer``), or only how the work runs
#: (``run``: memory, speed, kernels). The pipeline's cache keys are made from these declarations.
STAGES = ("frames", "decouple", "score", "assign", "answer", "run")


def _setting(default: Any, *stages: str) -> Any:
    """A :class:`QuotaConfig` field with its default and the stages it feeds (see :data:`STAGES`)."""
    return field(default=default, metadata={"stages": frozenset(stages)})


@dataclass(frozen=True)
class QuotaConfig:
    """Settings of one QuoTA run.

    Attributes:
        base_frames: frames sampled from any video (paper: 96).
        frames_per_hour: extra frames per hour of video (paper: 64).
        max_frames: hard cap on sampled frames, ``None`` for none.
        max_fps: at most this many sampled frames per second of video (ours; ``None``: no cap, as the
            paper). Keeps short clips from being sampled at more frames than they hold seconds.
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
        newline: newline token policy; ``"auto"``: one newline per grid row for LLaVA-Video checkpoints (as
            trained), one after the video for LLaVA-OneVision, none for Qwen (docs/models.md says how a
            checkpoint is recognised); ``"row"``, ``"video"``, ``"frame"``, ``"none"`` override it.
        grid_shape: how a frame's token count becomes a grid: ``"auto"`` (the base model's choice: the
            native aspect ratio for Qwen2-VL / Qwen2.5-VL, the paper's near-square grid for LLaVA),
            ``"square"`` (the paper) or ``"aspect"``.
        decouple: ``"entity"`` (paper), ``"event"`` (the paper's alternative; needs our prompts and parser)
            or ``"none"`` (no CoT: the scorer asks whether each frame holds enough to answer).
        prompts: wording of the decoupling prompt and of the frame question: ``"paper"`` (the reference's,
            byte for byte, :mod:`quota.reference`) or ``"quota"`` (ours, docs/decouple.md).
        clue_parser: how the decoupling output is read: ``"paper"`` (the reference's reading: lower-cased,
            first Step 1, first Step 3 list of strings) or ``"quota"`` (ours: more formats, word filters).
        chat_template: the conversation of a LLaVA base model's turns (decoupling, answer, baseline):
            ``"paper"`` (LLaVA-NeXT's ``qwen_1_5``: a system turn, then the user turn) or ``"model"`` (the
            checkpoint's own chat template). Qwen bases use their own template under both.
        max_new_tokens: tokens generated for an answer.
        decouple_max_new_tokens: tokens generated for the chain of thought (paper: 4,096).
        time_prompt: put the video length and frame times into the answer prompt (paper: on).
        time_frames: which frames' times that prompt lists: ``"sampled"`` (every sampled frame, as the
            reference implementation) or ``"kept"`` (ours: only the frames that kept tokens).
        baseline_frames: uniform frames the baseline mode (no QuoTA) gives the model (paper: 64).
        decode_max_side: scale frames while decoding so the longest side is at most this many
            pixels (``None``: no side limit, as the paper; the processors resize afterwards anyway).
        decode_max_pixels: scale frames while decoding to at most this many pixels each (ours).
            ``None``: automatic, :data:`DECODE_CAP_FACTOR` x ``scorer_max_pixels`` (4,014,080 with the
            paper's scorer: more than 1080p, whose frames are decoded exactly as before). No model looks
            at more than that: the scorer caps frames at ``scorer_max_pixels``, the paper's base model
            at 384x384. See docs/video.md.
        decode_max_bytes: all decoded frames of one video take at most this many bytes (ours; frames
            are scaled while decoding to fit, so memory is bounded for any length and size). ``None``:
            no limit. The default, 1.5 GiB, leaves 1080p frames untouched up to about 2.5 hours.
        decode_colors: how decoded YUV frames become RGB: ``"decord"`` (paper: the conversion of decord,
            which the reference code decodes with; it follows the stream's colour matrix and range tags,
            e.g. BT.709) or ``"bt601"`` (ours, quota's earlier conversion: always BT.601, tags ignored).
            See docs/video.md.
        encode_kept_only: the base model's vision tower encodes only the frames the plan gives tokens
            (ours; result-neutral: dropped frames never reach the model). Off: every sampled frame.
        scorer_feature_cache: a Qwen-VL scorer encodes each video's frames once and reuses the image
            features for every question about that video (ours; result-neutral, memory bounded to the
            current video). Off: the vision tower runs again for each new scoring question.
        scorer_prefix_cache: a Qwen-VL scorer keeps its language model's keys and values of each frame's
            prefix (system turn and image, everything before the question) per video and runs only the
            question's tokens for later questions (ours; result-neutral to float rounding; needs
            ``scorer_feature_cache``). Off: the whole prompt runs for every question.
        scorer_prefix_cache_bytes: the most bytes those prefixes take per video (default 4 GiB); batches of
            frames past it run the full pass.
        overlap_stages: in :meth:`~quota.pipeline.QuoTA.plan`, the chain of thought (text only) runs on a
            second thread while the video is decoded and the scorer prepares what does not depend on the
            question (ours; same plan and answer). Off: one stage after the other.
        decouple_early_stop: the chain of thought stops as soon as its Step 3 line is complete (a closed
            list, or null), instead of running to ``decouple_max_new_tokens`` (ours; the parsed objects
            are those of the full generation, see docs/decouple.md).
        attn_implementation: attention kernel of both models when quota loads them (``"sdpa"``, the
            default transformers picks for these models and the one our results were checked with;
            ``"flash_attention_2"`` needs the flash-attn package and a CUDA device; ``"auto"`` picks it
            when available, else sdpa; ``"eager"``).
    """

    base_frames: int = _setting(96, "frames")
    frames_per_hour: int = _setting(64, "frames")
    max_frames: int | None = _setting(None, "frames")
    max_fps: float | None = _setting(None, "frames")
    scorer: str = _setting("Qwen/Qwen2-VL-2B-Instruct", "score")
    scorer_max_pixels: int = _setting(1280 * 28 * 28, "score")
    scorer_batch_size: int = _setting(64, "score")
    scorer_vision_batch: int = _setting(8, "score")
    scorer_prefill_chunk: int | None = _setting(None, "score")
    score_normalize: str = _setting("none", "score")
    weight_scale: float = _setting(100.0, "assign")
    weight_power: float = _setting(2.0, "assign")
    budget: int = _setting(12544, "assign")
    allocation: str = _setting("paper", "assign")
    cap: bool = _setting(False, "assign")
    resize: str = _setting("bilinear", "assign")
    newline: str = _setting("auto", "assign")
    grid_shape: str = _setting("auto", "assign")
    decouple: str = _setting("entity", "decouple")
    prompts: str = _setting("paper", "decouple", "score", "answer")
    clue_parser: str = _setting("paper", "decouple")
    chat_template: str = _setting("paper", "decouple", "answer")
    max_new_tokens: int = _setting(64, "answer")
    decouple_max_new_tokens: int = _setting(4096, "decouple")
    time_prompt: bool = _setting(True, "answer")
    time_frames: str = _setting("sampled", "answer")
    baseline_frames: int = _setting(64, "answer")
    decode_max_side: int | None = _setting(None, "frames")
    decode_max_pixels: int | None = _setting(None, "frames")
    decode_max_bytes: int | None = _setting(DEFAULT_DECODE_MAX_BYTES, "frames")
    decode_colors: str = _setting("decord", "frames")
    encode_kept_only: bool = _setting(True, "run")
    scorer_feature_cache: bool = _setting(True, "run")
    scorer_prefix_cache: bool = _setting(True, "run")
    scorer_prefix_cache_bytes: int = _setting(4 * 2**30, "run")
    overlap_stages: bool = _setting(False, "run")
    decouple_early_stop: bool = _setting(True, "run")
    attn_implementation: str = _setting("sdpa", "run")

    def __post_init__(self) -> None:
        for name, allowed in CHOICES.items():
            value = getattr(self, name)
            if value not in allowed:
                raise ConfigError(f"{name}={value!r} is not one of {', '.join(allowed)}")
        hints = _field_types()
        for f in fields(self):
            _check_type(f.name, getattr(self, f.name), hints[f.name])
        for name in ("base_frames", "budget", "scorer_batch_size", "max_new_tokens", "baseline_frames",
                     "decouple_max_new_tokens", "scorer_vision_batch", "scorer_max_pixels"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)!r}")
        for name in ("max_frames", "scorer_prefill_chunk", "decode_max_side", "decode_max_pixels", "decode_max_bytes"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be at least 1 or none, got {value!r}")
        if self.scorer_prefix_cache_bytes < 0:
            raise ConfigError(f"scorer_prefix_cache_bytes must be >= 0, got {self.scorer_prefix_cache_bytes}")
        if self.frames_per_hour < 0:
            raise ConfigError(f"frames_per_hour must be >= 0, got {self.frames_per_hour}")
        if self.weight_scale <= 0 or self.weight_power <= 0:
            raise ConfigError("weight_scale and weight_power must be positive")
        if self.max_fps is not None and self.max_fps <= 0:
            raise ConfigError(f"max_fps must be > 0 or none, got {self.max_fps!r}")
        if self.decouple == "event" and "paper" in (self.prompts, self.clue_parser):
            raise ConfigError("decouple=event has no reference prompt or parser; also set prompts=quota and "
                              "clue_parser=quota (or use --preset event)")

    def decode_limits(self) -> dict[str, int | None]:
        """The keyword arguments of :func:`quota.video.load_frames` that bound decoded frames:
        ``max_side``, ``max_pixels`` (the automatic cap when ``decode_max_pixels`` is ``None``) and
        ``max_bytes``."""
        pixels = self.decode_max_pixels
        if pixels is None:
            pixels = DECODE_CAP_FACTOR * self.scorer_max_pixels
        return {"max_side": self.decode_max_side, "max_pixels": pixels, "max_bytes": self.decode_max_bytes}

    def decode_options(self) -> dict[str, Any]:
        """Every keyword argument of :func:`quota.video.load_frames` that this config decides about the
        decoded pixels: :meth:`decode_limits` plus ``colors`` (``decode_colors``)."""
        return {**self.decode_limits(), "colors": self.decode_colors}

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
    def sampling(self) -> dict[str, Any]:
        """The frame-sampling keywords of :func:`quota.video.sample_indices` / :func:`quota.video.load_frames`
        (``base``, ``per_hour``, ``max_frames``, ``max_fps``)."""
        return {"base": self.base_frames, "per_hour": self.frames_per_hour, "max_frames": self.max_frames,
                "max_fps": self.max_fps}


def get_config(preset: str | QuotaConfig = "paper", **overrides: Any) -> QuotaConfig:
    """The named preset (or a given config) with ``overrides`` applied as they are (typed values; ``None``
    is a value too: it switches off ``max_frames``, ``scorer_prefill_chunk`` and ``decode_max_side``).
    Use :func:`resolve_config` for values that may be strings."""
    if isinstance(preset, QuotaConfig):
        base = preset
    else:
        try:
            base = PRESETS[preset]
        except KeyError:
            raise ConfigError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}") from None
    return base.replace(**overrides) if overrides else base


def resolve_config(
    preset: str | QuotaConfig = "paper",
    overrides: Mapping[str, Any] | None = None,
    settings: Iterable[str] = (),
    *,
    source: str = "setting",
) -> QuotaConfig:
    """The one way user input becomes a :class:`QuotaConfig`; every entry point (Python API, ``quota ask``
    / ``plan`` / ``eval``, the lmms-eval plug-in) calls it.

    Args:
        preset: a preset name or a config to start from.
        overrides: field name -> value; strings are converted to the field's type
            (:func:`coerce_setting`), typed values are checked. Applied after ``settings``.
        settings: ``"KEY=VALUE"`` strings (``quota --set``), converted the same way.
        source: how the user gave the settings, for error messages (``--set``, ``model_args``).

    Raises:
        ConfigError: an unknown preset or field, a value of the wrong type, or a value out of range.
    """
    values: dict[str, Any] = {}
    for text in settings:
        key, value = parse_setting(text, source=source)
        values[key] = value
    for key, value in (overrides or {}).items():
        values[key] = coerce_setting(key, value, source=source)
    return get_config(preset, **values)


def _field_types() -> dict[str, Any]:
    hints = typing.get_type_hints(QuotaConfig)
    return {f.name: hints[f.name] for f in fields(QuotaConfig)}


def _allows_none(kind: Any) -> bool:
    return type(None) in typing.get_args(kind)


def _base_type(kind: Any) -> Any:
    args = [a for a in typing.get_args(kind) if a is not type(None)]
    return args[0] if args else kind


def _check_type(name: str, value: Any, kind: Any) -> None:
    """Raise :class:`ConfigError` unless ``value`` has the type the field ``name`` declares."""
    if value is None:
        if _allows_none(kind):
            return
        raise ConfigError(f"{name}: a value is required (it cannot be none)")
    base = _base_type(kind)
    if base is bool:
        ok = isinstance(value, bool)
    elif base is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif base is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    else:
        ok = isinstance(value, base)
    if not ok:
        raise ConfigError(f"{name} must be a finite value of type {base.__name__}, got {value!r}")


def settings_for(stage: str) -> tuple[str, ...]:
    """The names of the :class:`QuotaConfig` fields that feed ``stage`` (one of :data:`STAGES`), in field order."""
    if stage not in STAGES:
        raise ConfigError(f"stage {stage!r} is not one of {', '.join(STAGES)}")
    return tuple(f.name for f in fields(QuotaConfig) if stage in f.metadata["stages"])


def field_names() -> list[str]:
    """The names of every :class:`QuotaConfig` field (the keys ``--set`` and ``model_args`` accept)."""
    return [f.name for f in fields(QuotaConfig)]


def coerce_setting(name: str, value: Any, *, source: str = "setting") -> Any:
    """``value`` converted to the type of the :class:`QuotaConfig` field ``name``.

    Strings are parsed (``none``/``null``/empty give ``None`` where the field allows it; ``true/false/yes/
    no/on/off/1/0`` for switches; integers may be written ``64`` or ``64.0``); typed values pass through
    when they fit. NaN and infinities are refused.

    Raises:
        ConfigError: an unknown field, or a value that does not fit the field's type.
    """
    types = _field_types()
    if name not in types:
        raise ConfigError(f"{source} {name}: unknown setting; known: {', '.join(sorted(types))}")
    kind = types[name]
    base = _base_type(kind)
    if value is None or (isinstance(value, str) and value.strip().lower() in _NONE_WORDS):
        if _allows_none(kind):
            return None
        if not (base is str and value is not None and value.strip()):  # "none" is a word of some choices
            raise ConfigError(f"{source} {name}: a value is required (it cannot be none)")
    bad = ConfigError(f"{source} {name}={value!r}: expected a finite value of type {base.__name__}")
    if base is bool:
        return coerce_flag(name, value, source=source)
    if base is str:
        return str(value).strip()
    if isinstance(value, bool):
        raise bad
    try:
        number = float(value.strip()) if isinstance(value, str) else float(value)
    except (TypeError, ValueError):
        raise bad from None
    if not math.isfinite(number):
        raise bad
    if base is int:
        if isinstance(value, int):
            return value
        if not number.is_integer():
            raise bad
        return int(number)
    return number


def coerce_flag(name: str, value: Any, *, source: str = "setting") -> bool:
    """``value`` as a switch: a bool, ``0``/``1``, or ``true/false/yes/no/on/off`` (any case).

    Raises:
        ConfigError: anything else.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE_WORDS + _FALSE_WORDS:
        return value.strip().lower() in _TRUE_WORDS
    raise ConfigError(f"{source} {name}={value!r}: expected true or false")


def parse_setting(text: str, *, source: str = "--set") -> tuple[str, Any]:
    """``"KEY=VALUE"`` -> ``(key, value)`` with the value converted by :func:`coerce_setting` (dashes in
    the key may stand for underscores).

    Raises:
        ConfigError: no ``=``, an unknown field, or a value of the wrong type.
    """
    if "=" not in text:
        raise ConfigError(f"{source} expects KEY=VALUE, got {text!r}")
    key, raw = (part.strip() for part in text.split("=", 1))
    key = key.replace("-", "_")
    return key, coerce_setting(key, raw, source=source)


PRESETS: dict[str, QuotaConfig] = {
    # The paper's settings (the default).
    "paper": QuotaConfig(),
    # The paper's cheaper setting: half the budget (reported faster than the baseline, and better).
    "paper-half": QuotaConfig(budget=6272),
    # Ours: every frame keeps at most its native grid and the budget is spent exactly.
    "exact": QuotaConfig(allocation="exact", cap=True),
    # Ours: the paper's settings with a scorer that needs far less memory (same scores to float rounding).
    "paper-lowmem": QuotaConfig(scorer_vision_batch=2, scorer_prefill_chunk=64),
    # Ours: the paper's settings, but the answer prompt lists only the times of the frames that kept tokens.
    "kept-times": QuotaConfig(time_frames="kept"),
    # Ours, NOT the paper's settings (docs/pipeline.md, "Speed"; compare accuracy with `paper` before relying
    # on them). "fast": the contrastive scorer SigLIP-base (one 224x224 image embedding per frame, matched to
    # the clue's objects) instead of the 2B scoring LVLM, and a chain of thought of at most 64 tokens, so
    # that scoring costs about 2% of the answer pass. "fast-qwen": the paper's scorer model on small frames
    # (at most 64 merged tokens, 224x224 pixels, instead of up to 1280 per frame).
    "fast": QuotaConfig(scorer="google/siglip-base-patch16-224", decouple_max_new_tokens=64),
    "fast-qwen": QuotaConfig(scorer_max_pixels=64 * 28 * 28, decouple_max_new_tokens=64),
    # Ours: our decoupling prompt, frame question and parser (docs/decouple.md) instead of the reference's.
    "our-prompts": QuotaConfig(prompts="quota", clue_parser="quota", decouple_max_new_tokens=256),
    # Ours: the paper's event-centric alternative, with our event prompt and parser (the reference has none).
    "event": QuotaConfig(decouple="event", prompts="quota", clue_parser="quota", decouple_max_new_tokens=256),
    # Ours, untested against the paper: for --base HuggingFaceTB/SmolVLM2-2.2B-Instruct on an 8 GB GPU (docs/pipeline.md).
    "small": QuotaConfig(scorer="HuggingFaceTB/SmolVLM2-256M-Video-Instruct", budget=5184, scorer_batch_size=8),
}


#: Settings that change how the work is split (memory, speed), not the answers beyond float rounding: the
#: number of frames per vision-tower call of the scorer and the prefill chunk of its language model (one
#: frame's scoring never sees another frame, and chunked prefill computes the same attention). A run
#: folder resumes across them (``paper-lowmem`` continues a ``paper`` run).
#: Our speed-ups are result-neutral too: frames without tokens are not encoded, the scorer's image features are
#: reused within a video, and the chain of thought stops once its answer can no longer change. So are the
#: scorer's prefix kept per video (and its memory bound; tests/test_scorer_prefix.py, which also shows that a
#: prefix under a wrong key would change the scores) and the overlapped stages (tests/test_stage_overlap.py).
RESULT_NEUTRAL = frozenset({"scorer_vision_batch", "scorer_prefill_chunk", "encode_kept_only",
                            "scorer_feature_cache", "decouple_early_stop", "scorer_prefix_cache",
                            "scorer_prefix_cache_bytes", "overlap_stages"})


__all__ = [
    "QuotaConfig", "DECODE_CAP_FACTOR", "DEFAULT_DECODE_MAX_BYTES", "PRESETS", "DEFAULT_BASE", "get_config", "resolve_config", "coerce_setting", "coerce_flag",
    "parse_setting", "field_names", "settings_for", "STAGES", "RESIZE_METHODS", "ALLOCATION_MODES", "NEWLINE_POLICIES", "NEWLINE_LAYOUTS",
    "DECOUPLE_MODES", "SCORE_NORMALIZATIONS", "GRID_SHAPES", "GRID_SHAPE_RULES", "TIME_FRAMES", "RESULT_NEUTRAL",
    "ATTN_IMPLEMENTATIONS", "PROMPT_STYLES", "CLUE_PARSERS", "CHAT_TEMPLATES", "DECODE_COLORS",
]
