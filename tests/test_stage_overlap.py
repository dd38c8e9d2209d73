"""Issue 21 in the pipeline: the scorer's prefix kept per video (``scorer_prefix_cache``) and the chain of thought
overlapped with decoding and the scorer's preparation (``overlap_stages``) give the same plans and answers as
the plain path, on the tiny real models in float32."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from quota import QuoTA
from quota.errors import VideoNotFoundError
from quota.scoring.prefix import PREFIX_KEY
from quota.testing.videos import make_video

SMALL = dict(base_frames=8, budget=40, max_new_tokens=3, decouple_max_new_tokens=12, scorer_batch_size=4)
QUESTIONS = [("What colour is the ball?", ["red", "blue"]), ("Where does the dog run?", None),
             ("How many people are there?", ["one", "two", "three"])]


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return make_video(tmp_path_factory.mktemp("overlap") / "clip.mp4", n_frames=40, fps=10, size=(96, 72))


@pytest.fixture(scope="module")
def qa(tiny_llava_ov, tiny_qwen2_vl):
    return QuoTA.from_pretrained(str(tiny_llava_ov), scorer=str(tiny_qwen2_vl), device="cpu", quiet=True, **SMALL)


def _fresh(qa: QuoTA, **changes) -> QuoTA:
    """A pipeline on the same models with its own empty cache."""
    return QuoTA(qa.adapter, qa.scorer, qa.config.replace(**changes), quiet=True)


def _content(plan) -> dict:
    return {k: v for k, v in plan.to_dict().items() if k not in ("timings", "reused", "scores", "weights")}


def _answers(qa: QuoTA, video) -> list:
    return [qa.answer(video, q, options=o) for q, o in QUESTIONS]


def test_prefix_cache_same_plans_and_answers_dropped_with_the_video(qa, video, tmp_path):
    on, off = _fresh(qa), _fresh(qa, scorer_prefix_cache=False)
    assert on.config.scorer_prefix_cache and not off.config.scorer_prefix_cache
    got, expected = _answers(on, video), _answers(off, video)
    for a_on, a_off in zip(got, expected):
        np.testing.assert_allclose(a_on.plan.scores, a_off.plan.scores, rtol=1e-6, atol=0)
        assert _content(a_on.plan) == _content(a_off.plan) and a_on.text == a_off.text
    kept = [k for k in on._cache.video.scorer_cache if k[0] == PREFIX_KEY]
    assert len(kept) == 2  # 8 frames in scoring batches of 4, kept across the three questions
    assert not [k for k in off._cache.video.scorer_cache if k[0] == PREFIX_KEY]
    other = make_video(tmp_path / "other.mp4", n_frames=30, fps=10, size=(96, 72))
    on.plan(other, QUESTIONS[0][0])
    assert len([k for k in on._cache.video.scorer_cache if k[0] == PREFIX_KEY]) == 2  # the first video's are gone


def test_prefix_cache_bound_zero_falls_back_to_the_full_pass(qa, video):
    none_fit = _fresh(qa, scorer_prefix_cache_bytes=0)
    plain = _fresh(qa, scorer_prefix_cache=False)
    a, b = none_fit.plan(video, QUESTIONS[0][0]), plain.plan(video, QUESTIONS[0][0])
    assert a.scores == b.scores  # the same full pass
    assert not [k for k in none_fit._cache.video.scorer_cache if k[0] == PREFIX_KEY]


def _base_threads(qa: QuoTA) -> tuple[list[str], object]:
    """Names of the threads the base model runs on (observes only)."""
    names: list[str] = []
    handle = qa.adapter.model.register_forward_pre_hook(lambda m, a: names.append(threading.current_thread().name))
    return names, handle


def test_overlap_same_plans_and_answers_with_decoupling_on_a_second_thread(qa, video):
    plain, overlapped = _fresh(qa), _fresh(qa, overlap_stages=True)
    expected = _answers(plain, video)
    names, handle = _base_threads(overlapped)
    stages: list[str] = []
    try:
        plan = overlapped.plan(video, QUESTIONS[0][0], QUESTIONS[0][1], on_stage=stages.append)
    finally:
        handle.remove()
    assert stages == ["decode", "decouple", "score", "assign"]  # announced in the same order as without overlap
    decoupling = set(names)
    assert decoupling and all(n.startswith("quota-decouple") for n in decoupling)
    assert {"decode", "decouple", "score"} <= set(plan.timings)
    # the scorer prepared the video while the chain of thought ran: features and prefixes are there
    keys = {k[0] for k in overlapped._cache.video.scorer_cache}
    assert keys == {"lvlm_image_features", PREFIX_KEY}
    got = _answers(overlapped, video)
    for a_on, a_off in zip(got, expected):
        assert a_on.plan.clue == a_off.plan.clue
        np.testing.assert_allclose(a_on.plan.scores, a_off.plan.scores, rtol=1e-6, atol=0)
        assert _content(a_on.plan) == _content(a_off.plan) and a_on.text == a_off.text
    names, handle = _base_threads(overlapped)
    try:
        again = overlapped.plan(video, QUESTIONS[1][0])  # cached clue: nothing to overlap, no thread
    finally:
        handle.remove()
    assert names == [] and "decouple" in again.reused


def test_overlap_joins_its_thread_when_decoding_fails(qa, tmp_path):
    overlapped = _fresh(qa, overlap_stages=True)
    before = threading.active_count()
    with pytest.raises(VideoNotFoundError):
        overlapped.plan(tmp_path / "missing.mp4", "What is there?")
    assert threading.active_count() == before
    assert len(overlapped._cache.clues) == 1  # the chain of thought finished and was kept


def test_no_overlap_when_the_scorer_is_the_base_model(qa):
    class OnBase:
        model = qa.adapter.model

        def score(self, frames, clue):
            return np.ones(len(frames))

    shared = QuoTA(qa.adapter, OnBase(), qa.config.replace(overlap_stages=True), quiet=True)
    assert not shared._overlaps("What is there?", None)
    assert _fresh(qa, overlap_stages=True)._overlaps("What is there?", None)
