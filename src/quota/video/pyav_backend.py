"""Frame-exact reading with PyAV: seek to the keyframe before each wanted frame, decode up to it.

The :class:`~quota.video.probe.VideoIndex` tells, for every frame, its presentation timestamp and
the packet (keyframe) to start decoding from. The reader walks the wanted frames in order:

- when the next wanted frame's keyframe is already behind the decoder (frames are dense), it keeps
  decoding sequentially;
- when that keyframe is a short way ahead it skips the packets in between without decoding them;
- otherwise it seeks to that keyframe.

A decoded frame is accepted only if its timestamp is one of the wanted ones and decoding started at
or before its keyframe, so the pixels equal those of a plain decode from the start. Frames nobody
asked for and that no other frame refers to (non-reference B-frames) are skipped by the decoder.
Only wanted frames are converted to RGB, scaled in the same step when a smaller size is asked for.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import VideoDecodeError
from .probe import NO_TS, VideoIndex, discard_other_streams, open_container

#: Packets to skip by demuxing (no decoding) rather than by seeking.
SKIP_LIMIT = 48
#: Packets past a wanted frame's own packet after which it is given up as lost.
LOST_LIMIT = 96


@dataclass
class DecodeStats:
    """Counters of one read, for tests and benchmarks.

    Attributes:
        decoded: frames that came out of the decoder.
        converted: frames converted to RGB (the wanted ones).
        packets: packets sent to the decoder.
        skipped: packets demuxed but not decoded.
        seeks: seeks in the file.
        fallback: frames that needed the decode-from-start fallback.
        backend: which backend did the work.
    """

    decoded: int = 0
    converted: int = 0
    packets: int = 0
    skipped: int = 0
    seeks: int = 0
    fallback: int = 0
    backend: str = ""


Sink = Callable[[int, object], None]


def _decode(packet) -> list:
    import av

    try:
        return packet.decode()
    except (av.FFmpegError, ValueError):
        return []


class _Reader:
    """One pass of reading; holds the open container and the decoder state."""

    def __init__(self, index: VideoIndex, frames: np.ndarray, sink: Sink, stats: DecodeStats,
                 threads: int) -> None:
        self.index = index
        self.frames = frames  # wanted frame numbers, sorted, distinct
        self.sink = sink
        self.stats = stats
        self.threads = threads
        self.slot_of_pts = {int(index.pts[k]): i for i, k in enumerate(frames)}
        self.got = np.zeros(len(frames), dtype=bool)
        self.container = None
        self.stream = None
        self.packets = None  # demux iterator
        self.cur: int | None = None  # decoding-order position of the next packet to demux
        self.run_entry = 0  # position decoding started from since the last flush
        self.eof = False
        self._pending = None  # a packet demuxed while seeking, to be decoded next
        self._skip_mode = "DEFAULT"

    # -- container and stream -------------------------------------------------------------------
    def open(self) -> None:
        self.close()
        self.container = open_container(Path(self.index.path))
        discard_other_streams(self.container, self.index.stream_index)
        self.stream = next(s for s in self.container.streams if s.index == self.index.stream_index)
        cc = self.stream.codec_context
        # Frame threading pays off only when decoding long runs; seeking flushes it often.
        cc.thread_type = "SLICE" if self.threads != 1 else "NONE"
        cc.thread_count = max(0, self.threads)
        self.packets = self.container.demux(self.stream)
        self.cur = 0
        self.run_entry = 0
        self.eof = False
        self._pending = None
        self._skip_mode = "DEFAULT"
        cc.skip_frame = "DEFAULT"

    def close(self) -> None:
        if self.container is not None:
            try:
                self.container.close()
            finally:
                self.container = None
                self.stream = None
                self.packets = None

    # -- positioning ----------------------------------------------------------------------------
    def _next_packet(self):
        """The next non-empty packet, or ``None`` at the end of the stream."""
        import av

        while True:
            try:
                pkt = next(self.packets)
            except StopIteration:
                return None
            except av.FFmpegError:
                return None  # damaged tail
            if pkt.size:
                return pkt

    def _reset_decoder(self) -> None:
        try:
            self.stream.codec_context.flush_buffers()
        except Exception:  # pragma: no cover
            pass
        self.eof = False

    def _skip_to(self, target: int) -> bool:
        """Demux without decoding until the next packet is at ``target``."""
        while self.cur < target:
            pkt = self._next_packet()
            if pkt is None:
                return False
            self.stats.skipped += 1
            self.cur += 1
        return True

    def _seek_to(self, target: int) -> bool:
        """Position the demuxer so that the next packet is at ``target`` (a keyframe)."""
        import av

        index = self.index
        # Try the keyframe's own timestamp, then earlier keyframes, then the start of the file.
        keys = np.flatnonzero(index.keyframe[: target + 1])
        candidates = [target] + [int(k) for k in keys[::-1] if k < target][:3]
        for cand in candidates:
            ts = index.seek_target(cand)
            try:
                self.container.seek(ts, stream=self.stream, backward=True, any_frame=False)
            except av.FFmpegError:
                continue
            self.stats.seeks += 1
            self.packets = self.container.demux(self.stream)
            pkt = self._next_packet()
            if pkt is None:
                continue
            pos = index.packet_position(pkt.pts, pkt.dts)
            if pos is None or pos > target:
                continue  # landed after the keyframe (or somewhere unknown): seek further back
            self.cur = pos + 1
            self._reset_decoder()
            if pos == target:
                self._pending = pkt
                self.cur = pos
                return True
            self.stats.skipped += 1
            return self._skip_to(target)
        # Last resort: reopen and walk from the start.
        self.open()
        self.stats.seeks += 1
        return self._skip_to(target)

    def _position_for(self, entry: int) -> bool:
        """Make sure decoding can reach a frame whose keyframe is at ``entry``."""
        if self.cur is not None and not self.eof and self.run_entry <= entry <= self.cur:
            return True  # keep decoding sequentially
        if self.cur is not None and not self.eof and self.cur < entry <= self.cur + SKIP_LIMIT:
            if not self._skip_to(entry):
                return False
            self._reset_decoder()
            self.run_entry = entry
            return True
        ok = self._seek_to(entry)
        self.run_entry = entry
        return ok

    # -- decoding -------------------------------------------------------------------------------
    def _accept(self, frame) -> None:
        pts = frame.pts
        if pts is None:
            return
        slot = self.slot_of_pts.get(int(pts))
        if slot is None or self.got[slot]:
            return
        if self.index.entry[self.frames[slot]] < self.run_entry:
            return  # decoding started after this frame's keyframe: its references are missing
        self.sink(slot, frame)
        self.got[slot] = True
        self.stats.converted += 1

    def _feed_one(self) -> bool:
        """Send the next packet to the decoder; ``False`` once the stream is exhausted."""
        pkt, self._pending = self._pending, None
        if pkt is None:
            pkt = self._next_packet()
        if pkt is None:
            if not self.eof:
                try:
                    frames = self.stream.codec_context.decode(None)
                except Exception:
                    frames = []
                self.eof = True
                for f in frames:
                    self.stats.decoded += 1
                    self._accept(f)
            return False
        pos = self.cur
        if pkt.pts is not None and pos < len(self.index.packet_pts) and self.index.packet_pts[pos] != pkt.pts:
            found = self.index.packet_position(pkt.pts, pkt.dts)
            if found is not None:
                pos = found  # the demuxer and the index disagree: trust the timestamps
        self.cur = pos + 1
        cc = self.stream.codec_context
        wanted = pkt.pts is not None and int(pkt.pts) in self.slot_of_pts
        skip = "DEFAULT" if wanted else "NONREF"
        if self._skip_mode != skip:
            cc.skip_frame = skip
            self._skip_mode = skip
        self.stats.packets += 1
        for f in _decode(pkt):
            self.stats.decoded += 1
            self._accept(f)
        return True

    def read_seek(self) -> None:
        """Read every wanted frame by seeking; frames that cannot be reached stay missing."""
        index = self.index
        self.open()
        for slot, k in enumerate(self.frames):
            if self.got[slot]:
                continue
            if not self._position_for(int(index.entry[k])):
                continue
            target_pos = int(index.decode_pos[k])
            while not self.got[slot]:
                if not self._feed_one():
                    break
                if self.cur > target_pos + LOST_LIMIT:
                    break
            if not self.got[slot]:
                self.cur = None  # lost: reposition for the next frame
        self.close()

    def read_from_start(self) -> None:
        """Decode from the first packet until every wanted frame is found (timestamps known)."""
        self.open()
        while not self.got.all():
            if not self._feed_one():
                break
        self.close()

    def read_sequential(self) -> None:
        """Decode from the start, numbering frames in output order (files without usable timestamps)."""
        self.open()
        self.stream.codec_context.skip_frame = "DEFAULT"
        want = {int(k): i for i, k in enumerate(self.frames)}
        last = int(self.frames[-1])
        count = 0
        for pkt in self.container.demux(self.stream):
            out = _decode(pkt)
            self.stats.packets += 1
            for f in out:
                self.stats.decoded += 1
                slot = want.get(count)
                if slot is not None and not self.got[slot]:
                    self.sink(slot, f)
                    self.got[slot] = True
                    self.stats.converted += 1
                count += 1
            if count > last:
                break
        self.close()


def read_frames(index: VideoIndex, frames: np.ndarray, sink: Sink, stats: DecodeStats | None = None,
                threads: int = 0) -> np.ndarray:
    """Decode frames ``frames`` (sorted distinct frame numbers) and hand each to ``sink(slot, av_frame)``.

    Args:
        index: the video's index.
        frames: frame numbers to read, sorted and distinct.
        sink: called once per frame read with its position in ``frames`` and the decoded
            ``av.VideoFrame`` (convert it there, the frame is not kept).
        stats: counters to fill.
        threads: decoder threads (0: FFmpeg decides, 1: none).

    Returns:
        bool ``[len(frames)]``: which frames were read. Frames the decoder could not produce
        (damaged data) are ``False``.
    """
    stats = stats if stats is not None else DecodeStats()
    stats.backend = "pyav"
    reader = _Reader(index, np.asarray(frames, dtype=np.int64), sink, stats, threads)
    try:
        if index.seekable:
            reader.read_seek()
            missing = int((~reader.got).sum())
            if missing:
                # Seeking failed for some frames (odd file): decode from the start for those.
                stats.fallback += missing
                reader.read_from_start()
        else:
            reader.read_sequential()
    except VideoDecodeError:
        raise
    except Exception as exc:  # an FFmpeg failure we did not foresee: name the file
        raise VideoDecodeError(f"{index.path}: decoding failed ({type(exc).__name__}: {exc})",
                               index.path) from None
    finally:
        reader.close()
    if not reader.got.all() and reader.got.any():
        lost = [int(k) for k in np.asarray(frames)[~reader.got][:5]]
        warnings.warn(f"{index.path}: {int((~reader.got).sum())} frame(s) could not be decoded "
                      f"(e.g. {lost}); they are left out", RuntimeWarning, stacklevel=3)
    return reader.got


__all__ = ["read_frames", "DecodeStats", "NO_TS"]
