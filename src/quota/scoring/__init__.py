"""Frame scoring: how relevant each sampled frame is to the question.

Every scorer follows :class:`Scorer`: ``score(frames, clue) -> float64 [T] in [0, 1]``.

* :class:`LVLMScorer` / :class:`QwenVLScorer` (:mod:`.lvlm`): the probability that a vision-language model
  answers "yes" to the scoring question about the frame (the paper's scorer: Qwen2-VL-2B-Instruct).
* :class:`ClipScorer` (:mod:`.clip`): image-text similarity with CLIP / SigLIP / SigLIP 2.
* :class:`UniformScorer` (:mod:`.uniform`): all ones, the baseline.
* :func:`.question.scoring_question`: the two-option question the vision-language scorers ask about a frame.

:func:`load_scorer` picks one from a name, a Hugging Face id or a local folder; :func:`build_scorer` does the
same with the settings of a :class:`~quota.config.QuotaConfig` (what the pipeline uses). Names are read by
:mod:`.registry`, the one table of scorers. See ``docs/scoring.md``.
"""

from __future__ import annotations

import os
from typing import Any

from ..errors import ConfigError
from .base import (
    CLIP_FAMILIES,
    LVLM_FAMILIES,
    QWEN_FAMILIES,
    Scorer,
    uses_clue,
)
from .registry import BASE, SCORERS, ScorerChoice, read_scorer, register_scorer, scorer_class
from .uniform import UniformScorer

#: Options every scorer may be handed; :func:`load_scorer` drops those the chosen scorer has no use for
#: (callers pass their scorer settings whatever the scorer turns out to be). Each scorer class lists the
#: options it takes in its ``options`` attribute.
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


def _options_for(cls: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The options of ``kwargs`` that ``cls`` takes (its ``options``); shared ones it does not take are
    dropped, anything else is a :class:`ConfigError`."""
    accepted = frozenset(getattr(cls, "options", ()))
    unknown = sorted(k for k in kwargs if k not in accepted and k not in SHARED_OPTIONS)
    if unknown:
        raise ConfigError(f"unknown scorer option(s) {', '.join(unknown)} for {cls.__name__}; it takes "
                          f"{', '.join(sorted(accepted)) or 'none'}")
    return {k: v for k, v in kwargs.items() if k in accepted}


def load_scorer(name_or_id: str | os.PathLike[str] | Scorer, **kwargs: Any) -> Scorer:
    """A scorer from a name, a Hugging Face model id or a local checkpoint folder.

    Args:
        name_or_id: a scorer setting (:mod:`.registry`): a registered name that needs no checkpoint
            (``"uniform"``), ``"<name>:<id or folder>"`` (``clip:...``, ``lvlm:...``, ``qwen_vl:...``), or a model id
            or folder whose config's ``model_type`` picks the class (``qwen2_vl`` / ``qwen2_5_vl`` ->
            :class:`QwenVLScorer`, ``llava_onevision`` -> :class:`LVLMScorer`, ``clip`` / ``siglip`` / ``siglip2``
            -> :class:`ClipScorer`); or an object that already has a ``score`` method, returned as is.
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
    cls, checkpoint = scorer_class(name_or_id, trust_remote_code=bool(kwargs.get("trust_remote_code", False)))
    options = _options_for(cls, kwargs)
    return cls(checkpoint, **options) if checkpoint else cls(**options)


def build_scorer(
    spec: Any,
    config: Any,
    *,
    adapter: Any = None,
    device: Any = None,
    dtype: Any = None,
    quiet: bool = False,
    trust_remote_code: bool = False,
) -> Scorer:
    """The scorer a pipeline runs, with the scorer settings of ``config`` (:class:`~quota.config.QuotaConfig`).

    Args:
        spec: ``"uniform"``, ``"base"`` (the loaded base model of ``adapter`` answers the scoring question),
            a scorer id or folder (:func:`load_scorer`), or a scorer object (used as it is).
        config: the settings; each scorer class takes what concerns it (``options_from_config``).
        adapter: the loaded base-model adapter, needed for ``"base"``.
        device, dtype, quiet, trust_remote_code: how a scorer checkpoint is loaded.

    Raises:
        ConfigError: ``"base"`` without a base model; the errors of :func:`load_scorer`.
    """
    if not isinstance(spec, (str, os.PathLike)):
        return load_scorer(spec)
    if read_scorer(spec).is_base:
        if adapter is None:
            raise ConfigError("scorer='base' needs a base model")
        from .lvlm import LVLMScorer

        return LVLMScorer.from_model(adapter.model, adapter.processor, quiet=quiet,
                                     **LVLMScorer.options_from_config(config))
    cls, checkpoint = scorer_class(spec, trust_remote_code=trust_remote_code)
    options = cls.options_from_config(config) if hasattr(cls, "options_from_config") else {}
    if not checkpoint:
        return cls(**options)
    return cls(checkpoint, device=device, dtype=dtype, quiet=quiet, trust_remote_code=trust_remote_code, **options)


__all__ = [
    "Scorer",
    "LVLMScorer",
    "QwenVLScorer",
    "ClipScorer",
    "UniformScorer",
    "load_scorer",
    "build_scorer",
    "scorer_class",
    "read_scorer",
    "register_scorer",
    "ScorerChoice",
    "SCORERS",
    "BASE",
    "uses_clue",
    "LVLM_FAMILIES",
    "QWEN_FAMILIES",
    "CLIP_FAMILIES",
    "SHARED_OPTIONS",
]
