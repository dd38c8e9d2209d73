"""Question and multiple-choice helpers: the check every entry point makes on a question, option
letters, the option block of a prompt, and reading the chosen letter back out of a model's free text.

Model output is treated as data: it is only matched with regular expressions.
"""

from __future__ import annotations

import re
import string
from typing import Any, Mapping, Sequence

from .errors import ConfigError

LETTERS = string.ascii_uppercase

_PREFIX = re.compile(r"^\s*(?:\(\s*([A-Za-z])\s*\)|([A-Za-z])\s*[.):：]|\[([A-Za-z])\])\s*")


def check_question(question: Any, options: Sequence[str] | Mapping[str, str] | None = None) -> None:
    """Raise :class:`ConfigError` unless ``question`` is a non-empty string and ``options`` (if any) can be
    lettered (:func:`option_lines`: a list, not a single string; at most 26). The one check of a question that
    the pipeline, the command line and the demo make before any work."""
    if not isinstance(question, str) or not question.strip():
        raise ConfigError("the question must be a non-empty string")
    option_lines(options)


def option_letters(n: int) -> str:
    """The first ``n`` option letters (``option_letters(4) == "ABCD"``)."""
    if not 0 <= n <= len(LETTERS):
        raise ConfigError(f"a question can have between 0 and {len(LETTERS)} options, got {n}")
    return LETTERS[:n]


def strip_option_prefix(text: str, letter: str | None = None) -> str:
    """An option's text without a leading letter label (``"A. cat"``, ``"(A) cat"``, ``"A) cat"``).

    With ``letter`` given, only that letter's label is removed, so an option that happens to start
    with a capital word ("A cat") keeps it.
    """
    text = str(text).strip()
    match = _PREFIX.match(text)
    if match is None:
        return text
    found = next(g for g in match.groups() if g)
    if letter is not None and found.upper() != letter.upper():
        return text
    return text[match.end():].strip()


def option_lines(options: Sequence[str] | Mapping[str, str] | None) -> list[str]:
    """Options lettered by position, as prompt lines (``"A. cat"``); ``None`` gives no lines.

    An option that already carries its own position's label (``"A. cat"``, ``"(A) cat"``) is not
    labelled twice; a label of another letter is kept as part of the text. A mapping is read as
    ``{letter: text}`` and keeps its letters. Runs of white space in an option become one space.

    Raises:
        ConfigError: a single string instead of a list, or more options than letters.
    """
    if options is None:
        return []
    if isinstance(options, str):
        raise ConfigError("options must be a list of strings (one per option), not a single string")
    if isinstance(options, Mapping):
        return [f"{str(k).strip()}. {' '.join(str(v).split())}" for k, v in options.items()]
    letters = option_letters(len(options))
    return [f"{letter}. {' '.join(strip_option_prefix(opt, letter).split())}" for letter, opt in zip(letters, options)]


def check_option_labels(options: Sequence[str] | None, name: str = "options") -> None:
    """Refuse options whose own capital-letter label is not the letter of their position (``"C. x" "A. y"``):
    quota letters options in the order given, so such a list would be re-lettered behind the user's back.

    Raises:
        ConfigError: naming the first such option, its label and its position's letter.
    """
    if options is None or isinstance(options, (str, Mapping)):
        return
    letters = option_letters(len(options))
    for position, (letter, text) in enumerate(zip(letters, options), start=1):
        match = _PREFIX.match(str(text))
        found = next((g for g in match.groups() if g), None) if match else None
        if found is not None and found.isupper() and found != letter:
            raise ConfigError(
                f"{name}: option {position} ({' '.join(str(text).split())!r}) is labelled {found} but options are "
                f"lettered in the order given, so it would be {letter}; list them in order A, B, C ... or give "
                "the texts without letters")


def format_options(options: Sequence[str] | Mapping[str, str] | None) -> str:
    """Options as one prompt block: :func:`option_lines` joined by newlines (``"A. first\nB. second"``)."""
    return "\n".join(option_lines(options))


