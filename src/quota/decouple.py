"""Query decoupling: from a question to the things worth looking for in each frame.

QuoTA first asks the base video-language model, with text only, what a question needs to be found
in the video. This module holds the two parts of that step (the question the scorer then asks about every frame,
:func:`quota.scoring.question.scoring_question`, lives with the scorers):

* :func:`build_decouple_prompt` writes a three-step chain-of-thought prompt (need anything? which?
  keep only concrete ones) with worked examples, in an entity-centric (default) or event-centric form.
* :func:`parse_clue` turns whatever text the model wrote into a :class:`~quota.types.Clue`. It never
  evaluates the text: a small hand-written scanner reads lists, quoted strings and bare words, and
  everything it returns is bounded (:data:`MAX_OBJECTS` items of at most :data:`MAX_OBJECT_CHARS`
  characters) and filtered.

:class:`Decoupler` wires a text-in, text-out callable (normally the base model without video) to the
prompt and the parser. See ``docs/decouple.md`` for the grammar the parser accepts.
"""

from __future__ import annotations

import inspect
import logging
import re
import unicodedata
from dataclasses import replace
from typing import Any, Callable, Mapping, Sequence

from .config import CLUE_PARSERS, DECOUPLE_MODES, PROMPT_STYLES
from .choices import option_lines
from .errors import ConfigError, ModelError
from .pyliteral import read_string_list
from .reference import DECOUPLE_MAX_NEW_TOKENS, decouple_prompt, reference_query
from .types import Clue

logger = logging.getLogger(__name__)

#: Most objects (or events) a clue keeps; later ones are dropped.
MAX_OBJECTS = 16
#: Most characters in one object (or event) name.
MAX_OBJECT_CHARS = 64
#: Most characters of raw model text kept in ``Clue.reasoning`` and read by the parser.
MAX_REASONING_CHARS = 20_000

#: Modes that have a prompt (``"none"`` means no chain of thought at all).
PROMPT_MODES = ("entity", "event")


# The line that separates our prompt from the model's answer; text before its last occurrence is
# an echo of the prompt and is skipped by the parser.
PROMPT_SENTINEL = "Now it is your turn."


# --------------------------------------------------------------------------------------------
# Prompt
# --------------------------------------------------------------------------------------------

_ENTITY_INTRO = """\
You are getting ready to answer a question about a long video. Before anyone watches it, decide what \
is worth searching for in its frames. You cannot see the video: work from the question, and its \
options if there are any, alone.

Think in three steps and write each one on its own line.
Step 1: Does answering the question depend on spotting particular physical things in the video? \
Write yes or no.
Step 2: If yes, list the things that would have to be spotted. If no, write null.
Step 3: From the Step 2 list keep only concrete physical entities: people, animals, objects, \
vehicles, buildings, places, visible text. Remove words about the recording itself (video, clip, \
scene, frame) and remove colours, positions, numbers or actions that stand on their own. Write what \
is left as a JSON list of short strings, or null if nothing is left.

End with the Step 3 line, for instance Step 3: ["cat", "sofa"] or Step 3: null, and write nothing \
after it.

Worked examples:

Example 1
Question: What colour is the umbrella that the woman holds while she crosses the bridge?
Step 1: yes
Step 2: ["woman", "umbrella", "bridge", "colour"]
Step 3: ["woman", "umbrella", "bridge"]

Example 2
Question: Which word best describes the overall atmosphere of the video?
Options:
A. tense
B. joyful
C. calm
D. gloomy
Step 1: no
Step 2: null
Step 3: null

Example 3
Question: How many times does the dog jump over the wooden fence in the park?
Step 1: yes
Step 2: ["dog", "wooden fence", "park", "jumping", "number of jumps"]
Step 3: ["dog", "wooden fence", "park"]
"""

_EVENT_INTRO = """\
You are getting ready to answer a question about a long video. Before anyone watches it, decide which \
moments are worth searching for in its frames. You cannot see the video: work from the question, and \
its options if there are any, alone.

Think in three steps and write each one on its own line.
Step 1: Does answering the question depend on spotting particular events or actions in the video? \
Write yes or no.
Step 2: If yes, list the events or actions that would have to be spotted. If no, write null.
Step 3: From the Step 2 list keep only events a camera could capture: someone or something doing \
something visible. Remove events about the recording itself (the video starting, a scene cut) and \
abstract ideas such as reasons or feelings. Write each kept event as a short phrase of at most eight \
words, as a JSON list of strings, or null if nothing is left.

End with the Step 3 line, for instance Step 3: ["a man opening a door"] or Step 3: null, and write \
nothing after it.

Worked examples:

Example 1
Question: What does the chef do right after cracking the eggs?
Step 1: yes
Step 2: ["chef cracking eggs", "whatever the chef does next"]
Step 3: ["chef cracking eggs into a bowl"]

Example 2
Question: Why did the crowd start cheering?
Options:
A. a goal was scored
B. the band came on stage
C. fireworks went off
Step 1: yes
Step 2: ["crowd cheering", "goal being scored", "band walking on stage", "fireworks going off", \
"the reason"]
Step 3: ["crowd cheering", "goal being scored", "band walking on stage", "fireworks going off"]

Example 3
Question: What is this video mainly about?
Step 1: no
Step 2: null
Step 3: null
"""

