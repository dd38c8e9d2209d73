"""MLVU (Zhou et al., 2024), dev split, multiple-choice tasks: long videos (3 min to 2 h), reported per
task; the headline number (M-Avg) is the mean of the per-task accuracies.

Published annotation: the folder ``MLVU/json`` of the Hugging Face dataset ``MVLU/MLVU``, one file per
task (``1_plotQA.json``, ``2_needle.json``, ``3_ego.json``, ``4_count.json``, ``5_order.json``,
``6_anomaly_reco.json``, ``7_topic_reasoning.json``; the open-ended ``8_sub_scene.json`` and
``9_summary.json`` are skipped). Rows: ``video`` (file name), ``duration``, ``question``,
``candidates`` (option texts), ``answer`` (the correct option's text) and ``question_type``.
Videos: ``MLVU/video/<task file stem>/<video>``. The lmms-eval ``MLVU_dev`` table (``video_name``,
``question`` with the options written into it, ``candidates``, ``answer``, ``task_type``) is read too.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable, Iterator

from .. import prompts
from ._base import Item, Skip, make_item, split_embedded_options
from ._files import Row, annotation_files, as_list, first, iter_with_source, text

NAME = "mlvu"
FIELDS = ("task",)


def parse(annotations: Path, videos: Path) -> Iterator[Item | Skip]:
    return parse_rows(iter_with_source(annotation_files(annotations)))


def parse_rows(rows: Iterable[Row]) -> Iterator[Item | Skip]:
    """Items of ``(file, index, row, where)`` rows; the file's stem names the task when the row does not."""
    for path, n, row, place in rows:
        stem = path.stem
        task = text(first(row, "question_type", "task_type", "task", default=re.sub(r"^\d+_", "", stem)))
        question = text(first(row, "question", default=""))
        options = as_list(first(row, "candidates", "options"))
        if not options:
            question, options = split_embedded_options(question)
        else:
            head, embedded = split_embedded_options(question)
            if embedded:
                question = head
        where = place
        if not options:
            yield Skip(f"{where}: open-ended question (no options)")
            continue
        video = text(first(row, "video", "video_name", "video_path"))
        yield make_item(
            id=text(first(row, "question_id", "id", default=f"{stem}-{n}")),
            video=video,
            question=question,
            options=options,
            answer=first(row, "answer"),
            fields={"task": task},
            where=where,
            numbers_are_indices=False,
            prefixes=(stem, f"video/{stem}", "", "video", task),
            formatted=prompts.mlvu_prompt(row),
        )
