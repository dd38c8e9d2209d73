"""Checks that run before any model loads or any frame is decoded.

A typo, an unusable device, a budget the model cannot hold or an unreachable hub should cost a moment, not a
model load. Everything here reads configuration files at most: no weights, no pixels.

- :func:`check_device`: the device name is one torch knows and this machine has.
- :func:`resolve_sources`: where each model comes from (local folder, the local hub cache, or the hub); fails
  fast, naming every model that cannot be had, when the hub is off or unreachable.
- :func:`check_budget`: the visual token budget against the sampled frame count and the base model's context
  (:func:`base_context`, read from the checkpoint's config).
"""

from __future__ import annotations

import errno
import math
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlparse

from .checkpoint import load_config, looks_local
from .errors import BudgetError, ConfigError, ModelNotFoundError

#: Seconds to wait for the hub before calling it unreachable.
HUB_TIMEOUT_S = 3.0
_TRUE = ("1", "true", "yes", "on")


def check_device(device: Any) -> None:
    """Raise :class:`ConfigError` unless ``device`` (``None``/``"auto"`` for the default) can hold a model here.

    Refused: names torch does not know, ``meta`` (holds no data), and accelerators this machine lacks
    (``cuda`` without a GPU, ``cuda:3`` with two GPUs, ``mps`` off Apple hardware).
    """
    if device is None or (isinstance(device, str) and device.strip().lower() in ("", "auto")):
        return
    import torch

    try:
        dev = torch.device(str(device).strip())
    except (RuntimeError, ValueError):
        raise ConfigError(f"--device {device!r} is not a device name; use cpu, cuda, cuda:N or auto") from None
    if dev.type == "meta":
        raise ConfigError("--device meta holds no data and cannot run a model; use cpu or cuda")
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ConfigError(f"--device {device}: this machine has no CUDA GPU; use --device cpu")
        if dev.index is not None and dev.index >= count:
            raise ConfigError(f"--device {device}: this machine has {count} CUDA GPU(s) (cuda:0 to cuda:{count - 1})")
    elif dev.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise ConfigError(f"--device {device}: MPS is not available on this machine; use --device cpu")
    elif dev.type != "cpu":
        raise ConfigError(f"--device {device}: quota runs models on cpu, cuda or mps, not {dev.type}")


@dataclass(frozen=True)
class Source:
    """Where a model comes from: ``local`` (a folder), ``cache`` (the hub cache) or ``hub`` (to download)."""

    role: str
    model_id: str
    kind: str


def hub_offline() -> bool:
    """Whether the user switched the hub off (``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE``)."""
    return any(os.environ.get(name, "").strip().lower() in _TRUE for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def hub_reachable(timeout: float = HUB_TIMEOUT_S) -> bool:
    """Whether a TCP connection to the hub's endpoint opens within ``timeout`` seconds."""
    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "", port), timeout=timeout):
            return True
    except OSError:
        return False


