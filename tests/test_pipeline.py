"""The QuoTA pipeline end to end on generated videos with tiny real models (Python API)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from quota import QuoTA
from quota.assign import token_count
from quota.errors import ConfigError, ModelNotFoundError, ProcessorNotFoundError, QuotaError, VideoError
from quota.pipeline import MC_INSTRUCTION
from quota.types import Answer, Frames, Plan
from quota.testing.videos import make_video

FAST = dict(base_frames=8, budget=40, max_new_tokens=4, decouple_max_new_tokens=24, scorer_batch_size=4)


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return make_video(tmp_path_factory.mktemp("pipe") / "clip.mp4", n_frames=40, fps=10, size=(96, 72))


@pytest.fixture(scope="module")
def llava_qa(tiny_llava_ov, tiny_qwen2_vl):
    return QuoTA.from_pretrained(str(tiny_llava_ov), scorer=str(tiny_qwen2_vl), device="cpu", quiet=True, **FAST)


@pytest.fixture(scope="module")
def qwen_qa(tiny_qwen2_vl):
    return QuoTA.from_pretrained(str(tiny_qwen2_vl), scorer="base", device="cpu", quiet=True, **FAST)


def _check_plan(plan: Plan, qa: QuoTA, question: str) -> None:
    assert len(plan.indices) == len(plan.scores) == len(plan.grids) == qa.config.base_frames
    assert all(0.0 <= s <= 1.0 for s in plan.scores)
    assert abs(sum(plan.weights) - 1.0) < 1e-9
    assert plan.tokens <= plan.budget == qa.config.budget
    assert plan.question == question and plan.clue is not None


@pytest.mark.parametrize("which", ["llava_qa", "qwen_qa"])
def test_answer_and_plan_for_both_families(which, request, video):
    qa: QuoTA = request.getfixturevalue(which)
    question = "What colour is the ball?"
    plan = qa.plan(video, question)
    _check_plan(plan, qa, question)
    ans = qa.answer(video, question, options=["red", "blue", "green"])
    assert isinstance(ans, Answer) and isinstance(ans.text, str)
    assert ans.choice in (None, "A", "B", "C")
    _check_plan(ans.plan, qa, question)
    for stage in ("decode", "decouple", "score", "encode", "generate", "total"):
        assert stage in ans.timings and ans.timings[stage] >= 0
    # the same question gives the same plan (deterministic, cached work reused)
    again = qa.plan(video, question)
    assert again == plan and again.to_dict().keys() == plan.to_dict().keys()
    assert again.reused == ["decode", "decouple", "score"]
    for stage in again.reused:  # a cached stage reports what it cost when it ran
        assert again.timings[stage] == plan.timings[stage] > 0


def test_stage_callback_names_each_stage_as_it_starts_and_changes_nothing(llava_qa, video):
    """``on_stage`` gets the stage names in the order of the timings, cached stages included, with the frames
    already decoded when ``decouple`` starts; the results equal those of a call without it."""
    fresh = llava_qa.with_config(base_frames=6)  # same models and cache; frames no call has sampled yet
    question, options = "What is moving?", ["A. a ball", "B. a cat"]
    seen: list[tuple[str, int]] = []

    def cached_frames() -> int:
        work = fresh._cache.video
        return 0 if work is None else len(work.frames.value)

    answer = fresh.answer(video, question, options=options, on_stage=lambda stage: seen.append((stage, cached_frames())))
    names = [name for name, _ in seen]
    assert names == [k for k in answer.timings if k != "total"]
    assert names == ["decode", "decouple", "score", "assign", "encode", "resize", "generate"]
    assert seen[0][1] != 6 and dict(seen)["decouple"] == 6  # the stage had not run before it was named
    quiet = fresh.answer(video, question, options=options)
    assert quiet.text == answer.text and quiet.plan == answer.plan
    plan_stages: list[str] = []
    plan = fresh.plan(video, question, options, on_stage=plan_stages.append)
    assert plan_stages == list(plan.timings) == ["decode", "decouple", "score", "assign"]
    assert plan.reused == ["decode", "decouple", "score"] and plan == quiet.plan
    base_stages: list[str] = []
    baseline = fresh.answer(video, question, options=options, baseline=True, on_stage=base_stages.append)
    assert base_stages == [k for k in baseline.timings if k != "total"] == ["decode", "generate"]


def test_scores_come_from_the_scorer_and_shape_the_grids(llava_qa, video):
    plan = llava_qa.plan(video, "Where is the dog?")
    frames = plan.frames
    direct = llava_qa.scorer.score(frames, plan.clue)
    # the pipeline runs the scorer's kept prefix (scorer_prefix_cache): equal to float rounding
    np.testing.assert_allclose(plan.scores, direct, rtol=1e-6, atol=0)
    sizes = [h * w for h, w in plan.grids]
    assert sizes[int(np.argmax(plan.scores))] == max(sizes)


def test_plan_round_trips_through_json(llava_qa, video):
    plan = llava_qa.plan(video, "Is there a cat?")
    again = Plan.from_json(plan.to_json())
    assert again == plan
    assert json.loads(again.to_json()) == json.loads(plan.to_json())


def test_plan_that_drops_frames_lists_only_kept_frames(tiny_llava_ov, video):
    qa = QuoTA.from_pretrained(str(tiny_llava_ov), scorer="uniform", device="cpu", quiet=True,
                               **{**FAST, "budget": 5, "base_frames": 8})
    plan = qa.plan(video, "What happens?")
    assert len(plan.keep) == 0  # 5 tokens over 8 equal frames: floor(5/8) = 0 each
    qa2 = QuoTA.from_pretrained(str(tiny_llava_ov), scorer=_Skewed(), device="cpu", quiet=True,
                                **{**FAST, "budget": 20, "base_frames": 8})
    plan = qa2.plan(video, "What happens?")
    assert 0 < len(plan.keep) < 8
    prompt = qa2.answer_prompt("What happens?", None, plan.duration, plan.kept_timestamps)
    for k, t in enumerate(plan.timestamps):
        assert (f"{t:.2f}s" in prompt) == (k in plan.keep)
    ans = qa2.answer(video, "What happens?")
    assert ans.plan.keep == plan.keep


class _Skewed:
    """A scorer that prefers late frames (a plain object with the Scorer protocol)."""

    def score(self, frames: Frames, clue) -> np.ndarray:
        return np.linspace(0.0, 1.0, len(frames)) ** 3


def test_model_input_carries_exactly_the_planned_tokens(tiny_llava_ov, video):
    qa = QuoTA.from_pretrained(str(tiny_llava_ov), scorer=_Skewed(), device="cpu", quiet=True, **FAST)
    plan = qa.plan(video, "Q?")
    feats = qa.adapter.encode(plan.frames)
    from quota.assign import resize_frames

    inputs = qa.adapter.build_inputs("Q?", resize_frames(feats, plan.grids), plan.kept_grids)
    assert inputs.visual_tokens == token_count(plan.grids, "video")


def test_uniform_scorer_plans_without_any_model(video):
    qa = QuoTA.from_pretrained(base=None, scorer="uniform", quiet=True, base_frames=8, budget=64)
    plan = qa.plan(video, "Anything?")
    assert plan.grids == [(3, 2)] * 8 and plan.native == (27, 27)  # 64 / 8 = 8 tokens -> 3x2
    assert plan.clue.objects is None and plan.clue.mode == "none"
    with pytest.raises(ConfigError):
        qa.answer(video, "Anything?")


def test_baseline_mode_uses_the_stock_video_path(llava_qa, video):
    ans = llava_qa.answer(video, "What happens?", options=["A. a", "B. b"], baseline=True)
    assert ans.plan is None and isinstance(ans.text, str)
    frames = ans.frames
    assert len(frames) == min(llava_qa.config.baseline_frames, 40)


def test_answer_prompt_has_time_instruction_and_options(llava_qa):
    time = ("The video lasts for 12.50 seconds, and 2 frames are uniformly sampled from it. These frames are located "
            "at 0.00s,6.25s.Please answer the following questions related to this video.\n")
    prompt = llava_qa.answer_prompt("Why?", ["A. yes", "B. no"], 12.5, [0.0, 6.25])
    assert prompt == time + (  # the reference's answer text (quota_pipeline.py; tests/test_reference_texts.py)
        "Select the best answer to the following multiple-choice question based on the video. Respond with only the "
        "letter (A, B, C, or D) of the correct option. Question: Why? A. yes. B. no.\nThe best answer is:")
    ours = llava_qa.with_config(prompts="quota").answer_prompt("Why?", ["A. yes", "B. no"], 12.5, [0.0, 6.25])
    assert ours == time + f"Why?\nA. yes\nB. no\n{MC_INSTRUCTION}"
    assert llava_qa.answer_prompt("Why?", None, 12.5, [0.0, 6.25]) == time + "Why?"


def _llava_vid_template() -> str:
    """The time-instruction f-string of lmms-eval's ``llava_vid`` model, read as text from the installed source
    (importing it needs the LLaVA-NeXT package, which the test environment does not have)."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("lmms_eval")
    if spec is None or spec.origin is None:
        pytest.skip("lmms-eval is not installed")
    source = (Path(spec.origin).parent / "models" / "simple" / "llava_vid.py").read_text(encoding="utf-8")
    assert 'frame_time = ",".join([f"{i:.2f}s" for i in frame_time])' in source
    assert 'qs = f"{time_instruciton}\\n{qs}"' in source  # its own line, before the question
    marker = 'time_instruciton = f"'
    start = source.index(marker) + len(marker)
    return source[start:source.index('"\n', start)]


