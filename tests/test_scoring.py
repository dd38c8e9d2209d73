"""Tests of quota.scoring on tiny real checkpoints (random weights, float32, CPU)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from quota.scoring.question import NO_LETTER, YES_LETTER, scoring_question
from quota.errors import (
    ConfigError,
    FramesError,
    ModelError,
    ModelNotFoundError,
    ProcessorNotFoundError,
    UnsupportedModelError,
)
from quota.scoring import ClipScorer, LVLMScorer, QwenVLScorer, Scorer, UniformScorer, load_scorer
from quota.scoring.base import is_out_of_memory, run_batched
from quota.scoring.lvlm import _PLAIN_FORWARD_FAMILIES, letter_token_id, scores_from_log_probs
from quota.types import Clue, Frames

LVLM_FIXTURES = ["tiny_qwen2_vl", "tiny_qwen2_5_vl", "tiny_qwen3_vl", "tiny_llava_ov", "tiny_smolvlm"]
CLIP_FIXTURES = ["tiny_clip", "tiny_siglip", "tiny_siglip2"]
# Frame sizes (H, W) that give different numbers of visual tokens on every tiny model, so a batch pads.
SIZES = [(56, 56), (84, 84), (112, 112), (56, 112), (112, 56), (84, 56), (70, 98), (112, 84)]
CLUE = Clue(objects=("red car", "dog"), question="What colour is the car?")
QUESTION_CLUE = Clue(objects=None, question="What is the man holding?")


def _images(sizes=SIZES, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in sizes]


def _frames(count: int = 5, size=(84, 112), seed: int = 1) -> Frames:
    rng = np.random.default_rng(seed)
    return Frames.from_arrays(rng.integers(0, 256, (count, *size, 3), dtype=np.uint8), fps=2.0)


@pytest.fixture(scope="module")
def lvlm(request: pytest.FixtureRequest) -> dict[str, LVLMScorer]:
    """One loaded scorer per tiny LVLM family, shared by the tests of this module (batch size 8)."""
    cache: dict[str, LVLMScorer] = {}

    def get(fixture: str) -> LVLMScorer:
        if fixture not in cache:
            folder = request.getfixturevalue(fixture)
            cache[fixture] = load_scorer(str(folder), quiet=True, batch_size=8, max_pixels=112 * 112)
        return cache[fixture]

    return get  # type: ignore[return-value]


def _fresh(scorer: LVLMScorer, **kw: Any) -> LVLMScorer:
    """A new scorer around the same loaded model (so tests can change options without reloading)."""
    options = dict(
        max_pixels=scorer.max_pixels,
        batch_size=scorer.batch_size,
        normalize=scorer.normalize,
        vision_batch_size=scorer.vision_batch_size,
        prefill_chunk=scorer.prefill_chunk,
        quiet=True,
    )
    options.update(kw)
    return type(scorer).from_model(scorer.model, scorer.processor, model_id=scorer.model_id, **options)


# ---------------------------------------------------------------------------------------------------------
# Uniform scorer and shared helpers
# ---------------------------------------------------------------------------------------------------------


def test_uniform_scorer_gives_ones_without_a_model() -> None:
    scorer = load_scorer("uniform", batch_size=4, max_pixels=10)  # shared options are dropped
    assert isinstance(scorer, UniformScorer) and isinstance(scorer, Scorer)
    scores = scorer.score(_frames(7), CLUE)
    assert scores.dtype == np.float64 and scores.shape == (7,)
    np.testing.assert_array_equal(scores, np.ones(7))
    np.testing.assert_array_equal(scorer.score(np.zeros((3, 4, 4, 3), np.uint8), None), np.ones(3))


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((0, 8, 8, 3), np.uint8),
        np.zeros((2, 8, 8, 3), np.float32),
        np.zeros((2, 8, 8), np.uint8),
        np.zeros((2, 8, 0, 3), np.uint8),
        [np.zeros((8, 8, 3), np.uint8)],
    ],
    ids=["empty", "float", "no-channels", "zero-width", "list"],
)
def test_bad_frames_raise_frames_error(bad: Any) -> None:
    with pytest.raises(FramesError):
        UniformScorer().score(bad, CLUE)


def test_run_batched_halves_on_out_of_memory_and_keeps_the_smaller_size() -> None:
    seen: list[int] = []

    def step(start: int, stop: int) -> list[int]:
        seen.append(stop - start)
        if stop - start > 3:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return list(range(start, stop))

    parts, size = run_batched(10, 16, step)
    assert seen == [10, 5, 2, 2, 2, 2, 2]
    assert size == 2 and [i for part in parts for i in part] == list(range(10))


def test_run_batched_gives_up_at_one_item_and_passes_other_errors_through() -> None:
    def always_oom(start: int, stop: int) -> None:
        raise torch.OutOfMemoryError("out of memory")

    with pytest.raises(ModelError, match="single one of 5 frames"):
        run_batched(5, 4, always_oom, hint="Lower max_pixels.")

    def broken(start: int, stop: int) -> None:
        raise ValueError("not a memory problem")

    with pytest.raises(ValueError, match="not a memory problem"):
        run_batched(5, 4, broken)
    with pytest.raises(ConfigError):
        run_batched(5, 0, broken)
    assert is_out_of_memory(torch.OutOfMemoryError("x")) and is_out_of_memory(MemoryError())
    assert not is_out_of_memory(RuntimeError("shape mismatch"))


def test_scores_from_log_probs_none_and_pair() -> None:
    logp = np.log(np.array([[0.2, 0.6], [0.01, 0.01], [0.5, 0.0001]]))
    np.testing.assert_allclose(scores_from_log_probs(logp, "none"), [0.2, 0.01, 0.5])
    np.testing.assert_allclose(scores_from_log_probs(logp, "pair"), [0.25, 0.5, 0.5 / 0.5001])
    with pytest.raises(ConfigError):
        scores_from_log_probs(logp, "softmax")


def test_letter_token_id_requires_a_single_token() -> None:
    class TwoTokens:
        def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
            return [7, 8]

    with pytest.raises(UnsupportedModelError, match="one token"):
        letter_token_id(TwoTokens(), "A")


# ---------------------------------------------------------------------------------------------------------
# LVLM scorers (Qwen2-VL, Qwen2.5-VL, LLaVA-OneVision)
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fixture", LVLM_FIXTURES)
def test_lvlm_scores_are_probabilities_and_deterministic(fixture: str, lvlm: Any) -> None:
    scorer = lvlm(fixture)
    assert isinstance(scorer, Scorer)
    assert (type(scorer) is QwenVLScorer) == (fixture not in ("tiny_llava_ov", "tiny_smolvlm"))
    assert scorer.tokenizer.padding_side == "left"
    frames = _frames(5)
    scores = scorer.score(frames, CLUE)
    assert scores.dtype == np.float64 and scores.shape == (5,)
    assert np.all((scores > 0) & (scores < 1))
    np.testing.assert_array_equal(scorer.score(frames, CLUE), scores)
    # a raw uint8 array is accepted as frames
    np.testing.assert_array_equal(scorer.score(frames.pixels, CLUE), scores)


@pytest.mark.parametrize("fixture", LVLM_FIXTURES)
def test_frame_scored_alone_equals_frame_in_padded_batch(fixture: str, lvlm: Any) -> None:
    scorer = lvlm(fixture)
    images = _images()
    question = scorer.question_for(CLUE)
    inputs = scorer.build_inputs(images, scorer.prompt(question))
    mask = inputs["attention_mask"]
    assert mask.shape[0] == 8 and not bool(mask.all()), "frames of different sizes must pad"
    assert bool(mask[:, -1].all()) and not bool(mask[:, 0].all()), "padding must be on the left"
    batched = scorer.score_images(images, question)
    alone = np.array([scorer.score_images([im], question)[0] for im in images])
    np.testing.assert_allclose(batched, alone, rtol=1e-5, atol=0)
    assert len(set(np.round(alone, 12))) > 1  # the frames really got different scores


@pytest.mark.parametrize("fixture", ["tiny_qwen2_vl", "tiny_qwen2_5_vl", "tiny_llava_ov"])
def test_vision_chunking_does_not_change_scores(fixture: str, lvlm: Any) -> None:
    scorer = lvlm(fixture)
    assert scorer.vision_batch_size == 8
    images = _images()
    question = scorer.question_for(CLUE)
    reference = _fresh(scorer, vision_batch_size=None).score_images(images, question)  # the model encodes all
    for chunk in (1, 3):
        got = _fresh(scorer, vision_batch_size=chunk).score_images(images, question)
        np.testing.assert_allclose(got, reference, rtol=1e-5, atol=0)


@pytest.mark.parametrize("fixture", ["tiny_qwen2_vl", "tiny_qwen2_5_vl", "tiny_llava_ov"])
def test_prefill_chunks_do_not_change_scores(fixture: str, lvlm: Any) -> None:
    """The language model fed a few tokens at a time on a cache gives the one-pass scores (padded batch).

    One token at a time costs one forward per prompt position, so that case runs on two small frames of
    different sizes (still a padded batch) and a short question; the other chunk sizes on all eight frames.
    """
    scorer = lvlm(fixture)
    images = _images()
    question = scorer.question_for(CLUE)
    small, short = _images([(28, 28), (28, 56)], seed=3), "Is there a dog?"
    mask = scorer.build_inputs(small, scorer.prompt(short))["attention_mask"]
    assert not bool(mask.all()), "the two small frames must pad"
    cases = {"small": (small, short), "all": (images, question)}
    references = {name: _fresh(scorer).score_images(*case) for name, case in cases.items()}
    for chunk, name in [(1, "small"), (5, "all"), (64, "all"), (100000, "all")]:
        chunked = _fresh(scorer, prefill_chunk=chunk, vision_batch_size=2 if name == "all" else 1)
        got = chunked.score_images(*cases[name])
        np.testing.assert_allclose(got, references[name], rtol=1e-5, atol=0)
    with pytest.raises(ConfigError):
        _fresh(scorer, prefill_chunk=0)


#: The scoring contract: every way a scorer can split its work gives the one-pass scores (the model's own forward on
#: the whole batch). A new scorer family is covered by adding its tiny checkpoint to LVLM_FIXTURES.
SCORER_PATHS = {
    "vision-batched": dict(vision_batch_size=1),
    "chunked": dict(prefill_chunk=5, vision_batch_size=2),
    "cached-features": dict(cache=True),
    "cached-features-chunked": dict(cache=True, prefill_chunk=7),
    # the language model's prefix (system turn + image) kept per video; LLaVA-OneVision falls back
    "cached-prefix": dict(cache=True, prefix=True),
    "cached-prefix-chunked": dict(cache=True, prefix=True, prefill_chunk=7),
}


@pytest.mark.parametrize("path", SCORER_PATHS)
@pytest.mark.parametrize("fixture", LVLM_FIXTURES)
def test_scorer_contract_every_path_gives_the_one_pass_score(fixture: str, path: str, lvlm: Any) -> None:
    scorer = lvlm(fixture)
    frames = _frames(5)
    one_pass = _fresh(scorer, vision_batch_size=None, prefill_chunk=None).score(frames, CLUE)
    options = dict(SCORER_PATHS[path])
    cached = options.pop("cache", False)
    prefix = {"prefix_cache_bytes": 2**30} if options.pop("prefix", False) else {}
    split = _fresh(scorer, **options)
    if "prefill_chunk" in options and scorer.family not in _PLAIN_FORWARD_FAMILIES:  # refused, never approximated
        with pytest.raises(UnsupportedModelError, match=f"not of {scorer.family}; score with prefill_chunk=None"):
            split.score(frames, CLUE, cache={} if cached else None)
        return
    if cached:
        cache: dict[Any, Any] = {}
        split.score(frames, QUESTION_CLUE, cache=cache, **prefix)  # another question fills the cache
        got = split.score(frames, CLUE, cache=cache, **prefix)  # this one reuses it (Qwen-VL families)
        assert bool(cache) == split.supports_feature_cache
        prefixes = [k for k in cache if k[0] == "lvlm_prefix"]
        assert bool(prefixes) == (bool(prefix) and split.supports_prefix_cache)
    else:
        got = split.score(frames, CLUE)
    np.testing.assert_allclose(got, one_pass, rtol=1e-5, atol=0)


@pytest.mark.parametrize("fixture", ["tiny_qwen2_vl", "tiny_llava_ov"])
def test_score_equals_hand_written_single_image_forward(fixture: str, lvlm: Any) -> None:
    scorer = lvlm(fixture)
    model, processor = scorer.model, scorer.processor
    image = _images([(84, 112)], seed=5)[0]
    text = scoring_question(CLUE, CLUE.question)
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    extra = {}
    if fixture == "tiny_qwen2_vl":
        extra["images_kwargs"] = {"size": {"shortest_edge": 56 * 56, "longest_edge": 112 * 112}}
    inputs = processor(text=[prompt], images=[Image.fromarray(image)], return_tensors="pt", **extra)
    with torch.no_grad():
        probs = model(**inputs).logits[0, -1].softmax(-1)
    yes = processor.tokenizer.convert_tokens_to_ids(YES_LETTER)
    no = processor.tokenizer.convert_tokens_to_ids(NO_LETTER)
    expected = float(probs[yes])
    got = scorer.score(image[None], CLUE)[0]
    assert got == pytest.approx(expected, rel=1e-5, abs=0)
    pair = _fresh(scorer, normalize="pair").score(image[None], CLUE)[0]
    assert pair == pytest.approx(expected / (expected + float(probs[no])), rel=1e-5, abs=0)


def test_questions_and_prompts_follow_the_clue(lvlm: Any) -> None:
    scorer = lvlm("tiny_qwen2_vl")
    objects_q = scorer.question_for(CLUE)
    question_q = scorer.question_for(QUESTION_CLUE)
    event_q = scorer.question_for(Clue(objects=("a dog jumping",), mode="event", question="q"))
    assert "red car" in objects_q and "dog" in objects_q
    assert QUESTION_CLUE.question in question_q
    assert len({objects_q, question_q, event_q}) == 3
    prompts = {scorer.prompt(q) for q in (objects_q, question_q, event_q)}
    assert len(prompts) == 3
    for p in prompts:
        assert p.endswith("<|im_start|>assistant\n") and "<|image_pad|>" in p
    frames = _frames(3)
    a, b = scorer.score(frames, CLUE), scorer.score(frames, QUESTION_CLUE)
    assert not np.allclose(a, b, rtol=1e-6, atol=0)
    with pytest.raises(ConfigError, match="no objects and no question"):
        scorer.score(frames, Clue(objects=None))
    with pytest.raises(ConfigError):
        scorer.score(frames, "a cat")  # type: ignore[arg-type]


@pytest.mark.parametrize("fixture", ["tiny_qwen2_vl", "tiny_llava_ov"])
def test_pair_normalisation(fixture: str, lvlm: Any) -> None:
    scorer = lvlm(fixture)
    images = _images(SIZES[:4])
    question = scorer.question_for(CLUE)
    logp = scorer.log_probs(scorer.build_inputs(images, scorer.prompt(question)))
    plain = scorer.score_images(images, question)
    pair = _fresh(scorer, normalize="pair").score_images(images, question)
    np.testing.assert_allclose(plain, np.exp(logp[:, 0]), rtol=1e-6)
    np.testing.assert_allclose(pair, np.exp(logp[:, 0]) / (np.exp(logp[:, 0]) + np.exp(logp[:, 1])), rtol=1e-6)
    assert np.all(pair >= plain) and np.all((pair > 0) & (pair < 1))


def test_batch_halves_on_out_of_memory(lvlm: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    scorer = lvlm("tiny_qwen2_vl")
    images = _images()
    question = scorer.question_for(CLUE)
    expected = scorer.score_images(images, question)

    limited = _fresh(scorer, batch_size=8)
    real_forward = limited.model.forward
    seen: list[int] = []

    def forward_fitting_two(*args: Any, **kwargs: Any) -> Any:
        rows = kwargs["input_ids"].shape[0]
        seen.append(rows)
        if rows > 2:
            raise torch.OutOfMemoryError(f"out of memory: {rows} rows do not fit")
        return real_forward(*args, **kwargs)

    monkeypatch.setattr(limited.model, "forward", forward_fitting_two)
    got = limited.score_images(images, question)
    assert seen == [8, 4, 2, 2, 2, 2]
    assert limited.working_batch_size == 2
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=0)

    def never_fits(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(limited.model, "forward", never_fits)
    with pytest.raises(ModelError, match="out of memory while scoring a single one"):
        limited.score_images(images[:3], question)


def test_max_pixels_reaches_the_qwen_image_processor(lvlm: Any) -> None:
    scorer = lvlm("tiny_qwen2_vl")
    image = _images([(112, 112)])[0]
    prompt = scorer.prompt("x")
    assert scorer.build_inputs([image], prompt)["image_grid_thw"].tolist() == [[1, 8, 8]]
    small = _fresh(scorer, max_pixels=56 * 56)
    assert small.build_inputs([image], prompt)["image_grid_thw"].tolist() == [[1, 4, 4]]
    with pytest.raises(ConfigError, match="max_pixels"):
        _fresh(scorer, max_pixels=100)
    # non-Qwen families ignore max_pixels
    assert _fresh(lvlm("tiny_llava_ov"), max_pixels=56 * 56).image_kwargs == {}


def test_bad_frames_and_options_raise_clearly(lvlm: Any) -> None:
    scorer = lvlm("tiny_qwen2_vl")
    with pytest.raises(FramesError):
        scorer.score(np.zeros((0, 56, 56, 3), np.uint8), CLUE)
    with pytest.raises(FramesError):
        scorer.score(np.zeros((2, 56, 56, 3), np.float64), CLUE)
    with pytest.raises(FramesError, match="frame 1"):
        scorer.score_images([np.zeros((56, 56, 3), np.uint8), np.zeros((56, 56), np.uint8)], "q")
    with pytest.raises(FramesError, match="empty"):
        scorer.score_images([], "q")
    with pytest.raises(ConfigError):
        _fresh(scorer, normalize="softmax")
    with pytest.raises(ConfigError):
        _fresh(scorer, batch_size=0)
    with pytest.raises(ConfigError):
        _fresh(scorer, vision_batch_size=0)


def test_from_model_matches_loading_from_folder(tiny_qwen2_vl: Path, lvlm: Any) -> None:
    from transformers import AutoProcessor, Qwen2VLForConditionalGeneration

    loaded = lvlm("tiny_qwen2_vl")
    model = Qwen2VLForConditionalGeneration.from_pretrained(tiny_qwen2_vl, dtype=torch.float32)
    processor = AutoProcessor.from_pretrained(tiny_qwen2_vl)
    assert processor.tokenizer.padding_side == "right"
    reused = QwenVLScorer.from_model(model, processor, max_pixels=112 * 112, quiet=True)
    assert processor.tokenizer.padding_side == "left"
    frames = _frames(4)
    np.testing.assert_allclose(reused.score(frames, CLUE), loaded.score(frames, CLUE), rtol=1e-6, atol=0)
    with pytest.raises(UnsupportedModelError, match="llava_onevision"):
        loaded_llava = lvlm("tiny_llava_ov")
        QwenVLScorer.from_model(loaded_llava.model, loaded_llava.processor)


# ---------------------------------------------------------------------------------------------------------
# Loading and dispatch
# ---------------------------------------------------------------------------------------------------------


def test_load_scorer_dispatch(tiny_llava_ov: Path, tiny_clip: Path, tiny_siglip: Path, tiny_qwen2_5_vl: Path) -> None:
    assert type(load_scorer(tiny_llava_ov, quiet=True)) is LVLMScorer
    assert type(load_scorer(str(tiny_qwen2_5_vl), quiet=True)) is QwenVLScorer
    assert type(load_scorer(f"lvlm:{tiny_qwen2_5_vl}", quiet=True)) is LVLMScorer
    clip = load_scorer(str(tiny_clip), max_pixels=5, normalize="pair", quiet=True)  # LVLM options dropped
    assert type(clip) is ClipScorer and not clip.sigmoid
    assert load_scorer(f"clip:{tiny_siglip}", quiet=True).sigmoid
    scorer = UniformScorer()
    assert load_scorer(scorer) is scorer


def test_load_scorer_errors(tmp_path: Path, tiny_qwen2_vl: Path, tiny_clip: Path) -> None:
    with pytest.raises(ConfigError, match="from_model"):
        load_scorer("base")
    with pytest.raises(ConfigError):
        load_scorer("  ")
    with pytest.raises(ConfigError, match="unknown scorer option"):
        load_scorer(str(tiny_clip), colour="blue")
    with pytest.raises(ModelNotFoundError):
        load_scorer(str(tmp_path / "missing"))
    with pytest.raises(ModelNotFoundError):
        load_scorer("./no/such/checkpoint")
    with pytest.raises(ModelNotFoundError):
        load_scorer(str(tmp_path))  # a folder without config.json
    with pytest.raises(ModelNotFoundError):
        load_scorer("quota-test-org/not-a-real-model")  # not cached, and the hub is off in tests

    no_processor = tmp_path / "weights_only"
    no_processor.mkdir()
    for name in ("config.json", "model.safetensors", "generation_config.json"):
        shutil.copy(tiny_qwen2_vl / name, no_processor / name)
    with pytest.raises(ProcessorNotFoundError):
        load_scorer(str(no_processor))

    from transformers import BertConfig

    bert = tmp_path / "bert"
    BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37).save_pretrained(bert)
    with pytest.raises(UnsupportedModelError, match="bert"):
        load_scorer(str(bert))
    with pytest.raises(UnsupportedModelError):
        QwenVLScorer(str(tiny_clip))
    with pytest.raises(UnsupportedModelError):
        ClipScorer(str(tiny_qwen2_vl))
    assert json.loads((tiny_qwen2_vl / "config.json").read_text())["model_type"] == "qwen2_vl"


# ---------------------------------------------------------------------------------------------------------
# CLIP / SigLIP / SigLIP 2
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fixture", CLIP_FIXTURES)
def test_clip_scores_match_hand_computation(fixture: str, request: pytest.FixtureRequest) -> None:
    from transformers import AutoModel, AutoProcessor

    folder = request.getfixturevalue(fixture)
    scorer = load_scorer(str(folder), quiet=True, batch_size=2)
    assert isinstance(scorer, ClipScorer) and scorer.sigmoid == (fixture != "tiny_clip")
    frames = _frames(5, size=(60, 80))
    model = AutoModel.from_pretrained(folder, dtype=torch.float32).eval()
    processor = AutoProcessor.from_pretrained(folder)
    for clue in (CLUE, QUESTION_CLUE):
        scores = scorer.score(frames, clue)
        assert scores.dtype == np.float64 and scores.shape == (5,)
        assert np.all((scores >= 0) & (scores <= 1))
        texts = [f"a photo of {o}." for o in clue.objects] if clue.objects else [clue.question]
        padding = "max_length" if scorer.sigmoid else True
        extra = {}
        if fixture == "tiny_siglip2":  # Siglip2Processor's call defaults (256 patches of 16) override the checkpoint's
            extra["images_kwargs"] = {"max_num_patches": 16, "patch_size": 14}
        inputs = processor(
            text=texts,
            images=[Image.fromarray(p) for p in frames.pixels],
            padding=padding,
            max_length=scorer.max_text_tokens,
            truncation=True,
            return_tensors="pt",
            **extra,
        )
        with torch.no_grad():
            logits = model(**inputs).logits_per_image  # [frames, texts]
            if scorer.sigmoid:
                expected = torch.sigmoid(logits).max(dim=1).values
            else:
                cosine = logits / model.logit_scale.exp()
                expected = ((cosine + 1) / 2).max(dim=1).values
        np.testing.assert_allclose(scores, expected.double().numpy(), rtol=1e-5, atol=1e-7)
    # the batch size does not change scores
    np.testing.assert_allclose(ClipScorer.from_model(model, processor, batch_size=64, quiet=True).score(frames, CLUE),
                               scorer.score(frames, CLUE), rtol=1e-5, atol=1e-7)


def test_clip_scorer_rejects_bad_input(tiny_siglip: Path) -> None:
    scorer = load_scorer(str(tiny_siglip), quiet=True)
    with pytest.raises(FramesError):
        scorer.score(np.zeros((0, 8, 8, 3), np.uint8), CLUE)
    with pytest.raises(ConfigError):
        scorer.score(_frames(2), Clue(objects=None))
    with pytest.raises(ConfigError, match="template"):
        ClipScorer.from_model(scorer.model, scorer.processor, template="no placeholder")


class _RecordingBar:
    """A stand-in for tqdm that records the count after every update."""

    def __init__(self, *args: Any, total: int | None = None, **kwargs: Any) -> None:
        self.total, self.n, self.seen = total, 0, []
        _RecordingBar.last = self

    def update(self, k: int = 1) -> None:
        self.n += k
        self.seen.append(self.n)

    def __enter__(self) -> "_RecordingBar":
        return self

    def __exit__(self, *exc: Any) -> None:
        return None


def test_scoring_progress_moves_per_vision_batch(lvlm: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import tqdm.auto

    scorer = _fresh(lvlm("tiny_qwen2_vl"), vision_batch_size=2)
    monkeypatch.setattr(tqdm.auto, "tqdm", _RecordingBar)
    images = [image for image in _frames(count=7).pixels]
    scorer.score_images(images, scorer.question_for(CLUE))
    bar = _RecordingBar.last
    assert bar.total == 7
    # batch_size 8 holds all seven frames; the bar still moves every two frames, not once at the end
    assert bar.seen == [2, 4, 6, 7]


def test_run_batched_rewinds_progress_after_out_of_memory() -> None:
    from quota.scoring.base import run_batched

    bar = _RecordingBar(total=6)
    tried = []

    def step(start: int, stop: int) -> int:
        tried.append((start, stop))
        bar.update(1)  # work inside the batch shows at once
        if stop - start > 2:
            raise RuntimeError("CUDA out of memory")
        return stop - start

    results, size = run_batched(6, 4, step, progress=bar)
    assert results == [2, 2, 2] and size == 2
    assert tried == [(0, 4), (0, 2), (2, 4), (4, 6)]
    assert bar.n == 6 and bar.seen == [1, 0, 1, 2, 3, 4, 5, 6]


def test_chunked_prefill_refuses_a_family_whose_forward_it_does_not_rebuild(lvlm: Any) -> None:
    """A family whose language model does more than the plain forward (Qwen3-VL's deepstack) is refused on the
    chunked path with one line, never scored approximately."""
    chunked = _fresh(lvlm("tiny_qwen3_vl"), prefill_chunk=5)
    assert chunked.family == "qwen3_vl" and "qwen3_vl" not in _PLAIN_FORWARD_FAMILIES
    with pytest.raises(UnsupportedModelError, match="prefill_chunk=None"):
        chunked.score(_frames(2), CLUE)


def test_lvlm_options_take_their_defaults_from_the_config_and_refuse_unknown_names() -> None:
    from quota.config import QuotaConfig
    from quota.scoring.lvlm import LVLMOptions

    paper = QuotaConfig()
    assert QwenVLScorer.default_options == LVLMOptions.from_config(paper)
    assert LVLMScorer.default_options == LVLMOptions.from_config(paper).changed({"max_pixels": None}, "x")
    assert LVLMOptions.from_config(paper.replace(score_normalize="pair", scorer_prefill_chunk=7)).prefill_chunk == 7
    # a setting left out keeps the class's default; None given is a value of its own (no cap)
    assert QwenVLScorer.default_options.changed({"batch_size": 4}, "x").max_pixels == paper.scorer_max_pixels
    assert QwenVLScorer.default_options.changed({"max_pixels": None}, "x").max_pixels is None
    with pytest.raises(ConfigError, match="batch_sise"):
        LVLMOptions().changed({"batch_sise": 4}, "QwenVLScorer")
    for bad in ({"batch_size": 0}, {"normalize": "softmax"}, {"max_pixels": -3}, {"prefill_chunk": 0}):
        with pytest.raises(ConfigError):
            LVLMOptions(**bad)
