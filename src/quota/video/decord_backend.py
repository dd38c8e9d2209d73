"""Optional decord backend: ``decord.VideoReader.get_batch`` for the wanted frames.

decord numbers frames by presentation order like quota does, and for H.264, VP9 and MJPEG files
gives the same pixels as the PyAV backend with ``colors="decord"`` (decord's own colour conversion,
which :mod:`quota.video.colors` reproduces; for any other ``colors`` quota reads with PyAV). It is
never picked automatically: it was slower than the PyAV backend in our measurements (see
docs/video.md), it returned wrong frames for some streams (HEVC and MPEG-4 Part 2 with B-frames,
H.264 in MPEG-TS, open GOPs), and it fails on rotated files. :func:`unsupported_reason` names the
cases where quota reads with PyAV instead; it also does when decord counts a different number of
frames than the index.
"""

from __future__ import annotations

import warnings

import numpy as np

from ..errors import VideoDecodeError
from .probe import VideoIndex, ffmpeg_name


def available() -> bool:
    """Whether decord can be imported."""
    try:
        import decord  # noqa: F401
    except Exception:
        return False
    return True


def unsupported_reason(index: VideoIndex) -> str | None:
    """Why decord cannot read this video exactly, or ``None`` when it can."""
    if not available():
        return "decord is not installed (pip install decord)"
    if index.rotation:
        return f"decord does not handle rotated videos (this one is rotated {index.rotation} degrees)"
    if not index.seekable:
        return "the stream has no timestamps to check decord's frame numbers against"
    reordered = bool(len(index.decode_pos) > 1 and (np.diff(index.decode_pos) < 0).any())
    if reordered and (index.codec != "h264" or "mpegts" in index.container):
        return f"decord returns wrong frames for {index.codec} with B-frames in {index.container} files"
    keys = np.flatnonzero(index.keyframe)
    if len(keys) and reordered:
        last_key = keys[np.maximum(np.searchsorted(keys, index.decode_pos, side="right") - 1, 0)]
        if (index.entry < last_key).any():
            return "decord returns wrong frames for videos with open GOPs"
    return None


def read_frames(index: VideoIndex, frames: np.ndarray, size: tuple[int, int] | None, threads: int = 0
                ) -> np.ndarray | None:
    """Frames ``frames`` as uint8 RGB ``[T, H, W, 3]`` in stored orientation, or ``None`` when decord
    disagrees with the index about the frame count (the caller then uses PyAV).

    Args:
        index: the video's index.
        frames: frame numbers, sorted and distinct.
        size: ``(width, height)`` to decode at, or ``None`` for the stored size.
        threads: decoder threads (0: automatic).
    """
    import decord

    kwargs = {}
    if size is not None and size != (index.width, index.height):
        kwargs = {"width": int(size[0]), "height": int(size[1])}
    try:
        vr = decord.VideoReader(ffmpeg_name(index.path), ctx=decord.cpu(0), num_threads=threads, **kwargs)
        if len(vr) != index.n_frames:
            warnings.warn(f"{index.path}: decord counts {len(vr)} frames, the index {index.n_frames}; "
                          "reading with PyAV instead", RuntimeWarning, stacklevel=3)
            return None
        batch = vr.get_batch([int(k) for k in frames]).asnumpy()
    except decord.DECORDError as exc:
        raise VideoDecodeError(f"{index.path}: decord failed ({str(exc).splitlines()[0][:200]})",
                               index.path) from None
    return np.ascontiguousarray(batch, dtype=np.uint8)


__all__ = ["available", "unsupported_reason", "read_frames"]
