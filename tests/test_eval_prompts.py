"""The benchmark text the model reads: ``quota eval``, the lmms-eval plug-in and lmms-eval's own task code
give the same token ids for the same sample.

For each of the six benchmarks one fixture row in the published schema is written to disk under the
published file name and loaded by ``quota eval``'s loader (the route ``quota eval`` takes); the same row is
handed to the plug-in as the lmms-eval ``doc``; and lmms-eval's installed task yaml and ``doc_to_text`` are
run on it with the ``llava_vid`` prompt variant, as lmms-eval does for LLaVA-Video. VNBench has no
lmms-eval task: its reference is the benchmark's own evaluation prompt.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from quota.eval import load_benchmark
from quota.eval.pipeline_answer import PipelineAnswer
from quota.eval.prompts import VARIANT, benchmark_of_task
from quota.testing.videos import make_video

lmms_eval = pytest.importorskip("lmms_eval", reason="lmms-eval is not installed (pip install 'quota[lmms-eval]')")

TASKS = Path(os.path.dirname(lmms_eval.__file__)) / "tasks"

# One row per benchmark, in the schema the benchmark publishes (and lmms-eval's dataset holds); spacing
# quirks (trailing blanks, unused "N/A" option slots) are on purpose.
VIDEOMME = {
    "video_id": "001", "duration": "short", "domain": "Knowledge", "sub_category": "Humanity & History",
    "url": "https://www.youtube.com/watch?v=fFjv93ACGo8", "videoID": "fFjv93ACGo8", "question_id": "001-1",
    "task_type": "Counting Problem", "question": "When demonstrating the Germany modern Christmas tree is "
    "initially decorated with apples, candles and berries, which kind of the decoration has the largest number?",
    "options": ["A. Apples.", "B. Candles.", "C. Berries.", "D. The three kinds are of the same number."],
    "answer": "C",
}
MLVU = {
    "video_name": "movie101_66.mp4", "duration": 246.0, "question": "What color is the main male character "
    "in the video?\n(A) Yellow\n(B) Red\n(C) Green\n(D) Blue", "candidates": ["Yellow", "Red", "Green", "Blue"],
    "answer": "Yellow", "task_type": "plotQA", "question_id": "plotQA_0",
}
LONGVIDEOBENCH = {
    "video_id": "86CxyhFV9MI", "video_path": "86CxyhFV9MI.mp4", "duration": 22.0, "subtitle_path": "x.json",
    "starting_timestamp_for_subtitles": 0, "question": "In the video, which subtitles appear at the same time "
    "as the man with black hair?", "option0": "Dad, I'm here", "option1": "I can see it", "option2": "Stop it",
    "option3": "N/A", "option4": "N/A", "correct_choice": 2, "duration_group": 15,
    "question_category": "S2E", "id": "86CxyhFV9MI_0", "level": "L1-Perception", "topic_category": "NP-News-Programs",
    "question_wo_referring_query": "Which subtitles appear?",
}
MVBENCH = {
    "video": "video_10109.mp4", "question": "What is the number of times the person dipped the brush? ",
    "candidates": ["3", "1", "4"], "answer": "3",
}
NEXTQA = {
    "video": 4010069381, "frame_count": 1016, "width": 640, "height": 480,
    "question": "why did the boy pick up one present from the group of them and move to the sofa ",
    "answer": 3, "qid": 6, "type": "CW", "a0": "share with the girl", "a1": "approach lady sitting there ",
    "a2": "unwrap it", "a3": "playing with toy train", "a4": "gesture something",
}
VNBENCH = {
    "video": "./VNBench_new/ret_insert1_0_0.mp4", "question": "What is the secret word in the video?",
    "options": ["apple", "river", "cloud", "stone"], "gt": "cloud", "gt_option": "C", "type": "ret_insert1",
    "try": 0, "needle_time": [12.0], "length": 60.0,
}

# benchmark -> (row, lmms-eval task yaml, lmms-eval task name, published annotation file, video path in the folder)
CASES = {
    "videomme": (VIDEOMME, "videomme/videomme.yaml", "videomme", "videomme.json", "data/fFjv93ACGo8.mp4"),
    "mlvu": (MLVU, "mlvu/mlvu_dev.yaml", "mlvu_dev", "mlvu_dev.json", "1_plotQA/movie101_66.mp4"),
    "longvideobench": (LONGVIDEOBENCH, "longvideobench/longvideobench_val_v.yaml", "longvideobench_val_v",
                       "lvb_val.json", "videos/86CxyhFV9MI.mp4"),
    "mvbench": (MVBENCH, "mvbench/mvbench_action_count.yaml", "mvbench_action_count", "json/action_count.json",
                "video/perception/videos/video_10109.mp4"),
    "nextqa": (NEXTQA, "nextqa/nextqa_mc_test.yaml", "nextqa_mc_test", "test.csv", "NExTVideo/1010/4010069381.mp4"),
    "vnbench": (VNBENCH, None, None, "VNBench-main-4try.json", "VNBench_new/ret_insert1_0_0.mp4"),
}


def lmms_eval_text(task_yaml: str, doc: dict, model: str = VARIANT) -> str:
    """What lmms-eval builds for ``doc`` with model ``llava_vid``: the task yaml loaded by lmms-eval, the
    model-specific kwargs picked by lmms-eval's own ``_prepare_model_specific_config``, then the task's
    ``doc_to_text`` called the way ``ConfigurableTask.doc_to_text`` calls it."""
    from lmms_eval.api.task import ConfigurableTask
    from lmms_eval.utils import load_yaml_config

    os.environ.setdefault("HF_HOME", str(Path.home() / ".cache" / "huggingface"))
    cfg = load_yaml_config(str(TASKS / task_yaml), mode="full")
    task = SimpleNamespace(
        model_name=model,
        config=SimpleNamespace(
            lmms_eval_specific_kwargs=copy.deepcopy(cfg.get("lmms_eval_specific_kwargs")),
            model_specific_target_kwargs=None, model_specific_generation_kwargs=None,
        ),
    )
    ConfigurableTask._prepare_model_specific_config(task)
    kwargs = task.lmms_eval_specific_kwargs
    fn = cfg["doc_to_text"]
    return fn(doc, kwargs) if kwargs is not None else fn(doc)


def vnbench_reference(doc: dict) -> str:
    """VNBench's evaluation prompt as its own script writes it (VideoNIAH llava_examples/model_video_niah.py)."""
    o = doc["options"]
    return (f"{doc['question']}\nA. {o[0]}\nB. {o[1]}\nC. {o[2]}\nD. {o[3]}\n"
            "Answer with the option's letter from the given choices directly.")


