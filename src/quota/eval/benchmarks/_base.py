"""What every benchmark loader produces: :class:`Sample` (one question about one video) and
:class:`Benchmark` (the samples that can run, plus those whose video is missing), and the shared
steps that turn rows of an annotation file into them."""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from ...errors import BenchmarkError
from ...choices import format_options, option_letters, strip_option_prefix
from ._files import VideoFinder, text

log = logging.getLogger("quota.eval")

ON_MISSING = ("skip", "error")


@dataclass
class Sample:
    """One multiple-choice question about one video.

    Attributes:
        id: unique, stable id of the question within its benchmark (the benchmark's own question
            id where it has one).
        video: path of the video file (or frame folder) on disk; the expected path when missing.
        question: the question text, without the options.
        options: option texts without letter labels; option ``i`` has letter ``"ABCD..."[i]``.
        answer: the correct option's letter.
        fields: the categories the benchmark reports accuracy by (e.g. ``{"duration": "long"}``).
        benchmark: registry name of the benchmark.
        start, end: seconds of the video the question is about, ``None`` for the whole video
            (MVBench clips that are not pre-cut).
        video_name: the video as the annotation names it (for messages and missing lists).
        formatted: the text the benchmark's reference harness sends for this question (question, options
            and its instruction; :mod:`quota.eval.prompts`), ``""`` when unknown.
        fps: frame rate of a source given as a folder of frame images, as the benchmark states it
            (``None``: a video file, or the reader's default).
    """

    id: str
    video: str
    question: str
    options: list[str]
    answer: str
    fields: dict[str, str] = field(default_factory=dict)
    benchmark: str = ""
    start: float | None = None
    end: float | None = None
    video_name: str = ""
    formatted: str = ""
    fps: float | None = None

    @property
    def letters(self) -> str:
        """The letters of this question's options (``"ABCD"`` for four)."""
        return option_letters(len(self.options))

    def options_text(self) -> str:
        """The options as prompt lines (``"A. ...\\nB. ..."``)."""
        return format_options(self.options)

    def prompt(self) -> str:
        """Question and options in one text, the way the benchmarks' own scripts ask them."""
        return f"{self.question}\n{self.options_text()}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "video": self.video,
            "question": self.question,
            "options": list(self.options),
            "answer": self.answer,
            "fields": dict(self.fields),
            "benchmark": self.benchmark,
            "start": self.start,
            "end": self.end,
            "video_name": self.video_name,
            "formatted": self.formatted,
            "fps": self.fps,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Sample":
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


@dataclass
class Benchmark:
    """A loaded benchmark.

    Attributes:
        name: registry name (``videomme``, ``mlvu`` ...).
        samples: the questions that can run, in annotation order.
        missing: questions whose video was not found (left out of ``samples``).
        skipped: one line per annotation row that was not a usable multiple-choice question
            (open-ended tasks, rows without options or with an answer that matches no option).
        annotations, videos: the paths the benchmark was loaded from.
        duplicates: one line per question id the annotations repeat (the repeats are renamed ``id~2`` ...).
    """

    name: str
    samples: list[Sample]
    missing: list[Sample] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    annotations: str = ""
    videos: str = ""
    duplicates: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.samples)

    def __iter__(self) -> Iterator[Sample]:
        return iter(self.samples)

    @property
    def missing_videos(self) -> list[str]:
        """Distinct missing video names, sorted."""
        return sorted({s.video_name or s.video for s in self.missing})

    def by_video(self) -> dict[str, list[Sample]]:
        """Samples grouped by video path, in annotation order."""
        groups: dict[str, list[Sample]] = {}
        for s in self.samples:
            groups.setdefault(s.video, []).append(s)
        return groups

    def summary(self) -> str:
        """One line for logs: counts of usable, missing and skipped questions."""
        videos = len({s.video for s in self.samples})
        text = f"{self.name}: {len(self.samples)} questions on {videos} videos"
        if self.missing:
            text += f"; {len(self.missing)} questions left out, {len(self.missing_videos)} videos not found"
        if self.skipped:
            text += f"; {len(self.skipped)} annotation rows skipped"
        return text


