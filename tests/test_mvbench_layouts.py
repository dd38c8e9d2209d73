"""MVBench as published: all 20 tasks from either layout of the data (and a mix), the combined
``test.json``, and the episodic-reasoning questions whose source is a folder of frame images.

Layouts, as built here:

- the release layout (Hugging Face ``OpenGVLab/MVBench``, branch ``main``): ``json/<task>.json`` and the
  unzipped source videos under ``video/``, in the folders MVBench's own evaluation reads (its
  ``data_list``; TVQA as frame folders ``tvqa/frames_fps3_hq/<clip>/00001.jpg`` ...);
- the clip layout lmms-eval downloads (revision ``video``): pre-cut clips in the folders of lmms-eval's
  ``DATA_LIST`` (read from the installed task code when lmms-eval is there), ``json/`` and ``test.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from quota.eval import RunStore, load_benchmark, run_benchmark
from quota.eval.benchmarks import mvbench
from quota.eval.pipeline_answer import PipelineAnswer, clip_frames
from quota.testing.videos import frame_pattern, read_frame_number

# task -> folder of its source videos in the release layout (MVBench's data_list), and whether its
# questions carry start/end bounds there
RELEASE = {
    "action_sequence": ("star/Charades_v1_480", True),
    "action_prediction": ("star/Charades_v1_480", True),
    "action_antonym": ("ssv2_video", False),
    "fine_grained_action": ("Moments_in_Time_Raw/videos", False),
    "unexpected_action": ("FunQA_test/test", False),
    "object_existence": ("clevrer/video_validation", False),
    "object_interaction": ("star/Charades_v1_480", True),
    "object_shuffle": ("perception/videos", False),
    "moving_direction": ("clevrer/video_validation", False),
    "action_localization": ("sta/sta_video", True),
    "scene_transition": ("scene_qa/video", False),
    "action_count": ("perception/videos", False),
    "moving_count": ("clevrer/video_validation", False),
    "moving_attribute": ("clevrer/video_validation", False),
    "state_change": ("perception/videos", False),
    "fine_grained_pose": ("nturgbd", False),
    "character_order": ("perception/videos", False),
    "egocentric_navigation": ("vlnqa", False),
    "episodic_reasoning": ("tvqa/frames_fps3_hq", True),
    "counterfactual_inference": ("clevrer/video_validation", False),
}


def clip_folders() -> dict[str, str]:
    """Task -> folder of the pre-cut clips, from lmms-eval's own MVBench task code when installed."""
    try:
        from lmms_eval.tasks.mvbench.utils import DATA_LIST
    except ImportError:
        DATA_LIST = {t: f for t, f in zip(RELEASE, [
            "star/Charades_segment", "star/Charades_segment", "ssv2_video_mp4", "Moments_in_Time_Raw/videos",
            "FunQA_test/test", "clevrer/video_validation", "star/Charades_segment", "perception/videos",
            "clevrer/video_validation", "sta/sta_video_segment", "scene_qa/video", "perception/videos",
            "clevrer/video_validation", "clevrer/video_validation", "perception/videos", "nturgbd_convert",
            "perception/videos", "vlnqa", "tvqa/video_fps3_hq_segment", "clevrer/video_validation"])}
    return dict(DATA_LIST)


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x00\x00\x00\x18ftypmp42")
    return path


def row(task: str, bounded: bool, video: str) -> dict:
    out = {"video": video, "question": f"What happens in {task}?", "candidates": ["one", "two", "three"],
           "answer": "two"}
    if bounded:
        out.update(start=2.0, end=6.5)
    return out


def video_name(task: str) -> str:
    return f"{task}_clip" if task == "episodic_reasoning" else f"{task}_0001.mp4"


def write_release(root: Path, tasks=RELEASE) -> Path:
    for task, (folder, bounded) in tasks.items():
        (root / "json").mkdir(parents=True, exist_ok=True)
        (root / "json" / f"{task}.json").write_text(json.dumps([row(task, bounded, video_name(task))]))
        if task == "episodic_reasoning":
            for i in range(1, 4):
                touch(root / "video" / folder / video_name(task) / f"{i:05d}.jpg")
        else:
            touch(root / "video" / folder / video_name(task))
    return root


