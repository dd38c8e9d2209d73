"""Tiny random-weight checkpoints of the real model classes quota supports.

Each builder writes a complete local checkpoint folder: weights (``model.safetensors``), ``config.json``,
``generation_config.json``, tokenizer files, image / video processor configs, the processor config and
the family's chat template (``chat_template.jinja``). The folder loads with ``AutoProcessor``,
``AutoModelForImageTextToText`` and the family's own model class, and nothing touches the network.

The models are the real transformers classes at toy sizes (language model hidden size 64, 2 layers; vision
towers of 2 layers), so every code path (processors, placeholder expansion, rotary positions, video
pooling, generation) is the one the full-size checkpoints use; only the numbers are random.

The tokenizer is a byte-level BPE ``Qwen2Tokenizer``: the 256 GPT-2 byte symbols are the base vocabulary,
so any text round-trips. A small, fixed list of merges makes a space followed by one ASCII letter (``" A"``)
one token, and ``Yes`` / ``No`` / ``yes`` / ``no`` (with or without a leading space) one token each, so code
that reads option letters or yes/no probabilities sees single tokens as with the real vocabularies. The
family's special tokens follow, in the same order as on the real checkpoints.

Sizes, per family (see :data:`TINY_FACTS` for the numbers in code):

* Qwen2-VL / Qwen2.5-VL: patch 14, spatial merge 2, temporal patch 2; images and video frames are resized
  to between 56x56 and 112x112 pixels (multiples of 28), so an 84x84 image gives a 6x6 patch grid and
  3x3 = 9 visual tokens, a 112x112 image 8x8 patches and 16 tokens.
* LLaVA-OneVision: SigLIP at 84x84 pixels with patch 14 (a 6x6 native grid, 36 features per tile); a video
  frame is pooled to 3x3 = 9 tokens, plus one newline token after the whole video.
* LLaVA-Video (``llava_video``): the same classes with SigLIP at 378x378 pixels, so the native grid is the real
  model's 27x27 and the model's own pooling gives 14x14. Its cache folder is named ``llava_video``, which is
  how quota recognises a LLaVA-Video checkpoint (one newline token per grid row; docs/models.md).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

from ..errors import UnsupportedModelError
from ._cache import CACHE_ENV, CheckpointCache, save_quietly, seeded_model  # noqa: F401 (CACHE_ENV re-exported)

__all__ = [
    "FAMILIES",
    "TINY_FACTS",
    "QWEN2_VL_CHAT_TEMPLATE",
    "LLAVA_ONEVISION_CHAT_TEMPLATE",
    "build_tiny_qwen2_vl",
    "build_tiny_llava_onevision",
    "build_tiny_model",
    "tiny_model_cache",
]

#: Family names accepted by :func:`build_tiny_model` and :func:`tiny_model_cache`.
FAMILIES: tuple[str, ...] = ("qwen2_vl", "qwen2_5_vl", "llava_onevision", "llava_video", "qwen3_vl", "smolvlm", "internvl", "glm4v")

#: Bumped whenever the builders change what they write, so stale folders in a persistent cache are rebuilt.
BUILDER_VERSION = 1

#: Name of the small JSON file each builder writes to describe the checkpoint (family, seed, version).
MARKER_FILE = "quota_tiny_model.json"

#: Marker file, cache folder and build-once logic of these checkpoints.
_CHECKPOINTS = CheckpointCache(
    families=FAMILIES,
    what="tiny model",
    marker_file=MARKER_FILE,
    builder_version=BUILDER_VERSION,
    build=lambda family, folder, seed: build_tiny_model(family, folder, seed=seed),
)

# Language model sizes shared by all families.
_HIDDEN = 64
_INTERMEDIATE = 128
_LAYERS = 2
_HEADS = 4  # head_dim = 16
_KV_HEADS = 2
_MAX_POSITIONS = 8192
_ROPE_THETA = 1_000_000.0

# Qwen2-VL vision settings.
_QWEN_PATCH = 14
_QWEN_MERGE = 2
_QWEN_TEMPORAL = 2
_QWEN_MIN_PIXELS = 56 * 56
_QWEN_MAX_PIXELS = 112 * 112
# Rotary sections (temporal, height, width) in frequency pairs: must sum to head_dim / 2 = 8.
_QWEN_MROPE_SECTION = [2, 3, 3]

# LLaVA-OneVision vision settings.
_SIGLIP_IMAGE = 84
_SIGLIP_PATCH = 14
_LLAVA_PINPOINTS = [[84, 84], [84, 168], [168, 84], [168, 168]]
# LLaVA-Video: the real model's 27x27 SigLIP grid (378 / 14).
_SIGLIP_VIDEO_IMAGE = 378
_LLAVA_VIDEO_PINPOINTS = [[378, 378], [378, 756], [756, 378], [756, 756]]
# Positions needed for 64 frames x 14 x 15 = 13,440 visual positions plus the prompt.
_LLAVA_VIDEO_MAX_POSITIONS = 16384

#: Numbers later code (adapters, tests) can rely on, per family.
TINY_FACTS: dict[str, dict[str, Any]] = {
    "qwen2_vl": {
        "hidden_size": _HIDDEN,
        "patch_size": _QWEN_PATCH,
        "merge_size": _QWEN_MERGE,
        "temporal_patch_size": _QWEN_TEMPORAL,
        "min_pixels": _QWEN_MIN_PIXELS,
        "max_pixels": _QWEN_MAX_PIXELS,
    },
    "qwen2_5_vl": {
        "hidden_size": _HIDDEN,
        "patch_size": _QWEN_PATCH,
        "merge_size": _QWEN_MERGE,
        "temporal_patch_size": _QWEN_TEMPORAL,
        "min_pixels": _QWEN_MIN_PIXELS,
        "max_pixels": _QWEN_MAX_PIXELS,
    },
    "llava_onevision": {
        "hidden_size": _HIDDEN,
        "image_size": _SIGLIP_IMAGE,
        "patch_size": _SIGLIP_PATCH,
        "native_grid": _SIGLIP_IMAGE // _SIGLIP_PATCH,  # 6 -> 6x6 features per tile / frame
        "pooled_grid": -(-(_SIGLIP_IMAGE // _SIGLIP_PATCH) // 2),  # ceil(6 / 2) = 3 -> 3x3 per frame
        "image_grid_pinpoints": _LLAVA_PINPOINTS,
    },
    "llava_video": {
        "hidden_size": _HIDDEN,
        "image_size": _SIGLIP_VIDEO_IMAGE,
        "patch_size": _SIGLIP_PATCH,
        "native_grid": _SIGLIP_VIDEO_IMAGE // _SIGLIP_PATCH,  # 27 -> 27x27 features per frame
        "pooled_grid": -(-(_SIGLIP_VIDEO_IMAGE // _SIGLIP_PATCH) // 2),  # ceil(27 / 2) = 14 -> 14x14
        "image_grid_pinpoints": _LLAVA_VIDEO_PINPOINTS,
    },
}

# ---------------------------------------------------------------------------------------------------------
# Chat templates. These are the templates shipped with the real Hub checkpoints (functional data: the exact
# prompt layout the models were trained on), written out here as Jinja strings.
# ---------------------------------------------------------------------------------------------------------

#: Processor chat template of Qwen/Qwen2-VL-*-Instruct (Qwen2.5-VL-*-Instruct ships the same one).
QWEN2_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}"
    "{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n"
    "{% else %}"
    "{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}"
    "{{ content['text'] }}"
    "{% endif %}"
    "{% endfor %}"
    "<|im_end|>\n"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}"
    "<|im_start|>assistant\n"
    "{% endif %}"
)

#: Processor chat template of llava-hf/llava-onevision-qwen2-*-hf and llava-hf/LLaVA-Video-*-Qwen2-hf:
#: images first, then videos, then text, each visual placeholder followed by a newline; no default system turn.
LLAVA_ONEVISION_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{'<|im_start|>' + message['role'] + '\n'}}"
    "{# Render all images first #}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}"
    "{{ '<image>\n' }}"
    "{% endfor %}"
    "{# Render all video then #}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'video') %}"
    "{{ '<video>\n' }}"
    "{% endfor %}"
    "{# Render all text next #}"
    "{% if message['role'] != 'assistant' %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ content['text'] }}"
    "{% endfor %}"
    "{% else %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{% generation %}{{ content['text'] }}{% endgeneration %}"
    "{% endfor %}"
    "{% endif %}"
    "{{'<|im_end|>' + '\n'}}"
    "{% endfor %}"
    "{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\n' }}"
    "{% endif %}"
)

# Special tokens, in the order (and so the relative ids) of the real vocabularies.
_QWEN2_VL_SPECIALS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
_LLAVA_OV_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>"]

# Words that get merges so they are single tokens (bare and after a space).
_WORD_TOKENS = ("Yes", "No", "yes", "no")
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


# ---------------------------------------------------------------------------------------------------------
# Tokenizer
# ---------------------------------------------------------------------------------------------------------


def _byte_symbols() -> list[str]:
    """The 256 printable symbols GPT-2 style byte-level BPE uses for the bytes 0..255, in byte order."""
    # Bytes that are printable Latin-1 keep their own character; the rest are shifted to 256 + n.
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(
        range(ord("®"), ord("ÿ") + 1)
    )
    mapping: dict[int, str] = {}
    extra = 0
    for b in range(256):
        if b in keep:
            mapping[b] = chr(b)
        else:
            mapping[b] = chr(256 + extra)
            extra += 1
    return [mapping[b] for b in range(256)]


def _vocab_and_merges() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Byte-level base vocabulary plus the few merges described in the module docstring.

    Merge order matters (lower rank merges first): "space + letter" comes before the word merges, so
    " Yes" becomes "ĠY" + "e" + "s" -> "ĠYe" + "s" -> "ĠYes".
    """
    symbols = _byte_symbols()
    vocab = {s: i for i, s in enumerate(symbols)}
    merges: list[tuple[str, str]] = []

    def merge(left: str, right: str) -> None:
        merges.append((left, right))
        vocab.setdefault(left + right, len(vocab))

    space = symbols[ord(" ")]
    for letter in _LETTERS:
        merge(space, letter)
    for word in _WORD_TOKENS:
        for prefix in ("", space):
            current = prefix + word[0]
            for char in word[1:]:
                merge(current, char)
                current += char
    return vocab, merges


