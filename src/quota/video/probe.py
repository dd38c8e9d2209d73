"""Open a video and build its frame index: every frame's presentation time and where to start
decoding it.

Demuxing packets without decoding them is cheap (a few microseconds a packet), so the index is
built from the packets themselves rather than from the frame count or duration the container
reports, which can be absent or wrong. Frame numbers follow presentation order (sorted
presentation timestamps), so B-frames and variable frame rates are numbered as a player shows
them.
"""

from __future__ import annotations

import errno
import math
import os
import re
import struct
import threading
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from . import guard
from ..errors import EmptyVideoError, NoVideoStreamError, VideoDecodeError, VideoNotFoundError, VideoSourceError

#: Most indexes kept in memory (a video asked several questions is indexed once).
CACHE_SIZE = 8


@dataclass(eq=False)
class VideoIndex:
    """Everything needed to read any frame of one video stream exactly.

    Per-frame arrays are in presentation order (frame number ``k``); per-packet arrays are in
    decoding (file) order.

    Attributes:
        path: the file.
        stream_index: index of the video stream in the container.
        container: container format name (FFmpeg's, e.g. ``mov,mp4,m4a,3gp,3g2,mj2``).
        codec: codec name (``h264``, ``vp9`` ...).
        pix_fmt: decoded pixel format of the first frame (``yuv420p``, ``yuv420p10le`` ...).
        width, height: stored frame size in pixels (before rotation).
        rotation: counter-clockwise display rotation in degrees (0, 90, 180 or 270).
        time_base: seconds per timestamp tick.
        n_frames: number of frames (presentation order), counted from the packets.
        reported_frames: frame count the container claims (0 when absent); informative only.
        pts: ``[n_frames]`` int64 presentation timestamps (ticks), increasing.
        timestamps: ``[n_frames]`` float64 seconds since the first frame.
        duration: seconds from the first frame to the end of the last one.
        fps: average frame rate, ``n_frames / duration`` (frames per second).
        decode_pos: ``[n_frames]`` packet position (decoding order) of each frame.
        entry: ``[n_frames]`` packet position of the keyframe to start decoding each frame from.
        packet_pts: ``[n_packets]`` int64 pts of each packet (``NO_TS`` when absent).
        packet_dts: ``[n_packets]`` int64 dts of each packet (``NO_TS`` when absent).
        keyframe: ``[n_packets]`` bool, packet starts a keyframe.
        seekable: whether frames can be reached by seeking (unique timestamps on every packet);
            otherwise they are read by decoding from the start and counting.
        stated_duration: seconds the file's headers claim when that is clearly longer than
            ``duration`` (a truncated upload: only ``[0, duration]`` can be seen); ``None`` otherwise.
    """

    path: str
    stream_index: int
    container: str
    codec: str
    pix_fmt: str
    width: int
    height: int
    rotation: int
    time_base: Fraction
    n_frames: int
    reported_frames: int
    pts: np.ndarray
    timestamps: np.ndarray
    duration: float
    fps: float
    decode_pos: np.ndarray
    entry: np.ndarray
    packet_pts: np.ndarray
    packet_dts: np.ndarray
    keyframe: np.ndarray
    seekable: bool
    stated_duration: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def display_size(self) -> tuple[int, int]:
        """``(width, height)`` as shown, after rotation."""
        return (self.height, self.width) if self.rotation % 180 else (self.width, self.height)

    @property
    def n_packets(self) -> int:
        return int(len(self.keyframe))

    @property
    def n_keyframes(self) -> int:
        return int(self.keyframe.sum())

    def packet_position(self, pts: int | None, dts: int | None) -> int | None:
        """Decoding-order position of the packet with these timestamps, or ``None`` if unknown."""
        if pts is not None:
            order = self.extra["pts_order"]
            sorted_pts = self.extra["pts_sorted"]
            i = int(np.searchsorted(sorted_pts, pts))
            if i < len(sorted_pts) and sorted_pts[i] == pts:
                return int(order[i])
            return None
        if dts is not None:
            hits = np.flatnonzero(self.packet_dts == dts)
            return int(hits[0]) if len(hits) == 1 else None
        return None

    def seek_target(self, position: int) -> int:
        """Timestamp (stream ticks) to seek to so that demuxing restarts at or before ``position``."""
        vals = [int(v) for v in (self.packet_pts[position], self.packet_dts[position]) if v != NO_TS]
        return min(vals) if vals else 0

    def __repr__(self) -> str:
        w, h = self.display_size
        return (f"VideoIndex({self.path!r}, {self.codec} {w}x{h}, {self.n_frames} frames, "
                f"{self.duration:.2f}s, {self.fps:.3f} fps, {self.n_keyframes} keyframes)")


