"""The question a scorer asks about every frame, and the letters of its two options.

The paper's scorer reads the probability that a vision-language model answers "yes" to a
two-option question about each frame; :func:`scoring_question` writes that question from the
decoupling result (:class:`~quota.types.Clue`). Option :data:`YES_LETTER` is yes,
:data:`NO_LETTER` is no.
"""

from __future__ import annotations

from ..errors import ConfigError
from ..reference import frame_question, reference_query
from ..types import Clue

#: Option letter of the "yes" answer in the scoring question (its probability is the frame score).
YES_LETTER = "A"
#: Option letter of the "no" answer in the scoring question.
NO_LETTER = "B"

_ANSWER_LINE = f"Reply with the letter {YES_LETTER} or {NO_LETTER} only."


def scoring_question(clue: Clue | None, question: str | None = None) -> str:
    """The two-option question the scorer asks about every frame.

    With objects: does this frame contain any of them (event mode: show any of the events)?
    Without (``clue`` is ``None`` or has no objects, or the decoupling failed): does this frame hold
    enough to answer the original question? Option :data:`YES_LETTER` is yes, :data:`NO_LETTER` is
    no; the frame score is the probability of :data:`YES_LETTER`.

    ``clue.prompts`` picks the wording. ``"paper"`` (the default): the reference's two sentences
    (:func:`quota.reference.frame_question`), objects exactly as the clue holds them, and without objects
    the reference's query (the question with the clue's options on one line). ``"quota"``: our wording
    below, where the user's question and the objects are folded onto one line each, so text that holds
    option lines of its own (a benchmark question with its choices) cannot add options to it.

    Args:
        clue: the decoupling result, or ``None``.
        question: the user's question; ``None`` uses ``clue.question`` (set by
            :class:`~quota.decouple.Decoupler`).
    """
    if question is None:
        question = getattr(clue, "question", None) if clue is not None else None
        if not question:
            raise ConfigError(
                "scoring_question needs the user's question: pass it, or a Clue made by Decoupler"
            )
    if not isinstance(question, str):
        raise ConfigError(f"the question must be a string, got {type(question).__name__}; pass the question text")
    if clue is None or clue.prompts == "paper":
        options = clue.options if clue is not None else ()
        return frame_question(clue.objects if clue is not None else None, reference_query(question, options))
    q = " ".join(question.split())
    objects = None if clue is None else [" ".join(o.split()) for o in clue.objects or () if o.strip()]
    options = f"{YES_LETTER}. Yes\n{NO_LETTER}. No"
    if objects:
        sep = "; " if any("," in o for o in objects) else ", "
        listed = sep.join(objects)
        if clue is not None and clue.mode == "event":
            ask = f"Does this frame show any of the following taking place: {listed}?"
        else:
            ask = f"Does this frame contain any of the following: {listed}?"
        return f"{ask}\n{options}\n{_ANSWER_LINE}"
    return (
        f"Here is a question about a video: {q}\n"
        "Does this single frame hold enough information to help answer that question?\n"
        f"{options}\n{_ANSWER_LINE}"
    )


__all__ = ["YES_LETTER", "NO_LETTER", "scoring_question"]
