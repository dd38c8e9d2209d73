"""Error types raised by quota.

Every error quota raises on purpose derives from :class:`QuotaError`, so callers can catch
one type. Each subclass also derives from the built-in type that best describes it
(``ValueError``, ``FileNotFoundError`` ...), so generic handlers keep working.

Messages say what was wrong and, where possible, what to do about it.
"""

from __future__ import annotations


#: How messages tell the user to allow a checkpoint's own code; the command line shows ``--trust-remote-code``
#: in its place.
TRUST_HINT = "trust_remote_code=True"


class QuotaError(Exception):
    """Base class of every error raised by quota on purpose."""


class ConfigError(QuotaError, ValueError):
    """A setting, preset name or option value is invalid."""


class VideoError(QuotaError):
    """A video cannot be used: base class of the video errors below."""

    def __init__(self, message: str, path: object = None) -> None:
        self.path = None if path is None else str(path)
        text = message if path is None or str(path) in message else f"{path}: {message}"
        super().__init__(text)


class VideoNotFoundError(VideoError, FileNotFoundError):
    """The video path does not exist or is not a regular file."""


class VideoSourceError(VideoError, ValueError):
    """The video argument names something quota does not read: a URL or FFmpeg protocol
    (``http://``, ``rtsp://``, ``concat:`` ...), or a path that cannot be followed (a symbolic-link
    loop). quota reads local files only."""


class VideoDecodeError(VideoError, ValueError):
    """The file exists but cannot be decoded as a video (corrupt, truncated, not a video)."""


class NoVideoStreamError(VideoDecodeError):
    """The container holds no video stream (for example audio only)."""


class EmptyVideoError(VideoDecodeError):
    """The video stream holds no decodable frame."""


class VideoLimitError(VideoDecodeError):
    """Reading the video passed one of the bounds of :data:`quota.video.guard.LIMITS` (time or size)."""


class FramesError(QuotaError, ValueError):
    """Frame pixels handed to quota are malformed (empty, wrong dtype or shape)."""


class ModelError(QuotaError):
    """A model cannot be loaded or used: base class of the model errors below."""


class ModelNotFoundError(ModelError, FileNotFoundError):
    """A model id or folder does not exist (locally, or on the hub when reachable)."""


class ProcessorNotFoundError(ModelError, FileNotFoundError):
    """A checkpoint has weights but no processor / tokenizer files to go with them."""


class UnsupportedModelError(ModelError, ValueError):
    """The checkpoint is of a model family quota has no adapter or scorer for."""


class BudgetError(QuotaError, ValueError):
    """A token plan cannot be made or applied (budget too small, grids and features disagree)."""


class BenchmarkError(QuotaError, ValueError):
    """A benchmark annotation file or video folder is missing or malformed."""


class RunStoreError(QuotaError):
    """A results store cannot be used (for example it holds results of another configuration)."""


__all__ = [
    "TRUST_HINT",
    "QuotaError",
    "ConfigError",
    "VideoError",
    "VideoNotFoundError",
    "VideoSourceError",
    "VideoDecodeError",
    "NoVideoStreamError",
    "EmptyVideoError",
    "VideoLimitError",
    "FramesError",
    "ModelError",
    "ModelNotFoundError",
    "ProcessorNotFoundError",
    "UnsupportedModelError",
    "BudgetError",
    "BenchmarkError",
    "RunStoreError",
]
