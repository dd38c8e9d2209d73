"""MVBench (Li et al., 2024): 20 short-video tasks of 200 questions each, reported per task.

Published annotation: the folder ``json`` of the Hugging Face dataset ``OpenGVLab/MVBench``, one file
per task (``action_sequence.json`` ...). Rows: ``video`` (path inside the task's video folder),
``question``, ``candidates`` (option texts), ``answer`` (the correct option's text) and, for the tasks
asked about a part of a longer video, ``start`` / ``end`` in seconds.
Videos: the dataset's ``video`` folder, where every task has its own sub-folder (table below). The
pre-cut clips lmms-eval prepares (``star/Charades_segment`` ...) are found too, under the video's own
name or as ``<name>_<start>_<end>.mp4``; their bounds are then dropped since the clip already is the
part asked about. A combined ``test.json`` is read as a list of rows naming their task, an object of
task name -> rows, or either inside ``{"root": ..., "meta": ...}``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator

from .. import prompts
from ._base import Item, Skip, make_item
from ._files import Row, annotation_files, as_list, first, iter_with_source, text

NAME = "mvbench"
#: Frame rate of the episodic-reasoning frame folders (``tvqa/frames_fps3_hq``): MVBench's own evaluation
#: reads them with ``read_frame(..., fps=3)`` (github.com/OpenGVLab/Ask-Anything, video_chat2 mvbench code).
FRAME_FPS = 3.0
FIELDS = ("task",)

# task -> (sub-folders of the published release, pre-cut sub-folders, asked about [start, end], frame folders)
TASKS: dict[str, tuple[tuple[str, ...], tuple[str, ...], bool, bool]] = {
    "action_sequence": (("star/Charades_v1_480",), ("star/Charades_segment",), True, False),
    "action_prediction": (("star/Charades_v1_480",), ("star/Charades_segment",), True, False),
    "action_antonym": (("ssv2_video", "ssv2_video_mp4"), (), False, False),
    "fine_grained_action": (("Moments_in_Time_Raw/videos",), (), False, False),
    "unexpected_action": (("FunQA_test/test",), (), False, False),
    "object_existence": (("clevrer/video_validation",), (), False, False),
    "object_interaction": (("star/Charades_v1_480",), ("star/Charades_segment",), True, False),
    "object_shuffle": (("perception/videos",), (), False, False),
    "moving_direction": (("clevrer/video_validation",), (), False, False),
    "action_localization": (("sta/sta_video",), ("sta/sta_video_segment",), True, False),
    "scene_transition": (("scene_qa/video",), (), False, False),
    "action_count": (("perception/videos",), (), False, False),
    "moving_count": (("clevrer/video_validation",), (), False, False),
    "moving_attribute": (("clevrer/video_validation",), (), False, False),
    "state_change": (("perception/videos",), (), False, False),
    "fine_grained_pose": (("nturgbd", "nturgbd_convert"), (), False, False),
    "character_order": (("perception/videos",), (), False, False),
    "egocentric_navigation": (("vlnqa",), (), False, False),
    "episodic_reasoning": (("tvqa/frames_fps3_hq",), ("tvqa/video_fps3_hq_segment",), True, True),
    "counterfactual_inference": (("clevrer/video_validation",), (), False, False),
}


def _prefixes(folders: tuple[str, ...]) -> list[str]:
    """Each folder as given, below ``video/`` (the dataset root was passed) and below ``data0613/``."""
    out: list[str] = []
    for folder in folders:
        out += [folder, f"video/{folder}", f"data0613/{folder}"]
    return out


def clip_names(video: str, start: object, end: object) -> tuple[str, ...]:
    """Names a pre-cut clip of ``video`` between ``start`` and ``end`` may have in lmms-eval's clip folders:
    ``<name>_<start>_<end>.mp4``, the bounds as the annotation writes them, or as shortest / one-decimal
    numbers."""
    import os

    stem, ext = os.path.splitext(video)
    ext = ext or ".mp4"
    forms = [(str(start), str(end))]
    try:
        lo, hi = float(start), float(end)  # type: ignore[arg-type]
        forms += [(f"{lo:g}", f"{hi:g}"), (f"{lo:.1f}", f"{hi:.1f}")]
    except (TypeError, ValueError):
        pass
    return tuple(dict.fromkeys(f"{stem}_{a}_{b}{ext}" for a, b in forms))


def parse(annotations: Path, videos: Path) -> Iterator[Item | Skip]:
    return parse_rows(iter_with_source(annotation_files(annotations)))


def task_of(path: Path, row: dict) -> str:
    """The task of a row: named in the row (a combined file such as the clip layout's ``test.json``),
    else the stem of its per-task file."""
    named = text(first(row, "_group", "task_type", "task", "data_type", default=""))
    key = named.strip().lower().replace(" ", "_").replace("-", "_")
    return key if key in TASKS else path.stem


def parse_rows(rows: Iterable[Row]) -> Iterator[Item | Skip]:
    """Items of ``(file, index, row, where)`` rows (see :func:`iter_with_source`)."""
    counters: dict[tuple[Path, str], int] = {}
    for path, _, row, place in rows:
        task = task_of(path, row)
        # the question's place within its task (a combined file numbers each task from 0, as its own file)
        n = counters[(path, task)] = counters.get((path, task), -1) + 1
        plain, cut, bounded, frames = TASKS.get(task, ((), (), False, False))
        cut_prefixes = _prefixes(cut)
        # a known task looks only in its own folders (clevrer and perception reuse file names)
        prefixes = tuple(_prefixes(plain) + cut_prefixes) if task in TASKS else ("",)
        start = end = None
        if bounded and first(row, "start") is not None and first(row, "end") is not None:
            try:
                start, end = float(row["start"]), float(row["end"])
            except (TypeError, ValueError):
                yield Skip(f"{place}: start/end {row.get('start')!r}/{row.get('end')!r} are not numbers")
                continue
        yield make_item(
            id=text(first(row, "question_id", "id", default=f"{task}-{n}")),
            video=text(first(row, "video", "video_path")),
            question=first(row, "question", default=""),
            options=as_list(first(row, "candidates", "options")),
            answer=first(row, "answer"),
            fields={"task": task},
            where=place,
            numbers_are_indices=False,
            prefixes=prefixes,
            start=start,
            end=end,
            cut=frozenset(cut_prefixes),
            clips=clip_names(text(first(row, "video", "video_path")), row["start"], row["end"])
            if start is not None and cut_prefixes else (),
            allow_dir=frames,
            fps=FRAME_FPS if frames else None,
            formatted=prompts.mvbench_prompt(row),
        )