def test_time_instruction_is_lmms_evals_llava_vid_text():
    """Interface text: our sentence equals lmms-eval's, filled in the way its code fills it."""
    from quota.types import time_instruction

    template = _llava_vid_template()
    times = [0.0, 1.5, 3.0, 59.999]
    filled = (template.replace("{video_time:.2f}", f"{61.0:.2f}").replace("{len(video)}", str(len(times)))
              .replace("{frame_time}", ",".join(f"{t:.2f}s" for t in times)))
    assert "{" not in filled
    assert time_instruction(61.0, times) == filled


class _Spy:
    """Records what the pipeline hands the (real) adapter: prompts and model inputs."""

    def __init__(self, adapter, monkeypatch):
        self.prompts, self.inputs = [], []
        build = adapter.build_inputs

        def spy_build(prompt, *args, **kwargs):
            out = build(prompt, *args, **kwargs)
            self.prompts.append(prompt)
            self.inputs.append(out)
            return out

        monkeypatch.setattr(adapter, "build_inputs", spy_build)


@pytest.mark.parametrize("listed", ["sampled", "kept"])
def test_answer_prompt_lists_sampled_or_kept_frame_times(tiny_llava_ov, video, monkeypatch, listed):
    qa = QuoTA.from_pretrained(str(tiny_llava_ov), scorer=_Skewed(), device="cpu", quiet=True,
                               **{**FAST, "budget": 20}, time_frames=listed)
    spy = _Spy(qa.adapter, monkeypatch)
    ans = qa.answer(video, "What happens?")
    plan = ans.plan
    assert 0 < len(plan.keep) < len(plan.indices)
    times = plan.timestamps if listed == "sampled" else plan.kept_timestamps
    assert spy.prompts[-1].splitlines()[0] == plan.time_prompt(listed)
    assert f"and {len(times)} frames are uniformly sampled" in spy.prompts[-1]
    assert ",".join(f"{t:.2f}s" for t in times) + ".Please" in spy.prompts[-1]


