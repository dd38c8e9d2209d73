"""Where a process runs: its rank in a multi-process run and the device it should use.

One home for what ``quota eval`` and the lmms-eval plug-in both need. The launchers (``torchrun``,
``accelerate launch``) describe a process by the environment variables ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK``; they are read here rather than through accelerate's state, which would also set up a
process group as a side effect (quota's ranks coordinate through the run store instead).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping

from .errors import ConfigError


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in a multi-process run (from the launcher's environment)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def shard(self) -> dict[str, int]:
        """``{"rank": ..., "world_size": ...}`` for ``run_benchmark(**info.shard)``."""
        return {"rank": self.rank, "world_size": self.world_size}


def dist_info(env: Mapping[str, str] | None = None) -> DistInfo:
    """Rank, world size and local rank from ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` (set by
    torchrun and accelerate; set them by hand to split a run over independent jobs).

    Raises:
        ConfigError: the values are not integers or the rank is outside ``[0, WORLD_SIZE)``.
    """
    env = os.environ if env is None else env
    try:
        world = int(env.get("WORLD_SIZE", "1") or 1)
        rank = int(env.get("RANK", "0") or 0)
        local = int(env.get("LOCAL_RANK", str(rank)) or 0)
    except ValueError as exc:
        raise ConfigError(
            f"RANK/WORLD_SIZE/LOCAL_RANK must be integers, got {env.get('RANK')!r}/"
            f"{env.get('WORLD_SIZE')!r}/{env.get('LOCAL_RANK')!r}"
        ) from exc
    check_shard(rank, world)
    return DistInfo(rank=rank, world_size=world, local_rank=local)


def check_shard(rank: int, world_size: int) -> None:
    """Raise :class:`ConfigError` unless ``0 <= rank < world_size``."""
    if world_size < 1:
        raise ConfigError(f"world_size must be at least 1, got {world_size}")
    if not 0 <= rank < world_size:
        raise ConfigError(f"rank must be in [0, {world_size}), got {rank}")


def choose_device(device: str | None, info: DistInfo | None = None) -> str | None:
    """The device this process should load its models on.

    ``None`` and ``"auto"`` leave the choice to the loader (CUDA when available, else the CPU). With several
    processes, ``cuda`` (or no choice) becomes ``cuda:LOCAL_RANK`` when CUDA is available and the CPU
    otherwise; an explicit ``cuda:N`` or ``cpu`` is kept.

    Raises:
        ConfigError: ``cuda`` was asked for in a multi-process run on a machine without CUDA.
    """
    if isinstance(device, str) and device.strip().lower() == "auto":
        device = None
    info = info or DistInfo()
    if info.world_size <= 1:
        return device
    if device is None or str(device).strip().lower() == "cuda":
        import torch

        if torch.cuda.is_available():
            return f"cuda:{info.local_rank}"
        if device is not None:
            raise ConfigError("device cuda was given but CUDA is not available on this machine")
        return "cpu"
    return device


__all__ = ["DistInfo", "dist_info", "check_shard", "choose_device"]
