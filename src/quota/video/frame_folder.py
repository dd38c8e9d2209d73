"""A folder of frame images read as a video.

Some benchmarks ship a video as its frames (MVBench's episodic-reasoning task: TVQA clips as
``00001.jpg``, ``00002.jpg`` ... at 3 frames per second). Such a folder is a valid video input wherever a
video file is: frame ``i`` is the ``i``-th image in name order (natural order: ``2.jpg`` before
``10.jpg``), shown at ``i / fps`` seconds, and the folder lasts ``count / fps`` seconds. The frame rate is
the one the benchmark states, else :data:`DEFAULT_FPS`.

Only the sampled images are opened; images of another size than the first sampled one are resized to it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import ConfigError, VideoError, VideoNotFoundError
from ..types import Frames

#: File name endings read as frame images.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
#: Frames per second of a folder whose benchmark states none (one image a second).
DEFAULT_FPS = 1.0


def _natural_key(name: str) -> list[Any]:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def is_frame_folder(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a folder (a folder is read as frame images, whatever it holds)."""
    return os.path.isdir(os.fspath(path))


@dataclass(frozen=True)
class FolderIndex:
    """The frames of a folder: image paths in name order and their times.

    Attributes:
        path: the folder.
        files: the frame images, in name order.
        fps: frames per second the folder is read at.
    """

    path: str
    files: tuple[Path, ...]
    fps: float

    @property
    def n_frames(self) -> int:
        return len(self.files)

    @property
    def timestamps(self) -> np.ndarray:
        """Seconds of every frame, ``i / fps``, float64 ``[n_frames]``."""
        return np.arange(len(self.files), dtype=np.float64) / self.fps

    @property
    def duration(self) -> float:
        """Seconds the folder lasts, ``n_frames / fps``."""
        return len(self.files) / self.fps


def folder_index(path: str | os.PathLike[str], fps: float | None = None) -> FolderIndex:
    """The frame images of a folder, in name order.

    Raises:
        VideoNotFoundError: the folder does not exist.
        VideoError: it holds no frame image.
        ConfigError: ``fps`` is not a finite number above 0.
    """
    rate = DEFAULT_FPS if fps is None else fps
    try:
        rate = float(rate)
    except (TypeError, ValueError):
        raise ConfigError(f"a frame folder's fps must be a number, got {fps!r}") from None
    if not (rate > 0 and np.isfinite(rate)):
        raise ConfigError(f"a frame folder's fps must be a finite number > 0, got {fps!r}")
    folder = Path(path)
    if not folder.is_dir():
        raise VideoNotFoundError(f"frame folder {folder} does not exist", str(folder))
    files = sorted((p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS),
                   key=lambda p: _natural_key(p.name))
    if not files:
        raise VideoError(f"the folder holds no frame images ({', '.join(IMAGE_EXTENSIONS)})", str(folder))
    return FolderIndex(str(folder), tuple(files), rate)


def read_images(index: FolderIndex, positions: Sequence[int], max_side: int | None = None) -> np.ndarray:
    """The images at ``positions`` (0-based, name order) as uint8 RGB ``[T, H, W, 3]``.

    Every image is brought to the size of the first one (scaled so its longest side is at most
    ``max_side`` when given).
    """
    from PIL import Image

    arrays: list[np.ndarray] = []
    size: tuple[int, int] | None = None
    for pos in positions:
        file = index.files[int(pos)]
        try:
            with Image.open(file) as raw:
                image = raw.convert("RGB")
        except (OSError, ValueError) as exc:
            raise VideoError(f"cannot read frame image {file.name}: {exc}", index.path) from None
        if size is None:
            w, h = image.size
            if max_side is not None and max(w, h) > max_side:
                scale = max_side / max(w, h)
                w, h = max(1, round(w * scale)), max(1, round(h * scale))
            size = (w, h)
        if image.size != size:
            image = image.resize(size, Image.BILINEAR)
        arrays.append(np.asarray(image, dtype=np.uint8))
    return np.stack(arrays)


def load_frame_folder(
    path: str | os.PathLike[str],
    *,
    fps: float | None = None,
    n: int | None = None,
    indices: Sequence[int] | None = None,
    max_side: int | None = None,
    **sampling: Any,
) -> Frames:
    """The sampled frames of a folder of frame images, as :func:`quota.video.load_frames` reads a video.

    Args:
        path: the folder.
        fps: its frame rate (default :data:`DEFAULT_FPS`).
        n: ``n`` uniform frames instead of the paper's rule.
        indices: explicit frame positions (0-based, name order).
        max_side: longest side of the returned frames at most this many pixels.
        **sampling: ``base``, ``per_hour``, ``max_frames``, ``max_fps`` for the paper's rule.

    Returns:
        :class:`Frames`: ``indices`` are positions in name order, ``timestamps`` ``index / fps`` seconds,
        ``duration`` ``count / fps`` seconds.
    """
    from .sampling import sample_indices, uniform_indices

    index = folder_index(path, fps)
    if indices is not None:
        picks = [int(i) for i in indices]
        bad = [i for i in picks if not 0 <= i < index.n_frames]
        if not picks or bad:
            raise ConfigError(f"frame positions {bad[:5] or picks} out of range for {index.path} "
                              f"({index.n_frames} images)")
    elif n is not None:
        if sampling:
            raise ConfigError("give either n or the sampling options, not both")
        picks = list(uniform_indices(index.n_frames, n))
    else:
        picks = list(sample_indices(index.n_frames, index.fps, **sampling))
    # frame k is image picks[k], at picks[k] / fps seconds
    return Frames.from_arrays(read_images(index, picks, max_side), fps=index.fps,
                              indices=np.asarray(picks, dtype=np.int64), duration=index.duration, path=index.path)


__all__ = ["DEFAULT_FPS", "IMAGE_EXTENSIONS", "FolderIndex", "folder_index", "is_frame_folder",
           "load_frame_folder", "read_images"]
