"""Where a request's video comes from: a ``data:`` URL written to a spool folder under its content hash, or a
file inside the ``--videos`` folder. Everything else is refused; nothing outside that folder is ever read.

Uploads with the same bytes land in the same file (``<sha256>.<ext>``) that is never rewritten, so the
pipeline's per-video cache (keyed by path, size and modification time) recognises a video sent again. The
spool keeps the most recent uploads up to a count; a file that a queued or running request uses is pinned
and never removed under it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from .protocol import RequestRefused

#: Uploads kept in the spool (besides those in use), at least.
SPOOL_FILES = 16
#: File suffix per media type of a ``data:`` URL (anything else is stored as ``.mp4``: the decoders read the
#: container from the bytes, not from the name).
SUFFIXES = {
    "video/mp4": ".mp4", "video/webm": ".webm", "video/x-matroska": ".mkv", "video/quicktime": ".mov",
    "video/x-msvideo": ".avi", "video/avi": ".avi", "video/mpeg": ".mpg", "video/ogg": ".ogv",
}
_ACCEPTED_TYPES = ("", "application/octet-stream")


@dataclass
class VideoRef:
    """A video file a request will read. ``release()`` when the request is done with it (uploads are pinned
    until then)."""

    path: str
    uploaded: bool
    _store: "VideoStore | None" = None

    def release(self) -> None:
        store, self._store = self._store, None
        if store is not None:
            store._unpin(self.path)


class VideoStore:
    """Resolves the URL of a request's ``video_url`` part to a local file.

    Args:
        spool: folder for uploaded videos (created if missing).
        videos: the ``--videos`` folder requests may name files in (``None``: only uploads are accepted).
        keep: how many uploaded videos to keep besides those in use.
    """

    def __init__(self, spool: str | os.PathLike[str], videos: str | os.PathLike[str] | None = None,
                 keep: int = SPOOL_FILES) -> None:
        self.spool = Path(spool)
        self.spool.mkdir(parents=True, exist_ok=True)
        self.videos = os.path.realpath(videos) if videos is not None else None
        self.keep = max(1, int(keep))
        self._lock = threading.Lock()
        self._files: OrderedDict[str, None] = OrderedDict()  # spooled paths, oldest first
        self._pins: dict[str, int] = {}

    # ------------------------------------------------------------------ resolving
    def open(self, url: str) -> VideoRef:
        """The local file for ``url``.

        Raises:
            RequestRefused: an ``http(s)://`` or other remote URL (400), a malformed ``data:`` URL (400), a
                path or ``file://`` URL without ``--videos`` or outside it (403), a file that is not in the
                folder (404).
        """
        if url.startswith("data:"):
            return self._upload(url)
        parsed = urlparse(url)
        if parsed.scheme == "file":
            if parsed.netloc not in ("", "localhost"):
                raise RequestRefused(f"file URL on host {parsed.netloc!r}: only local files can be named",
                                     status=400, code="unsupported_url")
            return self._local(unquote(parsed.path))
        if parsed.scheme and len(parsed.scheme) > 1:  # one letter: a Windows drive, i.e. a path
            raise RequestRefused(f"{parsed.scheme}:// URLs are not fetched: quota serve downloads nothing; send the "
                                 "video as a data: URL (base64), or start the server with --videos DIR and name a "
                                 "file in it", status=400, code="unsupported_url")
        return self._local(url)

    def _local(self, name: str) -> VideoRef:
        if self.videos is None:
            raise RequestRefused("this server reads no files: send the video as a data: URL, or start it with "
                                 "--videos DIR to allow files of that folder", status=403, code="files_not_allowed")
        if "\x00" in name:
            raise RequestRefused("a video path cannot hold a NUL character", status=400, code="invalid_video_url")
        path = os.path.realpath(os.path.join(self.videos, name))  # absolute names stay absolute; links resolved
        if os.path.commonpath([path, self.videos]) != self.videos or path == self.videos:
            raise RequestRefused(f"{name!r} is outside the --videos folder", status=403, code="outside_videos")
        if not os.path.isfile(path):
            raise RequestRefused(f"{os.path.relpath(path, self.videos)!r}: no such file in the --videos folder",
                                 status=404, code="video_not_found")
        return VideoRef(path, uploaded=False)

    def _upload(self, url: str) -> VideoRef:
        header, sep, payload = url.partition(",")
        if not sep or not header.endswith(";base64"):
            raise RequestRefused("a data: URL must be data:<type>;base64,<data>", status=400, code="invalid_video_url")
        media_type = header[len("data:"):-len(";base64")].split(";")[0].strip().lower()
        if not (media_type.startswith("video/") or media_type in _ACCEPTED_TYPES):
            raise RequestRefused(f"data: URL of type {media_type!r}: send a video (video/mp4, video/webm, ...)",
                                 status=400, code="invalid_video_url")
        try:
            data = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise RequestRefused("the data: URL is not valid base64", status=400, code="invalid_video_url") from None
        if not data:
            raise RequestRefused("the data: URL holds no bytes", status=400, code="invalid_video_url")
        digest = hashlib.sha256(data).hexdigest()
        path = str(self.spool / f"{digest}{SUFFIXES.get(media_type, '.mp4')}")
        with self._lock:
            if not os.path.exists(path):  # same bytes: same file, never rewritten (its cache key stays)
                fd, tmp = tempfile.mkstemp(dir=self.spool, suffix=".part")
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                os.replace(tmp, path)
            self._files[path] = None
            self._files.move_to_end(path)
            self._pins[path] = self._pins.get(path, 0) + 1
            self._evict()
        return VideoRef(path, uploaded=True, _store=self)

    # ------------------------------------------------------------------ the spool
    def _unpin(self, path: str) -> None:
        with self._lock:
            left = self._pins.get(path, 0) - 1
            if left > 0:
                self._pins[path] = left
            else:
                self._pins.pop(path, None)
            self._evict()

    def _evict(self) -> None:
        unpinned = [p for p in self._files if p not in self._pins]
        for path in unpinned[: max(0, len(self._files) - self.keep)]:
            self._files.pop(path, None)
            try:
                os.remove(path)
            except OSError:
                pass

    def spooled(self) -> list[str]:
        """The uploaded video files in the spool, oldest first."""
        with self._lock:
            return list(self._files)


__all__ = ["VideoStore", "VideoRef", "SPOOL_FILES", "SUFFIXES"]
