"""Files the command line writes: checked before any work starts, written whole or not at all.

- :func:`check_outputs` refuses, before a model loads or a frame is decoded, an output that is an input, two
  outputs that are the same file, a folder, a place that cannot be written, and an existing file unless the
  user said ``--force``.
- :func:`write_atomic` writes through a temporary file in the same folder and renames it into place, so a crash
  never leaves half a file and a reader never sees one.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Mapping, Sequence

from .errors import ConfigError, QuotaError


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _nearest_existing(path: Path) -> Path:
    for parent in [path, *path.parents]:
        if parent.exists():
            return parent
    return Path(".")


def check_outputs(
    outputs: Mapping[str, str | os.PathLike[str] | None],
    inputs: Sequence[str | os.PathLike[str] | None] = (),
    *,
    force: bool = False,
) -> None:
    """Check every output path before any work is done.

    Args:
        outputs: option name (for messages, e.g. ``"--out"``) -> path; ``None`` and ``"-"`` (standard output)
            are skipped.
        inputs: paths the command reads (the video, the annotation file ...).
        force: allow replacing existing files (never an input, never a folder).

    Raises:
        ConfigError: an output is an input, two outputs name one file, an output is a folder, its folder cannot be
            created or written, or it exists and ``force`` is off.
    """
    given = {name: Path(os.fspath(p)).expanduser() for name, p in outputs.items() if p is not None and os.fspath(p) != "-"}
    sources = [Path(os.fspath(p)).expanduser() for p in inputs if p is not None]
    seen: dict[Path, str] = {}
    for name, path in given.items():
        resolved = path.resolve()
        for src in sources:
            if resolved == src.resolve() or _same_file(path, src):
                raise ConfigError(f"{name} {path} is an input of this command; writing there would destroy it")
        if resolved in seen:
            raise ConfigError(f"{seen[resolved]} and {name} name the same file {path}; give each its own")
        seen[resolved] = name
        if path.is_dir():
            raise ConfigError(f"{name} {path} is a folder; give a file name")
        base = _nearest_existing(path.parent)
        if not base.is_dir():
            raise ConfigError(f"{name} {path}: {base} is not a folder")
        if not os.access(base, os.W_OK | os.X_OK):
            raise ConfigError(f"{name} {path}: the folder {base} cannot be written")
        if path.exists() and not force:
            raise ConfigError(f"{name} {path} already exists; pass --force to replace it")


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomic(path: str | os.PathLike[str], data: bytes | str) -> Path:
    """Write ``data`` (text as UTF-8) to ``path``: a temporary file in the same folder, then a rename.

    Missing parent folders are created. Raises :class:`QuotaError` naming the path when it cannot be written.
    """
    target = Path(os.fspath(path)).expanduser()
    payload = data.encode("utf-8") if isinstance(data, str) else data
    tmp_name = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp_name, 0o666 & ~_umask())  # the mode a plain open() would have given
        os.replace(tmp_name, target)
        tmp_name = None
    except OSError as exc:
        raise QuotaError(f"cannot write {target}: {exc.strerror or exc}") from None
    finally:
        if tmp_name is not None:
            try:
                os.unlink(tmp_name)
            except OSError:
                pass
    return target


__all__ = ["check_outputs", "write_atomic"]
