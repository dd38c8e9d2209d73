"""Tiny random-weight CLIP, SigLIP and SigLIP 2 checkpoints, written locally for tests.

Same idea as :mod:`quota.testing.tiny_models`: the real transformers classes (``CLIPModel``,
``SiglipModel``, ``Siglip2Model``) and processors at toy sizes, saved as complete checkpoint folders that
``AutoModel`` / ``AutoProcessor`` load without any network access. Only the numbers are random.

Sizes: both encoders have hidden size 32, 2 layers, 2 heads, projection / embedding size 32 (CLIP
projects to 16). Images are 56x56 pixels with patch 14 (a 4x4 grid); SigLIP 2 takes at most 16 patches
of 14 pixels at any aspect ratio. Texts hold at most 77 tokens for CLIP and 64 for SigLIP (as the real
checkpoints).

Tokenizers, all built from the tokenizers library without downloads:

* CLIP: a ``CLIPTokenizer`` whose vocabulary is the 256 byte-level symbols, each also with the
  end-of-word suffix ``</w>``, plus ``<|startoftext|>`` and ``<|endoftext|>``; no merges, so every
  character of a lower-cased word is a token.
* SigLIP and SigLIP 2: a ``Siglip2Tokenizer`` (Gemma-style, lower-casing, byte fallback) whose vocabulary
  is the five special tokens, the 256 byte tokens ``<0x00>`` to ``<0xFF>``, ``▁`` and the lower-case letters
  and digits. (The real SigLIP tokenizer needs the sentencepiece package; this one does not.)

SigLIP's ``logit_scale`` / ``logit_bias`` are set to ``log 10`` and ``-1`` (a random model would have 0 and 0),
so the sigmoid mapping is exercised with non-trivial values.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Callable

from ._cache import CACHE_ENV, CheckpointCache, save_quietly, seeded_model  # noqa: F401 (CACHE_ENV re-exported)

__all__ = [
    "CLIP_FAMILIES",
    "TINY_CLIP_FACTS",
    "build_tiny_clip",
    "build_tiny_siglip",
    "build_tiny_siglip2",
    "build_tiny_dual_encoder",
    "tiny_clip_cache",
]

#: Families accepted by :func:`build_tiny_dual_encoder` and :func:`tiny_clip_cache`.
CLIP_FAMILIES: tuple[str, ...] = ("clip", "siglip", "siglip2")

#: Bumped whenever the builders change what they write.
BUILDER_VERSION = 1
#: The small JSON file each builder writes to describe its checkpoint.
MARKER_FILE = "quota_tiny_clip.json"
# CACHE_ENV (imported above) is the same variable as for :mod:`quota.testing.tiny_models`: one folder holds
# all tiny checkpoints.
#: Marker file, cache folder and build-once logic of these checkpoints.
_CHECKPOINTS = CheckpointCache(
    families=CLIP_FAMILIES,
    what="tiny dual encoder",
    marker_file=MARKER_FILE,
    builder_version=BUILDER_VERSION,
    build=lambda family, folder, seed: build_tiny_dual_encoder(family, folder, seed=seed),
    prefix="tiny_",
)

_HIDDEN = 32
_LAYERS = 2
_HEADS = 2
_IMAGE = 56
_PATCH = 14
_CLIP_TEXT_TOKENS = 77  # as on the real checkpoints
_SIGLIP_TEXT_TOKENS = 64
_SIGLIP_SCALE = math.log(10.0)
_SIGLIP_BIAS = -1.0

#: Numbers tests can rely on.
TINY_CLIP_FACTS: dict[str, dict[str, Any]] = {
    "clip": {"image_size": _IMAGE, "patch_size": _PATCH, "projection_dim": 16, "max_text_tokens": _CLIP_TEXT_TOKENS},
    "siglip": {
        "image_size": _IMAGE,
        "patch_size": _PATCH,
        "max_text_tokens": _SIGLIP_TEXT_TOKENS,
        "logit_scale": _SIGLIP_SCALE,
        "logit_bias": _SIGLIP_BIAS,
    },
    "siglip2": {
        "max_num_patches": 16,
        "patch_size": _PATCH,
        "max_text_tokens": _SIGLIP_TEXT_TOKENS,
        "logit_scale": _SIGLIP_SCALE,
        "logit_bias": _SIGLIP_BIAS,
    },
}


# ---------------------------------------------------------------------------------------------------------
# Tokenizers
# ---------------------------------------------------------------------------------------------------------


def _byte_level_alphabet() -> list[str]:
    """The 256 symbols byte-level BPE uses for the bytes 0..255, in a fixed order."""
    from tokenizers.pre_tokenizers import ByteLevel

    return sorted(ByteLevel.alphabet())


def _clip_tokenizer() -> Any:
    from transformers import CLIPTokenizer

    vocab: dict[str, int] = {}
    for symbol in _byte_level_alphabet():
        vocab[symbol] = len(vocab)
    for symbol in _byte_level_alphabet():
        vocab[symbol + "</w>"] = len(vocab)
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=_CLIP_TEXT_TOKENS)


def _siglip_tokenizer() -> Any:
    from transformers import Siglip2Tokenizer

    vocab: dict[str, int] = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, "<mask>": 4}
    for b in range(256):
        vocab[f"<0x{b:02X}>"] = len(vocab)
    for piece in ["▁"] + [chr(c) for c in range(ord("a"), ord("z") + 1)] + [str(d) for d in range(10)]:
        vocab[piece] = len(vocab)
    tokenizer = Siglip2Tokenizer(vocab=vocab, merges=[], model_max_length=_SIGLIP_TEXT_TOKENS)
    tokenizer.padding_side = "right"
    return tokenizer


# ---------------------------------------------------------------------------------------------------------
# Builders
# ---------------------------------------------------------------------------------------------------------


def _set_sigmoid_calibration(model: Any) -> None:
    import torch

    with torch.no_grad():
        model.logit_scale.fill_(_SIGLIP_SCALE)
        model.logit_bias.fill_(_SIGLIP_BIAS)


def _save(folder: Path, model: Any, processor: Any, family: str, seed: int) -> Path:
    """Write model, processor and the marker file into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    save_quietly(model, folder)
    processor.save_pretrained(folder)
    _CHECKPOINTS.write_marker(folder, family, seed)
    return folder


