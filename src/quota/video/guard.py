"""What quota agrees to read as a video, and for how long.

A video input is a local file in one of the container formats of :data:`ALLOWED_FORMATS`. FFmpeg is told so
when the file is opened (``format_whitelist``, and ``protocol_whitelist=file``), so it never follows a
playlist (HLS ``.m3u8``, DASH), a concat list (``ffconcat``, whatever its name) or a network protocol: those
can wait for data forever or include themselves. :func:`refused_format` names such a file before FFmpeg
sees it, for a clear message.

Reading is bounded too (:class:`Limits`, the module's :data:`LIMITS`): each blocking read of FFmpeg gives up
after ``read_timeout_s``; building a frame index stops after ``probe_s`` seconds or ``max_packets`` packets
(the index takes about 200 bytes a packet while it is built); reading the frames stops after ``decode_s``
seconds. Past a bound, :class:`~quota.errors.VideoLimitError` says which, in one line.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from ..errors import VideoLimitError, VideoSourceError

#: FFmpeg demuxers quota reads (the first name of each is FFmpeg's; a file is matched on any of its names).
ALLOWED_FORMATS: tuple[str, ...] = (
    "mov", "mp4", "m4a", "3gp", "3g2", "mj2",  # MP4 / QuickTime
    "matroska", "webm", "avi", "flv", "mpegts", "mpeg", "mpegvideo", "asf", "ogg", "gif",
    "h264", "hevc", "ivf", "yuv4mpegpipe", "nut", "m4v", "mjpeg",
)


@dataclass(frozen=True)
class Limits:
    """Bounds on reading one video.

    Attributes:
        read_timeout_s: seconds one blocking read or open of FFmpeg may take.
        probe_s: seconds building the frame index (demuxing every packet) may take.
        decode_s: seconds reading the sampled frames may take.
        max_packets: most packets of the video stream an index holds (memory bound: about 200 bytes each
            while the index is built, 40 after); 3,000,000 is 14 hours at 60 frames/s.
    """

    read_timeout_s: float = 20.0
    probe_s: float = 300.0
    decode_s: float = 900.0
    max_packets: int = 3_000_000


#: The bounds in force (tests replace it with smaller ones).
LIMITS = Limits()


def open_options() -> dict[str, str]:
    """Options for ``av.open``: only the allowed demuxers, only the local-file protocol."""
    return {"format_whitelist": ",".join(ALLOWED_FORMATS), "protocol_whitelist": "file"}


def read_timeout() -> float:
    """Seconds one FFmpeg read may block (``av.open(timeout=...)``)."""
    return LIMITS.read_timeout_s


def is_allowed(format_name: str) -> bool:
    """Whether a demuxer name (FFmpeg's, possibly ``a,b,c``) is one of :data:`ALLOWED_FORMATS`."""
    return any(name.strip() in ALLOWED_FORMATS for name in format_name.split(","))


#: Leading bytes of text formats that are lists of other inputs, not videos.
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"#EXTM3U", "an HLS playlist (.m3u8)"),
    (b"ffconcat", "an FFmpeg concat list"),
    (b"<?xml", "an XML file (a DASH manifest or a playlist)"),
    (b"<MPD", "a DASH manifest"),
    (b"[playlist]", "a playlist"),
)


def refused_format(path: str | os.PathLike) -> str | None:
    """What ``path`` is when its first bytes show a playlist or an input list, else ``None``."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(1024)
    except OSError:
        return None
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    for magic, what in _SIGNATURES:
        if text[: len(magic)].lower() == magic.lower():
            return what
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith(b"#")]
    if lines and all(line.startswith((b"file ", b"file\t")) for line in lines[:3]):
        return "an FFmpeg concat list"
    return None


def check_format(path: str | os.PathLike) -> None:
    """Raise :class:`VideoSourceError` for a playlist or an input list, whatever its file name."""
    what = refused_format(path)
    if what is not None:
        raise VideoSourceError(
            f"{path} is {what}, not a video file; quota reads local video files only "
            "(mp4, mkv, webm, avi, mov, ts, ...), never playlists or lists of other files", path)


def format_refused(path: str | os.PathLike, format_name: str) -> VideoSourceError:
    """The error for a file FFmpeg opened as a demuxer that is not allowed."""
    return VideoSourceError(
        f"{path} is read by FFmpeg as '{format_name}', a format quota does not read; "
        "give a video file (mp4, mkv, webm, avi, mov, ts, ...)", path)


class Deadline:
    """A wall-clock bound on one step: :meth:`check` raises :class:`VideoLimitError` once ``seconds`` passed.

    Args:
        seconds: the bound.
        what: the step, as the message names it (``indexing``, ``decoding``).
        path: the video.
        setting: the name of the bound in :class:`Limits` (for the message).
    """

    def __init__(self, seconds: float, what: str, path: str | os.PathLike, setting: str) -> None:
        self.seconds, self.what, self.path, self.setting = float(seconds), what, str(path), setting
        self.end = time.monotonic() + self.seconds

    def check(self) -> None:
        if time.monotonic() > self.end:
            raise VideoLimitError(
                f"{self.path}: {self.what} took longer than {self.seconds:g} s and was stopped "
                f"(quota.video.guard.LIMITS.{self.setting}); the file is too long, too slow to read or damaged",
                self.path)


def probe_deadline(path: str | os.PathLike) -> Deadline:
    return Deadline(LIMITS.probe_s, "indexing the video", path, "probe_s")


def decode_deadline(path: str | os.PathLike) -> Deadline:
    return Deadline(LIMITS.decode_s, "decoding the frames", path, "decode_s")


def check_packets(count: int, path: str | os.PathLike) -> None:
    """Raise :class:`VideoLimitError` when an index would hold more than ``LIMITS.max_packets`` packets."""
    if count > LIMITS.max_packets:
        raise VideoLimitError(
            f"{path}: the video stream has more than {LIMITS.max_packets:,} packets "
            "(quota.video.guard.LIMITS.max_packets); too long a video to index", path)


__all__ = ["ALLOWED_FORMATS", "Limits", "LIMITS", "open_options", "read_timeout", "is_allowed", "refused_format",
           "check_format", "format_refused", "Deadline", "probe_deadline", "decode_deadline", "check_packets"]
