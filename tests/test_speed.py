"""The result-neutral speed-ups (issue 14): each one gives the same plan and the same answer logits
as the path without it, in float32 on the tiny real models, while doing less work."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from quota import QuoTA
from quota.config import get_config
from quota.decouple import Decoupler, answer_complete, parse_clue
from quota.errors import ConfigError, UnsupportedModelError
from quota.eval.benchmarks import Sample
from quota.eval.pipeline_answer import PipelineAnswer
from quota.eval.runner import run_benchmark
from quota.eval.store import RunStore
from quota.models.loading import resolve_attn_implementation, set_attn_implementation
from quota.types import Clue, Frames
from quota.testing.videos import make_video

SMALL = dict(base_frames=8, budget=40, max_new_tokens=3, decouple_max_new_tokens=12, scorer_batch_size=4)
QUESTIONS = ["What colour is the ball?", "Where does the dog run?", "How many people are there?"]


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return make_video(tmp_path_factory.mktemp("speed") / "clip.mp4", n_frames=40, fps=10, size=(96, 72))


@pytest.fixture(scope="module")
def llava_pair(tiny_llava_ov, tiny_qwen2_vl):
    """The same two models behind two pipelines: every speed-up off / on."""
    on = QuoTA.from_pretrained(str(tiny_llava_ov), scorer=str(tiny_qwen2_vl), device="cpu", quiet=True, **SMALL)
    off_cfg = on.config.replace(encode_kept_only=False, scorer_feature_cache=False, decouple_early_stop=False)
    off = QuoTA(on.adapter, on.scorer, off_cfg, quiet=True)
    return off, on


class _Skewed:
    """Prefers late frames, so that the plan drops the early ones (a plain Scorer-protocol object)."""

    def score(self, frames: Frames, clue) -> np.ndarray:
        return np.linspace(0.0, 1.0, len(frames)) ** 3


def _plan_dict(plan) -> dict:
    """A plan's content without the seconds it took (those differ run to run)."""
    return {k: v for k, v in plan.to_dict().items() if k not in ("timings", "reused")}


def _first_logits(model) -> tuple[list[torch.Tensor], object]:
    """Record the last-position logits of every forward pass of ``model`` (observes, changes nothing)."""
    seen: list[torch.Tensor] = []

    def hook(module, args, output):
        seen.append(output.logits[:, -1].detach().clone())

    return seen, model.register_forward_hook(hook)


def _count_frames(adapter) -> tuple[list[int], object]:
    """Wrap ``adapter.encode`` to record how many frames each call encodes (then calls the real one)."""
    calls: list[int] = []
    real = adapter.encode

    def counting(frames):
        calls.append(len(frames))
        return real(frames)

    adapter.encode = counting
    return calls, real


# ---------------------------------------------------------------------------------------------------------
# Base vision tower: only frames that keep tokens


@pytest.mark.parametrize("family", ["llava", "qwen"])
def test_encode_kept_only_same_plan_and_logits_fewer_frames(family, tiny_llava_ov, tiny_qwen2_vl, video):
    base = tiny_llava_ov if family == "llava" else tiny_qwen2_vl
    qa_on = QuoTA.from_pretrained(str(base), scorer=_Skewed(), device="cpu", quiet=True,
                                  **{**SMALL, "budget": 20})
    qa_off = QuoTA(qa_on.adapter, qa_on.scorer, qa_on.config.replace(encode_kept_only=False), quiet=True)
    results = {}
    for name, qa in (("off", qa_off), ("on", qa_on)):
        calls, real = _count_frames(qa.adapter)
        seen, handle = _first_logits(qa.adapter.model)
        try:
            ans = qa.answer(video, "What happens?", options=["a", "b"])
        finally:
            handle.remove()
            qa.adapter.encode = real
        results[name] = (ans, calls, seen[0])
    (a_off, calls_off, logits_off), (a_on, calls_on, logits_on) = results["off"], results["on"]
    assert _plan_dict(a_on.plan) == _plan_dict(a_off.plan)
    kept = len(a_on.plan.keep)
    assert 0 < kept < 8
    assert calls_off == [8] and calls_on == [kept]
    torch.testing.assert_close(logits_on, logits_off, rtol=1e-5, atol=1e-5)
    assert a_on.text == a_off.text
    # a second question on the same video encodes only frames not encoded before
    calls, real = _count_frames(qa_on.adapter)
    try:
        qa_on.answer(video, "What happens next?")
    finally:
        qa_on.adapter.encode = real
    assert calls == []  # same scorer, same plan: every kept frame is cached


# ---------------------------------------------------------------------------------------------------------
# Scorer vision tower once per video


