"""``load_frames``: open a video, read only the sampled frames, return :class:`~quota.types.Frames`."""

from __future__ import annotations

import math
import os
import warnings
from contextlib import contextmanager
from typing import Any, Iterator, Sequence

import numpy as np

from ..errors import ConfigError, VideoDecodeError
from ..types import Frames
from . import decord_backend, guard, pyav_backend
from .colors import check_colors, reformat_colors
from .frame_folder import is_frame_folder, load_frame_folder
from .probe import VideoIndex, probe
from .pyav_backend import DecodeStats
from .sampling import sample_indices, uniform_indices

BACKENDS = ("auto", "pyav", "decord")
_SAMPLING_KEYS = ("base", "per_hour", "max_frames", "max_fps")


def output_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    """``(width, height)`` scaled down, keeping the aspect ratio, so the longest side is at most
    ``max_side`` pixels (never scaled up; each side at least 1 pixel)."""
    if max_side is None:
        return int(width), int(height)
    if isinstance(max_side, bool) or int(max_side) != max_side or max_side < 1:
        raise ConfigError(f"max_side must be a whole number of pixels >= 1, got {max_side!r}")
    longest = max(width, height)
    if longest <= max_side:
        return int(width), int(height)
    scale = max_side / longest
    return max(1, int(round(width * scale))), max(1, int(round(height * scale)))


def capped_size(width: int, height: int, max_pixels: int | None) -> tuple[int, int]:
    """``(width, height)`` scaled down, keeping the aspect ratio, to at most ``max_pixels`` pixels
    (never scaled up; each side at least 1 pixel; ``None``: unchanged)."""
    if max_pixels is None or width * height <= max_pixels:
        return int(width), int(height)
    scale = math.sqrt(max_pixels / float(width * height))
    w, h = max(1, int(width * scale)), max(1, int(height * scale))
    while w * h > max_pixels and max(w, h) > 1:  # float rounding: make sure the cap holds
        w, h = (w - 1, h) if w >= h else (w, h - 1)
    return w, h