#: Marker for an absent timestamp in the int64 packet arrays.
NO_TS = np.iinfo(np.int64).min

_cache: "OrderedDict[tuple, VideoIndex]" = OrderedDict()
_cache_lock = threading.Lock()


#: ``scheme://`` (a URL) or an FFmpeg protocol prefix such as ``concat:`` / ``subfile,,...:`` (two
#: characters at least, so a Windows drive letter is not one).
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_PROTOCOL = re.compile(r"^[A-Za-z][A-Za-z0-9+.,_-]+:")


def check_path(path: str | os.PathLike) -> Path:
    """The path as a :class:`Path`, or a typed error saying why it cannot be read as a local file.

    Raises:
        VideoSourceError: a URL or FFmpeg protocol name that is not an existing file, or a
            symbolic-link loop.
        VideoNotFoundError: nothing at the path, a directory, a special file, or no read permission.
    """
    text = os.fspath(path)
    p = Path(text).expanduser()
    try:
        os.stat(p)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise VideoSourceError(
                f"{p} is a symbolic link that leads back to itself (a link loop); point it at the video file",
                p) from None
        if isinstance(text, str) and _URL.match(text):
            raise VideoSourceError(
                f"{text} is a URL; quota reads local files only: download the video first", text) from None
        if isinstance(text, str) and _PROTOCOL.match(text):
            raise VideoSourceError(
                f"{text} is not a file, and a name of the form 'word:...' is an FFmpeg protocol, which "
                "quota does not use: give the path of a local video file", text) from None
        if p.is_symlink():
            raise VideoNotFoundError(f"{p} is a symbolic link to {os.readlink(p)}, which does not exist", p) from None
        raise VideoNotFoundError(f"video file not found: {p} (check the path)", p) from None
    if p.is_dir():
        raise VideoNotFoundError(f"{p} is a directory, not a video file", p)
    if not p.is_file():
        raise VideoNotFoundError(f"{p} is not a regular file", p)
    if not os.access(p, os.R_OK):
        raise VideoNotFoundError(f"{p} cannot be read (permission denied)", p)
    return p


def ffmpeg_name(path: str | os.PathLike) -> str:
    """The name to hand FFmpeg for a local file: its absolute path behind the ``file:`` protocol,
    so no part of a file name (``concat:a.mp4|b.mp4``, ``subfile:...``) is read as a protocol."""
    return "file:" + os.path.abspath(os.fspath(path))


def _short(exc: BaseException) -> str:
    """The reason of an error, without the file name and error number FFmpeg adds (the caller names the file)."""
    reason = getattr(exc, "strerror", None)
    text = str(reason if isinstance(reason, str) and reason.strip() else exc).strip()
    text = text.splitlines()[0] if text else type(exc).__name__
    return text[:200]


