"""Which frames to read: pure functions of a video's frame count and frame rate.

The paper's rule (QuoTA, arXiv 2503.08689) samples ``T = base + floor(hours * per_hour)`` frames,
96 + 64 per hour by default (96 frames for a short clip, 160 for one hour), spread uniformly from
the first to the last frame. No I/O here: these functions are easy to test exactly.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import ConfigError

#: Paper defaults: frames sampled from any video, and extra frames per hour of video.
PAPER_BASE_FRAMES = 96
PAPER_FRAMES_PER_HOUR = 64


def _check_total(total_frames: int) -> int:
    if isinstance(total_frames, bool) or int(total_frames) != total_frames or total_frames < 0:
        raise ConfigError(f"total_frames must be a whole number >= 0, got {total_frames!r}")
    return int(total_frames)


def frame_budget(
    duration: float,
    base: int = PAPER_BASE_FRAMES,
    per_hour: float = PAPER_FRAMES_PER_HOUR,
    max_frames: int | None = None,
    max_fps: float | None = None,
) -> int:
    """Number of frames the paper's rule samples from a video of ``duration`` seconds.

    ``base + floor(duration / 3600 * per_hour)``, then at most ``max_frames``, and at most
    ``floor(duration * max_fps)`` (but at least 1) when ``max_fps`` is given. The count of frames
    the video actually has is not taken into account here (see :func:`sample_indices`).
    """
    if not (isinstance(base, (int, np.integer)) and base >= 1):
        raise ConfigError(f"base must be a whole number >= 1, got {base!r}")
    if not per_hour >= 0 or not math.isfinite(per_hour):
        raise ConfigError(f"per_hour must be a finite number >= 0, got {per_hour!r}")
    if max_frames is not None and not (isinstance(max_frames, (int, np.integer)) and max_frames >= 1):
        raise ConfigError(f"max_frames must be a whole number >= 1 or None, got {max_frames!r}")
    if max_fps is not None and not (max_fps > 0 and math.isfinite(max_fps)):
        raise ConfigError(f"max_fps must be a finite number > 0 or None, got {max_fps!r}")
    if not duration >= 0 or not math.isfinite(duration):
        raise ConfigError(f"duration must be a finite number of seconds >= 0, got {duration!r}")
    # A tiny tolerance keeps exact hours exact despite float rounding (3600 s * 64 / 3600 = 64).
    extra = math.floor(duration / 3600.0 * per_hour + 1e-9)
    count = int(base) + int(extra)
    if max_frames is not None:
        count = min(count, int(max_frames))
    if max_fps is not None:
        count = min(count, max(1, math.floor(duration * max_fps + 1e-9)))
    return count


def uniform_indices(total: int, n: int) -> list[int]:
    """``n`` frame numbers spread uniformly from the first to the last of ``total`` frames.

    ``numpy.linspace(0, total - 1, n)`` truncated to integers, so the first and the last frame are
    always included. When ``n >= total`` every frame is returned once (``total`` indices, never a
    duplicate). ``total == 0`` gives ``[]``.

    Args:
        total: number of frames in the video.
        n: number of frames wanted (>= 1).
    """
    total = _check_total(total)
    if isinstance(n, bool) or int(n) != n or n < 1:
        raise ConfigError(f"the number of frames to sample must be a whole number >= 1, got {n!r}")
    n = int(n)
    if total == 0:
        return []
    if n >= total:
        return list(range(total))
    return np.linspace(0, total - 1, n).astype(np.int64).tolist()


def sample_indices(
    total_frames: int,
    fps: float,
    base: int = PAPER_BASE_FRAMES,
    per_hour: float = PAPER_FRAMES_PER_HOUR,
    max_frames: int | None = None,
    max_fps: float | None = None,
) -> list[int]:
    """The paper's dynamic frame sampling: which frames of a video to read.

    The video lasts ``duration = total_frames / fps`` seconds; it gets
    ``T = base + floor(duration_hours * per_hour)`` frames (at most ``max_frames``), at
    ``numpy.linspace(0, total_frames - 1, T)`` truncated to integers. A video with fewer than ``T``
    frames gives every frame once, in order, with no duplicates.

    Args:
        total_frames: number of frames in the video.
        fps: average frame rate in frames per second (> 0).
        base: frames sampled from any video (paper: 96).
        per_hour: extra frames per hour of video (paper: 64).
        max_frames: hard cap on the number of frames, ``None`` for none.
        max_fps: optional cap on sampled frames per second of video (not in the paper), so a
            short clip is not sampled more densely than this; ``None`` for none.

    Returns:
        sorted, distinct 0-based frame numbers.
    """
    total = _check_total(total_frames)
    if not (fps > 0 and math.isfinite(fps)):
        raise ConfigError(f"fps must be a finite number > 0, got {fps!r}")
    count = frame_budget(total / float(fps), base=base, per_hour=per_hour, max_frames=max_frames,
                         max_fps=max_fps)
    return uniform_indices(total, count) if total else []


__all__ = ["sample_indices", "uniform_indices", "frame_budget", "PAPER_BASE_FRAMES", "PAPER_FRAMES_PER_HOUR"]