@dataclass
class Item:
    """A parsed annotation row, before its video is looked up (loader-internal).

    ``prefixes`` are the sub-folders of the video folder to try, in order; a prefix in ``cut`` holds
    clips already cut to ``[start, end]`` (the bounds are then dropped); ``clips`` are other names such a
    clip may have there (lmms-eval's ``<name>_<start>_<end>.mp4``), tried when ``video`` is not found.
    """

    id: str
    video: str
    question: str
    options: list[str]
    answer: str
    fields: dict[str, str]
    prefixes: tuple[str, ...] = ("",)
    start: float | None = None
    end: float | None = None
    cut: frozenset[str] = frozenset()
    clips: tuple[str, ...] = ()
    allow_dir: bool = False
    formatted: str = ""
    fps: float | None = None


class Skip(str):
    """A reason an annotation row was not turned into a sample (loader-internal)."""


def resolve_answer(answer: Any, options: Sequence[str], *, numbers_are_indices: bool = True) -> str | None:
    """The letter of the correct option from how a benchmark writes it.

    Accepts the option text itself, a letter (``"C"``, ``"(C)"``, ``"C. text"``), or a 0-based
    index. With ``numbers_are_indices`` an int is always an index and a digit string is one when it
    is no option's text; without, numbers are compared with the option texts (counting questions
    whose options are numbers). ``None`` when nothing matches.
    """
    n = len(options)
    if n == 0 or answer is None:
        return None
    letters = option_letters(n)
    if isinstance(answer, bool):
        return None
    if isinstance(answer, (int, float)) and float(answer).is_integer():
        if numbers_are_indices:
            index = int(answer)
            return letters[index] if 0 <= index < n else None
        answer = int(answer)
    value = str(answer).strip()
    if not value:
        return None
    cleaned = [str(o).strip() for o in options]
    if value in cleaned:
        return letters[cleaned.index(value)]
    if re.fullmatch(r"\(?[A-Za-z]\)?\.?", value) and value.strip("().").upper() in letters:
        return value.strip("().").upper()
    if numbers_are_indices and re.fullmatch(r"\d+", value):
        index = int(value)
        return letters[index] if index < n else None
    folded = [_fold(o) for o in cleaned]
    if _fold(value) in folded and folded.count(_fold(value)) == 1:
        return letters[folded.index(_fold(value))]
    labelled = re.match(r"^\(?([A-Za-z])[).:]\s*(.+)$", value)
    if labelled and labelled.group(1).upper() in letters:
        return labelled.group(1).upper()
    return None


def _fold(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip().rstrip(".").lower())


def clean_options(raw: Iterable[Any]) -> list[str]:
    """Option texts without their letter labels (``"A. cat"`` -> ``"cat"``).

    Unused trailing slots (``None``, empty, ``"N/A"``) are dropped; inner ones are kept so that
    answer indices still point at the right option.
    """
    values = [text(o) for o in raw]
    while values and values[-1] in ("", "N/A"):
        values.pop()
    letters = option_letters(26)
    return [strip_option_prefix(v, letters[i]) if i < 26 else v for i, v in enumerate(values)]


_OPTION_LINE = re.compile(r"^\s*\(?([A-Z])[).:]\s*(.+?)\s*$")


def split_embedded_options(question: str) -> tuple[str, list[str]]:
    """Split ``"Q?\\n(A) x\\n(B) y"`` into ``("Q?", ["x", "y"])``; options must be lettered A, B, ... in order."""
    lines = question.splitlines()
    options: list[str] = []
    first = None
    for i, line in enumerate(lines):
        match = _OPTION_LINE.match(line)
        if match and match.group(1) == option_letters(26)[len(options)]:
            if first is None:
                first = i
            options.append(match.group(2))
        elif options and line.strip():
            break
    if first is None or len(options) < 2:
        return question.strip(), []
    head = "\n".join(lines[:first]).strip()
    head = re.sub(r"\s*(Options|Choices)\s*:?\s*$", "", head, flags=re.IGNORECASE).strip()
    return head, options


def unique_ids(items: list[Item]) -> list[str]:
    """Make ids unique in place: a repeated id gets ``~2``, ``~3`` ... in annotation order.

    Returns:
        one line per id that was repeated: the id, how often it occurs, and the new names.
    """
    seen: dict[str, int] = {}
    renamed: dict[str, list[str]] = {}
    for item in items:
        count = seen.get(item.id, 0) + 1
        seen[item.id] = count
        if count > 1:
            new = f"{item.id}~{count}"
            while new in seen:
                count += 1
                new = f"{item.id}~{count}"
            seen[new] = 1
            renamed.setdefault(item.id, []).append(new)
            item.id = new
    return [f"question id {old!r} occurs {len(new) + 1} times; the repeats are named {', '.join(new)}"
            for old, new in renamed.items()]


