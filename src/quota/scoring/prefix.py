"""The scorer's language-model prefix, kept per video and reused for every question about it.

A yes-probability scorer reads ``[system turn][image][question]`` for every frame (the image first), so the
attention cache (keys and values of every layer) of everything up to the frame's last image token is the same
for every question about the video. :class:`~quota.scoring.lvlm.LVLMScorer` computes it once per batch of
frames, keeps it in the caller's per-video cache as a :class:`PrefixEntry`, and runs only the question's tokens
for each question. This module holds what that needs besides the model code: where a batch's prefix ends,
what it costs in memory, the cache key's fingerprints, and the entry itself.

Everything that decides the prefix is in its key: the frames' pixels (:func:`frames_fingerprint`), the scorer
settings and the model (the caller's part of the key), the batch's place in the video, and the prefix's own
token ids and padding mask (:func:`tensor_digest`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

#: Key of the prefix entries in a scorer cache (first element of the tuple).
PREFIX_KEY = "lvlm_prefix"


def frames_fingerprint(images: Sequence[np.ndarray]) -> str:
    """A digest of the frames' pixels and shapes (hex, 40 characters): equal frames, equal digest.

    About 50 ms for 96 frames of 640×360 on one CPU core; computed once per scoring call.
    """
    digest = hashlib.sha1(usedforsecurity=False)
    for image in images:
        array = np.ascontiguousarray(image)
        digest.update(repr((array.shape, str(array.dtype))).encode())
        digest.update(memoryview(array).cast("B"))
    return digest.hexdigest()


def tensor_digest(tensor: Any) -> str:
    """A digest of an integer tensor's values and shape (hex)."""
    array = tensor.detach().cpu().numpy()
    digest = hashlib.sha1(repr(array.shape).encode(), usedforsecurity=False)
    digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def prefix_split(ids: Any, image_token_id: int) -> int | None:
    """Where the question-independent prefix of a left-padded batch ``[B, L]`` ends: one past the last image
    token, the same column in every row (rows share the text after the image). ``None`` when the rows have no
    image token or do not end it in the same column (then there is no common prefix to keep)."""
    import torch

    is_image = ids == int(image_token_id)
    if not bool(is_image.any(dim=1).all()):
        return None
    columns = torch.arange(ids.shape[1], device=ids.device).expand_as(ids)
    last = torch.where(is_image, columns, torch.full_like(columns, -1)).max(dim=1).values
    if not bool((last == last[0]).all()):
        return None
    return int(last[0]) + 1


def kv_bytes(config: Any, rows: int, tokens: int, dtype: Any) -> int:
    """Bytes of the keys and values of ``rows`` × ``tokens`` positions for a model ``config`` (its text
    config's layers, key/value heads and head size) in ``dtype``."""
    import torch

    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    heads = int(text.num_attention_heads)
    kv_heads = int(getattr(text, "num_key_value_heads", None) or heads)
    head_dim = int(getattr(text, "head_dim", None) or text.hidden_size // heads)
    size = torch.empty((), dtype=dtype).element_size()
    return 2 * int(text.num_hidden_layers) * rows * kv_heads * head_dim * tokens * size


@dataclass
class PrefixEntry:
    """One batch's prefix: the keys and values ``[B, kv_heads, P, head_dim]`` of every layer."""

    layers: list[tuple[Any, Any]]
    #: Prefix length ``P`` in tokens (padding included).
    length: int
    #: Bytes the tensors take.
    nbytes: int

    @classmethod
    def from_cache(cls, cache: Any, length: int) -> "PrefixEntry":
        """The tensors of a transformers ``DynamicCache`` that holds exactly the prefix."""
        layers = [(layer.keys, layer.values) for layer in cache.layers]
        nbytes = sum(t.numel() * t.element_size() for pair in layers for t in pair)
        return cls(layers=layers, length=int(length), nbytes=int(nbytes))

    def cache(self) -> Any:
        """A fresh ``DynamicCache`` that starts with the prefix. The model appends to its own copy of each
        layer (``torch.cat``), so this entry's tensors are never changed and serve the next question."""
        from transformers.cache_utils import DynamicCache, DynamicLayer

        cache = DynamicCache()
        for keys, values in self.layers:
            layer = DynamicLayer()
            layer.lazy_initialization(keys, values)
            layer.keys, layer.values = keys, values
            cache.layers.append(layer)
        return cache


def prefix_bytes_in(cache: dict[Any, Any]) -> int:
    """Bytes of all prefix entries in a scorer cache."""
    return sum(entry.nbytes for entry in cache.values() if isinstance(entry, PrefixEntry))


__all__ = ["PREFIX_KEY", "PrefixEntry", "frames_fingerprint", "kv_bytes", "prefix_bytes_in", "prefix_split",
           "tensor_digest"]