def _build_tokenizer(specials: list[str], chat_template: str) -> Any:
    """A byte-level ``Qwen2Tokenizer`` with ``specials`` appended after the base vocabulary.

    ``<|endoftext|>`` (the first special) is the pad token and ``<|im_end|>`` the end of a turn (eos); there is
    no bos and no unknown token (byte-level BPE encodes any text), as on the instruction-tuned Qwen2 checkpoints.
    ``chat_template`` is also the tokenizer's template (both are saved as the one ``chat_template.jinja``).
    """
    from transformers import AddedToken, Qwen2Tokenizer

    vocab, merges = _vocab_and_merges()
    # The constructor registers its eos / pad tokens first; give it <|endoftext|> for both so that the
    # specials below get their ids in the order of the real vocabularies, then switch eos to <|im_end|>.
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        unk_token=None,
        bos_token=None,
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        errors="replace",
        model_max_length=32768,
        clean_up_tokenization_spaces=False,
        split_special_tokens=False,
    )
    tokenizer.add_tokens([AddedToken(t, special=True, normalized=False) for t in specials], special_tokens=True)
    extra = [t for t in specials if t not in ("<|endoftext|>", "<|im_end|>")]
    tokenizer.add_special_tokens({"additional_special_tokens": extra})
    tokenizer.eos_token = "<|im_end|>"
    tokenizer.chat_template = chat_template
    return tokenizer


