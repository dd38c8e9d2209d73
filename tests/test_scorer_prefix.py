"""The scorer's language-model prefix kept per video (issue 21): the same scores as the full pass, only the
question's tokens run for later questions, a key that holds everything the prefix depends on, a memory bound
with a fallback to the full pass, and the families that cannot use it fall back."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from quota.scoring import LVLMScorer, load_scorer
from quota.scoring.prefix import PREFIX_KEY, PrefixEntry, kv_bytes, prefix_bytes_in
from quota.types import Clue

QWEN = ["tiny_qwen2_vl", "tiny_qwen2_5_vl"]
# Sizes with different token counts on the tiny Qwen models, so batches of 3 are left-padded.
SIZES = [(56, 56), (84, 84), (112, 112), (56, 112), (112, 56), (84, 112)]
CLUES = [
    Clue(objects=("red car", "dog"), question="What colour is the car?"),
    Clue(objects=None, question="What is the man holding?"),
    Clue(objects=("a very long name of an object with many words in it",), question="x"),
]
BIG = 2**30


def _images(sizes=SIZES, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in sizes]


def _scorer(folder: Any, **kw: Any) -> LVLMScorer:
    options = dict(quiet=True, batch_size=3, max_pixels=112 * 112, device="cpu")
    options.update(kw)
    return load_scorer(str(folder), **options)


def _prefixes(cache: dict) -> dict:
    return {k: v for k, v in cache.items() if k[0] == PREFIX_KEY}


def _full_lengths(scorer: LVLMScorer, images: list[np.ndarray], question: str) -> list[int]:
    """Tokens per row of each batch of 3 in the full pass (padding included)."""
    _, grids = scorer.image_features(images, {})
    prompt = scorer.prompt(question)
    return [int(scorer.text_inputs(prompt, grids[i : i + 3])["input_ids"].shape[1]) for i in range(0, len(images), 3)]


def _lm_lengths(scorer: LVLMScorer) -> tuple[list[int], Any]:
    """Record the number of new tokens of every language-model call (observes only)."""
    seen: list[int] = []

    def hook(module: Any, args: Any, kwargs: Any) -> None:
        x = kwargs.get("inputs_embeds")
        seen.append(int(x.shape[1]) if x is not None else int(kwargs["input_ids"].shape[1]))

    return seen, scorer.model.model.language_model.register_forward_pre_hook(hook, with_kwargs=True)


@pytest.mark.parametrize("fixture", QWEN)
def test_prefix_scores_equal_the_full_pass_in_float32(fixture: str, request: pytest.FixtureRequest) -> None:
    scorer = _scorer(request.getfixturevalue(fixture))
    images = _images()
    cache: dict = {}
    for k, clue in enumerate(CLUES):
        question = scorer.question_for(clue)
        one_pass = scorer.score_images(images, question)  # the model's own forward, whole prompt
        seen, handle = _lm_lengths(scorer)
        try:
            got = scorer._score_cached(images, question, cache, BIG)
        finally:
            handle.remove()
        np.testing.assert_allclose(got, one_pass, rtol=1e-6, atol=0)
        entries = _prefixes(cache)
        assert len(entries) == 2  # 6 frames in batches of 3: one prefix per batch, kept across questions
        lengths = [e.length for e in entries.values()]
        rest = [n - p for n, p in zip(_full_lengths(scorer, images, question), lengths)]
        if k == 0:  # the first question computes each batch's prefix, then runs the rest on it
            assert seen == [lengths[0], rest[0], lengths[1], rest[1]]
        else:  # later questions run only the tokens after the image
            assert seen == rest


@pytest.mark.parametrize("fixture", QWEN)
def test_prepare_fills_the_prefixes_any_question_reuses(fixture: str, request: pytest.FixtureRequest) -> None:
    scorer = _scorer(request.getfixturevalue(fixture))
    images = _images()
    cache: dict = {}
    scorer.prepare(np.stack([images[0]] * 4), cache=cache, prefix_cache_bytes=BIG)  # another video: own keys
    frames = np.stack([images[-1]] * 6)
    scorer.prepare(frames, cache=cache, prefix_cache_bytes=BIG)
    before = dict(_prefixes(cache))
    question = scorer.question_for(CLUES[1])
    seen, handle = _lm_lengths(scorer)
    try:
        got = scorer.score(frames, CLUES[1], cache=cache, prefix_cache_bytes=BIG)
    finally:
        handle.remove()
    assert _prefixes(cache) == before  # nothing new: the question's prefixes were all there
    lengths = [e.length for e in before.values()][-2:]
    assert seen == [n - p for n, p in zip(_full_lengths(scorer, list(frames), question), lengths)]
    np.testing.assert_allclose(got, scorer.score_images(frames, question), rtol=1e-6, atol=0)


def _entries_of(cache: dict) -> dict:
    return {k: v for k, v in cache.items() if k[0] in (PREFIX_KEY, "lvlm_image_features")}


@pytest.mark.parametrize("case", ["other video", "other max_pixels", "other image size", "other chunking"])
def test_the_key_holds_what_the_prefix_depends_on(case: str, tiny_qwen2_vl: Any,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A cache filled for one video and scorer setting gives another video or setting its own scores, because
    the key differs; the same cache under a key that ignored the difference would give other scores."""
    first = _scorer(tiny_qwen2_vl)
    images = _images([(84, 112)] * 6, seed=1)
    second, other = first, images
    if case == "other video":
        other = _images([(84, 112)] * 6, seed=2)
    elif case == "other max_pixels":
        second = LVLMScorer.from_model(first.model, first.processor, quiet=True, batch_size=3, max_pixels=56 * 56)
    elif case == "other image size":
        other = [np.ascontiguousarray(im[:, :84]) for im in images]  # same pixels, cropped to 84x84
    else:
        second = LVLMScorer.from_model(first.model, first.processor, quiet=True, batch_size=3,
                                       max_pixels=112 * 112, prefill_chunk=5)
    question = first.question_for(CLUES[0])
    expected = second.score_images(other, question)
    cache: dict = {}
    first._score_cached(images, question, cache, BIG)
    filled = dict(cache)
    got = second._score_cached(other, question, cache, BIG)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=0)
    assert len(_prefixes(cache)) == 4  # two batches for each: none shared
    # the same cache with a key that leaves out the difference: the first's work is reused, and it is wrong
    first_key = first.video_key(images)
    monkeypatch.setattr(second, "video_key", lambda pictures: first_key)
    if case == "other chunking":  # a float-rounding difference only: the stale entries are still hit
        stale = second._score_cached(other, question, dict(filled), BIG)
        np.testing.assert_allclose(stale, expected, rtol=1e-5, atol=0)
        return
    stale = second._score_cached(other, question, dict(filled), BIG)
    assert np.max(np.abs(stale / expected - 1)) > 1e-4


