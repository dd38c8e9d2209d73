"""Loading Hugging Face checkpoints with clear errors: ids, folders, devices and dtypes.

Shared by the base-model adapters and the scorers. A model id is either a local folder or a Hugging
Face hub id; nothing here downloads unless the hub is reachable and the id is not local. Finding a checkpoint
and reading its config need no torch and live in :mod:`quota.checkpoint` (re-exported here).
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

import torch

from ..checkpoint import first_line, load_config, model_type_of
from ..errors import ModelNotFoundError, ProcessorNotFoundError, UnsupportedModelError

_DTYPES = {
    "float32": torch.float32, "fp32": torch.float32, "float": torch.float32,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    "float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
}


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``None`` picks CUDA when available, else the CPU."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """``None``/``"auto"``: bfloat16 on CUDA, float32 elsewhere (bfloat16 matmuls are slow on most CPUs)."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is None or dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    try:
        return _DTYPES[str(dtype).lower()]
    except KeyError:
        raise UnsupportedModelError(f"unknown dtype {dtype!r}; use one of {', '.join(sorted(_DTYPES))}") from None


def to_device(batch: Mapping[str, Any], device: torch.device | str, dtype: torch.dtype | None = None, *,
              cast: Sequence[str] | None = None) -> dict[str, Any]:
    """A processor's output ready for a model on ``device``: every tensor moved there, and the floating ones
    cast to ``dtype`` (all of them, or only the keys in ``cast``); other values are passed on as they are."""
    out = {}
    for key, value in batch.items():
        if isinstance(value, torch.Tensor):
            value = value.to(device)
            if dtype is not None and value.is_floating_point() and (cast is None or key in cast):
                value = value.to(dtype)
        out[key] = value
    return out


def load_processor(
    model_id: str | os.PathLike[str], *, trust_remote_code: bool = False, chat_template: bool = True, **kwargs: Any
) -> Any:
    """The checkpoint's processor (tokenizer + image/video processors), or :class:`ProcessorNotFoundError`.

    ``chat_template=False`` for checkpoints that need none (CLIP / SigLIP dual encoders): then only the
    loading itself is checked.
    """
    from transformers import AutoProcessor

    try:
        processor = AutoProcessor.from_pretrained(str(model_id), trust_remote_code=trust_remote_code, **kwargs)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        needed = "tokenizer, preprocessor_config.json" + (", chat template" if chat_template else "")
        raise ProcessorNotFoundError(
            f"{model_id!r} has no usable processor/tokenizer files ({needed}): save the processor next to the "
            f"weights with processor.save_pretrained. ({exc})"
        ) from None
    if not chat_template:
        return processor
    tokenizer = getattr(processor, "tokenizer", None)
    has_template = (getattr(processor, "chat_template", None) is not None
                    or getattr(tokenizer, "chat_template", None) is not None)
    if tokenizer is None or not has_template:
        raise ProcessorNotFoundError(
            f"{model_id!r}: the processor has no tokenizer or no chat template; save the full processor "
            "(processor.save_pretrained) next to the weights"
        )
    return processor


def load_model(
    model_class: Any,
    model_id: str | os.PathLike[str],
    *,
    device: torch.device,
    dtype: torch.dtype,
    trust_remote_code: bool = False,
) -> Any:
    """``model_class.from_pretrained`` on ``device`` in ``dtype``, in eval mode."""
    import pickle

    try:
        model = model_class.from_pretrained(str(model_id), dtype=dtype, trust_remote_code=trust_remote_code)
    except pickle.UnpicklingError:
        raise UnsupportedModelError(
            f"{model_id}: its weights are a pickle (.bin) that holds more than tensors, so torch refuses to load it "
            "safely; ask for the checkpoint in safetensors format, or convert it on a machine where you trust it"
        ) from None
    except (OSError, ValueError) as exc:
        raise ModelNotFoundError(f"cannot load the weights of {model_id!r}: {first_line(exc)}") from None
    return model.to(device).eval()


def resolve_attn_implementation(name: str | None, device: torch.device) -> str:
    """The attention kernel to use: ``"auto"`` means flash_attention_2 when the flash-attn package is
    installed and ``device`` is CUDA, else sdpa; other names are returned as they are (``None``: sdpa)."""
    if name in (None, "auto"):
        if device.type == "cuda":
            import importlib.util

            if importlib.util.find_spec("flash_attn") is not None:
                return "flash_attention_2"
        return "sdpa"
    return str(name)


def set_attn_implementation(model: Any, name: str | None) -> str:
    """Switch a loaded model (and its vision / language sub-models) to attention kernel ``name``.

    Returns the kernel chosen (see :func:`resolve_attn_implementation`). Raises
    :class:`UnsupportedModelError` when the model or the machine cannot use it (flash-attn missing,
    CPU device, float32 weights for flash attention ...).
    """
    device = next(model.parameters()).device
    chosen = resolve_attn_implementation(name, device)
    if getattr(model.config, "_attn_implementation", None) == chosen:
        return chosen
    try:
        model.set_attn_implementation(chosen)
    except (ImportError, ValueError, RuntimeError) as exc:
        raise UnsupportedModelError(
            f"attention implementation {chosen!r} cannot be used with {type(model).__name__} here ({exc}); "
            "use attn_implementation='sdpa'"
        ) from None
    return chosen


__all__ = ["resolve_device", "resolve_dtype", "to_device", "load_config", "load_processor", "load_model",
           "resolve_attn_implementation", "set_attn_implementation", "model_type_of"]