def _token_id(tokenizer: Any, token: str) -> int:
    ids = tokenizer.convert_tokens_to_ids([token])
    return int(ids[0])


# ---------------------------------------------------------------------------------------------------------
# Builders
# ---------------------------------------------------------------------------------------------------------


def _generation_config(tokenizer: Any) -> Any:
    from transformers import GenerationConfig

    endoftext = _token_id(tokenizer, "<|endoftext|>")
    im_end = _token_id(tokenizer, "<|im_end|>")
    return GenerationConfig(
        bos_token_id=endoftext,
        eos_token_id=[im_end, endoftext],
        pad_token_id=endoftext,
        do_sample=False,
    )


def _save(folder: Path, model: Any, processor: Any, generation_config: Any, family: str, seed: int) -> Path:
    """Write model, processor (with tokenizer and chat template) and the marker file into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    model.generation_config = generation_config
    save_quietly(model, folder)
    processor.save_pretrained(folder)
    # Also the stand-alone image / video processor files the Hub checkpoints carry (same content as the
    # matching sections of processor_config.json), for code that loads them on their own.
    processor.image_processor.save_pretrained(folder)
    processor.video_processor.save_pretrained(folder)
    _CHECKPOINTS.write_marker(folder, family, seed)
    return folder


def _language_model_kwargs(tokenizer: Any, **rope: Any) -> dict[str, Any]:
    """Settings of the Qwen2 language model every family uses: sizes, rotary settings (``rope`` adds to them,
    e.g. Qwen2-VL's ``mrope_section``) and the ``<|endoftext|>`` / ``<|im_end|>`` token ids."""
    endoftext = _token_id(tokenizer, "<|endoftext|>")
    return dict(
        vocab_size=len(tokenizer),
        hidden_size=_HIDDEN,
        intermediate_size=_INTERMEDIATE,
        num_hidden_layers=_LAYERS,
        num_attention_heads=_HEADS,
        num_key_value_heads=_KV_HEADS,
        max_position_embeddings=_MAX_POSITIONS,
        max_window_layers=_LAYERS,
        rope_parameters={"rope_type": "default", **rope, "rope_theta": _ROPE_THETA},
        bos_token_id=endoftext,
        eos_token_id=_token_id(tokenizer, "<|im_end|>"),
        pad_token_id=endoftext,
    )


def build_tiny_qwen2_vl(path: str | os.PathLike[str], *, variant: str = "qwen2_vl", seed: int = 0) -> Path:
    """Write a tiny random-weight Qwen2-VL (``variant="qwen2_vl"``) or Qwen2.5-VL (``"qwen2_5_vl"``) checkpoint.

    Args:
        path: folder to write (created if missing; existing files of the same names are overwritten).
        variant: ``"qwen2_vl"`` for ``Qwen2VLForConditionalGeneration`` + ``Qwen2VLProcessor``, or
            ``"qwen2_5_vl"`` for ``Qwen2_5_VLForConditionalGeneration`` + ``Qwen2_5_VLProcessor``.
        seed: seed of the random weights; the same seed gives identical weights.

    Returns:
        The checkpoint folder as a :class:`pathlib.Path`.
    """
    if variant not in ("qwen2_vl", "qwen2_5_vl"):
        raise UnsupportedModelError(
            f"build_tiny_qwen2_vl: unknown variant {variant!r}; use 'qwen2_vl' or 'qwen2_5_vl'."
        )
    from transformers import Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    tokenizer = _build_tokenizer(_QWEN2_VL_SPECIALS, QWEN2_VL_CHAT_TEMPLATE)
    ids = {t: _token_id(tokenizer, t) for t in _QWEN2_VL_SPECIALS}
    text_kwargs = _language_model_kwargs(tokenizer, mrope_section=list(_QWEN_MROPE_SECTION))
    token_kwargs = dict(
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )
    if variant == "qwen2_vl":
        from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLProcessor

        vision = dict(
            depth=2,
            embed_dim=32,
            hidden_size=_HIDDEN,
            mlp_ratio=2,
            num_heads=2,
            patch_size=_QWEN_PATCH,
            spatial_merge_size=_QWEN_MERGE,
            temporal_patch_size=_QWEN_TEMPORAL,
        )
        config = Qwen2VLConfig(text_config=text_kwargs, vision_config=vision, **token_kwargs)
        model_class, processor_class = Qwen2VLForConditionalGeneration, Qwen2VLProcessor
    else:
        from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor

        vision = dict(
            depth=2,
            hidden_size=32,
            intermediate_size=64,
            num_heads=2,
            out_hidden_size=_HIDDEN,
            patch_size=_QWEN_PATCH,
            spatial_merge_size=_QWEN_MERGE,
            temporal_patch_size=_QWEN_TEMPORAL,
            tokens_per_second=2,
            window_size=112,
            fullatt_block_indexes=[1],
        )
        config = Qwen2_5_VLConfig(text_config=text_kwargs, vision_config=vision, **token_kwargs)
        model_class, processor_class = Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor

    pixels = dict(
        min_pixels=_QWEN_MIN_PIXELS,
        max_pixels=_QWEN_MAX_PIXELS,
        patch_size=_QWEN_PATCH,
        temporal_patch_size=_QWEN_TEMPORAL,
        merge_size=_QWEN_MERGE,
    )
    image_processor = Qwen2VLImageProcessor(**pixels)
    video_processor = Qwen2VLVideoProcessor(**pixels, cap_pixels_per_frame=False)
    processor = processor_class(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=QWEN2_VL_CHAT_TEMPLATE,
    )
    model = seeded_model(model_class, config, seed)
    return _save(Path(path), model, processor, _generation_config(tokenizer), variant, seed)


def build_tiny_llava_onevision(
    path: str | os.PathLike[str], *, seed: int = 0, image_size: int = _SIGLIP_IMAGE, family: str = "llava_onevision"
) -> Path:
    """Write a tiny random-weight LLaVA-OneVision checkpoint (SigLIP vision tower + Qwen2 language model).

    The layout follows llava-hf/llava-onevision-qwen2-*-hf and LLaVA-Video-*-Qwen2-hf: feature layer -1 with
    the ``"full"`` strategy (SigLIP has no CLS token), ``anyres_max_9`` image tiling and the model's own
    bilinear 2x video pooling. SigLIP runs at 84x84 pixels with patch 14: a 6x6 native grid per tile or frame,
    pooled to 3x3 for video frames.

    Args:
        path: folder to write (created if missing).
        seed: seed of the random weights.
        image_size: SigLIP input size in pixels (84: a 6x6 grid; 378: LLaVA-Video's 27x27).
        family: the family name written into the marker file.

    Returns:
        The checkpoint folder as a :class:`pathlib.Path`.
    """
    from transformers import (
        LlavaOnevisionConfig,
        LlavaOnevisionForConditionalGeneration,
        LlavaOnevisionImageProcessor,
        LlavaOnevisionProcessor,
        LlavaOnevisionVideoProcessor,
        Qwen2Config,
        SiglipVisionConfig,
    )

    tokenizer = _build_tokenizer(_LLAVA_OV_SPECIALS, LLAVA_ONEVISION_CHAT_TEMPLATE)
    ids = {t: _token_id(tokenizer, t) for t in _LLAVA_OV_SPECIALS}
    pinpoints = _LLAVA_PINPOINTS if image_size == _SIGLIP_IMAGE else [[image_size * a, image_size * b]
                                                                      for a, b in ((1, 1), (1, 2), (2, 1), (2, 2))]
    lm_kwargs = _language_model_kwargs(tokenizer)
    if image_size != _SIGLIP_IMAGE:
        lm_kwargs["max_position_embeddings"] = _LLAVA_VIDEO_MAX_POSITIONS
    text_config = Qwen2Config(**lm_kwargs, tie_word_embeddings=False)
    vision_config = SiglipVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=image_size,
        patch_size=_SIGLIP_PATCH,
        vision_use_head=False,
    )
    config = LlavaOnevisionConfig(
        vision_config=vision_config,
        text_config=text_config,
        image_token_index=ids["<image>"],
        video_token_index=ids["<video>"],
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
        image_grid_pinpoints=[list(p) for p in pinpoints],
        vision_aspect_ratio="anyres_max_9",
        tie_word_embeddings=False,
    )
    siglip_norm = dict(image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5])
    image_processor = LlavaOnevisionImageProcessor(
        size={"height": image_size, "width": image_size},
        image_grid_pinpoints=[list(p) for p in pinpoints],
        **siglip_norm,
    )
    video_processor = LlavaOnevisionVideoProcessor(
        size={"height": image_size, "width": image_size},
        **siglip_norm,
    )
    native = image_size // _SIGLIP_PATCH
    processor = LlavaOnevisionProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        num_image_tokens=native * native,
        vision_feature_select_strategy="full",
        chat_template=LLAVA_ONEVISION_CHAT_TEMPLATE,
        vision_aspect_ratio="anyres_max_9",
    )
    model = seeded_model(LlavaOnevisionForConditionalGeneration, config, seed)
    return _save(Path(path), model, processor, _generation_config(tokenizer), family, seed)


