"""VNBench (Zhao et al., 2024, "VideoNIAH"): synthetic needle-in-a-haystack questions of three kinds
(retrieval, ordering, counting), each asked four times with the options in a different order.

Published annotation: ``VNBench-main-4try.json`` of the Hugging Face dataset ``Joez1717/VNBench``.
Rows: ``video`` (a relative path such as ``./VNBench_new/<name>.mp4``), ``question``, ``options``
(four texts), ``gt`` (the correct option's text), ``gt_option`` (its letter), ``type`` (e.g.
``ret_insert1``, ``ord_edit2``, ``cnt_insert1``), ``try`` (0-3), ``needle_time`` and ``length``.
The official score counts a question as right only when all four tries are right, averaged over the
``type`` values; the ``group`` field ties the four tries together for that.
Videos: the unzipped video archive (the folder holding the ``.mp4`` files, or its parent).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Iterator

from ...errors import BenchmarkError
from .. import prompts
from ._base import Item, Skip, make_item
from ._files import Row, annotation_files, as_list, first, iter_with_source, text

NAME = "vnbench"
FIELDS = ("category", "task")
CATEGORIES = {"ret": "retrieval", "ord": "ordering", "cnt": "counting"}


def parse(annotations: Path, videos: Path) -> Iterator[Item | Skip]:
    return parse_rows(iter_with_source(annotation_files(annotations)))


def parse_rows(rows: Iterable[Row]) -> Iterator[Item | Skip]:
    """Items of ``(file, index, row, where)`` rows (see :func:`iter_with_source`)."""
    for path, n, row, place in rows:
        video = text(first(row, "video", "video_path"))
        stem = os.path.splitext(os.path.basename(video))[0]
        task = text(first(row, "type", "task", default=""))
        attempt = text(first(row, "try", default="0"))
        options = as_list(first(row, "options", "candidates"))
        # ``gt`` is the option text (counting options are numbers, so compare as text first)
        gt = first(row, "gt", "answer")
        if gt is not None and text(gt) in [text(o) for o in options]:
            answer = text(gt)
        else:
            answer = first(row, "gt_option", default=gt)
        try:
            prompt = prompts.vnbench_prompt(row)
        except BenchmarkError as exc:
            yield Skip(f"{place}: {exc}")
            continue
        yield make_item(
            id=text(first(row, "question_id", "id", default=f"{stem}_{task}_{attempt}")),
            video=video,
            question=first(row, "question", default=""),
            options=options,
            answer=answer,
            fields={
                "category": CATEGORIES.get(task.split("_")[0], task.split("_")[0]),
                "task": task,
                "group": f"{stem}_{task}",
            },
            where=place,
            numbers_are_indices=True,
            formatted=prompt,
            prefixes=("", "VNBench_new", "video", "videos"),
        )
