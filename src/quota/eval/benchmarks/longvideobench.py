"""LongVideoBench (Wu et al., 2024), validation split: questions with up to five options on videos of
8 s to 1 h, reported by duration group and question category.

Published annotation: ``lvb_val.json`` of the Hugging Face dataset ``longvideobench/LongVideoBench``
(its ``validation-*.parquet`` holds the same rows). Each row has ``id``, ``video_id``, ``video_path``
(file name inside ``videos/``), ``question``, the options as a ``candidates`` list (json) or as
``option0`` ... ``option4`` with ``"N/A"`` for unused ones (parquet), ``correct_choice`` (0-based index),
``duration_group`` (15, 60, 600 or 3600 seconds) and ``question_category``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator

from .. import prompts
from ._base import Item, Skip, make_item
from ._files import Row, annotation_files, as_list, first, iter_with_source, text

NAME = "longvideobench"
FIELDS = ("duration_group", "category")
PREFIXES = ("", "videos", "video")


def parse(annotations: Path, videos: Path) -> Iterator[Item | Skip]:
    return parse_rows(iter_with_source(annotation_files(annotations)))


def parse_rows(rows: Iterable[Row]) -> Iterator[Item | Skip]:
    """Items of ``(file, index, row, where)`` rows (see :func:`iter_with_source`)."""
    for path, n, row, place in rows:
        options = as_list(row.get("candidates"))
        if not options:
            options = [row.get(f"option{i}") for i in range(10) if f"option{i}" in row]
        video = text(first(row, "video_path", "video"))
        if not video and first(row, "video_id"):
            video = f"{text(row['video_id'])}.mp4"
        answer = first(row, "correct_choice", "answer")
        if isinstance(answer, str) and answer.strip().isdigit():
            answer = int(answer)
        yield make_item(
            id=text(first(row, "id", "question_id", default=f"{video}-{n}")),
            video=video,
            question=first(row, "question", default=""),
            options=options,
            answer=answer,
            fields={
                "duration_group": text(first(row, "duration_group", default="")),
                "category": text(first(row, "question_category", "category", default="")),
            },
            where=place,
            prefixes=PREFIXES,
            formatted=prompts.longvideobench_prompt(row),
        )
