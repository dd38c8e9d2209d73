"""Video reading: the paper's frame sampling and frame-exact decoding.

- :func:`sample_indices`, :func:`uniform_indices`: which frames to read (pure functions);
- :func:`probe`: a video's frame index (count, timestamps, keyframes), built by demuxing;
- :func:`load_frames`: read the sampled frames, return :class:`~quota.types.Frames` (a folder of frame
  images is read by :func:`load_frame_folder`).

See docs/video.md for the sampling rule, the backends and the exactness guarantees.
"""

from __future__ import annotations

from .frame_folder import DEFAULT_FPS, is_frame_folder, load_frame_folder
from .load import BACKENDS, decode_size, load_frames, output_size
from .probe import VideoIndex, clear_cache, probe
from .pyav_backend import DecodeStats
from .sampling import PAPER_BASE_FRAMES, PAPER_FRAMES_PER_HOUR, frame_budget, sample_indices, uniform_indices

__all__ = [
    "load_frame_folder",
    "is_frame_folder",
    "DEFAULT_FPS",
    "load_frames",
    "sample_indices",
    "uniform_indices",
    "frame_budget",
    "probe",
    "VideoIndex",
    "DecodeStats",
    "clear_cache",
    "output_size",
    "decode_size",
    "BACKENDS",
    "PAPER_BASE_FRAMES",
    "PAPER_FRAMES_PER_HOUR",
]