_INTROS = {"entity": _ENTITY_INTRO, "event": _EVENT_INTRO}



def _check_mode(mode: str, allowed: Sequence[str] = DECOUPLE_MODES) -> str:
    if mode not in allowed:
        raise ConfigError(f"decoupling mode {mode!r} is not one of {', '.join(allowed)}")
    return mode


def _check_question(question: Any) -> str:
    if not isinstance(question, str):
        raise ConfigError(
            f"the question must be a string, got {type(question).__name__}; pass the question text"
        )
    return question.strip()


def build_decouple_prompt(
    question: str,
    options: Sequence[str] | Mapping[str, str] | None = None,
    mode: str = "entity",
) -> str:
    """The chain-of-thought prompt that asks the model what to look for.

    Args:
        question: the user's question about the video.
        options: the answer options of a multiple-choice question, if any.
        mode: ``"entity"`` (physical things, the paper's default) or ``"event"`` (events and actions).

    Returns:
        The prompt text. The model is asked to end with a line ``Step 3: [...]`` or ``Step 3: null``,
        which :func:`parse_clue` reads.
    """
    _check_mode(mode, PROMPT_MODES)
    q = _check_question(question)
    parts = [_INTROS[mode], PROMPT_SENTINEL, f"Question: {q}"]
    lines = option_lines(options)
    if lines:
        parts.append("Options:\n" + "\n".join(lines))
    parts.append("Write Step 1, Step 2 and Step 3 now.")
    return "\n".join(parts)


# --------------------------------------------------------------------------------------------
# Parser
# --------------------------------------------------------------------------------------------
#
# Our filters (not the paper's): an item is dropped when every word of it is in these lists, so a
# colour, a position or a word about the recording never becomes a thing to look for on its own.

#: Words about the recording, or about nothing in particular (both modes).
GENERIC_WORDS = frozenset(
    """video videos clip clips frame frames scene scenes image images footage shot shots picture
    pictures movie film recording recordings content visual visuals thing things object objects item
    items entity entities something anything everything stuff question answer answers option options
    time moment moments timestamp part segment segments sequence null none nil n/a na nothing empty
    unknown other others etc""".split()
)
#: Generic words of the event mode (the words above and names of events in general).
GENERIC_EVENT_WORDS = GENERIC_WORDS | frozenset("event events action actions activity activities happening".split())
#: Colours and brightness (entity mode): "red" alone is not a thing, "red car" is.
COLOUR_WORDS = frozenset(
    """red orange yellow green blue purple violet pink brown black white gray grey silver gold golden
    beige cyan magenta turquoise colour color colours colors dark light bright""".split()
)
#: Positions, order, counts and sizes (entity mode).
POSITION_WORDS = frozenset(
    """left right top bottom center centre middle front back behind above below background foreground
    beginning end start ending position positions location side sides corner upper lower near far
    inside outside first last next previous number count amount size shape""".split()
)
#: Articles, determiners, prepositions, conjunctions and possessives.
FILLER_WORDS = frozenset(
    "a an the this that these those some any of in on at to from with and or its their his her".split()
)
#: Words that mark an unquoted item as a sentence rather than a name (event mode; the entity mode
#: adds :data:`PROSE_VERBS`).
PROSE_WORDS = frozenset(
    """i we you me my our your think believe should would could might must need needs answer question
    because therefore so what why how when where who whom whose which whether if""".split()
)
#: Auxiliary verbs: prose in an entity name, fine inside an event ("a man is running").
PROSE_VERBS = frozenset("is are was were be been does do did has have".split())
#: Words that start a negated item ("no people"), dropped.
NEGATIONS = frozenset({"no", "not", "none", "without"})
#: Words that make ``word(s):`` at the start of a bare line a label to skip ("Objects: a, b").
LABEL_WORDS = frozenset(
    "object objects entity entities thing things item items event events list answer result output keywords "
    "targets".split()
)

# Most words in an unquoted (bare) item: longer runs are taken for prose, not names.
_MAX_BARE_WORDS = {"entity": 4, "event": 8}
# Raw items and bracket lists scanned before the scanner stops (keeps hostile input cheap).
_MAX_RAW_ITEMS = 256
_MAX_LIST_CANDIDATES = 32

