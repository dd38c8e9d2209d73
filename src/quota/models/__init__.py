"""Base-model adapters, one per Hugging Face model family.

``load_adapter(model_id)`` reads the checkpoint's config and picks the adapter by ``model_type``.
"""

from __future__ import annotations

from typing import Any

from ..errors import UnsupportedModelError
from .base import ModelInputs, VideoLMAdapter
from .loading import model_type_of
from .llava_onevision import LlavaOnevisionAdapter
from .qwen2_vl import QwenVLAdapter
from .glm4v import Glm4vAdapter
from .internvl import InternVLAdapter
from .qwen3_vl import Qwen3VLAdapter
from .smolvlm import SmolVLMAdapter

#: Adapter classes by the ``model_type`` of the checkpoints they handle.
ADAPTERS: dict[str, type[VideoLMAdapter]] = {
    model_type: adapter for adapter in (LlavaOnevisionAdapter, QwenVLAdapter, Qwen3VLAdapter, SmolVLMAdapter, InternVLAdapter, Glm4vAdapter) for model_type in adapter.model_types
}


def adapter_class_for(model_type: str) -> type[VideoLMAdapter]:
    try:
        return ADAPTERS[model_type]
    except KeyError:
        raise UnsupportedModelError(
            f"no base-model adapter for model_type {model_type!r}; supported: {', '.join(sorted(ADAPTERS))}"
        ) from None


def load_adapter(model_id: str, *, trust_remote_code: bool = False, **kwargs: Any) -> VideoLMAdapter:
    """Load the base model ``model_id`` (hub id or local folder) with the adapter of its family.

    Keyword arguments go to the adapter's ``from_pretrained`` (``device``, ``dtype``, ...).
    """
    cls = adapter_class_for(model_type_of(model_id, trust_remote_code=trust_remote_code))
    return cls.from_pretrained(model_id, trust_remote_code=trust_remote_code, **kwargs)


__all__ = ["ADAPTERS", "VideoLMAdapter", "ModelInputs", "LlavaOnevisionAdapter", "QwenVLAdapter", "Qwen3VLAdapter", "SmolVLMAdapter", "InternVLAdapter", "Glm4vAdapter", "load_adapter",
           "adapter_class_for"]
