"""Finding a checkpoint and reading its config, without torch and without weights.

A model id is a local folder or a Hugging Face hub id (``name`` or ``org/name``). :func:`load_config` reads
the config the way transformers does, after checking a local ``config.json`` itself so a damaged or
code-carrying checkpoint fails with one clear line. The command line's checks (:mod:`quota.preflight`) and
model loading (:mod:`quota.models.loading`, which re-exports these) share it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .errors import TRUST_HINT, ModelNotFoundError, UnsupportedModelError


def looks_local(model_id: str) -> bool:
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
    elif looks_local(model_id):
        raise ModelNotFoundError(f"model folder {model_id!r} does not exist")
    try:
        return AutoConfig.from_pretrained(str(path) if path.exists() else model_id, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        if path.exists():
            raise UnsupportedModelError(f"{model_id}: transformers cannot read its config ({first_line(exc)})") from None
        raise ModelNotFoundError(
            f"cannot load the model config of {model_id!r}: not a local folder, and not a hub id that can be "
            f"fetched here (offline, misspelt, or gated). Give a local checkpoint folder or check the id. "
            f"({first_line(exc)})"
        ) from None


def first_line(exc: BaseException) -> str:
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


__all__ = ["looks_local", "load_config", "model_type_of", "first_line"]