# A null word opening a section, before any bracket or quote (``["none of it", "dog"]`` is a list).
_STRONG_NULL = re.compile(r"^[^\w\[\"'“‘]*(?:null|none|nil|n\s*/\s*a|nothing)\b", re.IGNORECASE)
_WEAK_NULL = re.compile(r"^[^\w\[\"'“‘]*no\b", re.IGNORECASE)
_YES_NO = re.compile(r"^\W*(yes|no)\b", re.IGNORECASE)
_ARTICLE = re.compile(r"^(?:a|an|the)\s+", re.IGNORECASE)
# Characters no object name needs; a quoted item holding one is taken for code or markup.
_FORBIDDEN = re.compile(r"[_()\[\]{}<>=;$`\\|@^~*\"]")
_HAS_LETTER = re.compile(r"[^\W\d_]")
# An unquoted name: words of letters (any script) or digits, joined inside a word by - ' ’ . / &.
_PIECE = r"(?:[^\W\d_]+|\d+)(?:[-'’./&](?:[^\W\d_]+|\d+))*"
_NAME = re.compile(rf"{_PIECE}(?: {_PIECE})*")
_LETTERS = re.compile(r"[^\W\d_]+")
_BULLET = re.compile(r"^\s*(?:[-*•+]|\d{1,2}[.)])\s+(.*\S)\s*$")
_BULLET_PREFIX = re.compile(r"^(?:[-•+]|\d{1,2}[.)])\s+")
_SENTENCE_END = re.compile(r"[.!?](?:\s|$)")
# Words separated by spaces (one way to split a run of letters: matching stays linear in the line's length).
_LABEL = re.compile(r"^((?:[^\W\d_]+[ \t]+){0,4}[^\W\d_]+)[ \t]*:\s*")

_STEP_WORDS = {"1": 1, "2": 2, "3": 3, "one": 1, "two": 2, "three": 3}
_MARKER = re.compile(
    r"\bstep[ \t]*(?P<n>[123]|one|two|three)\b(?:[^:\n\[\]]{0,40}?:|[ \t]*[-–—.)]|[ \t]*$)"
    r"|\bfinal(?:[ \t]+(?:answer|list|objects|entities|events|result))?[ \t]*:",
    re.IGNORECASE | re.MULTILINE,
)
_STOP_LINE = re.compile(r"^[ \t>#*]*(?:question\s*:|example\b)", re.IGNORECASE | re.MULTILINE)
_SENTINEL = re.compile(re.escape(PROMPT_SENTINEL), re.IGNORECASE)
_FENCE = re.compile(r"^[ \t]*```[^\n]*$", re.MULTILINE)
# Full-width CJK punctuation read as its ASCII counterpart (、 separates list items in Chinese and
# Japanese; 「」 and 『』 quote).
_FULL_WIDTH = str.maketrans({"［": "[", "］": "]", "，": ",", "、": ",", "；": ";", "：": ":", "（": "(", "）": ")",
                             "「": "“", "」": "”", "『": "“", "』": "”"})

_OPEN_QUOTES = {'"': '"', "'": "'", "“": "”\"", "‘": "’'", "”": "”\"", "’": "’'"}
_CLOSE_FOLLOWERS = ",]\n\r\"'“”‘’"

# A raw item: its text and whether it was quoted.
_Raw = tuple[str, bool]


def _coerce_text(text: Any) -> str:
    if text is None:
        return ""
    if isinstance(text, str):
        return text
    if isinstance(text, (bytes, bytearray)):
        return bytes(text[: 4 * MAX_REASONING_CHARS]).decode("utf-8", errors="replace")
    if isinstance(text, (list, tuple)):
        return _coerce_text(text[0]) if text else ""
    return str(text)


def _read_escape(s: str, j: int) -> tuple[str, int]:
    """Decode the backslash escape at ``s[j]``; returns the text and the index after it."""
    if j + 1 >= len(s):
        return "", j + 1
    c = s[j + 1]
    if c in "nrt":
        return " ", j + 2
    if c == "u":
        digits = s[j + 2 : j + 6]
        if len(digits) == 4 and all(ch in "0123456789abcdefABCDEF" for ch in digits):
            code = int(digits, 16)
            return ("" if 0xD800 <= code <= 0xDFFF else chr(code)), j + 6
        return "", j + 2
    return c, j + 2


def _scan_quoted(s: str, i: int) -> tuple[str | None, int]:
    """Read the quoted string opening at ``s[i]``.

    A closing quote counts only when followed (after spaces) by a separator, a bracket, another
    quote or the end, so apostrophes inside single-quoted names survive (``'driver's seat'``).
    Returns ``(None, index)`` for a string cut off by a line break or the end of the text, or one
    far too long for a name.
    """
    closers = _OPEN_QUOTES[s[i]]
    n = len(s)
    j = i + 1
    buf: list[str] = []
    while j < n and len(buf) <= 4 * MAX_OBJECT_CHARS + 256:
        c = s[j]
        if c == "\\":
            piece, j = _read_escape(s, j)
            buf.append(piece)
            continue
        if c in "\n\r":
            return None, j
        if c in closers:
            k = j + 1
            while k < n and s[k] in " \t":
                k += 1
            if k >= n or s[k] in _CLOSE_FOLLOWERS:
                return "".join(buf), j + 1
        buf.append(c)
        j += 1
    while j < n and s[j] not in "\n\r":  # too long for a name: skip the rest of the line
        j += 1
    return None, j


