"""Loading Hugging Face checkpoints with clear errors: ids, folders, devices and dtypes.

Shared by the base-model adapters and the scorers. A model id is either a local folder or a Hugging
Face hub id; nothing here downloads unless the hub is reachable and the id is not local.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from ..errors import TRUST_HINT, ModelNotFoundError, ProcessorNotFoundError, UnsupportedModelError

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


def _looks_local(model_id: str) -> bool:
    """Hub ids are ``name`` or ``org/name``; anything else (``./x``, ``/a/b``, ``a/b/c``) is a path."""
    return model_id.startswith((".", "~", "/")) or model_id.count("/") > 1 or (os.sep != "/" and os.sep in model_id)


def _read_local_config(path: Path, model_id: str, trust_remote_code: bool) -> None:
    """Check a local checkpoint's ``config.json`` before transformers reads it: valid JSON, and no code of its own
    to run unless allowed (transformers would otherwise stop to ask on a terminal)."""
    import json

    config_file = path / "config.json"
    try:
        data = json.loads(config_file.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ModelNotFoundError(f"{model_id}: config.json is not UTF-8 text; the checkpoint is damaged, save it "
                                 "again with save_pretrained") from None
    except json.JSONDecodeError as exc:
        raise ModelNotFoundError(f"{model_id}: config.json is not valid JSON (line {exc.lineno}, column {exc.colno}: "
                                 f"{exc.msg}); the checkpoint is damaged, save it again with save_pretrained") from None
    except OSError as exc:
        raise ModelNotFoundError(f"{model_id}: cannot read config.json ({exc.strerror or exc})") from None
    if not isinstance(data, dict):
        raise ModelNotFoundError(f"{model_id}: config.json holds no settings object; save the checkpoint again")
    if data.get("auto_map") and not trust_remote_code and not _known_model_type(data.get("model_type")):
        raise UnsupportedModelError(
            f"{model_id} needs code of its own to load (auto_map in config.json, model type "
            f"{data.get('model_type')!r}), and quota runs none unless you allow it: read that code, then pass "
            f"{TRUST_HINT} if you trust it"
        )


def _known_model_type(model_type: Any) -> bool:
    try:
        from transformers.models.auto.configuration_auto import CONFIG_MAPPING
    except ImportError:  # pragma: no cover - transformers moved it
        return False
    return isinstance(model_type, str) and model_type in CONFIG_MAPPING


def load_config(model_id: str | os.PathLike[str], *, trust_remote_code: bool = False) -> Any:
    """The checkpoint's config, or a :class:`ModelNotFoundError` / :class:`UnsupportedModelError` that says what
    was found and what to do."""
    from transformers import AutoConfig

    model_id = str(model_id)
    path = Path(model_id).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelNotFoundError(f"model path {model_id!r} is a file; give the checkpoint folder")
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(f"model folder {model_id!r} has no config.json: not a transformers checkpoint")
        _read_local_config(path, model_id, trust_remote_code)
    elif _looks_local(model_id):
        raise ModelNotFoundError(f"model folder {model_id!r} does not exist")
    try:
        return AutoConfig.from_pretrained(str(path) if path.exists() else model_id, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        if path.exists():
            raise UnsupportedModelError(f"{model_id}: transformers cannot read its config ({_first_line(exc)})") from None
        raise ModelNotFoundError(
            f"cannot load the model config of {model_id!r}: not a local folder, and not a hub id that can be "
            f"fetched here (offline, misspelt, or gated). Give a local checkpoint folder or check the id. "
            f"({_first_line(exc)})"
        ) from None


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]


def model_type_of(source: Any, *, trust_remote_code: bool = False) -> str:
    """The ``model_type`` of a transformers config object, or of the checkpoint ``source`` names (an id or
    folder: only its config is loaded). ``""`` when the config has none."""
    config = source if hasattr(source, "model_type") or hasattr(source, "to_dict") else None
    if config is None:
        if source is None:
            return ""
        config = load_config(source, trust_remote_code=trust_remote_code)
    return str(getattr(config, "model_type", "") or "")


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
        raise ModelNotFoundError(f"cannot load the weights of {model_id!r}: {_first_line(exc)}") from None
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


__all__ = ["resolve_device", "resolve_dtype", "load_config", "load_processor", "load_model",
           "resolve_attn_implementation", "set_attn_implementation", "model_type_of"]
