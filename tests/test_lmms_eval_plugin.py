"""The ``quota`` model of lmms-eval: registration, argument parsing, requests, and a real lmms-eval run.

Everything runs offline on generated videos with tiny random-weight checkpoints; the last test runs
lmms-eval's own command line on the tiny task in ``tests/data/lmms_task``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("lmms_eval", reason="lmms-eval is not installed (pip install 'quota[lmms-eval]')")

from lmms_eval.api.instance import Instance  # noqa: E402
from PIL import Image  # noqa: E402

from quota.config import coerce_flag, coerce_setting, resolve_config  # noqa: E402
from quota.errors import ConfigError, VideoError  # noqa: E402
from quota.runtime import DistInfo, choose_device  # noqa: E402
from quota.integrations import LMMS_EVAL_MODEL_NAME, lmms_eval_models  # noqa: E402
from quota.integrations.lmms_eval import (  # noqa: E402
    QuotaLMM,
    cut_at_stop,
    flatten_visuals,
    frames_from_images,
    image_files,
)
from quota.testing.videos import frame_pattern, make_video, read_frame_number  # noqa: E402

TASK_DIR = Path(__file__).parent / "data" / "lmms_task"
TASK = "quota_tiny_mc"
#: Small settings so a request takes well under a second on CPU.
FAST_ARGS = "base_frames=6,budget=24,max_new_tokens=3,decouple_max_new_tokens=12,scorer_batch_size=6"


# ---------------------------------------------------------------------------------------------------------
# Registration
# ---------------------------------------------------------------------------------------------------------


def test_entry_point_registers_the_quota_model():
    eps = {ep.name: ep for ep in entry_points(group="lmms_eval.models")}
    assert "quota" in eps, "run `pip install -e .` so the lmms_eval.models entry point is registered"
    assert eps["quota"].value == "quota.integrations:lmms_eval_models"
    (manifest,) = lmms_eval_models()
    assert manifest.model_id == LMMS_EVAL_MODEL_NAME == "quota"

    from lmms_eval.models import get_model, get_model_manifest, list_available_models

    assert "quota" in list_available_models()
    assert get_model_manifest("quota").simple_class_path == "quota.integrations.lmms_eval.QuotaLMM"
    assert get_model("quota") is QuotaLMM
    assert QuotaLMM.is_simple


# ---------------------------------------------------------------------------------------------------------
# Pure helpers
# ---------------------------------------------------------------------------------------------------------


def test_settings_are_converted_to_config_field_types():
    assert coerce_setting("budget", 6272) == 6272
    assert coerce_setting("budget", 6272.0) == 6272 and isinstance(coerce_setting("budget", 6272.0), int)
    assert coerce_setting("budget", "1e3") == 1000
    assert coerce_setting("weight_scale", 100) == 100.0 and isinstance(coerce_setting("weight_scale", 100), float)
    assert coerce_setting("max_frames", "none") is None
    assert coerce_setting("max_frames", "None") is None
    assert coerce_setting("max_frames", 128) == 128
    assert coerce_setting("cap", True) is True
    assert coerce_setting("cap", "off") is False
    assert coerce_setting("time_prompt", 0) is False
    assert coerce_setting("resize", "adaptive_pool") == "adaptive_pool"
    config = resolve_config("paper", {"budget": "40", "allocation": "exact"})
    assert (config.budget, config.allocation) == (40, "exact")
    for name, value in [("budget", "many"), ("budget", 12.5), ("budget", True), ("budget", "none"),
                        ("cap", "maybe"), ("weight_power", "x"), ("no_such_field", 1)]:
        with pytest.raises(ConfigError):
            coerce_setting(name, value)
    assert coerce_flag("baseline", "Yes") is True and coerce_flag("baseline", False) is False
    with pytest.raises(ConfigError, match="baseline"):
        coerce_flag("baseline", "sometimes")


def test_cut_at_stop_uses_the_earliest_stop_string():
    assert cut_at_stop("B. a box\n\nmore", ["\n\n"]) == "B. a box"
    assert cut_at_stop("abcXdefY", ["Y", "X"]) == "abc"
    assert cut_at_stop("abc", "b") == "a"
    assert cut_at_stop("abc", None) == "abc"
    assert cut_at_stop("abc", ["", "zz"]) == "abc"
    assert cut_at_stop("", ["x"]) == ""


def test_flatten_visuals_and_device_choice():
    assert flatten_visuals(None) == []
    assert flatten_visuals("v.mp4") == ["v.mp4"]
    assert flatten_visuals([["a.jpg", "b.jpg"], "c.jpg"]) == ["a.jpg", "b.jpg", "c.jpg"]
    assert flatten_visuals([None]) == [] and flatten_visuals([[None, "v.mp4"]]) == ["v.mp4"]
    one, rank2 = DistInfo(0, 1, 0), DistInfo(2, 4, 2)
    assert choose_device(None, one) is None and choose_device("auto", one) is None
    assert choose_device("cpu", rank2) == "cpu" and choose_device("cuda:1", rank2) == "cuda:1"
    import torch

    assert choose_device("auto", rank2) == ("cuda:2" if torch.cuda.is_available() else "cpu")


def _write_frames(folder: Path, n: int, size=(64, 48), names=None) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        name = names[i] if names else f"{i + 1}.png"  # 1.png .. n.png: natural order != text order
        Image.fromarray(frame_pattern(i, *size)).save(folder / name)
        paths.append(folder / name)
    return paths


def test_frames_from_a_folder_of_images_keep_order_and_times(tmp_path):
    paths = _write_frames(tmp_path / "frames", 12)
    assert image_files(tmp_path / "frames") == paths  # natural order: 2.png before 10.png
    frames = frames_from_images(paths, fps=3.0, sampling={"base": 4, "per_hour": 64, "max_frames": None})
    assert frames.pixels.shape == (4, 48, 64, 3) and frames.pixels.dtype == np.uint8
    assert frames.indices.tolist() == [0, 3, 7, 11]  # linspace(0, 11, 4) truncated
    assert [read_frame_number(p) for p in frames.pixels] == [0, 3, 7, 11]
    np.testing.assert_allclose(frames.timestamps, np.array([0, 3, 7, 11]) / 3.0)
    assert frames.duration == pytest.approx(12 / 3.0) and frames.fps == 3.0
    uniform = frames_from_images(paths, fps=1.0, n=3)
    assert uniform.indices.tolist() == [0, 5, 11]
    # PIL images of different sizes are resized to the first kept one
    images = [Image.fromarray(frame_pattern(i, 64 + 8 * i, 48)) for i in range(3)]
    mixed = frames_from_images(images, fps=1.0, n=3)
    assert mixed.pixels.shape == (3, 48, 64, 3)
    assert [read_frame_number(p) for p in mixed.pixels] == [0, 1, 2]


def test_frames_from_images_reject_bad_input(tmp_path):
    with pytest.raises(VideoError):
        frames_from_images([], fps=1.0)
    with pytest.raises(ConfigError):
        frames_from_images([Image.new("RGB", (8, 8))], fps=0.0)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    with pytest.raises(VideoError, match="bad.jpg"):
        frames_from_images([bad], fps=1.0, n=1)
    (tmp_path / "empty").mkdir()
    with pytest.raises(VideoError, match="no frame images"):
        image_files(tmp_path / "empty")


# ---------------------------------------------------------------------------------------------------------
# The model in process, with lmms-eval's own Instance objects
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    root = tmp_path_factory.mktemp("lmms_media")
    video = make_video(root / "clip.mp4", n_frames=30, fps=10, size=(96, 72))
    folder = root / "frames"
    _write_frames(folder, 9, size=(96, 72))
    return {"video": str(video), "folder": str(folder), "missing": str(root / "missing.mp4")}


@pytest.fixture(scope="module")
def qwen_lmm(tiny_qwen2_vl, tmp_path_factory):
    """The lmms-eval model built the way lmms-eval builds it (registry + model_args string)."""
    from lmms_eval.models import get_model

    log = tmp_path_factory.mktemp("lmms_plans") / "plans.jsonl"
    args = f"base={tiny_qwen2_vl},scorer=uniform,device=cpu,{FAST_ARGS},plan_log={log}"
    lm = get_model("quota").create_from_arg_string(args, {"batch_size": 1, "device": None})
    lm._test_log = log
    return lm


def _request(context, gen_kwargs, doc_id, task="tiny", split="test"):
    return Instance(
        request_type="generate_until",
        arguments=(context, gen_kwargs, lambda doc: [doc["video"]], doc_id, task, split),
        idx=0,
        metadata={"task": task, "doc_id": doc_id, "repeats": 1},
    )


def _log_records(lm) -> list[dict]:
    return [json.loads(line) for line in Path(lm._test_log).read_text().splitlines()]


def test_model_args_reach_the_pipeline(qwen_lmm):
    cfg = qwen_lmm.pipeline.config
    assert (cfg.base_frames, cfg.budget, cfg.decouple_max_new_tokens) == (6, 24, 12)
    assert qwen_lmm.pipeline.uniform and not qwen_lmm.baseline
    assert str(qwen_lmm.device) == "cpu"
    assert (qwen_lmm.rank, qwen_lmm.world_size) == (0, 1)


def test_generate_until_answers_each_request(qwen_lmm, media):
    docs = [{"video": media["video"]}, {"video": media["folder"]}, {"video": media["video"]}]
    qwen_lmm.task_dict = {"tiny": {"test": docs}}
    question = "What is shown?\nA. a ball\nB. a box\nAnswer with the option's letter from the given choices directly."
    reqs = [_request(question, {"max_new_tokens": 4, "until": ["\n\n"]}, 0),
            _request(question, {"max_new_tokens": 4}, 1),
            _request("Describe the video.", {"max_new_tokens": 4, "temperature": 0.7, "do_sample": True}, 2)]
    start = len(_log_records(qwen_lmm)) if Path(qwen_lmm._test_log).exists() else 0
    out = qwen_lmm.generate_until(reqs)
    assert len(out) == 3 and all(isinstance(t, str) for t in out)
    records = _log_records(qwen_lmm)[start:]
    assert [r["doc_id"] for r in records] == [0, 1, 2]
    for text, rec, req in zip(out, records, reqs):
        # the returned text is the model's text cut at the task's stop strings
        assert text == cut_at_stop(rec["raw_text"], req.args[1].get("until")).strip() == rec["text"]
        plan = rec["plan"]
        assert plan["question"] == req.args[0]  # the whole context is the question
        assert sum(h * w for h, w in plan["grids"]) <= plan["budget"] == 24
        assert len(plan["indices"]) <= 6
    # the folder of frame images became frames at image_fps (1 fps: 9 images -> 9 s)
    assert records[1]["plan"]["duration"] == pytest.approx(9.0)
    assert records[0]["plan"]["video"] == media["video"]
    # max_new_tokens=3 in model_args wins over the task's 4
    assert qwen_lmm.pipeline.config.max_new_tokens == 3


def test_task_max_new_tokens_is_used_unless_model_args_fix_it(tiny_qwen2_vl, media):
    lm = QuotaLMM(base=str(tiny_qwen2_vl), scorer="uniform", device="cpu", base_frames=4, budget=16)
    lm.task_dict = {"tiny": {"test": [{"video": media["video"]}]}}
    assert lm.generate_until([_request("What is shown?", {"max_new_tokens": 2}, 0)])[0] is not None
    two = lm._pipeline_for({"max_new_tokens": 2})
    assert two.config.max_new_tokens == 2 and two.adapter is lm.pipeline.adapter  # same models, own settings
    assert lm._pipeline_for({"max_new_tokens": 2}) is two  # built once per value
    # a task without max_new_tokens gets the preset's; the pipeline's settings never changed under it
    assert lm._pipeline_for({}) is lm.pipeline
    assert lm.pipeline.config.max_new_tokens == lm.config.max_new_tokens == 64
    fixed = QuotaLMM(base=str(tiny_qwen2_vl), scorer="uniform", device="cpu", base_frames=4, budget=16,
                     max_new_tokens=3)
    assert fixed._pipeline_for({"max_new_tokens": 2}).config.max_new_tokens == 3  # model_args win


def test_baseline_and_bad_videos(tiny_qwen2_vl, media, tmp_path):
    log = tmp_path / "plans.jsonl"
    lm = QuotaLMM(base=str(tiny_qwen2_vl), scorer="uniform", device="cpu", baseline="true",
                  baseline_frames=3, max_new_tokens=2, plan_log=str(log))
    lm.task_dict = {"tiny": {"test": [{"video": media["video"]}, {"video": media["missing"]}]}}
    out = lm.generate_until([_request("What is shown?", {}, 0), _request("What is shown?", {}, 1)])
    assert isinstance(out[0], str) and out[1] == ""
    recs = [json.loads(line) for line in log.read_text().splitlines()]
    assert recs[0]["baseline"] is True and recs[0]["plan"] is None
    assert "missing.mp4" in recs[1]["error"]
    assert recs[0]["frames_shown"] == 3

    strict = QuotaLMM(base=str(tiny_qwen2_vl), scorer="uniform", device="cpu", skip_bad_videos=False,
                      base_frames=4, budget=16, max_new_tokens=2)
    strict.task_dict = lm.task_dict
    with pytest.raises(VideoError, match="missing.mp4"):
        strict.generate_until([_request("What is shown?", {}, 1)])


def test_unsupported_requests_and_bad_args_fail_clearly(qwen_lmm, tiny_qwen2_vl):
    with pytest.raises(NotImplementedError, match="generate_until"):
        qwen_lmm.loglikelihood([])
    with pytest.raises(NotImplementedError, match="multi-round"):
        qwen_lmm.generate_until_multi_round([])
    qwen_lmm.task_dict = {"tiny": {"test": [{"video": None}]}}
    with pytest.raises(ConfigError, match="no video"):
        qwen_lmm.generate_until([_request("Q?", {}, 0)])
    qwen_lmm.task_dict = {"tiny": {"test": [{"video": ["a.mp4", "b.mp4"]}]}}
    with pytest.raises(ConfigError, match="2 visuals"):
        qwen_lmm.generate_until([_request("Q?", {}, 0)])
    # settings are checked before any model loads
    with pytest.raises(ConfigError, match="budgett"):
        QuotaLMM(base="/nonexistent/model", scorer="uniform", budgett=3)
    with pytest.raises(ConfigError, match="resize"):
        QuotaLMM(base="/nonexistent/model", scorer="uniform", resize="nearest")
    with pytest.raises(ConfigError, match="disagree"):
        QuotaLMM(base=str(tiny_qwen2_vl), pretrained="/other", scorer="uniform")


# ---------------------------------------------------------------------------------------------------------
# lmms-eval's own command line on a tiny local task
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_lmms_eval_cli_runs_the_quota_model(tiny_llava_ov, tiny_qwen2_vl, tmp_path):
    rows = []
    for i, answer in enumerate("AB"):
        video = make_video(tmp_path / f"video{i}.mp4", n_frames=24 + 8 * i, fps=8, size=(96, 72))
        rows.append({"id": f"q{i}", "video": str(video), "question": f"Which object appears in clip {i}?",
                     "options": ["A. a ball", "B. a box"], "answer": answer})
    # the task's YAML names this file relative to the working directory of the run
    (tmp_path / f"{TASK}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out_dir, plan_log = tmp_path / "out", tmp_path / "plans.jsonl"
    model_args = (f"base={tiny_llava_ov},scorer={tiny_qwen2_vl},preset=paper,device=cpu,{FAST_ARGS},"
                  f"plan_log={plan_log}")
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               HF_HOME=str(tmp_path / "hf_home"), TOKENIZERS_PARALLELISM="false", WANDB_MODE="disabled")
    cmd = [sys.executable, "-m", "lmms_eval", "--model", "quota", "--model_args", model_args,
           "--tasks", TASK, "--include_path", str(TASK_DIR), "--batch_size", "1",
           "--output_path", str(out_dir), "--log_samples"]
    proc = subprocess.run(cmd, check=False, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    log = proc.stdout[-4000:] + proc.stderr[-4000:]
    assert proc.returncode == 0, log
    assert "Error during evaluation" not in proc.stdout + proc.stderr, log  # lmms-eval exits 0 on errors

    (results_file,) = out_dir.rglob("*_results.json")
    results = json.loads(results_file.read_text())
    assert results["config"]["model"] == "quota"
    assert "quota.integrations.lmms_eval.QuotaLMM" in results["config"]["model_backend"]
    assert TASK in results["results"] and results["n-samples"][TASK]["effective"] == 2
    accuracy = results["results"][TASK]["accuracy,none"]
    assert 0.0 <= accuracy <= 1.0

    (samples_file,) = out_dir.rglob(f"*_samples_{TASK}.jsonl")
    samples = {s["doc_id"]: s for s in map(json.loads, samples_file.read_text().splitlines())}
    plans = {p["doc_id"]: p for p in map(json.loads, plan_log.read_text().splitlines())}
    assert sorted(samples) == sorted(plans) == [0, 1]
    for doc_id, sample in samples.items():
        got = sample["filtered_resps"]
        got = got[0] if isinstance(got, list) else got
        assert got == plans[doc_id]["text"]  # lmms-eval logged exactly what our model generated
        assert sample["target"] == rows[doc_id]["answer"]
        assert rows[doc_id]["question"] in sample["input"]
        plan = plans[doc_id]["plan"]
        assert plan["video"] == rows[doc_id]["video"]
        assert plan["clue"] is not None and plan["clue"]["mode"] in ("entity", "none")
        assert sum(h * w for h, w in plan["grids"]) <= plan["budget"] == 24
        assert set(plans[doc_id]["timings"]) >= {"decode", "decouple", "score", "encode", "generate"}