def _scan_list(s: str, i: int) -> tuple[list[_Raw], bool, int]:
    """Read the bracketed list opening at ``s[i] == "["`` (nested brackets flattened).

    Returns the raw items, whether the closing bracket was found, and the index after the list.
    """
    n = len(s)
    items: list[_Raw] = []
    j = i + 1
    depth = 1
    while j < n and len(items) < _MAX_RAW_ITEMS:
        c = s[j]
        if c in " \t\r\n,":
            j += 1
        elif c in "[]":
            depth += 1 if c == "[" else -1
            j += 1
            if depth == 0:
                return items, True, j
        elif c in _OPEN_QUOTES:
            text, j = _scan_quoted(s, j)
            if text is not None:
                items.append((text, True))
        else:
            k = j
            while k < n and s[k] not in ",]\n\r":
                k += 1
            items.append((s[j:k], False))
            j = k
    return items, False, j


def _one_char_word(text: str) -> bool:
    """A single character that is a word on its own (a CJK ideograph or a Hangul syllable)."""
    return len(text) == 1 and unicodedata.name(text, "").startswith(
        ("CJK UNIFIED IDEOGRAPH", "CJK COMPATIBILITY IDEOGRAPH", "HANGUL SYLLABLE"))


def _is_bare_name(text: str, mode: str) -> bool:
    """Whether unquoted text reads as a name: at most a few words of letters or digits, no prose."""
    if len(text) > MAX_OBJECT_CHARS or len(text.split()) > _MAX_BARE_WORDS[mode]:
        return False
    unmarked = "".join(c for c in text if not unicodedata.category(c).startswith("M"))
    if not _NAME.fullmatch(unmarked):
        return False
    if any(not (run.isupper() or run[1:] == run[1:].lower()) for run in _LETTERS.findall(text)):
        return False  # "xQzT": capitals inside a lower-case word are noise, not a name
    prose = PROSE_WORDS | PROSE_VERBS if mode == "entity" else PROSE_WORDS
    return not any(w.lower() in prose for w in text.split())


