"""Benchmark loaders: each benchmark's published annotation format, written here in miniature, with
dummy video files (the loaders never decode videos)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from quota.errors import BenchmarkError
from quota.eval.benchmarks import (
    BENCHMARKS,
    Sample,
    get_spec,
    load_benchmark,
    read_records,
    resolve_answer,
    split_embedded_options,
)
from quota.eval.benchmarks._files import VideoFinder


def touch(path: Path, data: bytes = b"\x00\x00\x00\x18ftypmp42") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def write_json(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def write_jsonl(path: Path, rows) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_csv(path: Path, rows, delimiter: str = ",") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]), delimiter=delimiter)
        writer.writeheader()
        writer.writerows(rows)
    return path


# ---------------------------------------------------------------------------------------------
# Video-MME


def videomme_rows():
    rows = []
    for v, (vid, dur) in enumerate([("fFjv93ACGo8", "short"), ("Ab12Cd34Ef5", "long"), ("ZZmissing01", "medium")]):
        for q in range(3):
            rows.append({
                "video_id": f"{v + 1:03d}",
                "duration": dur,
                "domain": "Knowledge",
                "sub_category": "Astronomy",
                "url": "https://example.invalid",
                "videoID": vid,
                "question_id": f"{v + 1:03d}-{q + 1}",
                "task_type": ["Counting Problem", "OCR Problems", "Temporal Reasoning"][q],
                "question": f"Question {q} about {vid}?",
                "options": [f"A. first {q}", f"B. second {q}", f"C. third {q}", f"D. fourth {q}"],
                "answer": "ABCD"[q],
            })
    return rows


def test_videomme_json_fields_and_missing(tmp_path: Path):
    ann = write_json(tmp_path / "videomme.json", videomme_rows())
    touch(tmp_path / "Video-MME" / "data" / "fFjv93ACGo8.mp4")
    touch(tmp_path / "Video-MME" / "data" / "Ab12Cd34Ef5.MKV")  # other extension and case
    bench = load_benchmark("videomme", ann, tmp_path / "Video-MME")
    assert len(bench) == 6 and len(bench.missing) == 3
    assert bench.missing_videos == ["ZZmissing01"]
    s = bench.samples[0]
    assert s.id == "001-1"
    assert s.video == str(tmp_path / "Video-MME" / "data" / "fFjv93ACGo8.mp4")
    assert s.options == ["first 0", "second 0", "third 0", "fourth 0"]
    assert s.answer == "A" and s.letters == "ABCD"
    assert s.fields == {"duration": "short", "domain": "Knowledge", "sub_category": "Astronomy",
                        "task_type": "Counting Problem"}
    assert s.benchmark == "videomme"
    assert bench.samples[3].video.endswith("Ab12Cd34Ef5.MKV")
    assert bench.samples[5].answer == "C"
    assert "3 questions left out" in bench.summary()
    assert s.prompt() == "Question 0 about fFjv93ACGo8?\nA. first 0\nB. second 0\nC. third 0\nD. fourth 0"


def test_missing_videos_fatal_when_asked(tmp_path: Path):
    ann = write_json(tmp_path / "videomme.json", videomme_rows())
    touch(tmp_path / "v" / "fFjv93ACGo8.mp4")
    with pytest.raises(BenchmarkError, match=r"2 videos \(6 questions\) not found"):
        load_benchmark("videomme", ann, tmp_path / "v", on_missing="error")
    with pytest.raises(BenchmarkError, match="on_missing"):
        load_benchmark("videomme", ann, tmp_path / "v", on_missing="ignore")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BenchmarkError, match="none of the videos was found"):  # a wrong folder
        load_benchmark("videomme", ann, tmp_path / "empty", on_missing="skip")


def test_videomme_nested_and_csv_forms(tmp_path: Path):
    touch(tmp_path / "v" / "fFjv93ACGo8.mp4")
    nested = [{
        "video_id": "001", "videoID": "fFjv93ACGo8", "duration": "short", "domain": "Knowledge",
        "sub_category": "Astronomy",
        "questions": [
            {"question_id": "001-1", "task_type": "OCR Problems", "question": "Q1?",
             "options": ["A. x", "B. y", "C. z", "D. w"], "answer": "B"},
            {"question_id": "001-2", "task_type": "OCR Problems", "question": "Q2?",
             "options": ["A. x", "B. y", "C. z", "D. w"], "answer": "D"},
        ],
    }]
    bench = load_benchmark("videomme", write_json(tmp_path / "nested.json", nested), tmp_path / "v")
    assert [s.id for s in bench] == ["001-1", "001-2"]
    assert [s.answer for s in bench] == ["B", "D"]
    assert bench.samples[0].fields["duration"] == "short"

    rows = [dict(r, options=json.dumps(r["options"])) for r in videomme_rows()[:3]]
    bench = load_benchmark("videomme", write_csv(tmp_path / "vmme.csv", rows), tmp_path / "v")
    assert len(bench) == 3 and bench.samples[1].options[1] == "second 1"


def test_parquet_needs_pyarrow_or_reads(tmp_path: Path):
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        bad = touch(tmp_path / "test-00000-of-00001.parquet", b"PAR1")
        with pytest.raises(BenchmarkError, match="pyarrow"):
            read_records(bad)
        return
    rows = videomme_rows()
    path = tmp_path / "test-00000-of-00001.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    touch(tmp_path / "v" / "data" / "fFjv93ACGo8.mp4")
    bench = load_benchmark("videomme", path, tmp_path / "v")
    assert [s.id for s in bench] == ["001-1", "001-2", "001-3"]


# ---------------------------------------------------------------------------------------------
# MLVU


def test_mlvu_per_task_json_folder(tmp_path: Path):
    root = tmp_path / "MLVU"
    write_json(root / "json" / "1_plotQA.json", [
        {"video": "movie101_66.mp4", "duration": 246.7, "question": "What happens first?",
         "candidates": ["rain", "snow", "sun", "fog"], "answer": "snow", "question_type": "plotQA"},
        {"video": "movie101_67.mp4", "duration": 300, "question": "Who talks?",
         "candidates": ["a", "b", "c", "d"], "answer": "zzz", "question_type": "plotQA"},  # no such option
    ])
    write_json(root / "json" / "4_count.json", [
        {"video": "count_1.mp4", "duration": 500, "question": "How many jumps?",
         "candidates": [3, 5, 2, 4], "answer": 5, "question_type": "count"},
    ])
    write_json(root / "json" / "8_sub_scene.json", [
        {"video": "subPlot_1.mp4", "duration": 600, "question": "Describe the scene.", "answer": "long text",
         "question_type": "subPlot"},
    ])
    touch(root / "video" / "1_plotQA" / "movie101_66.mp4")
    touch(root / "video" / "1_plotQA" / "movie101_67.mp4")
    touch(root / "video" / "4_count" / "count_1.mp4")
    for annotations in (root / "json", root):  # the json folder, or the dataset root holding it
        bench = load_benchmark("mlvu", annotations, root / "video")
        assert [s.id for s in bench] == ["1_plotQA-0", "4_count-0"]
        plot, count = bench.samples
        assert plot.answer == "B" and plot.fields == {"task": "plotQA"}
        # counting options are numbers: the answer 5 is the option "5", not index 5
        assert count.options == ["3", "5", "2", "4"] and count.answer == "B"
        assert count.video.endswith("4_count/count_1.mp4")
        assert len(bench.skipped) == 2  # the unmatched answer and the open-ended row
        assert any("open-ended" in s for s in bench.skipped) and any("zzz" in s for s in bench.skipped)


def test_mlvu_lmms_eval_table_with_embedded_options(tmp_path: Path):
    rows = [{
        "video_name": "1_plotQA/movie101_66.mp4",
        "question": "What happens first?\n(A) rain\n(B) snow\n(C) sun\n(D) fog",
        "answer": "(C) sun",
        "task_type": "plotQA",
        "question_id": "plotQA_0",
    }]
    touch(tmp_path / "mlvu" / "1_plotQA" / "movie101_66.mp4")
    bench = load_benchmark("mlvu", write_jsonl(tmp_path / "dev.jsonl", rows), tmp_path / "mlvu")
    (s,) = bench.samples
    assert s.question == "What happens first?"
    assert s.options == ["rain", "snow", "sun", "fog"] and s.answer == "C" and s.id == "plotQA_0"


# ---------------------------------------------------------------------------------------------
# LongVideoBench


def test_longvideobench_json_and_option_columns(tmp_path: Path):
    vids = tmp_path / "LongVideoBench" / "videos"
    touch(vids / "86CxyhFV9MI.mp4")
    touch(vids / "QnbuHmY0nEw.mp4")
    rows = [
        {"video_id": "86CxyhFV9MI", "question": "What color is the car?", "question_wo_referring_query": "x",
         "candidates": ["red", "blue", "green", "white", "black"], "correct_choice": 3, "position": [1],
         "topic_category": "NP-News-Programs", "question_category": "TOS", "level": "L2-Relation",
         "id": "86CxyhFV9MI_0", "video_path": "86CxyhFV9MI.mp4", "subtitle_path": "86CxyhFV9MI_en.json",
         "duration_group": 600, "starting_timestamp_for_subtitles": 0, "duration": 527.0, "view_count": 1},
    ]
    bench = load_benchmark("longvideobench", write_json(tmp_path / "lvb_val.json", rows), vids.parent)
    (s,) = bench.samples
    assert s.id == "86CxyhFV9MI_0" and s.answer == "D" and len(s.options) == 5
    assert s.fields == {"duration_group": "600", "category": "TOS"}

    rows = [{"id": "QnbuHmY0nEw_1", "video_path": "QnbuHmY0nEw.mp4", "question": "Which?",
             "option0": "one", "option1": "two", "option2": "three", "option3": "N/A", "option4": "N/A",
             "correct_choice": 2, "duration_group": 15, "question_category": "E2O"}]
    bench = load_benchmark("longvideobench", write_jsonl(tmp_path / "val.jsonl", rows), vids)
    (s,) = bench.samples
    assert s.options == ["one", "two", "three"] and s.answer == "C" and s.letters == "ABC"


# ---------------------------------------------------------------------------------------------
# MVBench


def test_mvbench_prefixes_bounds_and_frame_folders(tmp_path: Path):
    ann = tmp_path / "MVBench" / "json"
    vids = tmp_path / "MVBench" / "video"
    write_json(ann / "action_sequence.json", [
        {"video": "ZS9XR.mp4", "question": "What did the person do first?", "candidates": ["sat", "ran", "ate"],
         "answer": "ran", "start": 11.5, "end": 19.0},
        {"video": "ABCDE.mp4", "question": "What next?", "candidates": ["sat", "ran", "ate"],
         "answer": "ate", "start": 1.0, "end": 2.0},
    ])
    write_json(ann / "action_antonym.json", [
        {"video": "166583.webm", "question": "What is the action?", "candidates": ["push", "pull", "none"],
         "answer": "pull"},
    ])
    write_json(ann / "object_existence.json", [
        {"video": "video_10000.mp4", "question": "Is there a cube?", "candidates": ["yes", "no"], "answer": "no"},
    ])
    write_json(ann / "state_change.json", [
        {"video": "video_10000.mp4", "question": "Does it change?", "candidates": ["yes", "no"], "answer": "yes"},
    ])
    write_json(ann / "moving_count.json", [  # its video exists only in another task's folder
        {"video": "video_10001.mp4", "question": "How many?", "candidates": ["1", "2"], "answer": "2"},
    ])
    write_json(ann / "episodic_reasoning.json", [
        {"video": "s01e02_seg01", "question": "Why?", "candidates": ["x", "y", "z"], "answer": "z",
         "start": 3.0, "end": 9.0},
    ])
    touch(vids / "star" / "Charades_v1_480" / "ZS9XR.mp4")
    touch(vids / "star" / "Charades_segment" / "ABCDE.mp4")  # an lmms-eval pre-cut clip
    touch(vids / "ssv2_video_mp4" / "166583.mp4")  # .webm converted to .mp4
    touch(vids / "clevrer" / "video_validation" / "video_10000.mp4")
    touch(vids / "perception" / "videos" / "video_10000.mp4")  # same name, another video
    touch(vids / "perception" / "videos" / "video_10001.mp4")
    touch(vids / "tvqa" / "frames_fps3_hq" / "s01e02_seg01" / "00001.jpg")
    for videos in (vids, vids.parent):  # the video folder, or the dataset root above it
        bench = load_benchmark("mvbench", ann, videos)
        by_id = {s.id: s for s in bench}
        assert set(by_id) == {"action_sequence-0", "action_sequence-1", "action_antonym-0",
                              "object_existence-0", "state_change-0", "episodic_reasoning-0"}
        full = by_id["action_sequence-0"]
        assert (full.start, full.end) == (11.5, 19.0) and full.answer == "B"
        cut = by_id["action_sequence-1"]
        assert (cut.start, cut.end) == (None, None) and "Charades_segment" in cut.video
        assert by_id["action_antonym-0"].video.endswith("ssv2_video_mp4/166583.mp4")
        assert "clevrer" in by_id["object_existence-0"].video
        assert "perception" in by_id["state_change-0"].video
        assert [s.id for s in bench.missing] == ["moving_count-0"]
        assert "clevrer/video_validation/video_10001.mp4" in bench.missing[0].video
        frames = by_id["episodic_reasoning-0"]
        assert Path(frames.video).is_dir() and frames.start == 3.0
        assert all(s.fields["task"] == s.id.rsplit("-", 1)[0] for s in bench)


# ---------------------------------------------------------------------------------------------
# NExT-QA


def nextqa_rows():
    rows = []
    for vid, qid, typ, ans in [("4010069381", 0, "CW", 2), ("4010069381", 1, "TN", 0), ("7771650716", 4, "DC", 4)]:
        rows.append({"video": vid, "frame_count": 1000, "width": 640, "height": 480,
                     "question": f"why {qid}", "answer": ans, "qid": qid, "type": typ,
                     "a0": "zero", "a1": "one", "a2": "two", "a3": "three", "a4": "four"})
    return rows


def test_nextqa_csv_with_and_without_map(tmp_path: Path):
    vids = tmp_path / "NExTVideo"
    touch(vids / "1164" / "4010069381.mp4")
    touch(vids / "0071" / "7771650716.mp4")
    ann = write_csv(tmp_path / "test.csv", nextqa_rows())
    bench = load_benchmark("nextqa", ann, vids)  # found by name below the folder
    assert [s.id for s in bench] == ["4010069381-0", "4010069381-1", "7771650716-4"]
    assert [s.answer for s in bench] == ["C", "A", "E"]
    assert [s.fields["category"] for s in bench] == ["causal", "temporal", "descriptive"]
    assert bench.samples[0].fields["type"] == "CW"
    assert bench.samples[2].video.endswith("0071/7771650716.mp4")
    write_json(vids / "map_vid_vidorID.json", {"4010069381": "1164/4010069381", "7771650716": "0071/7771650716"})
    bench = load_benchmark("nextqa", ann, vids)
    assert [s.video_name for s in bench] == ["1164/4010069381", "1164/4010069381", "0071/7771650716"]
    assert len(bench) == 3


# ---------------------------------------------------------------------------------------------
# VNBench


def test_vnbench_tries_groups_and_number_options(tmp_path: Path):
    rows = []
    for t in range(4):
        opts = ["2", "3", "4", "5"]
        opts = opts[t:] + opts[:t]  # each try shuffles the options
        rows.append({"video": "./VNBench_new/3261112327.mp4", "question": "How many needles?",
                     "options": opts, "gt": "3", "gt_option": "ABCD"[opts.index("3")], "type": "cnt_edit1",
                     "try": t, "needle_time": [1.0], "length": 120})
    rows.append({"video": "./VNBench_new/3261112328.mp4", "question": "What text?",
                 "options": ["cat", "dog", "sun", "car"], "gt": "sun", "gt_option": "C", "type": "ret_insert1",
                 "try": 0})
    touch(tmp_path / "VNBench_new" / "3261112327.mp4")
    touch(tmp_path / "VNBench_new" / "3261112328.mp4")
    ann = write_json(tmp_path / "VNBench-main-4try.json", rows)
    for videos in (tmp_path, tmp_path / "VNBench_new"):
        bench = load_benchmark("vnbench", ann, videos)
        assert [s.id for s in bench][:2] == ["3261112327_cnt_edit1_0", "3261112327_cnt_edit1_1"]
        assert [s.answer for s in bench][:4] == ["B", "A", "D", "C"]
        assert {s.fields["group"] for s in bench.samples[:4]} == {"3261112327_cnt_edit1"}
        assert bench.samples[0].fields["category"] == "counting"
        assert bench.samples[4].fields == {"category": "retrieval", "task": "ret_insert1",
                                           "group": "3261112328_ret_insert1"}


# ---------------------------------------------------------------------------------------------
# shared behaviour


def test_registry_names_and_errors(tmp_path: Path):
    assert set(BENCHMARKS) == {"videomme", "mlvu", "longvideobench", "mvbench", "nextqa", "vnbench"}
    assert get_spec("Video-MME").name == "videomme" and get_spec("mlvu_dev").name == "mlvu"
    with pytest.raises(BenchmarkError, match="unknown benchmark"):
        get_spec("egoschema")
    (tmp_path / "v").mkdir()
    with pytest.raises(BenchmarkError, match="do not exist"):
        load_benchmark("videomme", tmp_path / "nope.json", tmp_path / "v")
    ann = write_json(tmp_path / "a.json", videomme_rows())
    with pytest.raises(BenchmarkError, match="video folder"):
        load_benchmark("videomme", ann, tmp_path / "no-videos")
    with pytest.raises(BenchmarkError, match="no multiple-choice question"):
        load_benchmark("videomme", write_json(tmp_path / "empty.json", []), tmp_path / "v")


def test_duplicate_ids_made_unique_and_stable(tmp_path: Path):
    rows = videomme_rows()[:2]
    rows[1]["question_id"] = rows[0]["question_id"]
    touch(tmp_path / "v" / "fFjv93ACGo8.mp4")
    ann = write_json(tmp_path / "a.json", rows)
    first = [s.id for s in load_benchmark("videomme", ann, tmp_path / "v")]
    again = [s.id for s in load_benchmark("videomme", ann, tmp_path / "v")]
    assert first == again == ["001-1", "001-1~2"]


def test_read_records_formats(tmp_path: Path):
    rows = [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]
    assert read_records(write_json(tmp_path / "l.json", rows)) == rows
    assert read_records(write_json(tmp_path / "d.json", {"data": rows})) == rows
    assert read_records(write_json(tmp_path / "k.json", {"q1": {"a": 1}})) == [{"_key": "q1", "a": 1}]
    assert read_records(write_jsonl(tmp_path / "r.jsonl", rows)) == rows
    assert read_records(write_csv(tmp_path / "r.csv", rows)) == [{"a": "1", "b": "x"}, {"a": "2", "b": "y"}]
    assert read_records(write_csv(tmp_path / "r.tsv", rows, "\t"))[1] == {"a": "2", "b": "y"}
    (tmp_path / "bad.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(BenchmarkError, match="bad.json"):
        read_records(tmp_path / "bad.json")
    (tmp_path / "x.xml").write_text("<a/>", encoding="utf-8")
    with pytest.raises(BenchmarkError, match="unsupported type"):
        read_records(tmp_path / "x.xml")
    with pytest.raises(BenchmarkError, match="does not exist"):
        read_records(tmp_path / "none.json")


def test_resolve_answer_forms():
    opts = ["red", "blue", "3", "green"]
    assert resolve_answer("blue", opts) == "B"
    assert resolve_answer("C", opts) == "C"
    assert resolve_answer("(d)", opts) == "D"
    assert resolve_answer(0, opts) == "A"
    assert resolve_answer("3", opts) == "C"  # option text wins over index 3
    assert resolve_answer(2, ["1", "2", "3"], numbers_are_indices=False) == "B"
    assert resolve_answer(2, ["1", "2", "3"]) == "C"
    assert resolve_answer("Blue.", opts) == "B"
    assert resolve_answer("B. blue", opts) == "B"
    assert resolve_answer("purple", opts) is None
    assert resolve_answer(7, opts) is None
    assert resolve_answer(None, opts) is None


def test_split_embedded_options():
    q, opts = split_embedded_options("What is it?\nOptions:\n(A) a cat\n(B) a dog\n(C) a bird")
    assert q == "What is it?" and opts == ["a cat", "a dog", "a bird"]
    assert split_embedded_options("A plain question?") == ("A plain question?", [])


def test_video_finder_extensions_and_ambiguity(tmp_path: Path):
    touch(tmp_path / "a" / "clip.webm")
    touch(tmp_path / "b" / "dup.mp4")
    touch(tmp_path / "c" / "dup.mp4")
    finder = VideoFinder(tmp_path)
    assert finder.find("a/clip.mp4")[0] == tmp_path / "a" / "clip.webm"
    assert finder.find("clip")[0] == tmp_path / "a" / "clip.webm"  # by stem, anywhere
    assert finder.find("dup.mp4")[0] is None  # two different videos: refuse to guess
    assert finder.find("dup.mp4", prefixes=("c",))[0] == tmp_path / "c" / "dup.mp4"
    assert finder.find(str(tmp_path / "b" / "dup.mp4"))[0] == tmp_path / "b" / "dup.mp4"
    assert finder.find("")[0] is None
    touch(tmp_path / "yt" / "aBc123.mp4")
    assert finder.find("yt/aBc123.MKV")[0] == tmp_path / "yt" / "aBc123.mp4"
    assert VideoFinder(tmp_path).find("yt/abc123.mp4")[0] is None  # ids are case-sensitive


def test_sample_round_trip():
    s = Sample("x-1", "/v/x.mp4", "Q?", ["a", "b"], "B", {"task": "t"}, "mvbench", 1.0, 2.0, "x.mp4")
    assert Sample.from_dict(json.loads(json.dumps(s.to_dict()))) == s
    assert s.options_text() == "A. a\nB. b"


def test_bad_rows_give_the_jsonl_line_and_the_json_row(tmp_path: Path):
    good = videomme_rows()[0]
    bad = {**good, "question_id": "bad", "options": ["A. only one"]}
    touch(tmp_path / "data" / f"{good['videoID']}.mp4")
    jsonl = tmp_path / "vmme.jsonl"
    jsonl.write_text(json.dumps(good) + "\n\n" + json.dumps({**good, "question_id": "x2"}) + "\n" + json.dumps(bad) + "\n")
    bench = load_benchmark("videomme", jsonl, tmp_path)
    assert bench.skipped == ["vmme.jsonl line 4: fewer than two options"]  # the blank line 2 counts
    listed = write_json(tmp_path / "vmme.json", [good, bad, {**good, "question_id": "x3", "answer": "Z"}])
    bench = load_benchmark("videomme", listed, tmp_path)
    assert bench.skipped == ["vmme.json row 1: fewer than two options",
                             "vmme.json row 2: answer 'Z' matches none of the 4 options"]
    broken = tmp_path / "broken.jsonl"
    broken.write_text(json.dumps(good) + "\n{not json\n")
    with pytest.raises(BenchmarkError, match="broken.jsonl line 2"):
        load_benchmark("videomme", broken, tmp_path)


def test_nextqa_types_follow_the_official_grouping(tmp_path: Path):
    """The official eval_mc.py counts TP (previous) with TN (next) and groups by the type's first letter."""
    rows = nextqa_rows()
    rows[1]["type"] = "TP"
    touch(tmp_path / "NExTVideo" / "1164" / "4010069381.mp4")
    touch(tmp_path / "NExTVideo" / "0071" / "7771650716.mp4")
    bench = load_benchmark("nextqa", write_csv(tmp_path / "test.csv", rows), tmp_path / "NExTVideo")
    assert [(s.fields["category"], s.fields["type"]) for s in bench] == [
        ("causal", "CW"), ("temporal", "TN"), ("descriptive", "DC")]