def test_llava_video_pipeline_uses_row_newlines_in_both_modes(tiny_llava_video, video, monkeypatch):
    qa = QuoTA.from_pretrained(str(tiny_llava_video), scorer=_Skewed(), device="cpu", quiet=True,
                               **{**FAST, "budget": 8 * 30, "baseline_frames": 6})
    spy = _Spy(qa.adapter, monkeypatch)
    ans = qa.answer(video, "What happens?")
    plan = ans.plan
    assert plan.newline == "row" and plan.grid_shape == "square" and plan.native == (27, 27)
    assert plan.positions == plan.tokens + sum(h for h, _ in plan.kept_grids) == token_count(plan)
    assert spy.inputs[-1].visual_tokens == plan.positions
    assert json.loads(plan.to_json())["newline"] == "row"
    qa.answer(video, "What happens?", baseline=True)
    assert spy.inputs[-1].visual_tokens == 6 * 14 * 15  # the stock model: 14x14 per frame, a newline per row
    forced = qa.with_config(newline="video")
    assert forced.plan(video, "What happens?").newline == "video"


def test_plan_records_the_base_models_layout(llava_qa, qwen_qa, video):
    llava = llava_qa.plan(video, "Q?")
    assert (llava.newline, llava.grid_shape) == ("video", "square")
    assert llava.newline_tokens == 1 and llava.positions == llava.tokens + 1
    qwen = qwen_qa.plan(video, "Q?")
    assert (qwen.newline, qwen.grid_shape) == ("none", "aspect") and qwen.positions == qwen.tokens


def test_frames_can_be_given_directly(qwen_qa):
    rng = np.random.default_rng(1)
    frames = Frames.from_arrays(rng.integers(0, 256, (6, 84, 84, 3), dtype=np.uint8), fps=1.0)
    plan = qwen_qa.plan(frames, "Q?")
    assert plan.indices == list(range(6)) and plan.native == (3, 3)