def _clean(text: str, quoted: bool, mode: str) -> str | None:
    """One raw item as an object name; ``""`` for a name our filters drop; ``None`` for text that
    is not a name at all."""
    text = " ".join(text.split()).strip(" \t*`'\"“”‘’" if quoted else " \t*`")
    text = _BULLET_PREFIX.sub("", text).rstrip(" .,;:!?")
    if len(text) > MAX_OBJECT_CHARS and quoted:  # cut a long quoted name at a word
        cut = text[:MAX_OBJECT_CHARS]
        space = cut.rfind(" ")
        text = (cut[:space] if space >= MAX_OBJECT_CHARS // 2 else cut).rstrip(" .,;:!?-")
    if (len(text) < 2 and not _one_char_word(text)) or not _HAS_LETTER.search(text):
        return None
    if _FORBIDDEN.search(text) if quoted else not _is_bare_name(text, mode):
        return None
    words = [w for w in (w.strip(".,'’!?:/-").lower() for w in text.split()) if w]
    if not words or words[0] in NEGATIONS:
        return ""
    if mode == "entity":
        text = _ARTICLE.sub("", text)
        ignorable = GENERIC_WORDS | COLOUR_WORDS | POSITION_WORDS | FILLER_WORDS
    else:
        ignorable = GENERIC_EVENT_WORDS | FILLER_WORDS
    if all(w in ignorable for w in words) or (len(text) < 2 and not _one_char_word(text)):
        return ""
    return text


def _names(items: Sequence[_Raw], mode: str, strict: bool = False) -> list[str] | None:
    """The object names of raw items: cleaned, deduplicated case-insensitively (first kept), at
    most :data:`MAX_OBJECTS`. An item that is not a name is skipped, except that with ``strict``
    an unquoted one makes the whole list ``None`` (text without step markers with one part that is
    no name is not a list of names)."""
    out: list[str] = []
    seen: set[str] = set()
    for text, quoted in items:
        name = _clean(text, quoted, mode)
        if name is None and strict and not quoted:
            return None
        if name and name.casefold() not in seen:
            seen.add(name.casefold())
            out.append(name)
            if len(out) >= MAX_OBJECTS:
                break
    return out


def _bare_items(line: str, cut_sentence: bool) -> list[_Raw]:
    """Items of one unbracketed line: ``dog, cat`` / ``Objects: dog; cat.`` / ``("dog", "cat")``."""
    line = line.strip()
    label = _LABEL.match(line)
    if label and any(w.lower() in LABEL_WORDS for w in label.group(1).split()):
        line = line[label.end():]
    end = _SENTENCE_END.search(line) if cut_sentence else None
    line = (line[: end.start()] if end else line).strip()
    if len(line) >= 2 and line[0] in "({" and line[-1] in ")}":
        line = line[1:-1]
    parts = re.split(r"[,;]", line)
    if len(parts) > 1:  # "a, b and c": the last part holds two names
        parts[-1:] = re.split(r"\s+and\s+", parts[-1], maxsplit=1)
    parts = (re.sub(r"^(?:and|or)\s+", "", part.strip(), flags=re.IGNORECASE) for part in parts[:_MAX_RAW_ITEMS])
    return [_raw_item(part) for part in parts if part]


def _raw_item(part: str) -> _Raw:
    """``(text, quoted)`` of one list part: quoted when the quotes wrap the whole part."""
    part = part.strip()
    quoted = len(part) >= 2 and part[0] in _OPEN_QUOTES and part[-1] in _OPEN_QUOTES[part[0]]
    return (part[1:-1], True) if quoted else (part, False)


def _read_section(s: str, mode: str, strict: bool = False) -> tuple[str, list[str], bool]:
    """Read one section of model text (what follows a ``Step N:`` marker, or the whole text).

    Returns ``(kind, names, complete)``: ``kind`` is ``"list"`` (names found), ``"null"`` (the text
    says there is nothing to look for) or ``"none"`` (the text says neither); ``complete`` is false
    for a list cut off before its closing bracket. ``strict`` (text without step markers) reads
    only closed lists of quoted strings, bullet lists and single lines whose every part is a name.
    """
    s = _strip_section_start(s)
    if not s:
        return "none", [], True
    if _STRONG_NULL.match(s):
        return "null", [], True
    # Bracketed lists: the first that gives a name wins.
    saw_list, all_closed = False, True
    start, tries = s.find("["), 0
    while start != -1 and tries < _MAX_LIST_CANDIDATES:
        tries += 1
        raw, closed, end = _scan_list(s, start)
        quoted = [item for item in raw if item[1]]
        if not strict or (closed and len(quoted) == len(raw)):
            names = _names(quoted or raw, mode, strict)
            saw_list, all_closed = True, all_closed and closed
            if names:
                return "list", names, closed
        start = s.find("[", max(end, start + 1))
    if saw_list:  # lists without a name: null, unless one was cut off (then nothing is known)
        return ("null" if all_closed else "none"), [], all_closed
    if _WEAK_NULL.match(s):
        return "null", [], True
    lines = [line for line in s.splitlines() if line.strip()]
    bullets = [m.group(1) for line in lines if (m := _BULLET.match(line))]
    heading_only = len(lines) == len(bullets) or (len(lines) == len(bullets) + 1 and lines[0].rstrip().endswith(":"))
    if bullets and (heading_only or not strict):
        names = _names([_raw_item(b) for b in bullets[:_MAX_RAW_ITEMS]], mode, strict)
        if names:
            return "list", names, True
    if strict and len(lines) != 1:
        return "none", [], True
    names = _names(_bare_items(lines[0], cut_sentence=not strict), mode, strict)
    return ("list", names, True) if names else ("none", [], True)


def _strip_section_start(s: str) -> str:
    """A section without the colon and dash that may follow its marker. A dash that opens the first of
    several bullet lines is the bullet's own and stays (``Step 3:\\n- cat\\n- dog`` keeps ``cat``)."""
    s = s.strip().lstrip(": \t\n")
    lines = [line for line in s.splitlines() if line.strip()]
    if len(lines) > 1 and _BULLET.match(lines[0]) and _BULLET.match(lines[1]):
        return s
    return s.lstrip(":-–— \t")


def _normalise(text: str) -> str:
    """Drop the prompt echo, code fences and bold markers; unify line breaks and CJK punctuation."""
    last = None
    for last in _SENTINEL.finditer(text):
        pass
    if last is not None:
        text = text[last.end() :]
    text = text.replace("\r\n", "\n").replace("\r", "\n").translate(_FULL_WIDTH)
    text = _FENCE.sub("", text)
    return text.replace("**", "")


def _sections(text: str) -> dict[int, str]:
    """The text after the first ``Step 3`` (or ``Final:``) marker and the steps before it.

    Returns ``{step: section text}``. Text after a ``Question:`` / ``Example`` line that follows the
    first marker is ignored (models sometimes go on to invent another example).
    """
    first = _MARKER.search(text)
    if first is None:
        return {}
    stop = _STOP_LINE.search(text, first.end())
    if stop is not None:
        text = text[: stop.start()]
    marks = []
    for m in _MARKER.finditer(text):
        n = m.group("n")
        marks.append((m.start(), m.end(), _STEP_WORDS[n.lower()] if n else 3))
    found: dict[int, str] = {}
    for k, (_, end, step) in enumerate(marks):
        nxt = marks[k + 1][0] if k + 1 < len(marks) else len(text)
        found[step] = text[end:nxt]  # the latest step 1 / step 2 before the first step 3
        if step == 3:
            break
    return found


def _choose(sections: dict[int, str], mode: str) -> tuple[str, list[str]]:
    """The reading of marked text: Step 3, or Step 2 where Step 3 is missing, unreadable or cut off
    while Step 2 is complete; a ``Step 1: no`` without Step 3 means null."""
    none = ("none", [], True)
    kind3, names3, complete3 = _read_section(sections[3], mode) if 3 in sections else none
    kind2, names2, complete2 = _read_section(sections[2], mode) if 2 in sections else none
    if kind3 == "list" and not complete3 and kind2 == "list" and complete2:
        return kind2, names2
    if kind3 != "none":
        return kind3, names3
    said = _YES_NO.match(sections.get(1, "").strip())
    if said is not None and said.group(1).lower() == "no":
        return "null", []
    return kind2, names2


#: ``Clue.error`` of model text that names no list and does not say null.
UNREADABLE = "the model's reply holds neither a list nor null"


def parse_clue(text: Any, mode: str = "entity") -> Clue:
    """Turn any model output into a :class:`Clue`, without ever evaluating it.

    Reading order: the ``Step 3`` list (or ``Final:``); when Step 3 is missing, unreadable, or a list
    cut off before its closing bracket while Step 2 holds a complete one, the ``Step 2`` list (filtered
    here the way Step 3 should have been); a ``Step 1: no`` with no Step 3 means no objects. Text
    with no step markers must look like an answer as a whole: a closed list of quoted strings,
    bullet lines, or one line whose every comma-separated part is a name (so prose or random text
    with stray brackets and quotes gives no objects). ``null``/``none``/``[]`` mean no objects.

    Args:
        text: the model's output (normally a string; ``None``, bytes and lists are tolerated).
        mode: ``"entity"``, ``"event"`` or ``"none"``. Entity mode also drops colours, positions
            and words about the recording (video, frame, scene ...) that stand alone.

    Returns:
        ``Clue(objects, reasoning, mode, error=...)`` with at most :data:`MAX_OBJECTS` objects of at
        most :data:`MAX_OBJECT_CHARS` characters, deduplicated case-insensitively (first kept), or
        ``objects=None``: with ``error=None`` when the text says nothing needs finding, with
        ``error=UNREADABLE`` when it says neither (the decoupling failed). ``reasoning`` is the raw
        text, cut to :data:`MAX_REASONING_CHARS` characters.
    """
    _check_mode(mode)
    raw = _coerce_text(text)[:MAX_REASONING_CHARS]
    if mode == "none":
        return Clue(objects=None, reasoning=raw, mode="none")
    body = _normalise(raw)
    sections = _sections(body)
    if sections:
        kind, names = _choose(sections, mode)
    else:
        kind, names, _ = _read_section(body, mode, strict=True)
    if kind == "list" and names:
        return Clue(objects=tuple(names[:MAX_OBJECTS]), reasoning=raw, mode=mode)
    return Clue(objects=None, reasoning=raw, mode=mode, error=None if kind == "null" else UNREADABLE)


def answer_complete(text: Any, mode: str = "entity") -> bool:
    """Whether more model text could no longer change what :func:`parse_clue` reads from ``text``.

    True once the first ``Step 3`` (or ``Final:``) section holds a closed bracket list with a usable name,
    or starts with a null word (``null``, ``none`` ...) followed by another character. Text written after
    that point only ever comes after the list the parser takes, so the parsed objects stay the same; the
    one exception is a model that writes the prompt's own sentinel line again after its answer (the
    parser then skips everything before it), which a generation stopped here cannot do. Answers the parser
    reads from bare words or bullet lines are never called complete (a later line could change them), so
    such a generation runs to its token limit as before. Used as the stopping rule of the decoupling step
    (``decouple_early_stop``).
    """
    if mode not in PROMPT_MODES:
        return False
    sections = _sections(_normalise(_coerce_text(text)[:MAX_REASONING_CHARS]))
    if 3 not in sections:
        return False
    section = sections[3].lstrip().lstrip(":-–— \t")
    null = _STRONG_NULL.match(section)
    if null is not None:
        return null.end() < len(section)  # a character after the word: "null" is not "nullable"
    if "[" not in section:
        return False  # bare words or bullets: a later line could still change the reading
    kind, names, complete = _read_section(sections[3], mode)
    return kind == "list" and complete and bool(names)


# --------------------------------------------------------------------------------------------
# The reference's parser (clue_parser="paper")
# --------------------------------------------------------------------------------------------
# MAC-AutoML/QuoTA, quota_pipeline.py: the output is lower-cased; the first "step 1: yes|no" decides
# whether objects are read; then the first "step 3: [...]" (no "]" inside) is the list. The reference
# evaluates that list with Python's eval; we read it with quota.pyliteral, which accepts exactly the
# lists of string literals and refuses everything eval would reject or would run.
_REFERENCE_STEP1 = re.compile(r"step 1: (yes|no)")
_REFERENCE_STEP3 = re.compile(r"step 3: (\[[^\]]*\])")


def parse_reference_clue(text: Any) -> Clue:
    """The objects the reference implementation reads from a decoupling output, without running it.

    Semantics of the reference (``quota_pipeline.py``): lower-case the whole text; take the first match of
    ``step 1: (yes|no)``; if it says ``yes``, take the first match of ``step 3: (\\[[^\\]]*\\])`` and read
    that bracket text as a Python list. A list of strings gives those strings as the objects, exactly (order,
    repeats, spaces and empty strings kept: the reference joins them as they are); an empty list means no
    objects. Everything else gives no objects, as the reference's scorer then asks the no-object question:
    ``Step 1: no`` (``error=None``), and a missing Step 1 or Step 3, or a list that is not a literal list of
    strings (names, calls, numbers, bytes, text ``eval`` would reject), all with ``error=UNREADABLE``.

    Args:
        text: the model's output (``None``, bytes and lists are tolerated as by :func:`parse_clue`).

    Returns:
        ``Clue(objects, reasoning, mode="entity", error=...)``; ``reasoning`` is the raw text cut to
        :data:`MAX_REASONING_CHARS` characters (the reading itself sees the whole text, as the reference).
    """
    raw = _coerce_text(text)
    reasoning = raw[:MAX_REASONING_CHARS]
    out = raw.lower()
    step1 = _REFERENCE_STEP1.search(out)
    if step1 is None:
        return Clue(objects=None, reasoning=reasoning, error=UNREADABLE)
    if step1.group(1) == "no":
        return Clue(objects=None, reasoning=reasoning)
    step3 = _REFERENCE_STEP3.search(out)
    items = read_string_list(step3.group(1)) if step3 is not None else None
    if items is None:
        return Clue(objects=None, reasoning=reasoning, error=UNREADABLE)
    return Clue(objects=tuple(items) or None, reasoning=reasoning)


def reference_answer_complete(text: Any) -> bool:
    """Whether more model text could no longer change what :func:`parse_reference_clue` reads.

    True once the first ``step 1: yes|no`` match says ``no``, or says ``yes`` and a first ``step 3: [...]``
    match exists. Both searches take the first match, and a match once complete stays the first one as text is
    appended (an earlier one would already be complete), so the reading of the full generation equals the
    reading of the text at this point: stopping here is exactly result-neutral.
    """
    out = _coerce_text(text).lower()
    step1 = _REFERENCE_STEP1.search(out)
    if step1 is None:
        return False
    return step1.group(1) == "no" or _REFERENCE_STEP3.search(out) is not None


# --------------------------------------------------------------------------------------------
# Decoupler
# --------------------------------------------------------------------------------------------


def _accepts_max_new_tokens(fn: Callable[..., Any]) -> bool:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "max_new_tokens" or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def _accepts_stop(fn: Callable[..., Any]) -> bool:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "stop" for p in params)