def test_scorer_text_inputs_match_the_processor(llava_pair, video):
    _, on = llava_pair
    scorer = on.scorer
    frames = on.load_video(video)
    prompt = scorer.prompt("Is there a dog? A. yes B. no")
    reference = scorer.build_inputs(frames.pixels[:3], prompt)
    _, grids = scorer.image_features(frames.pixels[:3], {})
    mine = scorer.text_inputs(prompt, grids)
    for key in ("input_ids", "attention_mask", "image_grid_thw", "mm_token_type_ids"):
        if key in reference:
            assert torch.equal(mine[key], reference[key]), key


def test_scorer_feature_cache_same_scores_and_one_vision_pass(llava_pair, video):
    off, on = llava_pair
    visual = on.scorer.model.model.visual
    images = []
    handle = visual.register_forward_pre_hook(lambda m, args, kwargs: images.append(1), with_kwargs=True)
    try:
        plans = {}
        for name, qa in (("off", off), ("on", on)):
            images.clear()
            qa._cache.video = None  # a fresh video state: nothing cached yet
            qa._cache.clues.clear()
            plans[name] = [qa.plan(video, q) for q in QUESTIONS]
            plans[name + "_passes"] = len(images)
    finally:
        handle.remove()
    for p_off, p_on in zip(plans["off"], plans["on"]):
        np.testing.assert_allclose(p_on.scores, p_off.scores, rtol=0, atol=1e-6)
        assert p_on.grids == p_off.grids
    distinct = len({(p.clue.objects, p.clue.question) for p in plans["on"]})
    assert distinct == 3
    # 8 frames in scoring batches of 4: two vision passes per scoring question without the cache; with it,
    # one pass (vision batch 8) for the whole video, whatever the number of questions
    assert plans["off_passes"] == distinct * 2 and plans["on_passes"] == 1


def test_scorer_cache_also_with_chunked_prefill(tiny_qwen2_vl, video):
    from quota.scoring import QwenVLScorer

    scorer = QwenVLScorer(str(tiny_qwen2_vl), device="cpu", quiet=True, batch_size=3, prefill_chunk=16,
                          vision_batch_size=2)
    from quota.video import load_frames

    frames = load_frames(video, base=6)
    clue = Clue(objects=("ball",), mode="entity", question="Where is the ball?")
    cache: dict = {}
    np.testing.assert_allclose(scorer.score(frames, clue, cache=cache), scorer.score(frames, clue), atol=1e-6, rtol=0)
    assert len(cache) == 1


# ---------------------------------------------------------------------------------------------------------
# Decoupling stops when its answer is complete


FULL_TEXTS = [
    'Step 1: yes\nStep 2: ["man", "box", "cup"]\nStep 3: ["man", "box"]\nExplanation: the cup is an option.',
    "Step 1: no\nStep 2: null\nStep 3: null\nStep 4: nothing else to add.",
    'Step 1: yes\nStep 2: ["red car"]\nStep 3: ["red car", "garage"] and maybe ["driver"]\n',
    'Step 1: yes\nStep 3: []\nStep 3: ["dog"]\nmore text',
    "Step 1: yes\nStep 2: - a dog\nStep 3: dog, leash\nQuestion: another one?",
    'Final: ["guitar"]\n\nStep 3: ["drum"]',
    'Step 3: [ "ball", "net" ]   Step 3 done',
    "Step 3: nullify the list? no: [\"ball\"]\n",
]


@pytest.mark.parametrize("full", FULL_TEXTS)
def test_early_stop_parses_the_same_objects_as_the_full_text(full):
    expected = parse_clue(full).objects
    stop_at = next((k for k in range(len(full) + 1) if answer_complete(full[:k])), None)
    prefix = full if stop_at is None else full[:stop_at]
    assert parse_clue(prefix).objects == expected
    for k in range(len(prefix), len(full) + 1):  # and every longer prefix agrees too
        assert parse_clue(full[:k]).objects == expected


def test_answer_complete_cases():
    assert not answer_complete("Step 1: yes\nStep 2: [\"a\"]")
    assert not answer_complete('Step 3: ["dog", "le')
    assert answer_complete('Step 3: ["dog", "leash"]')
    assert not answer_complete("Step 3: null")  # "null" may still go on ("nullable")
    assert answer_complete("Step 3: null\n")
    assert not answer_complete("Step 3: []")  # an empty list: a later list could still name objects
    assert not answer_complete('Step 3: ["dog"]', mode="none")


def test_generate_text_stop_returns_the_prefix_of_the_full_generation(tiny_qwen2_vl):
    from quota.models import load_adapter

    adapter = load_adapter(str(tiny_qwen2_vl), device="cpu")
    full = adapter.generate_text("Name three animals.", max_new_tokens=20)
    assert len(full) > 4
    stopped = adapter.generate_text("Name three animals.", max_new_tokens=20, stop=lambda t: len(t) >= 3)
    assert 3 <= len(stopped) < len(full) and full.startswith(stopped)