def open_container(path: Path):
    """``av.open`` with FFmpeg's errors turned into :class:`VideoDecodeError`."""
    import av

    if path.stat().st_size == 0:
        raise VideoDecodeError(f"{path} is an empty file (0 bytes), not a video", path)
    guard.check_format(path)  # playlists and input lists are refused by name before FFmpeg reads them
    try:
        container = av.open(ffmpeg_name(path), metadata_errors="ignore", options=guard.open_options(),
                            timeout=guard.read_timeout())
    except av.error.EOFError:
        raise EmptyVideoError(
            f"{path} ends before its first frame: it holds no frames or is cut short", path) from None
    except av.FFmpegError as exc:
        if getattr(exc, "errno", None) == errno.EINVAL:  # FFmpeg's allow-list refused the format it found
            raise VideoSourceError(
                f"{path} is not in a video format quota reads (mp4, mkv, webm, avi, mov, ts, ...)", path) from None
        raise VideoDecodeError(
            f"{path} cannot be opened as a video ({_short(exc)}); the file may be damaged, "
            "truncated or not a video", path) from None
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise VideoDecodeError(f"{path} cannot be opened as a video ({_short(exc)})", path) from None
    if not guard.is_allowed(container.format.name):  # FFmpeg's list should have refused it already
        container.close()
        raise guard.format_refused(path, container.format.name)
    return container


def pick_video_stream(container, path: Path):
    """The main video stream: the first that is not an attached picture (cover art)."""
    if len(container.streams) == 0:
        raise EmptyVideoError(f"{path} holds no streams at all (an empty or unfinished recording)", path)
    videos = list(container.streams.video)
    main = []
    for s in videos:
        try:
            attached = bool(s.disposition & 0x0400)  # AV_DISPOSITION_ATTACHED_PIC
        except Exception:  # pragma: no cover - very old PyAV
            attached = False
        if not attached:
            main.append(s)
    if not main:
        kinds = sorted({s.type for s in container.streams}) or ["none"]
        what = "only cover art" if videos else f"streams: {', '.join(kinds)}"
        raise NoVideoStreamError(f"{path} has no video stream ({what}); quota needs a video", path)
    return main[0]


def discard_other_streams(container, keep: int) -> None:
    """Tell the demuxer to drop the packets of every stream but ``keep`` (less to read)."""
    for s in container.streams:
        if s.index != keep:
            try:
                s.discard = type(s.discard).all
            except Exception:  # pragma: no cover - older PyAV
                pass


def matrix_rotation(matrix: Sequence[float]) -> int:
    """Counter-clockwise rotation in degrees (0, 90, 180 or 270) of an FFmpeg display matrix.

    Args:
        matrix: the 9 entries of the 3x3 matrix, row by row, as stored in the file (16.16 fixed
            point for the first two columns; any common scale works). A mirrored matrix gives the
            rotation of its unmirrored part, as FFmpeg's ``av_display_rotation_get`` does.

    Returns:
        the angle rounded to a multiple of 90 degrees; 0 for a degenerate matrix.
    """
    m = [float(v) for v in matrix]
    if len(m) != 9:
        raise ValueError(f"a display matrix has 9 entries, got {len(m)}")
    sx, sy = math.hypot(m[0], m[3]), math.hypot(m[1], m[4])
    if sx == 0.0 or sy == 0.0:
        return 0
    angle = -math.degrees(math.atan2(m[1] / sy, m[0] / sx))
    return (round(angle / 90.0) * 90) % 360


def side_data_rotation(frame) -> int | None:
    """Rotation from the frame's display-matrix side data, or ``None`` when it has none."""
    try:
        entries = list(frame.side_data)
    except Exception:
        return None
    for sd in entries:
        if getattr(getattr(sd, "type", None), "name", "") != "DISPLAYMATRIX":
            continue
        raw = bytes(sd)
        if len(raw) < 36:
            return None
        return matrix_rotation(struct.unpack("=9i", raw[:36]))
    return None