class Decoupler:
    """Runs the chain-of-thought prompt through a text model and parses the answer into a Clue.

    Args:
        generate_text: any callable ``prompt -> text`` (normally the base model, text only). When it
            takes a ``max_new_tokens`` keyword (or ``**kwargs``), ``max_new_tokens`` is passed on.
        mode: ``"entity"`` (default, the paper's), ``"event"``, or ``"none"`` (no chain of thought:
            every call returns ``Clue(objects=None, mode="none")`` without calling the model).
        max_new_tokens: most tokens the model may write for the chain of thought.
        strict: if true, an exception from ``generate_text`` is raised as :class:`ModelError`. If
            false (default), it is logged as a warning and the call returns ``Clue(objects=None)``
            with the error text in ``reasoning``, so one failed decoupling costs a sample its
            objects rather than the sample itself.
        early_stop: when ``generate_text`` takes a ``stop`` keyword (a callable ``text -> bool``, as
            :meth:`quota.models.VideoLMAdapter.generate_text` does), pass the parser's completeness rule
            (:func:`answer_complete` or :func:`reference_answer_complete`) so the generation ends once the
            answer can no longer change (same parsed objects, fewer tokens).
        prompts: ``"paper"`` (the reference's prompt, :func:`quota.reference.decouple_prompt` of the question
            with its options; entity mode only) or ``"quota"`` (ours, :func:`build_decouple_prompt`). The
            clues it returns carry it, so the frame question uses the same wording.
        parser: ``"paper"`` (:func:`parse_reference_clue`; entity mode only) or ``"quota"`` (:func:`parse_clue`).
    """

    def __init__(
        self,
        generate_text: Callable[[str], Any],
        mode: str = "entity",
        max_new_tokens: int = DECOUPLE_MAX_NEW_TOKENS,
        strict: bool = False,
        early_stop: bool = False,
        prompts: str = "paper",
        parser: str = "paper",
    ) -> None:
        if not callable(generate_text):
            raise ConfigError(
                f"generate_text must be a callable prompt -> text, got {type(generate_text).__name__}"
            )
        self.mode = _check_mode(mode)
        if int(max_new_tokens) < 1:
            raise ConfigError(f"max_new_tokens must be at least 1, got {max_new_tokens!r}")
        if prompts not in PROMPT_STYLES or parser not in CLUE_PARSERS:
            raise ConfigError(f"prompts={prompts!r} / parser={parser!r}: choose from {PROMPT_STYLES} / {CLUE_PARSERS}")
        if mode == "event" and "paper" in (prompts, parser):
            raise ConfigError("the reference has no event-centric prompt or parser; use prompts=quota and "
                              "clue_parser=quota with decouple=event")
        self.prompts = prompts
        self.parser = parser
        self.generate_text = generate_text
        self.max_new_tokens = int(max_new_tokens)
        self.strict = bool(strict)
        self._pass_tokens = _accepts_max_new_tokens(generate_text)
        self.early_stop = bool(early_stop) and _accepts_stop(generate_text)

    @classmethod
    def from_config(cls, generate_text: Callable[[str], Any], config: Any, strict: bool = False) -> "Decoupler":
        """A decoupler with the mode and token limit of a :class:`~quota.config.QuotaConfig`."""
        return cls(generate_text, mode=config.decouple, max_new_tokens=config.decouple_max_new_tokens,
                   strict=strict, early_stop=config.decouple_early_stop, prompts=config.prompts,
                   parser=config.clue_parser)

    def prompt(self, question: str, options: Sequence[str] | Mapping[str, str] | None = None) -> str:
        """The prompt this decoupler would send (mode ``"none"`` has none: :class:`ConfigError`)."""
        if self.prompts == "paper":
            _check_mode(self.mode, PROMPT_MODES)
            return decouple_prompt(reference_query(_check_question(question), options))
        return build_decouple_prompt(question, options, mode=self.mode)

    def parse(self, text: Any) -> Clue:
        """The clue this decoupler reads from model text (its parser, its mode)."""
        return parse_reference_clue(text) if self.parser == "paper" else parse_clue(text, mode=self.mode)

    def complete(self, text: Any) -> bool:
        """Whether more text could no longer change :meth:`parse` (the early-stop rule of its parser)."""
        return reference_answer_complete(text) if self.parser == "paper" else answer_complete(text, self.mode)

    def __call__(self, question: str, options: Sequence[str] | Mapping[str, str] | None = None) -> Clue:
        """Decouple one question; see the class docstring for what happens on model failure.

        The returned Clue carries the (stripped) question in ``Clue.question``.
        """
        q = _check_question(question)
        lines = tuple(option_lines(options))
        if self.mode == "none":
            return Clue(objects=None, reasoning="", mode="none", question=q, options=lines, prompts=self.prompts)
        prompt = self.prompt(question, options)
        try:
            extra: dict[str, Any] = {}
            if self.early_stop:
                extra["stop"] = self.complete
            if self._pass_tokens:
                out = self.generate_text(prompt, max_new_tokens=self.max_new_tokens, **extra)
            elif extra:
                out = self.generate_text(prompt, **extra)
            else:
                out = self.generate_text(prompt)
        except Exception as exc:  # the model is outside our control; see `strict`
            message = f"decoupling model failed ({type(exc).__name__}: {exc})"
            if self.strict:
                raise ModelError(
                    f"{message}; check that the text generator works on its own, or construct the "
                    "Decoupler with strict=False to fall back to scoring without objects"
                ) from exc
            logger.warning("%s; scoring this question without objects", message)
            return Clue(objects=None, reasoning=f"[{message}]"[:MAX_REASONING_CHARS], mode=self.mode, question=q,
                        error=message[:MAX_REASONING_CHARS], options=lines, prompts=self.prompts)
        text = _coerce_text(out)
        if text.startswith(prompt):
            text = text[len(prompt) :]
        return replace(self.parse(text), mode=self.mode, question=q, options=lines, prompts=self.prompts)


__all__ = [
    "MAX_OBJECTS",
    "MAX_OBJECT_CHARS",
    "MAX_REASONING_CHARS",
    "PROMPT_MODES",
    "PROMPT_SENTINEL",
    "build_decouple_prompt",
    "parse_clue",
    "GENERIC_WORDS",
    "GENERIC_EVENT_WORDS",
    "COLOUR_WORDS",
    "POSITION_WORDS",
    "FILLER_WORDS",
    "PROSE_WORDS",
    "PROSE_VERBS",
    "NEGATIONS",
    "LABEL_WORDS",
    "UNREADABLE",
    "answer_complete",
    "parse_reference_clue",
    "reference_answer_complete",
    "Decoupler",
]
