"""NExT-QA (Xiao et al., 2021), multiple-choice test split: five options per question, reported by
question type (causal, temporal, descriptive; and the finer CW, CH, TN, TC, TP, DL, DC, DO).

Published annotation: ``test.csv`` of the NExT-QA release (also the ``MC`` test parquet of the Hugging
Face dataset ``lmms-lab/NExTQA``), with the columns ``video``, ``frame_count``, ``width``, ``height``,
``question``, ``answer`` (0-based index of the correct option), ``qid``, ``type`` and ``a0`` ... ``a4``.
Videos: the ``NExTVideo`` folder, ``<group>/<video>.mp4``; ``map_vid_vidorID.json`` (video id ->
``group/video``) is used when it lies in the video folder or next to the annotation file, otherwise
videos are found by name anywhere below the folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Iterator

from .. import prompts
from ._base import Item, Skip, make_item
from ._files import Row, annotation_files, first, iter_with_source, text

NAME = "nextqa"
FIELDS = ("category", "type")
CATEGORIES = {"C": "causal", "T": "temporal", "D": "descriptive"}
#: The official evaluation (``eval_mc.py`` of github.com/doc-doc/NExT-QA) scores temporal questions about
#: the previous and the next action as one type: ``TP`` is counted as ``TN``.
MERGED_TYPES = {"TP": "TN"}


def official_type(qtype: str) -> str:
    """A question type as the official evaluation groups it (``TP`` -> ``TN``; others unchanged)."""
    return MERGED_TYPES.get(qtype.strip().upper(), qtype.strip())
MAP_FILE = "map_vid_vidorID.json"


def _video_map(annotations: Path, videos: Path) -> dict[str, str]:
    places = [videos / MAP_FILE, videos.parent / MAP_FILE]
    places.append((annotations if annotations.is_dir() else annotations.parent) / MAP_FILE)
    for place in places:
        if place.is_file():
            try:
                data = json.loads(place.read_text(encoding="utf-8"))
            except ValueError:
                continue
            if isinstance(data, dict):
                return {str(k): str(v) for k, v in data.items()}
    return {}


def parse(annotations: Path, videos: Path) -> Iterator[Item | Skip]:
    return parse_rows(iter_with_source(annotation_files(annotations)), _video_map(annotations, videos))


def parse_rows(rows: Iterable[Row], mapping: dict[str, str] | None = None) -> Iterator[Item | Skip]:
    """Items of ``(file, index, row, where)`` rows; ``mapping`` turns video ids into ``group/video``."""
    mapping = mapping or {}
    for path, n, row, place in rows:
        vid = text(first(row, "video", "video_id"))
        options = [row.get(f"a{i}") for i in range(10) if f"a{i}" in row]
        answer = first(row, "answer")
        if isinstance(answer, str) and answer.strip().lstrip("-").isdigit():
            answer = int(answer)
        qtype = official_type(text(first(row, "type", default="")))
        qid = text(first(row, "qid", default=str(n)))
        yield make_item(
            id=f"{vid}-{qid}",
            video=mapping.get(vid, vid),
            question=first(row, "question", default=""),
            options=options,
            answer=answer,
            fields={"category": CATEGORIES.get(qtype[:1].upper(), qtype), "type": qtype},
            where=place,
            prefixes=("", "NExTVideo"),
            formatted=prompts.nextqa_prompt(row),
        )