def write_clips(root: Path, tasks=RELEASE, *, combined: bool = True) -> Path:
    folders = clip_folders()
    rows = {}
    for task, (_, bounded) in tasks.items():
        name = video_name(task) if task != "episodic_reasoning" else f"{video_name(task)}.mp4"
        rows[task] = [row(task, bounded, name)]
        touch(root / folders[task] / name)
    (root / "json").mkdir(parents=True, exist_ok=True)
    for task, r in rows.items():
        (root / "json" / f"{task}.json").write_text(json.dumps(r))
    if combined:
        (root / "test.json").write_text(json.dumps(rows))
    return root


def test_the_tables_name_all_twenty_tasks():
    assert set(mvbench.TASKS) == set(RELEASE) and len(RELEASE) == 20
    assert set(clip_folders()) == set(RELEASE)


def test_release_layout_all_tasks_bounds_and_frame_folders(tmp_path: Path):
    root = write_release(tmp_path / "MVBench")
    for videos in (root / "video", root):
        bench = load_benchmark("mvbench", root / "json", videos)
        assert not bench.missing and not bench.skipped
        assert sorted(s.fields["task"] for s in bench) == sorted(RELEASE)
        for s in bench:
            folder, bounded = RELEASE[s.fields["task"]]
            assert f"/{folder}/" in s.video
            assert (s.start, s.end) == ((2.0, 6.5) if bounded else (None, None))
            assert s.formatted.startswith("Question:What happens in") and s.answer == "B"
        episodic = next(s for s in bench if s.fields["task"] == "episodic_reasoning")
        assert Path(episodic.video).is_dir() and episodic.fps == mvbench.FRAME_FPS == 3.0
        assert all(s.fps is None for s in bench if s is not episodic)


@pytest.mark.parametrize("annotations", ["json", "test.json", "root"])
def test_clip_layout_from_per_task_files_or_the_combined_test_json(tmp_path: Path, annotations: str):
    root = write_clips(tmp_path / "mvbench_video")
    ann = {"json": root / "json", "test.json": root / "test.json", "root": root}[annotations]
    bench = load_benchmark("mvbench", ann, root)
    assert not bench.missing and not bench.skipped
    assert sorted(s.fields["task"] for s in bench) == sorted(RELEASE)
    folders = clip_folders()
    for s in bench:
        assert f"/{folders[s.fields['task']]}/" in s.video
        # a pre-cut clip is the part asked about: its bounds are dropped
        assert (s.start, s.end) == (None, None)
    episodic = next(s for s in bench if s.fields["task"] == "episodic_reasoning")
    assert episodic.video.endswith(".mp4") and episodic.fps is None
    if annotations == "test.json":
        assert {s.id for s in bench} == {f"{t}-0" for t in RELEASE}  # ids as from the per-task files


def test_a_mix_of_both_layouts(tmp_path: Path):
    """Half the tasks as released, half as clips, under one root: every question finds its video."""
    root = tmp_path / "MVBench"
    names = list(RELEASE)
    write_release(root, {t: RELEASE[t] for t in names[::2]})
    write_clips(root, {t: RELEASE[t] for t in names[1::2]}, combined=False)
    bench = load_benchmark("mvbench", root / "json", root)
    assert not bench.missing and len(bench) == 20
    by_task = {s.fields["task"]: s for s in bench}
    assert f"/{RELEASE['episodic_reasoning'][0]}/" in by_task["episodic_reasoning"].video
    assert by_task["action_prediction"].start is None  # a clip (odd position) ...
    assert by_task["action_sequence"].start == 2.0  # ... and a released video with its bounds


def test_bad_rows_name_their_place(tmp_path: Path):
    ann = tmp_path / "json"
    ann.mkdir()
    (ann / "action_count.json").write_text(json.dumps([
        row("action_count", False, "a.mp4"), {"video": "b.mp4", "question": "?", "candidates": ["x"], "answer": "x"},
    ]))
    touch(tmp_path / "video" / "perception" / "videos" / "a.mp4")
    bench = load_benchmark("mvbench", ann, tmp_path)
    assert bench.skipped == ["action_count.json row 1: fewer than two options"]


