"""Frame scoring: how relevant each sampled frame is to the question.

Every scorer follows :class:`Scorer`: ``score(frames, clue) -> float64 [T] in [0, 1]``.

* :class:`LVLMScorer` / :class:`QwenVLScorer` (:mod:`.lvlm`): the probability that a vision-language model
  answers "yes" to the scoring question about the frame (the paper's scorer: Qwen2-VL-2B-Instruct).
* :class:`ClipScorer` (:mod:`.clip`): image-text similarity with CLIP / SigLIP / SigLIP 2.
* :class:`UniformScorer` (:mod:`.uniform`): all ones, the baseline.
* :func:`.question.scoring_question`: the two-option question the vision-language scorers ask about a frame.

:func:`load_scorer` picks one from a name, a Hugging Face id or a local folder; :func:`build_scorer` does the
same with the settings of a :class:`~quota.config.QuotaConfig` (what the pipeline uses). See ``docs/scoring.md``.
"""

from __future__ import annotations

import os
from typing import Any

from ..errors import ConfigError, UnsupportedModelError
from .base import (
    CLIP_FAMILIES,
    LVLM_FAMILIES,
    QWEN_FAMILIES,
    Scorer,
    uses_clue,
)
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


def scorer_class(name_or_id: str | os.PathLike[str], *, trust_remote_code: bool = False) -> tuple[Any, str]:
    """``(class, checkpoint)`` for a scorer name: ``uniform``, ``clip:<id>``, ``lvlm:<id>`` or a checkpoint whose
    ``model_type`` picks the class (only the config is read).

    Raises:
        ConfigError: an empty name, or ``"base"``.
        UnsupportedModelError: a checkpoint of a family no scorer handles.
    """
    name = os.fspath(name_or_id)
    key = name.strip().lower()
    if not key:
        raise ConfigError("scorer name is empty; use 'uniform', a model id or a checkpoint folder")
    if key == "uniform":
        return UniformScorer, ""
    if key == "base":
        raise ConfigError(
            "scorer='base' reuses the loaded answering model; build it with LVLMScorer.from_model(model, processor) "
            "(the pipeline does this), not with load_scorer"
        )
    from ..models.loading import model_type_of
    from .clip import ClipScorer
    from .lvlm import LVLMScorer, QwenVLScorer

    if key.startswith("clip:"):
        return ClipScorer, name[5:].strip()
    if key.startswith("lvlm:"):
        return LVLMScorer, name[5:].strip()
    family = model_type_of(name, trust_remote_code=trust_remote_code)
    for cls in (QwenVLScorer, LVLMScorer, ClipScorer):
        if family in cls.families:
            return cls, name
    raise UnsupportedModelError(
        f"{name}: model type {family or 'unknown'!r} is not a supported scorer; use a checkpoint of type "
        f"{', '.join(LVLM_FAMILIES + CLIP_FAMILIES)}, or 'uniform'"
    )


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
    cls, checkpoint = scorer_class(name_or_id, trust_remote_code=bool(kwargs.get("trust_remote_code", False)))
    options = _options_for(cls, kwargs)
    return cls(**options) if cls is UniformScorer else cls(checkpoint, **options)


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
    if os.fspath(spec).strip().lower() == "base":
        if adapter is None:
            raise ConfigError("scorer='base' needs a base model")
        from .lvlm import LVLMScorer

        return LVLMScorer.from_model(adapter.model, adapter.processor, quiet=quiet,
                                     **LVLMScorer.options_from_config(config))
    cls, checkpoint = scorer_class(spec, trust_remote_code=trust_remote_code)
    if cls is UniformScorer:
        return UniformScorer()
    return cls(checkpoint, device=device, dtype=dtype, quiet=quiet, trust_remote_code=trust_remote_code,
               **cls.options_from_config(config))


__all__ = [
    "Scorer",
    "LVLMScorer",
    "QwenVLScorer",
    "ClipScorer",
    "UniformScorer",
    "load_scorer",
    "build_scorer",
    "scorer_class",
    "uses_clue",
    "LVLM_FAMILIES",
    "QWEN_FAMILIES",
    "CLIP_FAMILIES",
    "SHARED_OPTIONS",
]
