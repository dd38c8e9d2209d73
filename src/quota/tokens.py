"""Counting the positions per-frame grids take in a language model's input: feature tokens and newline
tokens. Plain integers, no torch: :mod:`quota.types` counts a :class:`~quota.types.Plan`'s tokens with
these, and :mod:`quota.assign` re-exports them next to the allocation they count.
"""

from __future__ import annotations

from typing import Any, Sequence

from .config import NEWLINE_LAYOUTS
from .errors import ConfigError

Grid = tuple[int, int]

#: The newline layouts :func:`token_count` knows (the config's ``auto`` resolves to one of them).
NEWLINE_POLICIES = NEWLINE_LAYOUTS


def _check_newline(newline: str) -> None:
    if newline not in NEWLINE_POLICIES:
        raise ConfigError(f"newline={newline!r} is not one of {', '.join(NEWLINE_POLICIES)}")


def _kept(grids: Sequence[Grid]) -> list[Grid]:
    return [(int(h), int(w)) for h, w in grids if int(h) * int(w) > 0]


def token_count(grids: Sequence[Grid] | Any, newline: str | None = None) -> int:
    """Positions the language model sees for these grids: feature tokens plus newline tokens.

    Args:
        grids: per-frame grids (``(0, 0)`` frames count for nothing), or a :class:`~quota.types.Plan`
            (its grids, and its recorded newline policy when ``newline`` is not given).
        newline: ``"none"``: feature tokens only; ``"row"``: one newline token after every grid row
            (original LLaVA-Video); ``"frame"``: one after every kept frame; ``"video"``: one after
            the whole video (Hugging Face LLaVA-OneVision). ``None``: the plan's policy, or ``"none"``
            for a plain list of grids.
    """
    if hasattr(grids, "grids") and hasattr(grids, "budget"):  # a Plan (duck-typed: types imports this module)
        if newline is None:
            newline = getattr(grids, "newline", None) or "none"
        grids = grids.grids
    if newline is None:
        newline = "none"
    _check_newline(newline)
    kept = _kept(grids)
    return sum(h * w for h, w in kept) + newline_count(kept, newline)


def newline_count(grids: Sequence[Grid], newline: str) -> int:
    """Newline tokens alone for these grids under a policy (see :func:`token_count`)."""
    _check_newline(newline)
    kept = _kept(grids)
    if newline == "row":
        return sum(h for h, _ in kept)
    if newline == "frame":
        return len(kept)
    if newline == "video":
        return 1 if kept else 0
    return 0


__all__ = ["token_count", "newline_count", "NEWLINE_POLICIES", "Grid"]
