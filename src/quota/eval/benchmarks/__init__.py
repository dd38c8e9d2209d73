"""Loaders for the six benchmarks of the QuoTA paper, reading the files users download themselves.

Each loader reads the benchmark's published annotation file(s) and looks every question's video up in
a folder; see ``docs/eval.md`` for the exact files and layouts::

    from quota.eval.benchmarks import load_benchmark
    bench = load_benchmark("videomme", "Video-MME/videomme/test-00000-of-00001.parquet", "Video-MME/data")
    print(bench.summary())          # counts, and how many videos are missing
    for sample in bench:            # Sample(id, video, question, options, answer, fields)
        ...
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from ...errors import BenchmarkError
from . import longvideobench, mlvu, mvbench, nextqa, videomme, vnbench
from ._base import ON_MISSING, Benchmark, Item, Sample, Skip, assemble, resolve_answer, split_embedded_options
from ._files import ANNOTATION_EXTENSIONS, VIDEO_EXTENSIONS, VideoFinder, read_records


@dataclass(frozen=True)
class BenchmarkSpec:
    """How a benchmark is read and scored.

    Attributes:
        name: registry name.
        title: the name papers use.
        fields: the ``Sample.fields`` keys accuracy is reported by, in report order.
        parse: ``(annotations, videos) -> rows`` (loader-internal).
        macro_field: when set, the headline score is the mean of the per-value accuracies of this
            field (MLVU's M-Avg over tasks, VNBench's mean over needle types).
        group_field: when set, questions sharing this field's value are one unit that counts as
            right only when all are right (VNBench's four tries).
        group_size: questions in a complete unit; a unit with fewer counted (a run still going) is
            left out of the unit scores, as the benchmark's own evaluation only sees finished groups.
        headline: how the headline score is made, in words.
        split: the split the paper reports.
    """

    name: str
    title: str
    fields: tuple[str, ...]
    parse: Callable[[Path, Path], Iterable[Item | Skip]]
    macro_field: str | None = None
    group_field: str | None = None
    group_size: int | None = None
    headline: str = "accuracy over all questions"
    split: str = ""


BENCHMARKS: dict[str, BenchmarkSpec] = {
    "videomme": BenchmarkSpec(
        "videomme", "Video-MME", videomme.FIELDS, videomme.parse, split="test, without subtitles"
    ),
    "mlvu": BenchmarkSpec(
        "mlvu", "MLVU", mlvu.FIELDS, mlvu.parse, macro_field="task",
        headline="M-Avg: mean of the per-task accuracies", split="dev, multiple-choice tasks",
    ),
    "longvideobench": BenchmarkSpec(
        "longvideobench", "LongVideoBench", longvideobench.FIELDS, longvideobench.parse, split="validation"
    ),
    "mvbench": BenchmarkSpec(
        "mvbench", "MVBench", mvbench.FIELDS, mvbench.parse, split="all 20 tasks"
    ),
    "nextqa": BenchmarkSpec(
        "nextqa", "NExT-QA", nextqa.FIELDS, nextqa.parse, split="multiple-choice test"
    ),
    "vnbench": BenchmarkSpec(
        "vnbench", "VNBench", vnbench.FIELDS, vnbench.parse, macro_field="task", group_field="group", group_size=4,
        headline="a question is right when all 4 tries are; mean over needle types", split="main, 4 tries",
    ),
}

_ALIASES = {
    "video-mme": "videomme", "video_mme": "videomme", "vmme": "videomme",
    "mlvu_dev": "mlvu", "long-video-bench": "longvideobench", "lvb": "longvideobench",
    "longvideobench_val_v": "longvideobench", "mv-bench": "mvbench", "next-qa": "nextqa",
    "next_qa": "nextqa", "nextqa_mc_test": "nextqa", "videoniah": "vnbench", "vn-bench": "vnbench",
}


def get_spec(name: str) -> BenchmarkSpec:
    """The spec of a benchmark by registry name (a few common spellings are accepted)."""
    key = str(name).strip().lower()
    key = _ALIASES.get(key, key)
    if key not in BENCHMARKS:
        raise BenchmarkError(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}")
    return BENCHMARKS[key]


#: Benchmark -> ``parse_rows`` of its loader (rows already read, with where they came from).
ROW_PARSERS: dict[str, Callable[..., Iterable[Item | Skip]]] = {
    "videomme": videomme.parse_rows,
    "mlvu": mlvu.parse_rows,
    "longvideobench": longvideobench.parse_rows,
    "mvbench": mvbench.parse_rows,
    "nextqa": nextqa.parse_rows,
    "vnbench": vnbench.parse_rows,
}


def item_from_doc(name: str, doc: dict, *, source: str | None = None) -> Item | Skip:
    """One annotation row (for instance the ``doc`` lmms-eval hands a task) read by the benchmark's own
    loader, without looking its video up: question, options, answer and the benchmark prompt exactly
    as :func:`load_benchmark` makes them for the same row.

    Args:
        name: the benchmark.
        doc: the row, in the benchmark's published schema.
        source: the annotation file's name it would come from (MVBench and MLVU read the task from
            it, e.g. ``"action_sequence.json"``); default ``"<name>.json"``.
    """
    spec = get_spec(name)
    place = Path(source or f"{spec.name}.json")
    return next(iter(ROW_PARSERS[spec.name]([(place, 0, dict(doc), f"{place.name} doc")])))


def load_benchmark(
    name: str,
    annotations: str | os.PathLike[str],
    videos: str | os.PathLike[str],
    *,
    on_missing: str = "skip",
) -> Benchmark:
    """Load a benchmark from its annotation file(s) and video folder.

    Args:
        name: registry name (``videomme``, ``mlvu``, ``longvideobench``, ``mvbench``, ``nextqa``,
            ``vnbench``).
        annotations: the annotation file, or the folder of per-task files (MLVU, MVBench).
        videos: the folder the videos are in (see docs/eval.md for each benchmark's layout).
        on_missing: ``"skip"`` leaves questions whose video is missing out of ``samples`` (they
            are listed in ``missing``); ``"error"`` raises instead, before anything runs.

    Raises:
        BenchmarkError: unknown name, missing/unreadable files, no question found, no video
            found at all, or missing videos with ``on_missing="error"``.
    """
    spec = get_spec(name)
    annotations = Path(annotations).expanduser()
    videos = Path(videos).expanduser()
    if not annotations.exists():
        raise BenchmarkError(
            f"{spec.title} annotations {annotations} do not exist; see docs/eval.md for the files to download"
        )
    if not videos.is_dir():
        raise BenchmarkError(f"{spec.title} video folder {videos} does not exist (or is not a folder)")
    return assemble(spec.name, spec.parse(annotations, videos), annotations, videos, on_missing=on_missing)


__all__ = [
    "Sample",
    "Benchmark",
    "BenchmarkSpec",
    "BENCHMARKS",
    "ON_MISSING",
    "get_spec",
    "item_from_doc",
    "load_benchmark",
    "read_records",
    "resolve_answer",
    "split_embedded_options",
    "VideoFinder",
    "VIDEO_EXTENSIONS",
    "ANNOTATION_EXTENSIONS",
]