def _text_kwargs(tokenizer: Any, max_tokens: int) -> dict[str, Any]:
    return dict(
        vocab_size=len(tokenizer),
        hidden_size=_HIDDEN,
        intermediate_size=2 * _HIDDEN,
        num_hidden_layers=_LAYERS,
        num_attention_heads=_HEADS,
        max_position_embeddings=max_tokens,
    )


def _vision_kwargs() -> dict[str, Any]:
    return dict(
        hidden_size=_HIDDEN,
        intermediate_size=2 * _HIDDEN,
        num_hidden_layers=_LAYERS,
        num_attention_heads=_HEADS,
        patch_size=_PATCH,
    )


def _siglip_text_kwargs(tokenizer: Any) -> dict[str, Any]:
    """Text-tower settings of SigLIP and SigLIP 2 (the Gemma-style special token ids of :func:`_siglip_tokenizer`)."""
    text = _text_kwargs(tokenizer, _SIGLIP_TEXT_TOKENS)
    text.update(pad_token_id=0, bos_token_id=2, eos_token_id=1, projection_size=_HIDDEN)
    return text


def build_tiny_clip(path: str | os.PathLike[str], *, seed: int = 0) -> Path:
    """Write a tiny random-weight ``CLIPModel`` checkpoint (56x56 images, 4x4 patches) into ``path``."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    tokenizer = _clip_tokenizer()
    text = _text_kwargs(tokenizer, _CLIP_TEXT_TOKENS)
    text.update(
        bos_token_id=tokenizer.convert_tokens_to_ids("<|startoftext|>"),
        eos_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        pad_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
    )
    config = CLIPConfig(text_config=text, vision_config=dict(_vision_kwargs(), image_size=_IMAGE), projection_dim=16)
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": _IMAGE}, crop_size={"height": _IMAGE, "width": _IMAGE}
    )
    processor = CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer)
    model = seeded_model(CLIPModel, config, seed)
    return _save(Path(path), model, processor, "clip", seed)


def build_tiny_siglip(path: str | os.PathLike[str], *, seed: int = 0) -> Path:
    """Write a tiny random-weight ``SiglipModel`` checkpoint (56x56 images, 4x4 patches) into ``path``."""
    from transformers import (
        SiglipConfig,
        SiglipImageProcessor,
        SiglipModel,
        SiglipProcessor,
        SiglipTextConfig,
        SiglipVisionConfig,
    )

    tokenizer = _siglip_tokenizer()
    text = _siglip_text_kwargs(tokenizer)
    config = SiglipConfig(
        text_config=SiglipTextConfig(**text),
        vision_config=SiglipVisionConfig(**_vision_kwargs(), image_size=_IMAGE),
    )
    image_processor = SiglipImageProcessor(size={"height": _IMAGE, "width": _IMAGE})
    processor = SiglipProcessor(image_processor=image_processor, tokenizer=tokenizer)
    model = seeded_model(SiglipModel, config, seed)
    _set_sigmoid_calibration(model)
    return _save(Path(path), model, processor, "siglip", seed)


def build_tiny_siglip2(path: str | os.PathLike[str], *, seed: int = 0) -> Path:
    """Write a tiny random-weight ``Siglip2Model`` checkpoint (at most 16 patches of 14 px) into ``path``."""
    from transformers import (
        Siglip2Config,
        Siglip2ImageProcessor,
        Siglip2Model,
        Siglip2Processor,
        Siglip2TextConfig,
        Siglip2VisionConfig,
    )

    patches = TINY_CLIP_FACTS["siglip2"]["max_num_patches"]
    tokenizer = _siglip_tokenizer()
    text = _siglip_text_kwargs(tokenizer)
    config = Siglip2Config(
        text_config=Siglip2TextConfig(**text),
        vision_config=Siglip2VisionConfig(**_vision_kwargs(), num_patches=patches),
    )
    image_processor = Siglip2ImageProcessor(patch_size=_PATCH, max_num_patches=patches)
    processor = Siglip2Processor(image_processor=image_processor, tokenizer=tokenizer)
    model = seeded_model(Siglip2Model, config, seed)
    _set_sigmoid_calibration(model)
    return _save(Path(path), model, processor, "siglip2", seed)


_BUILDERS: dict[str, Callable[..., Path]] = {
    "clip": build_tiny_clip,
    "siglip": build_tiny_siglip,
    "siglip2": build_tiny_siglip2,
}


def build_tiny_dual_encoder(family: str, path: str | os.PathLike[str], **kw: Any) -> Path:
    """Write the tiny ``family`` checkpoint (one of :data:`CLIP_FAMILIES`) into ``path``; returns the folder."""
    return _BUILDERS[_CHECKPOINTS.check_family(family)](path, **kw)


# ---------------------------------------------------------------------------------------------------------
# Per-process cache
# ---------------------------------------------------------------------------------------------------------


def tiny_clip_cache(family: str) -> Path:
    """The folder of the tiny ``family`` checkpoint (seed 0), built at most once per process.

    Kept under ``$QUOTA_TINY_CACHE`` when set (reused across runs while the builder and transformers versions
    match), else in a temporary folder removed at exit. Built in a scratch folder and renamed into place.
    """
    return _CHECKPOINTS.get(family)