def display_rotation(frame, stream=None) -> int:
    """Counter-clockwise display rotation of a decoded frame in degrees (0, 90, 180 or 270).

    Works across PyAV versions: ``frame.rotation`` where PyAV has it; otherwise the frame's
    display-matrix side data; otherwise the stream's ``rotate`` metadata tag (old files and old
    FFmpeg builds). A PyAV that has ``frame.rotation`` is trusted, as players trust FFmpeg's matrix.
    """
    try:
        angle = frame.rotation  # newer PyAV
    except AttributeError:
        angle = None
    if angle is None:
        angle = side_data_rotation(frame)
    if angle is None and stream is not None:
        try:
            angle = float(stream.metadata.get("rotate", 0) or 0)
        except (AttributeError, TypeError, ValueError):
            angle = 0
    if angle is None:
        return 0
    return (round(float(angle) / 90.0) * 90) % 360


def _first_frame(packets: list, stream) -> Any:
    """Decode the first keyframe packet alone (to learn pixel format and rotation)."""
    import av

    cc = stream.codec_context
    for pkt in packets:
        try:
            frames = list(pkt.decode()) + list(cc.decode(None))
        except (av.FFmpegError, ValueError):
            continue
        finally:
            try:
                cc.flush_buffers()
            except Exception:
                pass
        if frames:
            return frames[0]
    return None


@dataclass
class _Demuxed:
    """What demuxing the video stream's packets (no decoding) found, in decoding order."""

    pts: list[int] = field(default_factory=list)
    dts: list[int] = field(default_factory=list)
    key: list[bool] = field(default_factory=list)
    drop: list[bool] = field(default_factory=list)
    dur: list[int] = field(default_factory=list)
    probe_packets: list = field(default_factory=list)
    error: str | None = None


def _demux_packets(container, stream, path: Path, progress: Any = None) -> _Demuxed:
    """Read every packet of ``stream``; a damaged tail ends the walk and is noted in ``error``. Bounded in
    time and packet count by :data:`quota.video.guard.LIMITS` (:class:`~quota.errors.VideoLimitError`)."""
    import av

    got = _Demuxed()
    deadline = guard.probe_deadline(path)
    most = guard.LIMITS.max_packets
    try:
        for pkt in container.demux(stream):
            if pkt.size == 0:
                continue
            n = len(got.pts)
            if n % 256 == 0:
                deadline.check()
            if n >= most:
                guard.check_packets(n + 1, path)
            got.pts.append(NO_TS if pkt.pts is None else pkt.pts)
            got.dts.append(NO_TS if pkt.dts is None else pkt.dts)
            got.key.append(pkt.is_keyframe)
            got.drop.append(pkt.is_discard or pkt.is_corrupt)
            got.dur.append(pkt.duration or 0)
            if len(got.probe_packets) < 8 and (got.probe_packets or pkt.is_keyframe):
                got.probe_packets.append(pkt)
            if progress is not None:
                progress.update(1)
    except av.FFmpegError as exc:
        got.error = _short(exc)
    return got