def assemble(
    name: str,
    rows: Iterable[Item | Skip],
    annotations: str | os.PathLike[str],
    videos: str | os.PathLike[str],
    on_missing: str = "skip",
) -> Benchmark:
    """Look every item's video up and build the :class:`Benchmark`.

    Raises:
        BenchmarkError: ``on_missing="error"`` and some videos are missing, no video found at all
            (a wrong folder, whatever ``on_missing``), or no question at all.
    """
    if on_missing not in ON_MISSING:
        raise BenchmarkError(f"on_missing={on_missing!r} is not one of {', '.join(ON_MISSING)}")
    finder = VideoFinder(videos)
    dir_finder: VideoFinder | None = None
    items: list[Item] = []
    skipped: list[str] = []
    for row in rows:
        if isinstance(row, Skip):
            skipped.append(str(row))
        else:
            items.append(row)
    duplicates = unique_ids(items)
    samples: list[Sample] = []
    missing: list[Sample] = []
    for item in items:
        use = finder
        if item.allow_dir:
            dir_finder = dir_finder or VideoFinder(videos, allow_dirs=True)
            use = dir_finder
        path, prefix = use.find(item.video, item.prefixes)
        for clip in item.clips if path is None else ():
            path, prefix = use.find(clip, sorted(item.cut))
            if path is not None:
                break
        start, end = (None, None) if prefix in item.cut else (item.start, item.end)
        expected = path if path is not None else _expected(finder.root, item)
        sample = Sample(
            id=item.id,
            video=str(expected),
            question=item.question,
            options=list(item.options),
            answer=item.answer,
            fields={k: str(v) for k, v in item.fields.items()},
            benchmark=name,
            start=start,
            end=end,
            video_name=item.video,
            formatted=item.formatted,
            fps=item.fps if path is not None and path.is_dir() else None,
        )
        (samples if path is not None else missing).append(sample)
    bench = Benchmark(name, samples, missing, skipped, str(annotations), str(videos), duplicates)
    if missing:
        shown = ", ".join(bench.missing_videos[:5]) + (" ..." if len(bench.missing_videos) > 5 else "")
        message = (
            f"{name}: {len(bench.missing_videos)} videos ({len(missing)} questions) not found under "
            f"{finder.root}: {shown}"
        )
        if on_missing == "error" or not samples:
            if not samples:
                message = f"{name}: none of the videos was found under {finder.root} (first: {shown})"
            raise BenchmarkError(
                message + ". Check the video folder (see docs/eval.md for the expected layout), "
                "or pass on_missing='skip' to run without them."
            )
        log.warning("%s; they are left out of the run", message)
    if not samples and not missing:
        raise BenchmarkError(
            f"{name}: no multiple-choice question found in {annotations}"
            + (f" ({len(skipped)} rows skipped, first: {skipped[0]})" if skipped else "")
        )
    if skipped:
        log.info("%s: %d annotation rows skipped (first: %s)", name, len(skipped), skipped[0])
    return bench


def _expected(root: Path, item: Item) -> Path:
    prefix = item.prefixes[0] if item.prefixes else ""
    given = Path(item.video)
    if given.is_absolute():
        return given
    return (root / prefix / given) if prefix else root / given


def make_item(
    *,
    id: str,
    video: str,
    question: Any,
    options: Sequence[Any],
    answer: Any,
    fields: dict[str, Any],
    where: str,
    numbers_are_indices: bool = True,
    **extra: Any,
) -> Item | Skip:
    """An :class:`Item`, or a :class:`Skip` naming the row when it cannot be one."""
    options = clean_options(options)
    if len(options) < 2:
        return Skip(f"{where}: fewer than two options")
    if len(options) > 26:
        return Skip(f"{where}: more than 26 options")
    letter = resolve_answer(answer, options, numbers_are_indices=numbers_are_indices)
    if letter is None:
        return Skip(f"{where}: answer {answer!r} matches none of the {len(options)} options")
    if not str(video).strip():
        return Skip(f"{where}: no video named")
    return Item(
        id=str(id),
        video=str(video).strip(),
        question=str(question or "").strip(),
        options=options,
        answer=letter,
        fields={k: ("" if v is None else str(v)) for k, v in fields.items()},
        **extra,
    )


Parser = Callable[[Path, Path], Iterable["Item | Skip"]]

__all__ = [
    "Sample",
    "Benchmark",
    "Item",
    "Skip",
    "ON_MISSING",
    "resolve_answer",
    "clean_options",
    "split_embedded_options",
    "assemble",
    "make_item",
    "unique_ids",
]