def test_bad_inputs_raise_quota_errors(tiny_llava_ov, tmp_path, llava_qa):
    with pytest.raises(ModelNotFoundError):
        QuoTA.from_pretrained(str(tmp_path / "missing-model"), scorer="uniform")
    with pytest.raises(ModelNotFoundError):
        QuoTA.from_pretrained("nobody/not-a-model-anywhere", scorer="uniform")
    weights_only = tmp_path / "weights-only"
    weights_only.mkdir()
    import shutil

    for name in ("config.json", "model.safetensors"):
        shutil.copy(tiny_llava_ov / name, weights_only / name)
    with pytest.raises(ProcessorNotFoundError):
        QuoTA.from_pretrained(str(weights_only), scorer="uniform")
    bad = tmp_path / "not-a-video.mp4"
    bad.write_text("this is text, not a video")
    with pytest.raises(VideoError):
        llava_qa.answer(bad, "Q?")
    with pytest.raises(VideoError):
        llava_qa.plan(tmp_path / "missing.mp4", "Q?")
    with pytest.raises(ConfigError):
        llava_qa.plan(bad, "   ")
    with pytest.raises(ConfigError):
        QuoTA.from_pretrained(str(tiny_llava_ov), scorer="uniform", preset="no-such-preset")
    with pytest.raises(QuotaError):
        QuoTA.from_pretrained(str(tiny_llava_ov), scorer="uniform", budgett=10)


@pytest.mark.parametrize("which", ["llava_qa", "qwen_qa"])
def test_decoupler_runs_on_the_base_model_text_path(which, request):
    """The decoupling step with a real (tiny) base model: its free text always parses to a valid Clue."""
    from quota.decouple import MAX_OBJECTS, Decoupler, parse_clue

    qa: QuoTA = request.getfixturevalue(which)
    decoupler = Decoupler(qa.adapter.generate_text, max_new_tokens=16)
    clue = decoupler("What is the woman holding?", ["a cup", "a phone"])
    assert clue.question == "What is the woman holding?"
    assert clue.objects is None or 1 <= len(clue.objects) <= MAX_OBJECTS
    assert clue.reasoning == qa.adapter.generate_text(decoupler.prompt("What is the woman holding?",
                                                                       ["a cup", "a phone"]), 16)
    assert parse_clue(clue.reasoning).objects == clue.objects


def test_lowmem_preset_reaches_the_scorer(tiny_llava_ov, tiny_qwen2_vl, video, llava_qa):
    lowmem = {k: v for k, v in FAST.items()}
    qa = QuoTA.from_pretrained(str(tiny_llava_ov), scorer=str(tiny_qwen2_vl), preset="paper-lowmem", device="cpu",
                               quiet=True, **lowmem)
    assert qa.scorer.prefill_chunk == 64 and qa.scorer.vision_batch_size == 2
    base = QuoTA.from_pretrained(str(tiny_qwen2_vl), scorer="base", preset="paper-lowmem", device="cpu", quiet=True,
                                 **lowmem)
    assert base.scorer.prefill_chunk == 64
    # same scores as the default scorer, to float rounding
    question = "Where is the dog?"
    np.testing.assert_allclose(qa.plan(video, question).scores, llava_qa.plan(video, question).scores, rtol=1e-5)


@pytest.mark.parametrize("baseline", [False, True], ids=["quota", "baseline"])
@pytest.mark.parametrize("which", ["llava_qa", "qwen_qa"])
def test_the_answer_streams_in_pieces_that_make_up_the_same_text(request, video, which, baseline):
    qa = request.getfixturevalue(which).with_config(max_new_tokens=12)
    plain = qa.answer(video, "What happens?", options=["A. a", "B. b"], baseline=baseline)
    pieces: list[str] = []
    streamed = qa.answer(video, "What happens?", options=["A. a", "B. b"], baseline=baseline, on_text=pieces.append)
    assert streamed.text == plain.text and streamed.choice == plain.choice
    assert "".join(pieces).strip() == streamed.text and all(pieces)


def test_text_pieces_wait_for_a_whole_character(tiny_qwen2_vl):
    """A character split across tokens (byte-level BPE) reaches the callback once, complete."""
    import torch
    from transformers import AutoTokenizer

    from quota.models.base import TextPieces

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_qwen2_vl))
    ids = tokenizer("é猫 ok", add_special_tokens=False)["input_ids"]
    pieces: list[str] = []
    streamer = TextPieces(tokenizer, pieces.append, skip=2)
    streamer.put(torch.tensor([[7, 8]]))  # the prompt: skipped
    for token in ids:
        streamer.put(torch.tensor([token]))
    streamer.end()
    assert "".join(pieces) == "é猫 ok" and not any("\ufffd" in p for p in pieces) and len(pieces) > 1
    assert len(ids) > len("é猫 ok")  # the tiny byte-level tokenizer does split these characters