def stated_duration(container, stream) -> float | None:
    """Seconds the file's headers say the video lasts: the stream's own duration, else the
    container's; ``None`` when neither is given."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return float(container.duration) / 1_000_000  # AV_TIME_BASE: microseconds
    return None


def _frame_order(packet_pts: np.ndarray, shown: np.ndarray, rate, time_base: Fraction
                 ) -> tuple[np.ndarray, np.ndarray, bool]:
    """Number the displayable packets in presentation order.

    Returns ``(pts, decode_pos, seekable)``: each frame's presentation timestamp (ticks) and packet
    position, and whether timestamps are unique enough to seek by. Without them, frames are
    numbered in decoding order and timed at the nominal rate.
    """
    has_pts = packet_pts != NO_TS
    positions = np.flatnonzero(shown)
    if has_pts[positions].all():
        frame_pts = packet_pts[positions]
        order = np.argsort(frame_pts, kind="stable")
        pts = frame_pts[order]
        if len(pts) < 2 or (np.diff(pts) > 0).all():
            return pts, positions[order], True
    step = 1.0 / float(rate) if rate else 1.0 / 25.0
    pts = np.round(np.arange(len(positions)) * step / float(time_base)).astype(np.int64)
    return pts, positions, False


def _entry_keyframes(keyframe: np.ndarray, packet_pts: np.ndarray, decode_pos: np.ndarray, pts: np.ndarray,
                     seekable: bool) -> np.ndarray:
    """For every frame, the packet position of the keyframe to start decoding from: the last keyframe
    at or before the frame's packet whose own presentation time is not later than the frame's
    (leading B-frames of an open GOP need the keyframe before)."""
    key_pos = np.flatnonzero(keyframe)
    if len(key_pos) == 0 or key_pos[0] != 0:
        key_pos = np.concatenate([[0], key_pos]).astype(np.int64)
    slot = np.searchsorted(key_pos, decode_pos, side="right") - 1
    entry = key_pos[np.maximum(slot, 0)]
    if seekable:
        key_pts = packet_pts[entry]
        late = (key_pts != NO_TS) & (key_pts > pts)
        while late.any():
            slot = np.maximum(np.where(late, slot - 1, slot), 0)
            entry = key_pos[slot]
            key_pts = packet_pts[entry]
            late = (key_pts != NO_TS) & (key_pts > pts) & (slot > 0)
    return entry


def _timing(pts: np.ndarray, last_packet_dur: int, rate, time_base: Fraction) -> tuple[np.ndarray, float, float]:
    """``(timestamps, duration, fps)`` of frames with presentation timestamps ``pts`` (ticks)."""
    n = len(pts)
    last_dur = int(last_packet_dur)
    if last_dur <= 0:
        if n > 1:
            last_dur = int(round(float(pts[-1] - pts[0]) / (n - 1)))
        elif rate:
            last_dur = int(round(1.0 / (float(rate) * float(time_base))))
        last_dur = max(last_dur, 1)
    tb = float(time_base)
    timestamps = (pts - pts[0]).astype(np.float64) * tb
    duration = float(pts[-1] - pts[0] + last_dur) * tb
    fps = n / duration if duration > 0 else float(rate or 1.0)
    if rate and abs(float(rate) - fps) <= 1e-3 * fps:
        fps = float(rate)  # the exact nominal rate (25, 30000/1001 ...) when it agrees
    return timestamps, duration, float(fps)


def cut_short(duration: float, stated: float | None, fps: float) -> bool:
    """Whether a container's stated length ``stated`` goes clearly past the ``duration`` its frames
    reach (a truncated file): by more than 1 s, two frames and 1 % of the stated length."""
    if stated is None:
        return False
    slack = max(1.0, 2.0 / fps if fps > 0 else 0.0, 0.01 * stated)
    return stated - duration > slack


def build_index(path: Path, progress: Any = None) -> VideoIndex:
    """Demux every packet of the video stream (no decoding) and build the :class:`VideoIndex`.

    Args:
        path: the video file.
        progress: an object with ``update(n)`` (a tqdm bar), advanced once per packet.
    """
    container = open_container(path)
    try:
        stream = pick_video_stream(container, path)
        time_base = stream.time_base or Fraction(1, 90000)
        discard_other_streams(container, stream.index)
        got = _demux_packets(container, stream, path, progress)
        if not got.pts:
            extra = f" (reading stopped: {got.error})" if got.error else ""
            raise EmptyVideoError(f"{path}: the video stream holds no frames{extra}", path)
        first = _first_frame(got.probe_packets, stream)
        if first is None:
            raise VideoDecodeError(
                f"{path}: no frame of its {stream.codec_context.name} video stream can be decoded "
                "(damaged file or unsupported codec)", path)
        codec = stream.codec_context.name
        reported = int(stream.frames or 0)
        container_name = container.format.name
        rate = stream.average_rate or stream.guessed_rate
        stream_index = int(stream.index)
        stated = stated_duration(container, stream)
        pix_fmt, width, height = first.format.name, int(first.width), int(first.height)
        rotation = display_rotation(first, stream)
    finally:
        container.close()

    packet_pts = np.asarray(got.pts, dtype=np.int64)
    keyframe = np.asarray(got.key, dtype=bool)
    shown = ~np.asarray(got.drop, dtype=bool)
    if not shown.any():
        raise EmptyVideoError(f"{path}: the video stream holds no displayable frame", path)
    pts, decode_pos, seekable = _frame_order(packet_pts, shown, rate, time_base)
    entry = _entry_keyframes(keyframe, packet_pts, decode_pos, pts, seekable)
    timestamps, duration, fps = _timing(pts, got.dur[decode_pos[-1]] if seekable else 0, rate, time_base)

    extra: dict[str, Any] = {}
    if seekable:
        all_pos = np.flatnonzero(packet_pts != NO_TS)
        srt = np.argsort(packet_pts[all_pos], kind="stable")
        extra["pts_sorted"] = packet_pts[all_pos][srt]
        extra["pts_order"] = all_pos[srt]
    if got.error:
        extra["demux_error"] = got.error
    return VideoIndex(
        path=str(path), stream_index=stream_index, container=container_name, codec=codec,
        pix_fmt=pix_fmt, width=width, height=height, rotation=rotation, time_base=Fraction(time_base),
        n_frames=len(pts), reported_frames=reported, pts=pts, timestamps=timestamps, duration=duration,
        fps=fps, decode_pos=decode_pos.astype(np.int64), entry=entry.astype(np.int64),
        packet_pts=packet_pts, packet_dts=np.asarray(got.dts, dtype=np.int64), keyframe=keyframe,
        seekable=seekable, stated_duration=stated if cut_short(duration, stated, fps) else None, extra=extra,
    )


def probe(path: str | os.PathLike, *, cache: bool = True, progress: bool | Any = None) -> VideoIndex:
    """The :class:`VideoIndex` of the video at ``path`` (cached by path, size and mtime).

    A file whose headers claim a length its frames do not reach gives a ``RuntimeWarning`` with both
    figures (once per file; :attr:`VideoIndex.stated_duration` keeps the claim). ``progress``: ``True``
    for a bar on stderr, or an object with ``update(n)``, advanced once per packet while a new index
    is built (a cached index shows nothing).

    Raises:
        VideoNotFoundError: the path does not exist or is not a file.
        VideoSourceError: the path is a URL, an FFmpeg protocol name or a symbolic-link loop.
        VideoDecodeError: the file cannot be opened or decoded as a video.
        NoVideoStreamError: the file has no video stream.
        EmptyVideoError: the video stream has no frame.
    """
    p = check_path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if cache:
        with _cache_lock:
            if key in _cache:
                _cache.move_to_end(key)
                return _cache[key]
    if progress is True:
        from tqdm.auto import tqdm

        with tqdm(desc="Indexing video", unit="packet", leave=False) as bar:
            index = build_index(p, progress=bar)
    else:
        index = build_index(p, progress=progress or None)
    if index.stated_duration is not None:
        warnings.warn(
            f"{p}: the file says the video lasts {index.stated_duration:.2f}s but its frames end at "
            f"{index.duration:.2f}s (a cut-off or unfinished file?); only 0-{index.duration:.2f}s is used",
            RuntimeWarning, stacklevel=2)
    if cache:
        with _cache_lock:
            _cache[key] = index
            while len(_cache) > CACHE_SIZE:
                _cache.popitem(last=False)
    return index


def clear_cache() -> None:
    """Forget every cached index."""
    with _cache_lock:
        _cache.clear()


__all__ = ["VideoIndex", "probe", "build_index", "check_path", "ffmpeg_name", "stated_duration", "cut_short", "open_container", "discard_other_streams",
           "clear_cache", "display_rotation", "matrix_rotation", "NO_TS"]