def test_a_prefix_from_another_video_would_change_the_scores(tiny_qwen2_vl: Any) -> None:
    """Right image features but the other video's prefix (what a key without the pixels would give): the
    scores change, so the pixels must be in the key (they are: the right scores come back)."""
    scorer = _scorer(tiny_qwen2_vl)
    a, b = _images([(84, 112)] * 3, seed=1), _images([(84, 112)] * 3, seed=2)
    question = scorer.question_for(CLUES[0])
    cache_a: dict = {}
    cache_b: dict = {}
    scorer._score_cached(a, question, cache_a, BIG)
    right = scorer._score_cached(b, question, cache_b, BIG)
    (key_a, entry_a), = _prefixes(cache_a).items()
    (key_b, entry_b), = _prefixes(cache_b).items()
    assert key_a != key_b and key_a[-2:] == key_b[-2:]  # same token ids and padding, other pixels
    poisoned = dict(cache_b)
    poisoned[key_b] = entry_a
    wrong = scorer._score_cached(b, question, poisoned, BIG)
    assert np.max(np.abs(wrong / right - 1)) > 1e-4
    np.testing.assert_allclose(right, scorer.score_images(b, question), rtol=1e-6, atol=0)


def test_memory_bound_falls_back_to_the_full_pass(tiny_qwen2_vl: Any) -> None:
    scorer = _scorer(tiny_qwen2_vl)
    images = _images([(84, 112)] * 6, seed=3)
    question = scorer.question_for(CLUES[0])
    one_pass = scorer.score_images(images, question)
    cache: dict = {}
    scorer._score_cached(images, question, cache, BIG)
    entries = list(_prefixes(cache).values())
    assert len(entries) == 2 and isinstance(entries[0], PrefixEntry)
    # the estimate is what the entry takes
    assert entries[0].nbytes == kv_bytes(scorer.model.config, 3, entries[0].length, scorer.dtype)
    one = entries[0].nbytes
    for limit, kept in ((0, 0), (one - 1, 0), (one, 1), (2 * one, 2)):
        cache = {}
        got = scorer._score_cached(images, question, cache, limit)
        assert len(_prefixes(cache)) == kept and prefix_bytes_in(cache) <= limit
        np.testing.assert_allclose(got, one_pass, rtol=1e-6, atol=0)


@pytest.mark.parametrize("fixture", ["tiny_llava_ov", "tiny_smolvlm", "tiny_qwen3_vl"])
def test_families_without_the_prefix_path_fall_back(fixture: str, request: pytest.FixtureRequest) -> None:
    scorer = _scorer(request.getfixturevalue(fixture))
    assert not scorer.supports_prefix_cache
    images = _images([(84, 112)] * 3)
    cache: dict = {}
    got = scorer.score(np.stack(images), CLUES[0], cache=cache, prefix_cache_bytes=BIG)
    assert not _prefixes(cache) and bool(cache) == scorer.supports_feature_cache  # Qwen3-VL: features only
    np.testing.assert_allclose(got, scorer.score_images(images, scorer.question_for(CLUES[0])), rtol=1e-5, atol=0)
    scorer.prepare(np.stack(images), cache=cache, prefix_cache_bytes=BIG)
    assert not _prefixes(cache)


@pytest.mark.parametrize("fixture", QWEN)
def test_bfloat16_prefix_scores_within_the_stated_tolerance(fixture: str, request: pytest.FixtureRequest) -> None:
    """docs/pipeline.md states 2e-3 relative in bfloat16 (measured up to 5.3e-4 on these checkpoints)."""
    scorer = _scorer(request.getfixturevalue(fixture), dtype=torch.bfloat16)
    images = _images()
    for clue in CLUES:
        question = scorer.question_for(clue)
        full = scorer._score_cached(images, question, {}, 0)
        cache: dict = {}
        scorer._score_cached(images, "?", cache, BIG, prefix_only=True)
        got = scorer._score_cached(images, question, cache, BIG)
        np.testing.assert_allclose(got, full, rtol=2e-3, atol=0)
