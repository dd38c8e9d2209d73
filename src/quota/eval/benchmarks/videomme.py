"""Video-MME (Fu et al., 2024): 900 videos, 2,700 four-option questions, reported by video length.

Published annotation: ``videomme/test-00000-of-00001.parquet`` of the Hugging Face dataset
``lmms-lab/Video-MME`` (the same rows as JSON/JSONL/CSV work too). One row per question with
``videoID`` (the video file's name), ``question_id``, ``duration`` (short/medium/long), ``domain``,
``sub_category``, ``task_type``, ``question``, ``options`` (``["A. ...", ...]``) and ``answer``
(a letter). A nested JSON layout, one object per video holding a ``questions`` list, is read too, as in
the official ``evaluation/output_test_template.json`` of github.com/BradyFU/Video-MME (``video_id``,
``duration_category``, ``video_category``, ``video_subcategory``; per question ``choices``): it names videos
by their number (``001``) only, so the number is turned into the file name (``videoID``) with the release
table (``videomme/test-*.parquet``, or the same rows as JSON/JSONL/CSV) found next to the annotation file,
in the video folder or the folder above it.
Videos: the unzipped ``videos_chunked_*.zip`` archives, ``<videoID>.mp4`` in ``data/``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Iterator

from .. import prompts
from ._base import Item, Skip, make_item
from ...errors import BenchmarkError
from ._files import Row, annotation_files, as_list, first, iter_with_source, read_records, text

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


def video_names(annotations: Path, videos: Path) -> dict[str, str]:
    """``video_id`` (``"001"``) -> ``videoID`` (the file name) from the release table, where one is found:
    ``videomme/test-*`` or ``test-*`` next to the annotation file, in the video folder or the folder above it."""
    places = [Path(annotations).parent, Path(videos), Path(videos).parent]
    for place in places:
        for folder in (place / "videomme", place):
            if not folder.is_dir():
                continue
            for table in sorted(folder.glob("test-*")):
                if table.resolve() == Path(annotations).resolve() or table.suffix.lower() not in (
                        ".parquet", ".json", ".jsonl", ".csv"):
                    continue
                try:
                    rows = read_records(table)
                except BenchmarkError:
                    continue
                names = {text(r.get("video_id")): text(r.get("videoID")) for r in rows
                         if r.get("video_id") is not None and r.get("videoID")}
                if names:
                    return names
    return {}


def parse(annotations: Path, videos: Path) -> Iterator[Item | Skip]:
    return parse_rows(iter_with_source(annotation_files(annotations)), names=_LazyNames(annotations, videos))


class _LazyNames(dict):
    """The ``video_id`` -> file name table, read only when a row names its video by number alone."""

    def __init__(self, annotations: Path, videos: Path) -> None:
        super().__init__()
        self._where: tuple[Path, Path] | None = (annotations, videos)

    def get(self, key: Any, default: Any = None) -> Any:
        if self._where is not None:
            self.update(video_names(*self._where))
            self._where = None
        return super().get(key, default)


def parse_rows(rows: Iterable[Row], names: dict[str, str] | None = None) -> Iterator[Item | Skip]:
    """Items of ``(file, index, row, where)`` rows (see :func:`iter_with_source`); ``names`` turns a
    ``video_id`` into the file name when a row has no ``videoID``."""
    for path, n, raw, place in rows:
        for k, row in enumerate(_flatten(raw)):
            where = place + (f" question {k}" if "questions" in raw else "")
            if "options" not in row and "choices" in row:  # the official template's name for them
                row = {**row, "options": row["choices"]}
            video = text(first(row, "videoID", "video_name", "video"))
            if not video:
                number = text(first(row, "video_id"))
                video = (names.get(number) if names is not None else None) or number
            qid = text(first(row, "question_id", "qid", "id", default=f"{video}-{k + 1}"))
            yield make_item(
                id=qid,
                video=video,
                question=first(row, "question", default=""),
                options=as_list(first(row, "options", "candidates")),
                answer=first(row, "answer"),
                fields={
                    "duration": text(first(row, "duration", "duration_category", default="")),
                    "domain": text(first(row, "domain", "video_category", default="")),
                    "sub_category": text(first(row, "sub_category", "video_subcategory", default="")),
                    "task_type": text(first(row, "task_type", default="")),
                },
                where=where,
                prefixes=PREFIXES,
                formatted=prompts.videomme_prompt(row),
            )
