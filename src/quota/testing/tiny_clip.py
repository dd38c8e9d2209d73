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

import atexit
import json
import math
import os
import shutil
import tempfile
import threading
import uuid
from pathlib import Path
from typing import Any, Callable

from ..errors import UnsupportedModelError

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
#: Same cache variable as :mod:`quota.testing.tiny_models`, so one folder holds all tiny checkpoints.
CACHE_ENV = "QUOTA_TINY_CACHE"

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


def _seeded(model_class: Any, config: Any, seed: int) -> Any:
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_class(config)
    return model.to(torch.float32).eval()


def _set_sigmoid_calibration(model: Any) -> None:
    import torch

    with torch.no_grad():
        model.logit_scale.fill_(_SIGLIP_SCALE)
        model.logit_bias.fill_(_SIGLIP_BIAS)


def _marker(family: str, seed: int) -> dict[str, Any]:
    import transformers

    return {"family": family, "seed": seed, "builder_version": BUILDER_VERSION, "transformers": transformers.__version__}


def _save(folder: Path, model: Any, processor: Any, family: str, seed: int) -> Path:
    from transformers.utils import logging as hf_logging

    folder.mkdir(parents=True, exist_ok=True)
    bars = hf_logging.is_progress_bar_enabled()
    verbosity = hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    # Saving diffs the config against a default SigLIP text config, whose own token ids do not fit its own
    # vocabulary in transformers 5.x: that warning is about transformers' defaults, not this checkpoint.
    hf_logging.set_verbosity_error()
    try:
        model.save_pretrained(folder)
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
    processor.save_pretrained(folder)
    (folder / MARKER_FILE).write_text(json.dumps(_marker(family, seed), indent=2) + "\n", encoding="utf-8")
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
    model = _seeded(CLIPModel, config, seed)
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
    text = _text_kwargs(tokenizer, _SIGLIP_TEXT_TOKENS)
    text.update(pad_token_id=0, bos_token_id=2, eos_token_id=1, projection_size=_HIDDEN)
    config = SiglipConfig(
        text_config=SiglipTextConfig(**text),
        vision_config=SiglipVisionConfig(**_vision_kwargs(), image_size=_IMAGE),
    )
    image_processor = SiglipImageProcessor(size={"height": _IMAGE, "width": _IMAGE})
    processor = SiglipProcessor(image_processor=image_processor, tokenizer=tokenizer)
    model = _seeded(SiglipModel, config, seed)
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
    text = _text_kwargs(tokenizer, _SIGLIP_TEXT_TOKENS)
    text.update(pad_token_id=0, bos_token_id=2, eos_token_id=1, projection_size=_HIDDEN)
    config = Siglip2Config(
        text_config=Siglip2TextConfig(**text),
        vision_config=Siglip2VisionConfig(**_vision_kwargs(), num_patches=patches),
    )
    image_processor = Siglip2ImageProcessor(patch_size=_PATCH, max_num_patches=patches)
    processor = Siglip2Processor(image_processor=image_processor, tokenizer=tokenizer)
    model = _seeded(Siglip2Model, config, seed)
    _set_sigmoid_calibration(model)
    return _save(Path(path), model, processor, "siglip2", seed)


_BUILDERS: dict[str, Callable[..., Path]] = {
    "clip": build_tiny_clip,
    "siglip": build_tiny_siglip,
    "siglip2": build_tiny_siglip2,
}


def build_tiny_dual_encoder(family: str, path: str | os.PathLike[str], **kw: Any) -> Path:
    """Write the tiny ``family`` checkpoint (one of :data:`CLIP_FAMILIES`) into ``path``; returns the folder."""
    if family not in _BUILDERS:
        raise UnsupportedModelError(f"No tiny dual encoder for family {family!r}; choose one of {', '.join(CLIP_FAMILIES)}.")
    return _BUILDERS[family](path, **kw)


# ---------------------------------------------------------------------------------------------------------
# Per-process cache
# ---------------------------------------------------------------------------------------------------------

_CACHE: dict[tuple[str, str], Path] = {}
_LOCK = threading.Lock()
_ROOT: Path | None = None


def _cache_root() -> Path:
    global _ROOT
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser().resolve()
    if _ROOT is None:
        _ROOT = Path(tempfile.mkdtemp(prefix="quota-tiny-clip-"))
        atexit.register(shutil.rmtree, _ROOT, True)
    return _ROOT


def _is_current(folder: Path, family: str) -> bool:
    try:
        return json.loads((folder / MARKER_FILE).read_text(encoding="utf-8")) == _marker(family, 0)
    except (OSError, ValueError):
        return False


def tiny_clip_cache(family: str) -> Path:
    """The folder of the tiny ``family`` checkpoint (seed 0), built at most once per process.

    Kept under ``$QUOTA_TINY_CACHE`` when set (reused across runs while the builder and transformers versions
    match), else in a temporary folder removed at exit. Built in a scratch folder and renamed into place.
    """
    if family not in _BUILDERS:
        raise UnsupportedModelError(f"No tiny dual encoder for family {family!r}; choose one of {', '.join(CLIP_FAMILIES)}.")
    root = _cache_root()
    key = (family, str(root))
    with _LOCK:
        if key in _CACHE and _is_current(_CACHE[key], family):
            return _CACHE[key]
        folder = root / f"tiny_{family}"
        if not _is_current(folder, family):
            root.mkdir(parents=True, exist_ok=True)
            scratch = root / f".tiny_{family}-{uuid.uuid4().hex}"
            try:
                build_tiny_dual_encoder(family, scratch, seed=0)
                if not _is_current(folder, family):
                    if folder.exists():
                        shutil.rmtree(folder, ignore_errors=True)
                    try:
                        os.replace(scratch, folder)
                    except OSError:
                        if not _is_current(folder, family):
                            raise
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
        _CACHE[key] = folder
        return folder