# Phrases that announce the answer; what follows them is read first.
_CUES = re.compile(
    r"(?:the\s+)?(?:best|correct|right|final)?\s*(?:answer|option|choice)\s*(?:is|would\s+be|:|：|=)?\s*[:：]?\s*",
    re.IGNORECASE,
)


def _letter_at(text: str, pos: int, letters: str, allow_lower: bool) -> str | None:
    """The option letter starting at ``text[pos]``, if it stands there as a label."""
    rest = text[pos:]
    match = re.match(r"\(\s*([A-Za-z])\s*\)", rest) or re.match(r"\[\s*([A-Za-z])\s*\]", rest)
    if match:
        letter = match.group(1)
        if letter.upper() in letters and (letter.isupper() or allow_lower):
            return letter.upper()
        return None
    match = re.match(r"([A-Za-z])(?![A-Za-z0-9])", rest)
    if not match:
        return None
    letter = match.group(1)
    if letter.upper() not in letters:
        return None
    after = rest[match.end():]
    followed_by_word = re.match(r"\s+[A-Za-z]", after) is not None
    if letter.islower():
        # a lone lowercase letter counts only when no word follows it ("b", "b.", "b, since")
        return letter.upper() if allow_lower and not followed_by_word else None
    # "A man ..." / "I think ..." are words, not options
    if letter in "AI" and re.match(r"\s+[a-z]", after):
        return None
    return letter


def extract_choice(text: str | None, letters: str = "ABCD", options: Sequence[str] | None = None) -> str | None:
    """The option letter a free-text answer picks, or ``None`` when it names none.

    Understands a bare letter (``"B"``, ``"b"``, ``" (C)"``), a labelled option (``"B. The man"``),
    announcements (``"Answer: C"``, ``"The answer is D."``, ``"Best option: (A)"``), and, when
    ``options`` is given and no letter is found, the text of exactly one option.

    Args:
        text: the model's output.
        letters: the valid letters, in order (``"ABCDE"`` for five options).
        options: option texts (optional), for answers that quote an option instead of a letter.
    """
    if text is None:
        return None
    letters = "".join(letters).upper()
    s = str(text).strip()
    if not s:
        return None
    # 1. the whole answer is a letter, possibly with brackets or punctuation around it
    bare = s.strip(" \t\n\"'`*.,:;!()[]{}<>").strip()
    if len(bare) == 1 and bare.upper() in letters:
        return bare.upper()
    # 2. an announcement phrase followed by a letter
    for cue in _CUES.finditer(s):
        if cue.end() == cue.start():
            continue
        letter = _letter_at(s, cue.end(), letters, allow_lower=True)
        if letter:
            return letter
    # 3. the answer opens with a label ("B. The man", "(C) ...", "D)" or "A: ...")
    match = _PREFIX.match(s)
    if match:
        found = next(g for g in match.groups() if g)
        if found.upper() in letters:
            return found.upper()
    # 4. a letter in brackets anywhere
    for match in re.finditer(r"\(\s*([A-Z])\s*\)", s):
        if match.group(1) in letters:
            return match.group(1)
    # 5. the first capital letter standing alone as a word
    for match in re.finditer(r"(?<![A-Za-z0-9'])([A-Z])(?![A-Za-z0-9'])", s):
        letter = _letter_at(s, match.start(), letters, allow_lower=False)
        if letter:
            return letter
    # 6. the text of exactly one option
    if options:
        low = s.lower()
        hits = [
            letters[i]
            for i, option in enumerate(options[: len(letters)])
            if str(option).strip() and str(option).strip().lower().rstrip(".") in low
        ]
        if len(hits) == 1:
            return hits[0]
    return None


__all__ = ["LETTERS", "check_question", "option_letters", "strip_option_prefix", "option_lines", "check_option_labels",
           "format_options", "extract_choice"]
