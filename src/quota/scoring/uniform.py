"""The baseline scorer: every frame equally relevant."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..types import Clue, Frames
from .base import as_frames


class UniformScorer:
    """Gives every frame the score 1.0, so every frame gets the same weight. Never loads a model.

    With equal weights the token assignment spreads the budget evenly, which is the stock model's
    behaviour (up to the near-square grid rounding); useful as the baseline in ablations.
    """

    model_id = "uniform"
    #: Runs no model (the registry then takes ``--scorer uniform`` with no checkpoint).
    needs_checkpoint = False
    #: The scores do not depend on the clue, so the pipeline runs no query decoupling for this scorer.
    uses_clue = False
    #: The constructor takes no options.
    options: tuple[str, ...] = ()

    @staticmethod
    def options_from_config(config: Any) -> dict[str, Any]:
        """No settings concern this scorer."""
        return {}

    def reconfigured(self, config: Any) -> "UniformScorer":
        return self

    def score(self, frames: Frames | np.ndarray, clue: Clue | None = None) -> np.ndarray:
        """Ones, float64 ``[T]``; ``clue`` is ignored. Bad frames raise :class:`~quota.errors.FramesError`."""
        return np.ones(len(as_frames(frames)), dtype=np.float64)

    def __repr__(self) -> str:
        return "UniformScorer()"

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, UniformScorer)

    def __hash__(self) -> int:
        return hash(UniformScorer)


__all__ = ["UniformScorer"]