def test_decoupler_passes_the_stop_rule_only_when_asked():
    seen = []

    def gen(prompt, max_new_tokens=10, stop=None):
        seen.append(stop)
        text = 'Step 1: yes\nStep 2: ["cat"]\nStep 3: ["cat"]\nStep 4: blah'
        if stop is not None:
            for k in range(len(text) + 1):
                if stop(text[:k]):
                    return text[:k]
        return text

    assert Decoupler(gen, early_stop=True)("Where is the cat?").objects == ("cat",)
    assert Decoupler(gen)("Where is the cat?").objects == ("cat",)
    assert seen[0] is not None and seen[1] is None
    assert Decoupler(lambda p: "Step 3: null\n", early_stop=True).early_stop is False  # takes no stop=


def test_pipeline_decoupling_with_and_without_early_stop(llava_pair):
    off, on = llava_pair
    for q in QUESTIONS:
        assert on.decoupler(q).objects == off.decoupler(q).objects


# ---------------------------------------------------------------------------------------------------------
# quota eval reads the next video ahead


def test_prefetch_gives_the_same_results_and_reads_each_video_once(tmp_path, llava_pair):
    _, qa = llava_pair
    samples = []
    for v in range(3):
        path = make_video(tmp_path / f"v{v}.mp4", n_frames=30 + 5 * v, fps=10, size=(80, 60))
        for q in range(2):
            samples.append(Sample(id=f"{v}-{q}", video=str(path), question=QUESTIONS[q], options=["x", "y"],
                                  answer="A", benchmark="videomme"))
    outcomes = {}
    for prefetch in (False, True):
        fn = PipelineAnswer(qa, prefetch=prefetch)
        store = RunStore(tmp_path / f"run{prefetch}", {"benchmark": "videomme", "prefetch": prefetch})
        summary = run_benchmark(samples, fn, store, quiet=True)
        assert summary.answered == 6 and summary.errors == 0
        assert fn.stats.decodes == 3 and fn._ahead is None  # the runner closed the read ahead
        outcomes[prefetch] = {r.sample_id: (r.prediction, r.plan) for r in store.results()}
        store.close()
    assert outcomes[True] == outcomes[False]


def test_prefetch_error_belongs_to_its_own_sample(tmp_path, llava_pair):
    _, qa = llava_pair
    good = make_video(tmp_path / "good.mp4", n_frames=30, fps=10, size=(80, 60))
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    samples = [Sample(id="g", video=str(good), question="Q?", options=["x", "y"], answer="A"),
               Sample(id="b", video=str(bad), question="Q?", options=["x", "y"], answer="A")]
    store = RunStore(tmp_path / "run", {"benchmark": "t"})
    summary = run_benchmark(samples, PipelineAnswer(qa, prefetch=True), store, quiet=True)
    assert (summary.answered, summary.errors) == (1, 1)
    rows = {r.sample_id: r for r in store.results()}
    assert rows["g"].error is None and rows["b"].error
    store.close()


# ---------------------------------------------------------------------------------------------------------
# Settings


def test_speed_settings_defaults_and_validation():
    paper = get_config("paper")
    assert paper.encode_kept_only and paper.scorer_feature_cache and paper.decouple_early_stop
    assert paper.attn_implementation == "sdpa"
    fast, fast_qwen = get_config("fast"), get_config("fast-qwen")
    assert "siglip" in fast.scorer and fast.budget == paper.budget and fast.encode_kept_only
    assert fast_qwen.scorer == paper.scorer and fast_qwen.scorer_max_pixels < paper.scorer_max_pixels
    with pytest.raises(ConfigError):
        get_config("paper", attn_implementation="flash")
    with pytest.raises(ConfigError):
        get_config("paper", encode_kept_only="yes")


def test_attention_implementation_is_switchable(llava_pair):
    _, qa = llava_pair
    with pytest.raises(ConfigError, match="attn_implementation"):
        qa.with_config(attn_implementation="eager")  # the models are shared: only from_pretrained sets it
    assert qa.with_config(decouple_early_stop=False).decoupler.early_stop is False
    assert resolve_attn_implementation("auto", torch.device("cpu")) == "sdpa"
    model = qa.adapter.model
    assert set_attn_implementation(model, "eager") == "eager"
    assert model.config._attn_implementation == "eager"
    assert set_attn_implementation(model, "sdpa") == "sdpa"
    with pytest.raises(UnsupportedModelError, match="sdpa"):
        set_attn_implementation(model, "flash_attention_2")
    assert model.config._attn_implementation == "sdpa"