def _in_cache(model_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - huggingface_hub comes with transformers
        return False
    try:
        found = try_to_load_from_cache(model_id, "config.json")
    except Exception:  # a malformed id: not in the cache
        return False
    return isinstance(found, str)


def resolve_sources(models: Mapping[str, str | None], *, probe_hub: bool = True) -> list[Source]:
    """Where each model of ``models`` (role -> id or folder; ``None`` skipped) will be loaded from.

    Raises:
        ModelNotFoundError: a local path that does not exist; or models that only the hub has while the hub
            is switched off or cannot be reached. The message names every such model and how to give local
            folders instead (``--base`` / ``--scorer``).
    """
    sources: list[Source] = []
    for role, model_id in models.items():
        if model_id is None:
            continue
        path = Path(model_id).expanduser()
        if path.exists():
            sources.append(Source(role, model_id, "local"))
        elif looks_local(model_id):
            raise ModelNotFoundError(f"--{role} {model_id}: no such folder")
        else:
            sources.append(Source(role, model_id, "cache" if _in_cache(model_id) else "hub"))
    remote = [s for s in sources if s.kind == "hub"]
    if remote:
        why = None
        if hub_offline():
            why = "the Hugging Face hub is switched off here (HF_HUB_OFFLINE)"
        elif probe_hub and not hub_reachable():
            why = "the Hugging Face hub cannot be reached from this machine"
        if why:
            names = " and ".join(f"the {s.role} model {s.model_id}" for s in remote)
            flags = " / ".join(f"--{s.role} /path/to/folder" for s in remote)
            raise ModelNotFoundError(f"{names} must be downloaded, but {why}; point {flags} at local checkpoint "
                                     "folders (saved with save_pretrained), or download them on a connected machine")
    return sources


def context_tokens(model_config: Any) -> int | None:
    """The longest sequence a base model's language model takes (``max_position_embeddings``), if stated."""
    text = getattr(model_config, "text_config", None) or model_config
    value = getattr(text, "max_position_embeddings", None)
    return int(value) if isinstance(value, int) and value > 0 else None


def base_context(base: str, *, trust_remote_code: bool = False) -> int | None:
    """The context of the base model ``base`` (id or folder), in tokens, from its config alone.

    Raises:
        ModelNotFoundError, UnsupportedModelError: the config cannot be had or read (:func:`quota.checkpoint.load_config`).
    """
    return context_tokens(load_config(base, trust_remote_code=trust_remote_code))


def check_port(host: str, port: int) -> None:
    """Raise :class:`ConfigError` naming ``--port`` (and ``--host``) when nothing can listen on ``host:port``
    here: a port another program holds, or an address this machine does not have. Checked before any model
    loads; the port is free again when this returns."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the web server binds
            sock.bind((host, port))
    except PermissionError:
        raise ConfigError(f"--port {port}: this user may not serve on ports below 1024; use --port 7860 or "
                          "another above 1023") from None
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(f"--port {port} is in use on {host} (another program, or another quota demo); "
                              f"choose a free one with --port, e.g. --port {port + 1}") from None
        raise ConfigError(f"--host {host}: cannot serve there ({exc.strerror or exc}); the default "
                          "127.0.0.1 serves this machine") from None


#: Largest budget accepted when no base model gives a context (``quota plan --scorer uniform`` without
#: ``--base``): 128K positions, a bound of ours for plans no model is asked to read.
PLAN_ONLY_MAX_BUDGET = 131072


def text_reserve(frames: int, budget: int, max_new_tokens: int = 0) -> int:
    """Positions the text takes beside ``budget`` visual tokens over ``frames`` frames: the prompt with one time
    stamp a frame (``128 + 8·frames``), the answer (``max_new_tokens``) and the newline tokens, at most one a
    grid row; the rows of all frames add up to at most ``sqrt(frames·budget)`` (Cauchy-Schwarz)."""
    return 128 + 8 * frames + max_new_tokens + math.isqrt(frames * budget) + 1


def max_budget(context: int, frames: int, max_new_tokens: int = 0) -> int:
    """The largest budget ``b`` with ``b + text_reserve(frames, b, max_new_tokens) <= context`` (0 if none)."""
    lo, hi = 0, max(context, 0)
    while lo < hi:  # the left side grows with b: bisect for the last b that fits
        mid = (lo + hi + 1) // 2
        if mid + text_reserve(frames, mid, max_new_tokens) <= context:
            lo = mid
        else:
            hi = mid - 1
    return lo


def check_budget(budget: int, *, frames: int | None = None, context: int | None = None,
                 max_new_tokens: int = 0, reserve: int | None = None) -> None:
    """Raise :class:`BudgetError` when ``budget`` cannot give each of ``frames`` sampled frames a token, or does
    not fit in the base model's ``context`` with the text beside it (:func:`text_reserve`); with no context
    (no base model), above :data:`PLAN_ONLY_MAX_BUDGET`. The message names the bound to use. ``reserve``: the
    text positions for this budget as :func:`text_reserve` counts them, instead of ``max_new_tokens`` (the
    answer's share is read back from it)."""
    if reserve is not None:
        max_new_tokens = max(reserve - text_reserve(frames or 0, budget), 0)
    if frames is not None and budget < frames:
        raise BudgetError(f"budget {budget} is less than one token for each of the {frames} sampled frames; "
                          f"use at least {frames} (the paper uses 12544)")
    if context is None:
        if budget > PLAN_ONLY_MAX_BUDGET:
            raise BudgetError(f"budget {budget} is beyond the bound for plans without a base model "
                              f"({PLAN_ONLY_MAX_BUDGET} tokens); use at most {PLAN_ONLY_MAX_BUDGET}")
        return
    top = max_budget(context, frames or 0, max_new_tokens)
    if budget > top:
        if top < (frames or 1):
            raise BudgetError(f"the base model's context of {context} tokens cannot hold {frames} frames with "
                              "their text; sample fewer frames (--frames)")
        raise BudgetError(f"budget {budget} with the text beside it exceeds the base model's context of "
                          f"{context} tokens; use at most {top} for {frames or 0} frames")


__all__ = ["check_device", "resolve_sources", "Source", "hub_offline", "hub_reachable", "context_tokens",
           "base_context", "check_budget", "max_budget", "text_reserve", "check_port", "PLAN_ONLY_MAX_BUDGET",
           "HUB_TIMEOUT_S"]