_BUILDERS: dict[str, Callable[..., Path]] = {
    "qwen2_vl": lambda path, **kw: build_tiny_qwen2_vl(path, variant="qwen2_vl", **kw),
    "qwen2_5_vl": lambda path, **kw: build_tiny_qwen2_vl(path, variant="qwen2_5_vl", **kw),
    "llava_onevision": build_tiny_llava_onevision,
    "llava_video": lambda path, **kw: build_tiny_llava_onevision(
        path, image_size=_SIGLIP_VIDEO_IMAGE, family="llava_video", **kw),
    # The newer families live in tiny_families (imported on use: it imports this module).
    "qwen3_vl": lambda path, **kw: _newer("build_tiny_qwen3_vl")(path, **kw),
    "smolvlm": lambda path, **kw: _newer("build_tiny_smolvlm")(path, **kw),
    "internvl": lambda path, **kw: _newer("build_tiny_internvl")(path, **kw),
    "glm4v": lambda path, **kw: _newer("build_tiny_glm4v")(path, **kw),
}


def _newer(name: str) -> Callable[..., Path]:
    from . import tiny_families

    return getattr(tiny_families, name)


def build_tiny_model(family: str, path: str | os.PathLike[str], **kw: Any) -> Path:
    """Write the tiny checkpoint of ``family`` (one of :data:`FAMILIES`) into ``path``.

    Keyword arguments (``seed``) go to the family's builder. Returns the folder.
    """
    return _BUILDERS[_CHECKPOINTS.check_family(family)](path, **kw)


# ---------------------------------------------------------------------------------------------------------
# Per-process cache
# ---------------------------------------------------------------------------------------------------------


def tiny_model_cache(family: str) -> Path:
    """The folder of the tiny ``family`` checkpoint (seed 0), built at most once per process.

    Checkpoints live under ``$QUOTA_TINY_CACHE`` when that is set (a finished checkpoint there from an earlier
    run, by the same builder version and transformers version, is reused as is), else under a temporary
    folder made once per process and deleted when the process exits. Building goes to a scratch folder first
    and is renamed into place, so processes sharing one cache folder never see a half-written checkpoint.
    """
    return _CHECKPOINTS.get(family)