# ---------------------------------------------------------------------------------------------------------
# Frame folders are videos
# ---------------------------------------------------------------------------------------------------------


def write_frames(folder: Path, n: int, size=(64, 48)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):  # frame i is drawn with the number i and saved as 0000(i+1).jpg, MVBench's names
        Image.fromarray(frame_pattern(i, *size)).save(folder / f"{i + 1:05d}.png")
    return folder


def test_frame_folder_reads_in_name_order_at_the_stated_rate(tmp_path: Path):
    from quota.video import DEFAULT_FPS, load_frames

    folder = write_frames(tmp_path / "clip", 30)
    from quota.video import uniform_indices

    frames = load_frames(folder, n=5, frame_fps=3.0)
    assert frames.indices.tolist() == list(uniform_indices(30, 5))
    assert [read_frame_number(p) for p in frames.pixels] == frames.indices.tolist()
    assert np.allclose(frames.timestamps, frames.indices / 3.0) and frames.duration == pytest.approx(10.0)
    default = load_frames(folder, n=2)
    assert default.fps == DEFAULT_FPS == 1.0 and default.duration == pytest.approx(30.0)
    # the part of a question with bounds: only frames inside it, times from its start
    part = clip_frames(folder, 2.0, 6.0, n=4, fps=3.0)
    assert all(6 <= i <= 18 for i in part.indices.tolist())
    assert [read_frame_number(p) for p in part.pixels] == part.indices.tolist()
    assert part.timestamps[0] == pytest.approx(0.0) and part.duration == pytest.approx(13 / 3.0)


def test_empty_or_missing_folder_is_a_video_error(tmp_path: Path):
    from quota.errors import VideoError
    from quota.video import load_frames

    (tmp_path / "empty").mkdir()
    with pytest.raises(VideoError, match="no frame images"):
        load_frames(tmp_path / "empty")


def test_episodic_reasoning_from_frames_is_answered(tmp_path: Path, tiny_llava_ov):
    """The frame-folder question runs through the pipeline like any other: an answer, not an error row."""
    from quota import QuoTA

    root = tmp_path / "MVBench"
    (root / "json").mkdir(parents=True)
    (root / "json" / "episodic_reasoning.json").write_text(json.dumps([row("episodic_reasoning", True, "s01_clip")]))
    write_frames(root / "video" / "tvqa" / "frames_fps3_hq" / "s01_clip", 30)
    bench = load_benchmark("mvbench", root / "json", root)
    qa = QuoTA.from_pretrained(str(tiny_llava_ov), scorer="uniform", device="cpu", quiet=True,
                               base_frames=6, budget=24, max_new_tokens=3)
    store = RunStore(tmp_path / "run", {"benchmark": "mvbench"})
    summary = run_benchmark(bench, PipelineAnswer(qa), store, quiet=True)
    assert (summary.answered, summary.errors) == (1, 0)
    result = store.results()[0]
    assert result.error is None and result.plan["sampled"] == 6
    # the frames the pipeline saw are the bounded part, at 3 frames a second
    frames = PipelineAnswer(qa).video_input(bench.samples[0], {})
    assert frames.indices.min() >= 6 and frames.indices.max() <= 20
    assert frames.duration == pytest.approx((frames.indices.max() - frames.indices.min()) / 3.0 + 1 / 3.0, abs=1.0)


def test_quota_ask_takes_a_frame_folder(tmp_path: Path, tiny_llava_ov, capsys):
    from quota.cli import main

    folder = write_frames(tmp_path / "frames", 12)
    cmd = ["ask", str(folder), "What is shown?", "--base", str(tiny_llava_ov),
           "--scorer", "uniform", "--frames", "4", "--budget", "16", "--set", "max_new_tokens=3", "--device", "cpu",
           "--json", "--quiet"]
    code = main(cmd)
    out, err = capsys.readouterr()
    assert code == 0, err
    data = json.loads(out)
    assert data["plan"]["duration"] == pytest.approx(12.0)  # 12 images at the default 1 frame/s
    empty = tmp_path / "nothing"
    empty.mkdir()
    code = main(cmd[:1] + [str(empty)] + cmd[2:])
    err = capsys.readouterr().err
    assert code == 2 and "no frame images" in err and "loading" not in err
