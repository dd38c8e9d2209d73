"""The scorers quota knows, in one flat table: name -> class.

A scorer setting (``QuotaConfig.scorer``, ``--scorer``, the plug-in's ``scorer=``) is read here and nowhere else:

* ``"<name>"`` of a scorer that needs no checkpoint (``uniform``) -> that scorer;
* ``"<name>:<checkpoint>"`` (``clip:/models/siglip``, ``lvlm:llava-hf/...``) -> that scorer on that checkpoint;
* ``"base"`` -> the vision-language scorer on the loaded answering model (the pipeline builds it);
* anything else is a checkpoint (hub id or folder), whose ``config.json`` ``model_type`` picks the first scorer
  that lists it in ``families``.

Each scorer class says what the command line and the pipeline need to know without loading anything:
``needs_checkpoint`` (does it run a model?), ``uses_clue`` (does it read the decoupling result? a scorer that
does not needs no base model for planning and no query decoupling) and ``families`` (the model types it runs).
Adding a scorer: its module, one line in :data:`SCORERS` (or :func:`register_scorer` from outside the package),
and its test. Importing this module imports no torch.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError

#: Registry name -> ``"module:Class"`` (imported on first use). Checkpoints are matched to these classes in this
#: order (the first whose ``families`` holds the checkpoint's model type wins).
SCORERS: dict[str, Any] = {
    "uniform": "quota.scoring.uniform:UniformScorer",
    "qwen_vl": "quota.scoring.lvlm:QwenVLScorer",
    "lvlm": "quota.scoring.lvlm:LVLMScorer",
    "clip": "quota.scoring.clip:ClipScorer",
}
#: The scorer setting that reuses the loaded base model (built by the pipeline, not from the table).
BASE = "base"


def register_scorer(name: str, target: Any) -> None:
    """Add a scorer to :data:`SCORERS` under ``name`` (a class, or ``"module:Class"``); a plug-in's one line.

    Raises:
        ConfigError: an empty name, a name with ``:``, ``"base"``, or a name already taken by another class.
    """
    key = str(name).strip().lower()
    if not key or ":" in key or key == BASE:
        raise ConfigError(f"scorer name {name!r} cannot be registered: use letters, digits, '_' or '-'")
    if key in SCORERS and SCORERS[key] != target:
        raise ConfigError(f"scorer name {key!r} is taken by {SCORERS[key]}")
    SCORERS[key] = target


def scorer_class_named(name: str) -> Any:
    """The class registered as ``name`` (imported now if given as ``"module:Class"``)."""
    target = SCORERS[name]
    if isinstance(target, str):
        module, _, attr = target.partition(":")
        target = getattr(importlib.import_module(module), attr)
        SCORERS[name] = target
    return target


@dataclass(frozen=True)
class ScorerChoice:
    """What a scorer setting names, read without loading anything.

    Attributes:
        name: the registry name, ``"base"``, or ``""`` when the class is picked by the checkpoint's model type.
        checkpoint: the checkpoint to load (hub id or folder); ``""`` when the scorer loads none.
    """

    name: str
    checkpoint: str

    @property
    def loads_checkpoint(self) -> bool:
        """Whether a checkpoint must be found and loaded for this scorer (what preflight checks)."""
        return bool(self.checkpoint)

    @property
    def is_base(self) -> bool:
        return self.name == BASE

    @property
    def uses_clue(self) -> bool:
        """Whether the scorer reads the clue (``True`` for checkpoints and ``base``: every model scorer does)."""
        if self.name in ("", BASE):
            return True
        return bool(getattr(scorer_class_named(self.name), "uses_clue", True))


def read_scorer(spec: str | os.PathLike[str]) -> ScorerChoice:
    """Read a scorer setting (see the module docstring).

    Raises:
        ConfigError: an empty setting, ``name:`` without a checkpoint, a checkpoint given to a scorer that takes
            none, or a scorer that needs a checkpoint named without one.
    """
    text = os.fspath(spec).strip()
    key = text.lower()
    if not key:
        raise ConfigError("scorer name is empty; use 'uniform', 'base', a model id or a checkpoint folder")
    if key == BASE:
        return ScorerChoice(BASE, "")
    head, sep, rest = text.partition(":")
    name = head.strip().lower()
    if sep and name in SCORERS:
        cls = scorer_class_named(name)
        if not getattr(cls, "needs_checkpoint", True):
            raise ConfigError(f"scorer {name!r} takes no checkpoint; use --scorer {name}")
        if not rest.strip():
            raise ConfigError(f"scorer {name!r} needs a checkpoint: {name}:<model id or folder>")
        return ScorerChoice(name, rest.strip())
    if key in SCORERS:
        cls = scorer_class_named(key)
        if getattr(cls, "needs_checkpoint", True):
            raise ConfigError(f"scorer {key!r} needs a checkpoint: {key}:<model id or folder>")
        return ScorerChoice(key, "")
    return ScorerChoice("", text)


def scorer_class(spec: str | os.PathLike[str], *, trust_remote_code: bool = False) -> tuple[Any, str]:
    """``(class, checkpoint)`` for a scorer setting; a bare checkpoint's ``model_type`` picks the class (only its
    config is read).

    Raises:
        ConfigError: ``"base"`` (it needs the loaded base model), and the errors of :func:`read_scorer`.
        UnsupportedModelError: a checkpoint of a family no registered scorer runs.
    """
    choice = read_scorer(spec)
    if choice.is_base:
        raise ConfigError(
            "scorer='base' reuses the loaded answering model; build it with LVLMScorer.from_model(model, processor) "
            "(the pipeline does this), not with load_scorer"
        )
    if choice.name:
        return scorer_class_named(choice.name), choice.checkpoint
    from ..errors import UnsupportedModelError
    from ..models.loading import model_type_of

    family = model_type_of(choice.checkpoint, trust_remote_code=trust_remote_code)
    known: list[str] = []
    for name in SCORERS:
        cls = scorer_class_named(name)
        families = tuple(getattr(cls, "families", ()))
        known += [f for f in families if f not in known]
        if family in families:
            return cls, choice.checkpoint
    raise UnsupportedModelError(
        f"{choice.checkpoint}: model type {family or 'unknown'!r} is not a supported scorer; use a checkpoint of type "
        f"{', '.join(known)}, or one of {', '.join(n for n in SCORERS if not _needs_checkpoint(n))}"
    )


def _needs_checkpoint(name: str) -> bool:
    return bool(getattr(scorer_class_named(name), "needs_checkpoint", True))


__all__ = ["SCORERS", "BASE", "register_scorer", "scorer_class_named", "ScorerChoice", "read_scorer", "scorer_class"]
