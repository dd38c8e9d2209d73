"""Helpers for testing quota without downloads: tiny random-weight checkpoints of the real model classes.

    from quota.testing import tiny_model_cache, tiny_clip_cache
    folder = tiny_model_cache("qwen2_vl")   # built once per process, loads with AutoProcessor / AutoModel...
    clip = tiny_clip_cache("siglip")        # a tiny CLIP / SigLIP / SigLIP 2 dual encoder, the same way
"""

from __future__ import annotations

from .tiny_clip import (
    CLIP_FAMILIES,
    TINY_CLIP_FACTS,
    build_tiny_clip,
    build_tiny_dual_encoder,
    build_tiny_siglip,
    build_tiny_siglip2,
    tiny_clip_cache,
)
from .tiny_models import (
    FAMILIES,
    LLAVA_ONEVISION_CHAT_TEMPLATE,
    QWEN2_VL_CHAT_TEMPLATE,
    TINY_FACTS,
    build_tiny_llava_onevision,
    build_tiny_model,
    build_tiny_qwen2_vl,
    tiny_model_cache,
)

__all__ = [
    "FAMILIES",
    "TINY_FACTS",
    "QWEN2_VL_CHAT_TEMPLATE",
    "LLAVA_ONEVISION_CHAT_TEMPLATE",
    "build_tiny_qwen2_vl",
    "build_tiny_llava_onevision",
    "build_tiny_model",
    "tiny_model_cache",
    "CLIP_FAMILIES",
    "TINY_CLIP_FACTS",
    "build_tiny_clip",
    "build_tiny_siglip",
    "build_tiny_siglip2",
    "build_tiny_dual_encoder",
    "tiny_clip_cache",
]
