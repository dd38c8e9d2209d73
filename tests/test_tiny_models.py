"""Tests of quota.testing.tiny_models: the tiny checkpoints load and run like the real ones."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from quota.errors import UnsupportedModelError
from quota.testing import (
    FAMILIES,
    LLAVA_ONEVISION_CHAT_TEMPLATE,
    QWEN2_VL_CHAT_TEMPLATE,
    build_tiny_model,
    build_tiny_qwen2_vl,
    tiny_model_cache,
)
from quota.testing.tiny_models import MARKER_FILE, _byte_symbols

QUESTION = "Is it A or B?"


@dataclass(frozen=True)
class Family:
    """What each tiny checkpoint should be, as the tests check it."""

    name: str
    fixture: str
    model_class: str
    processor_class: str
    specials: tuple[str, ...]
    image_token: str
    video_token: str
    # Visual tokens the processor inserts for one square image of the given side (pixels).
    image_tokens: dict[int, int]
    # Visual tokens for a 4-frame video of the given side.
    video_tokens_4_frames: dict[int, int]
    # The user turn with one visual item then QUESTION, as the real chat template renders it.
    image_prompt: str
    video_prompt: str


_QWEN_SPECIALS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>",
    "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>",
    "<|image_pad|>", "<|video_pad|>",
)
_QWEN_SYSTEM = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
_QWEN_COMMON = dict(
    specials=_QWEN_SPECIALS,
    image_token="<|image_pad|>",
    video_token="<|video_pad|>",
    # 84 px -> 6x6 patches -> 3x3 merged tokens; 112 px -> 8x8 -> 4x4. Two frames share one temporal patch.
    image_tokens={56: 4, 84: 9, 112: 16},
    video_tokens_4_frames={56: 8, 84: 18, 112: 32},
    image_prompt=f"{_QWEN_SYSTEM}<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>{QUESTION}<|im_end|>\n"
    "<|im_start|>assistant\n",
    video_prompt=f"{_QWEN_SYSTEM}<|im_start|>user\n<|vision_start|><|video_pad|><|vision_end|>{QUESTION}<|im_end|>\n"
    "<|im_start|>assistant\n",
)
FAMILY_SPECS = {
    "qwen2_vl": Family(
        name="qwen2_vl",
        fixture="tiny_qwen2_vl",
        model_class="Qwen2VLForConditionalGeneration",
        processor_class="Qwen2VLProcessor",
        **_QWEN_COMMON,
    ),
    "qwen2_5_vl": Family(
        name="qwen2_5_vl",
        fixture="tiny_qwen2_5_vl",
        model_class="Qwen2_5_VLForConditionalGeneration",
        processor_class="Qwen2_5_VLProcessor",
        **_QWEN_COMMON,
    ),
    "llava_onevision": Family(
        name="llava_onevision",
        fixture="tiny_llava_ov",
        model_class="LlavaOnevisionForConditionalGeneration",
        processor_class="LlavaOnevisionProcessor",
        specials=("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>"),
        image_token="<image>",
        video_token="<video>",
        # anyres: base tile (6x6) + best-fit tiles (1x1 tile at <=84 px, 2x2 at 112 px) + one newline per row.
        image_tokens={56: 36 + 36 + 6, 84: 36 + 36 + 6, 112: 36 + 144 + 12},
        # every frame is resized to 84x84, pooled to 3x3; one newline after the whole video.
        video_tokens_4_frames={56: 37, 84: 37, 112: 37},
        image_prompt=f"<|im_start|>user\n<image>\n{QUESTION}<|im_end|>\n<|im_start|>assistant\n",
        video_prompt=f"<|im_start|>user\n<video>\n{QUESTION}<|im_end|>\n<|im_start|>assistant\n",
    ),
}
FAMILY_NAMES = list(FAMILY_SPECS)


@pytest.fixture(params=FAMILY_NAMES)
def family(request: pytest.FixtureRequest) -> tuple[Family, Path]:
    spec = FAMILY_SPECS[request.param]
    return spec, request.getfixturevalue(spec.fixture)


_LOADED: dict[str, tuple[object, object]] = {}


def _load(spec: Family, folder: Path) -> tuple[object, object]:
    """Processor and model of a checkpoint, loaded once per test session through the Auto classes."""
    key = str(folder)
    if key not in _LOADED:
        from transformers import AutoModelForImageTextToText, AutoProcessor

        processor = AutoProcessor.from_pretrained(folder)
        model = AutoModelForImageTextToText.from_pretrained(folder).eval()
        _LOADED[key] = (processor, model)
    return _LOADED[key]


def _image(side: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)


def _video(frames: int, side: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (frames, side, side, 3), dtype=np.uint8)


def _messages(kind: str) -> list[dict]:
    return [{"role": "user", "content": [{"type": kind}, {"type": "text", "text": QUESTION}]}]


def test_families_listed() -> None:
    # llava_video is llava_onevision at the real 27x27 grid; its own test is below; the newer families are checked in
    # tests/test_new_families.py
    from quota.testing.tiny_families import NEWER_FAMILIES

    assert set(FAMILIES) == set(FAMILY_SPECS) | {"llava_video"} | set(NEWER_FAMILIES)


def test_llava_video_checkpoint_has_the_real_grid(tiny_llava_video: Path) -> None:
    from transformers import AutoModelForImageTextToText, AutoProcessor

    assert tiny_llava_video.name == "llava_video"
    processor = AutoProcessor.from_pretrained(tiny_llava_video)
    model = AutoModelForImageTextToText.from_pretrained(tiny_llava_video).eval()
    vision = model.config.vision_config
    assert type(model).__name__ == "LlavaOnevisionForConditionalGeneration"
    assert (vision.image_size, vision.patch_size) == (378, 14)  # 27x27 patches per frame
    assert processor.apply_chat_template(_messages("video"), add_generation_prompt=True) == \
        FAMILY_SPECS["llava_onevision"].video_prompt
    text = processor.apply_chat_template(_messages("video"), add_generation_prompt=True)
    enc = processor(text=text, videos=[_video(2, 84)], return_tensors="pt")
    assert enc["pixel_values_videos"].shape[-2:] == (378, 378)
    # the Hugging Face video path: 14x14 per frame, one newline after the video
    assert int((enc["input_ids"] == model.config.video_token_id).sum()) == 2 * 14 * 14 + 1


def test_checkpoint_files_and_classes(family: tuple[Family, Path]) -> None:
    import transformers

    spec, folder = family
    names = {p.name for p in folder.iterdir()}
    for required in (
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "processor_config.json",
        "preprocessor_config.json",
        "video_preprocessor_config.json",
        "chat_template.jinja",
        MARKER_FILE,
    ):
        assert required in names, f"{required} missing from {folder}"

    processor, model = _load(spec, folder)
    assert type(processor).__name__ == spec.processor_class
    assert type(model).__name__ == spec.model_class
    assert processor.video_processor is not None and processor.image_processor is not None
    assert next(model.parameters()).dtype == torch.float32
    # The family's own class loads the same folder too.
    own = getattr(transformers, spec.model_class).from_pretrained(folder)
    assert type(own).__name__ == spec.model_class
    assert sum(p.numel() for p in own.parameters()) < 2_000_000


def test_chat_template_is_the_real_one(family: tuple[Family, Path]) -> None:
    spec, folder = family
    processor, _ = _load(spec, folder)
    expected = LLAVA_ONEVISION_CHAT_TEMPLATE if spec.name == "llava_onevision" else QWEN2_VL_CHAT_TEMPLATE
    assert processor.chat_template == expected
    assert processor.apply_chat_template(_messages("image"), add_generation_prompt=True) == spec.image_prompt
    assert processor.apply_chat_template(_messages("video"), add_generation_prompt=True) == spec.video_prompt


def test_tokenizer_special_tokens_round_trip(family: tuple[Family, Path]) -> None:
    spec, folder = family
    tokenizer = _load(spec, folder)[0].tokenizer
    ids = [tokenizer.convert_tokens_to_ids(t) for t in spec.specials]
    # Specials follow the byte-level vocabulary, consecutively and in the real checkpoints' order.
    assert ids == list(range(ids[0], ids[0] + len(ids)))
    assert ids[-1] == len(tokenizer) - 1
    for token, token_id in zip(spec.specials, ids):
        assert tokenizer.encode(token, add_special_tokens=False) == [token_id]
    text = f"<|im_start|>user\n{spec.video_token}héllo, wörld! 123<|im_end|>\n"
    encoded = tokenizer.encode(text, add_special_tokens=False)
    assert tokenizer.decode(encoded) == text
    assert tokenizer.decode(encoded, skip_special_tokens=True) == "user\nhéllo, wörld! 123\n"
    assert tokenizer.eos_token == "<|im_end|>"
    assert tokenizer.pad_token == "<|endoftext|>"


def test_option_letters_and_yes_no_are_single_tokens(family: tuple[Family, Path]) -> None:
    spec, folder = family
    tokenizer = _load(spec, folder)[0].tokenizer
    for text in ("A", "B", "C", "D", " A", " B", "Yes", "No", " Yes", " No", "yes", "no"):
        ids = tokenizer.encode(text, add_special_tokens=False)
        assert len(ids) == 1, f"{text!r} -> {ids}"
        assert tokenizer.decode(ids) == text
    assert len({tokenizer.encode(t, add_special_tokens=False)[0] for t in ("A", "B", " A", " B")}) == 4


def test_config_ids_match_tokenizer(family: tuple[Family, Path]) -> None:
    spec, folder = family
    processor, model = _load(spec, folder)
    tokenizer = processor.tokenizer
    config = model.config

    def tid(token: str) -> int:
        return tokenizer.convert_tokens_to_ids(token)

    assert config.text_config.vocab_size == len(tokenizer)
    assert config.image_token_id == tid(spec.image_token) == processor.image_token_id
    assert config.video_token_id == tid(spec.video_token) == processor.video_token_id
    if spec.name != "llava_onevision":
        assert config.vision_start_token_id == tid("<|vision_start|>")
        assert config.vision_end_token_id == tid("<|vision_end|>")
        assert sum(config.text_config.rope_parameters["mrope_section"]) * 2 == (
            config.text_config.hidden_size // config.text_config.num_attention_heads
        )
    else:
        assert config.vision_feature_select_strategy == "full"
        assert config.vision_feature_layer == -1
        assert config.vision_config.image_size // config.vision_config.patch_size == 6
        assert processor.num_image_tokens == 36
        assert config.image_grid_pinpoints == processor.image_processor.image_grid_pinpoints
    gen = model.generation_config
    assert tid("<|im_end|>") in gen.eos_token_id
    assert gen.pad_token_id == tid("<|endoftext|>") == config.text_config.pad_token_id
    assert config.text_config.eos_token_id == tid("<|im_end|>")


@pytest.mark.parametrize("side", [56, 84, 112])
def test_image_prompt_forward_and_generate(family: tuple[Family, Path], side: int) -> None:
    spec, folder = family
    processor, model = _load(spec, folder)
    prompt = processor.apply_chat_template(_messages("image"), add_generation_prompt=True)
    inputs = processor(text=[prompt], images=[_image(side)], return_tensors="pt")
    n_visual = int((inputs["input_ids"] == model.config.image_token_id).sum())
    assert n_visual == spec.image_tokens[side]

    with torch.no_grad():
        out = model(**inputs)
    length = inputs["input_ids"].shape[1]
    assert tuple(out.logits.shape) == (1, length, len(processor.tokenizer))
    assert torch.isfinite(out.logits).all()

    with torch.no_grad():
        generated = model.generate(**inputs, max_new_tokens=3)
    assert generated.shape[0] == 1 and length < generated.shape[1] <= length + 3
    assert torch.equal(generated[0, :length], inputs["input_ids"][0])


@pytest.mark.parametrize("side", [56, 84, 112])
def test_video_prompt_forward_and_generate(family: tuple[Family, Path], side: int) -> None:
    spec, folder = family
    processor, model = _load(spec, folder)
    prompt = processor.apply_chat_template(_messages("video"), add_generation_prompt=True)
    inputs = processor(text=[prompt], videos=[_video(4, side)], return_tensors="pt")
    n_visual = int((inputs["input_ids"] == model.config.video_token_id).sum())
    assert n_visual == spec.video_tokens_4_frames[side]

    with torch.no_grad():
        out = model(**inputs)
        generated = model.generate(**inputs, max_new_tokens=3)
    length = inputs["input_ids"].shape[1]
    assert tuple(out.logits.shape) == (1, length, len(processor.tokenizer))
    assert length < generated.shape[1] <= length + 3


def test_pixels_reach_the_logits(family: tuple[Family, Path]) -> None:
    """Different images give different next-token logits: the vision path is wired to the language model."""
    spec, folder = family
    processor, model = _load(spec, folder)
    prompt = processor.apply_chat_template(_messages("image"), add_generation_prompt=True)
    last = []
    for seed in (0, 1):
        inputs = processor(text=[prompt], images=[_image(84, seed)], return_tensors="pt")
        with torch.no_grad():
            last.append(model(**inputs).logits[0, -1])
    assert not torch.allclose(last[0], last[1])


def test_chat_template_with_inline_arrays_and_text_only(family: tuple[Family, Path]) -> None:
    """apply_chat_template(tokenize=True) takes arrays inside the messages; text-only generation works."""
    spec, folder = family
    processor, model = _load(spec, folder)
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "image", "image": _image(84)},
                {"type": "video", "video": _video(4, 84)},
                {"type": "text", "text": QUESTION},
            ],
        }
    ]
    inputs = processor.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
    )
    ids = inputs["input_ids"]
    assert int((ids == model.config.image_token_id).sum()) == spec.image_tokens[84]
    assert int((ids == model.config.video_token_id).sum()) == spec.video_tokens_4_frames[84]

    text_only = [{"role": "user", "content": [{"type": "text", "text": QUESTION}]}]
    text_inputs = processor.apply_chat_template(
        text_only, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
    )
    with torch.no_grad():
        generated = model.generate(**text_inputs, max_new_tokens=3)
    assert generated.shape[1] > text_inputs["input_ids"].shape[1]


def test_qwen2_5_vl_video_timing_comes_from_metadata(tiny_qwen2_5_vl: Path) -> None:
    processor, _ = _load(FAMILY_SPECS["qwen2_5_vl"], tiny_qwen2_5_vl)
    video = _video(4, 84)
    # Without metadata the processor assumes 24 fps: 2 frames per temporal patch -> 2 / 24 s.
    default = processor(text=["<|video_pad|>"], videos=[video], return_tensors="pt")
    assert default["second_per_grid_ts"].tolist() == pytest.approx([2 / 24])
    metadata = [{"total_num_frames": 4, "fps": 0.5}]
    timed = processor(text=["<|video_pad|>"], videos=[video], video_metadata=metadata, return_tensors="pt")
    assert timed["second_per_grid_ts"].tolist() == pytest.approx([4.0])


def test_same_seed_same_weights(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    a = load_file(build_tiny_qwen2_vl(tmp_path / "a", seed=3) / "model.safetensors")
    b = load_file(build_tiny_model("qwen2_vl", tmp_path / "b", seed=3) / "model.safetensors")
    c = load_file(build_tiny_model("qwen2_vl", tmp_path / "c", seed=4) / "model.safetensors")
    assert a.keys() == b.keys() == c.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)
    marker = json.loads((tmp_path / "c" / MARKER_FILE).read_text())
    assert marker["family"] == "qwen2_vl" and marker["seed"] == 4


def test_builder_leaves_global_rng_alone(tmp_path: Path) -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    build_tiny_model("llava_onevision", tmp_path / "m", seed=7)
    assert torch.equal(torch.rand(3), expected)


def test_cache_builds_once_and_matches_fixtures(tiny_qwen2_vl: Path, tiny_llava_ov: Path) -> None:
    assert tiny_model_cache("qwen2_vl") == tiny_qwen2_vl
    assert tiny_model_cache("llava_onevision") == tiny_llava_ov
    before = (tiny_qwen2_vl / "model.safetensors").stat().st_mtime_ns
    assert tiny_model_cache("qwen2_vl") == tiny_qwen2_vl
    assert (tiny_qwen2_vl / "model.safetensors").stat().st_mtime_ns == before


def test_unknown_family_and_variant() -> None:
    with pytest.raises(UnsupportedModelError, match="qwen3"):
        build_tiny_model("qwen3", "/nonexistent")
    with pytest.raises(UnsupportedModelError, match="llava"):
        tiny_model_cache("llava")
    with pytest.raises(UnsupportedModelError, match="variant"):
        build_tiny_qwen2_vl("/nonexistent", variant="qwen3_vl")


def test_byte_symbols_match_byte_level_alphabet() -> None:
    from tokenizers import pre_tokenizers

    symbols = _byte_symbols()
    assert len(symbols) == len(set(symbols)) == 256
    assert set(symbols) == set(pre_tokenizers.ByteLevel.alphabet())
    assert symbols[ord(" ")] == "Ġ" and symbols[ord("A")] == "A"
