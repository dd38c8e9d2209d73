"""Video-MME (Fu et al., 2024): 900 videos, 2,700 four-option questions, reported by video length.

Published annotation: ``videomme/test-00000-of-00001.parquet`` of the Hugging Face dataset
``lmms-lab/Video-MME`` (the same rows as JSON/JSONL/CSV work too). One row per question with
``videoID`` (the video file's name), ``question_id``, ``duration`` (short/medium/long), ``domain``,
``sub_category``, ``task_type``, ``question``, ``options`` (``["A. ...", ...]``) and ``answer``
(a letter). A nested JSON layout, one object per video holding a ``questions`` list, is read too.
Videos: the unzipped ``videos_chunked_*.zip`` archives, ``<videoID>.mp4`` in ``data/``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Iterator

from .. import prompts
from ._base import Item, Skip, make_item
from ._files import Row, annotation_files, as_list, first, iter_with_source, text

NAME = "videomme"
FIELDS = ("duration", "domain", "sub_category", "task_type")
PREFIXES = ("", "data", "videos", "video")


def _flatten(row: dict[str, Any]) -> Iterator[dict[str, Any]]:
    questions = row.get("questions")
    if isinstance(questions, list):
        parent = {k: v for k, v in row.items() if k != "questions"}
        for q in questions:
            if isinstance(q, dict):
                yield {**parent, **q}
    else:
        yield row


def parse(annotations: Path, videos: Path) -> Iterator[Item | Skip]:
    return parse_rows(iter_with_source(annotation_files(annotations)))


def parse_rows(rows: Iterable[Row]) -> Iterator[Item | Skip]:
    """Items of ``(file, index, row, where)`` rows (see :func:`iter_with_source`)."""
    for path, n, raw, place in rows:
        for k, row in enumerate(_flatten(raw)):
            where = place + (f" question {k}" if "questions" in raw else "")
            video = text(first(row, "videoID", "video_name", "video", "video_id"))
            qid = text(first(row, "question_id", "qid", "id", default=f"{video}-{k + 1}"))
            yield make_item(
                id=qid,
                video=video,
                question=first(row, "question", default=""),
                options=as_list(first(row, "options", "candidates")),
                answer=first(row, "answer"),
                fields={
                    "duration": text(first(row, "duration", "duration_category", default="")),
                    "domain": text(first(row, "domain", default="")),
                    "sub_category": text(first(row, "sub_category", default="")),
                    "task_type": text(first(row, "task_type", default="")),
                },
                where=where,
                prefixes=PREFIXES,
                formatted=prompts.videomme_prompt(row),
            )