def decode_size(width: int, height: int, n_frames: int, *, max_side: int | None = None,
                max_pixels: int | None = None, max_bytes: int | None = None) -> tuple[int, int]:
    """The ``(width, height)`` frames are decoded at (stored orientation, before rotation).

    Three limits, each off when ``None``; the smallest wins, the aspect ratio is kept and frames are
    never enlarged:

    - ``max_side``: longest side at most this many pixels;
    - ``max_pixels``: at most this many pixels a frame;
    - ``max_bytes``: the ``n_frames`` RGB frames together (3 bytes a pixel) take at most this many
      bytes, so memory stays bounded however long or large the video is.
    """
    for name, value in (("max_pixels", max_pixels), ("max_bytes", max_bytes)):
        if value is not None and (isinstance(value, bool) or int(value) != value or value < 1):
            raise ConfigError(f"{name} must be a whole number >= 1, got {value!r}")
    w, h = output_size(width, height, max_side)
    cap = max_pixels
    if max_bytes is not None:
        per_frame = max(1, int(max_bytes) // (3 * max(1, int(n_frames))))
        cap = per_frame if cap is None else min(cap, per_frame)
    return capped_size(w, h, cap)


def choose_backend(backend: str, index: VideoIndex, colors: str = "decord") -> str:
    """The backend that will read ``index``'s frames: ``auto`` is always PyAV, the fastest exact
    backend in our measurements; ``decord`` falls back to PyAV (with a warning) where it cannot be
    exact, and for any ``colors`` but ``"decord"`` (decord has only its own conversion)."""
    if backend not in BACKENDS:
        raise ConfigError(f"unknown video backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "decord":
        reason = decord_backend.unsupported_reason(index)
        if reason is None and colors != "decord":
            reason = f"decord cannot convert colours the {colors!r} way"
        if reason is None:
            return "decord"
        warnings.warn(f"{index.path}: {reason}; reading with PyAV instead", RuntimeWarning, stacklevel=3)
    return "pyav"


def frame_numbers_for(index: VideoIndex, n: int | None = None, indices: Sequence[int] | None = None,
                      **sampling) -> list[int]:
    """Which frames of ``index``'s video to read: explicit ``indices``, ``n`` uniform frames, or the
    paper's rule (``base``, ``per_hour``, ``max_frames``, ``max_fps`` as in :func:`sample_indices`)."""
    unknown = sorted(set(sampling) - set(_SAMPLING_KEYS))
    if unknown:
        raise ConfigError(f"unknown sampling option(s) {', '.join(unknown)}; use {', '.join(_SAMPLING_KEYS)}")
    if indices is not None:
        if n is not None or sampling:
            raise ConfigError("give either indices or n / sampling options, not both")
        idx = [int(i) for i in indices]
        if not idx:
            raise ConfigError("indices is empty")
        bad = [i for i in idx if not 0 <= i < index.n_frames]
        if bad:
            raise ConfigError(f"frame indices {bad[:5]} out of range for {index.path} "
                              f"({index.n_frames} frames, 0..{index.n_frames - 1})")
        return idx
    if n is not None:
        if sampling:
            raise ConfigError("give either n or the sampling options (base, per_hour, max_frames, max_fps), "
                              "not both")
        return uniform_indices(index.n_frames, n)
    return sample_indices(index.n_frames, index.fps, **sampling)


def load_frames(
    path: str | os.PathLike,
    *,
    n: int | None = None,
    max_side: int | None = None,
    max_pixels: int | None = None,
    max_bytes: int | None = None,
    backend: str = "auto",
    colors: str = "decord",
    indices: Sequence[int] | None = None,
    threads: int = 0,
    stats: DecodeStats | None = None,
    frame_fps: float | None = None,
    progress: bool | Any = False,
    **sampling,
) -> Frames:
    """Read the sampled frames of a video.

    By default the paper's rule picks the frames: ``96 + floor(hours * 64)`` frames spread
    uniformly from the first to the last frame (change it with ``base``, ``per_hour``,
    ``max_frames``, ``max_fps``). ``n`` asks for ``n`` uniform frames instead, ``indices`` for given frames.
    A video with fewer frames than asked for gives each of its frames once.

    Frame ``k`` of the result is frame ``indices[k]`` of the file, frames numbered in presentation
    order from 0; timestamps are presentation times in seconds since the first frame. Rotation
    metadata is applied (pixels are as a player shows them).

    Args:
        path: the video file.
        n: number of uniformly spaced frames to read instead of the paper's rule.
        max_side: longest side of the returned frames at most this many pixels (scaled while
            decoding, aspect ratio kept); ``None`` keeps the stored size.
        max_pixels: at most this many pixels a frame (scaled while decoding); ``None``: no limit.
        max_bytes: all returned pixels together take at most this many bytes (frames scaled while
            decoding to fit); ``None``: no limit. See :func:`decode_size`.
        backend: ``auto`` (PyAV), ``pyav``, or ``decord`` (optional, see docs/video.md).
        colors: how YUV pixels become RGB: ``"decord"`` (the paper's decoder: follows the stream's
            colour matrix and range tags) or ``"bt601"`` (tags ignored); see :mod:`quota.video.colors`.
            Folders of frame images are read as they are.
        indices: explicit frame numbers to read, in the order wanted (repeats allowed).
        threads: decoder threads (0: FFmpeg decides, 1: single-threaded).
        stats: a :class:`DecodeStats` to fill with counters (frames decoded, seeks ...).
        frame_fps: frame rate of ``path`` when it is a folder of frame images (default
            :data:`quota.video.frame_folder.DEFAULT_FPS`); ignored for video files.
        progress: ``True`` for progress bars on stderr (per packet while a new index is built, per
            frame while decoding), or an object with ``update(n)`` advanced per decoded frame.
        **sampling: ``base``, ``per_hour``, ``max_frames``, ``max_fps`` for the paper's rule (see
            :func:`~quota.video.sample_indices`).

    Returns:
        :class:`~quota.types.Frames` with uint8 RGB pixels ``[T, H, W, 3]``.

    Raises:
        VideoNotFoundError, VideoDecodeError, NoVideoStreamError, EmptyVideoError: for a missing,
            unreadable, video-less or empty file; ConfigError for bad arguments.
    """
    check_colors(colors)
    if is_frame_folder(path):  # a folder of frame images is a video too (see frame_folder.py)
        return load_frame_folder(path, fps=frame_fps, n=n, indices=indices, max_side=max_side, **sampling)
    index = probe(path, progress=progress is True)
    wanted = frame_numbers_for(index, n=n, indices=indices, **sampling)
    unique = np.unique(np.asarray(wanted, dtype=np.int64))
    width, height = decode_size(index.width, index.height, len(unique), max_side=max_side,
                                max_pixels=max_pixels, max_bytes=max_bytes)
    chosen = choose_backend(backend, index, colors)
    stats = stats if stats is not None else DecodeStats()

    pixels = None
    got = None
    if chosen == "decord":
        raw = decord_backend.read_frames(index, unique, (width, height), threads=threads)
        if raw is not None:
            pixels, got = raw, np.ones(len(unique), dtype=bool)
            stats.backend = "decord"
            stats.converted = len(unique)
    if pixels is None:
        with _bar(progress, "Decoding frames", "frame", total=len(unique)) as bar:
            pixels, got = _read_pyav(index, unique, width, height, threads, stats, bar, colors)

    if not got.all():
        if not got.any():
            raise VideoDecodeError(f"{index.path}: none of the {len(unique)} sampled frames could be "
                                   "decoded; the file is damaged", index.path)
        pixels, unique = pixels[got], unique[got]
    pixels, chosen_idx = _in_asked_order(pixels, unique, wanted)
    return Frames(
        pixels=pixels,
        indices=chosen_idx,
        timestamps=index.timestamps[chosen_idx],
        duration=index.duration,
        fps=index.fps,
        path=str(path),
        stated_duration=index.stated_duration,
    )


def _in_asked_order(pixels: np.ndarray, read: np.ndarray, wanted: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Frames read in sorted order without repeats (``read``), gathered in the order ``wanted``
    (repeats kept; frames that could not be read left out). Returns ``(pixels, frame numbers)``."""
    want = np.asarray(wanted, dtype=np.int64)
    pos = np.searchsorted(read, want)
    keep = (pos < len(read)) & (read[np.minimum(pos, len(read) - 1)] == want)
    pos = pos[keep]
    if not np.array_equal(pos, np.arange(len(read))):
        pixels = pixels[pos]
    return pixels, read[pos]


def _read_pyav(index: VideoIndex, frames: np.ndarray, width: int, height: int, threads: int,
               stats: DecodeStats, bar: Any = None, colors: str = "decord") -> tuple[np.ndarray, np.ndarray]:
    """Read with PyAV into one preallocated array at the output size: each decoded frame is
    converted (and scaled) straight into its slot, so memory stays about T x output frame size
    plus the decoder's own few frames, whatever the stored size. Colours follow ``colors``, per
    frame (:func:`quota.video.colors.reformat_colors`)."""
    k = (index.rotation // 90) % 4
    out_h, out_w = (width, height) if k % 2 else (height, width)
    out = np.empty((len(frames), out_h, out_w, 3), dtype=np.uint8)
    scaling = (width, height) != (index.width, index.height)
    kwargs: dict = {"width": width, "height": height, "format": "rgb24"}
    if scaling:
        kwargs["interpolation"] = "AREA"

    deadline = guard.decode_deadline(index.path)  # a wall-clock bound on the whole read

    def sink(slot: int, frame) -> None:
        deadline.check()
        arr = frame.to_ndarray(**kwargs, **reformat_colors(frame, colors))
        out[slot] = np.rot90(arr, k) if k else arr
        if bar is not None:
            bar.update(1)

    got = pyav_backend.read_frames(index, frames, sink, stats, threads=threads)
    return out, got


@contextmanager
def _bar(progress: bool | Any, desc: str, unit: str, total: int | None = None) -> Iterator[Any]:
    """A tqdm bar on stderr when ``progress`` is ``True``, the given object when it has ``update``,
    else ``None``."""
    if progress is True:
        from tqdm.auto import tqdm

        with tqdm(total=total, desc=desc, unit=unit, leave=False) as bar:
            yield bar
    elif hasattr(progress, "update"):
        yield progress
    else:
        yield None


__all__ = ["load_frames", "output_size", "decode_size", "capped_size", "choose_backend", "frame_numbers_for", "BACKENDS"]