def write_case(root: Path, name: str) -> tuple[Path, Path]:
    row, _, _, ann_name, video = CASES[name]
    make_video(root / video, n_frames=12, fps=6, size=(48, 32))
    ann = root / ann_name
    ann.parent.mkdir(parents=True, exist_ok=True)
    if ann.suffix == ".csv":
        import csv

        with ann.open("w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=list(row))
            w.writeheader()
            w.writerow(row)
    else:
        ann.write_text(json.dumps([row]), encoding="utf-8")
    return ann, root


@pytest.fixture(scope="module")
def plugin(tiny_llava_ov):
    from quota.integrations.lmms_eval import QuotaLMM

    return QuotaLMM(base=str(tiny_llava_ov), scorer="uniform", device="cpu", base_frames=4, budget=16)


@pytest.fixture(scope="module")
def tokenizer(tiny_llava_ov):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_llava_ov))


@pytest.mark.parametrize("name", list(CASES))
def test_quota_eval_plugin_and_lmms_eval_send_the_same_tokens(name, tmp_path, plugin, tokenizer):
    row, task_yaml, task, ann_name, _ = CASES[name]
    ann, root = write_case(tmp_path, name)
    bench = load_benchmark(name, ann if name != "mvbench" else root / "json", root)
    assert len(bench.samples) == 1, bench.summary()
    sample = bench.samples[0]
    ours = PipelineAnswer(plugin.pipeline).formatted(sample)  # what quota eval hands the pipeline
    reference = vnbench_reference(row) if task_yaml is None else lmms_eval_text(task_yaml, copy.deepcopy(row))
    ids = tokenizer(reference, add_special_tokens=False)["input_ids"]
    assert tokenizer(ours, add_special_tokens=False)["input_ids"] == ids
    assert ours == reference
    if task is not None:  # the plug-in, given lmms-eval's doc for the task
        assert benchmark_of_task(task) == name
        question, options, formatted = plugin.question_of(task, copy.deepcopy(row), context="(lmms-eval context)")
        assert tokenizer(formatted, add_special_tokens=False)["input_ids"] == ids
        # decoupling sees the same question and options in both routes
        assert (question, options) == (sample.question, sample.options)
    # the answer prompt holds the text verbatim (after the time instruction when that is on)
    for time_prompt in (False, True):
        qa = plugin.pipeline.with_config(time_prompt=time_prompt) if hasattr(plugin.pipeline, "with_config") \
            else plugin.pipeline
        if not hasattr(plugin.pipeline, "with_config"):
            qa.config = qa.config.replace(time_prompt=time_prompt)
        prompt = qa.answer_prompt(sample.question, sample.options, 10.0, [0.0, 5.0], formatted=ours)
        assert prompt == ours if not time_prompt else (prompt.endswith("\n" + ours) and len(prompt) > len(ours) + 1)


def test_plugin_keeps_the_context_of_other_tasks(plugin):
    context = "Describe the video.\nAnswer briefly."
    assert plugin.question_of("some_other_task", {"video": "x.mp4"}, context) == (context, None, None)


def test_videomme_prompt_is_the_llava_vid_variant():
    """lmms-eval's default variant (what a model named ``quota`` would get) differs for Video-MME: the
    plug-in must not send it."""
    from quota.eval.prompts import videomme_prompt

    default = lmms_eval_text("videomme/videomme.yaml", dict(VIDEOMME), model="quota")
    assert videomme_prompt(VIDEOMME) == lmms_eval_text("videomme/videomme.yaml", dict(VIDEOMME))
    assert videomme_prompt(VIDEOMME) != default
    assert default.endswith("Answer with the option's letter from the given choices directly.")
