"""Frame scoring: how relevant each sampled frame is to the question.

Every scorer follows :class:`Scorer`: ``score(frames, clue) -> float64 [T] in [0, 1]``.

* :class:`LVLMScorer` / :class:`QwenVLScorer` (:mod:`.lvlm`): the probability that a vision-language model
  answers "yes" to the scoring question about the frame (the paper's scorer: Qwen2-VL-2B-Instruct).
* :class:`ClipScorer` (:mod:`.clip`): image-text similarity with CLIP / SigLIP / SigLIP 2.
* :class:`UniformScorer` (:mod:`.uniform`): all ones, the baseline.

:func:`load_scorer` picks one from a name, a Hugging Face id or a local folder. See ``docs/scoring.md``.
"""

from __future__ import annotations

import inspect
import os
from typing import Any

from ..errors import ConfigError, UnsupportedModelError
from .base import (
    CLIP_FAMILIES,
    LVLM_FAMILIES,
    QWEN_FAMILIES,
    Scorer,
    model_type_of,
)
from .uniform import UniformScorer

#: Keyword arguments that :func:`load_scorer` drops silently when the chosen scorer has no use for them
#: (the pipeline passes its scorer settings whatever the scorer is).
SHARED_OPTIONS = frozenset(
    {"max_pixels", "batch_size", "normalize", "dtype", "device", "quiet", "trust_remote_code", "template",
     "vision_batch_size", "prefill_chunk"}
)


def __getattr__(name: str) -> Any:
    # The model scorers import transformers lazily, on first use.
    if name in ("LVLMScorer", "QwenVLScorer"):
        from . import lvlm

        return getattr(lvlm, name)
    if name == "ClipScorer":
        from .clip import ClipScorer

        return ClipScorer
    raise AttributeError(f"module 'quota.scoring' has no attribute {name!r}")


def _filter_kwargs(factory: Any, kwargs: dict[str, Any], name: str) -> dict[str, Any]:
    accepted = set(inspect.signature(factory).parameters)
    unknown = sorted(k for k in kwargs if k not in accepted and k not in SHARED_OPTIONS)
    if unknown:
        raise ConfigError(f"unknown scorer option(s) {', '.join(unknown)} for {name}")
    return {k: v for k, v in kwargs.items() if k in accepted}


def load_scorer(name_or_id: str | os.PathLike[str] | Scorer, **kwargs: Any) -> Scorer:
    """A scorer from a name, a Hugging Face model id or a local checkpoint folder.

    Args:
        name_or_id: one of

            * ``"uniform"``: :class:`UniformScorer` (no model);
            * ``"clip:<id or folder>"``: :class:`ClipScorer` on that checkpoint;
            * ``"lvlm:<id or folder>"``: :class:`LVLMScorer` on that checkpoint;
            * a model id or folder: the family is read from its config's ``model_type``:
              ``qwen2_vl`` / ``qwen2_5_vl`` -> :class:`QwenVLScorer`, ``llava_onevision`` ->
              :class:`LVLMScorer`, ``clip`` / ``siglip`` / ``siglip2`` -> :class:`ClipScorer`;
            * an object that already has a ``score`` method: returned as is.
        **kwargs: options of the chosen scorer (``max_pixels``, ``batch_size``, ``normalize``, ``dtype``,
            ``device``, ``quiet``, ``trust_remote_code``, ``template``). Options in :data:`SHARED_OPTIONS` that the
            chosen scorer does not take are dropped; any other unknown option raises :class:`ConfigError`.

    Raises:
        ConfigError: ``"base"`` (which needs the loaded base model: use ``LVLMScorer.from_model``), an empty
            name or an unknown option.
        ModelNotFoundError, ProcessorNotFoundError, UnsupportedModelError: from loading the checkpoint.
    """
    if not isinstance(name_or_id, (str, os.PathLike)):
        if callable(getattr(name_or_id, "score", None)):
            return name_or_id  # type: ignore[return-value]
        raise ConfigError(f"scorer must be a name, model id or folder, got {type(name_or_id).__name__}")
    name = os.fspath(name_or_id)
    key = name.strip().lower()
    if not key:
        raise ConfigError("scorer name is empty; use 'uniform', a model id or a checkpoint folder")
    if key == "uniform":
        _filter_kwargs(UniformScorer, kwargs, "the uniform scorer")
        return UniformScorer()
    if key == "base":
        raise ConfigError(
            "scorer='base' reuses the loaded answering model; build it with LVLMScorer.from_model(model, processor) "
            "(the pipeline does this), not with load_scorer"
        )
    from .clip import ClipScorer
    from .lvlm import LVLMScorer, QwenVLScorer

    if key.startswith("clip:"):
        return ClipScorer(name[5:].strip(), **_filter_kwargs(ClipScorer, kwargs, "ClipScorer"))
    if key.startswith("lvlm:"):
        return LVLMScorer(name[5:].strip(), **_filter_kwargs(LVLMScorer, kwargs, "LVLMScorer"))

    from ..models.loading import load_config

    config = load_config(name, trust_remote_code=bool(kwargs.get("trust_remote_code", False)))
    family = model_type_of(config)
    if family in QWEN_FAMILIES:
        return QwenVLScorer(name, **_filter_kwargs(QwenVLScorer, kwargs, "QwenVLScorer"))
    if family in LVLM_FAMILIES:
        return LVLMScorer(name, **_filter_kwargs(LVLMScorer, kwargs, "LVLMScorer"))
    if family in CLIP_FAMILIES:
        return ClipScorer(name, **_filter_kwargs(ClipScorer, kwargs, "ClipScorer"))
    raise UnsupportedModelError(
        f"{name}: model type {family or 'unknown'!r} is not a supported scorer; use a checkpoint of type "
        f"{', '.join(LVLM_FAMILIES + CLIP_FAMILIES)}, or 'uniform'"
    )


__all__ = [
    "Scorer",
    "LVLMScorer",
    "QwenVLScorer",
    "ClipScorer",
    "UniformScorer",
    "load_scorer",
    "LVLM_FAMILIES",
    "QWEN_FAMILIES",
    "CLIP_FAMILIES",
    "SHARED_OPTIONS",
]
