"""Reading annotation files (json, jsonl, csv, parquet) and finding video files on disk.

Nothing here knows a particular benchmark; the loaders in the sibling modules use it.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from ...errors import BenchmarkError

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv", ".gif", ".ts")
ANNOTATION_EXTENSIONS = (".json", ".jsonl", ".csv", ".tsv", ".parquet")


def read_records(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The rows of one annotation file as dicts.

    ``.json`` (a list of objects, an object holding one such list, or an object of objects keyed
    by id, whose key is kept as ``_key``), ``.jsonl`` (one object a line), ``.csv`` / ``.tsv``
    (header row) and ``.parquet`` (needs the optional ``pyarrow``).

    Raises:
        BenchmarkError: the file is missing, of an unknown type, or not readable as such.
    """
    path = Path(path)
    if not path.is_file():
        raise BenchmarkError(f"annotation file {path} does not exist (or is not a file)")
    suffix = path.suffix.lower()
    try:
        if suffix == ".json":
            return _json_records(json.loads(path.read_text(encoding="utf-8")), path)
        if suffix == ".jsonl":
            return [row for _, row in _jsonl_rows(path)]
        if suffix in (".csv", ".tsv"):
            with path.open(encoding="utf-8-sig", newline="") as f:
                return [dict(row) for row in csv.DictReader(f, delimiter="\t" if suffix == ".tsv" else ",")]
        if suffix == ".parquet":
            return _parquet_records(path)
    except BenchmarkError:
        raise
    except (ValueError, UnicodeDecodeError, csv.Error) as exc:
        raise BenchmarkError(f"cannot read annotation file {path}: {exc}") from exc
    raise BenchmarkError(
        f"annotation file {path} has an unsupported type {suffix or '(none)'}; "
        f"expected one of {', '.join(ANNOTATION_EXTENSIONS)}"
    )


def _jsonl_rows(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """``(line number from 1, object)`` for every non-blank line of a JSON-lines file."""
    rows = []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise BenchmarkError(f"{path} line {n}: not valid JSON ({exc})") from None
            if not isinstance(row, dict):
                raise BenchmarkError(f"{path} line {n}: expected one JSON object a line, got {type(row).__name__}")
            rows.append((n, row))
    return rows


def locate_records(path: str | os.PathLike[str]) -> list[tuple[str, dict[str, Any]]]:
    """The rows of one annotation file with where each is: ``"line N"`` (JSON lines, counted from 1 as
    editors do; CSV/TSV, the line the record starts on) or ``"row N"`` (JSON list and parquet, the
    position in the list counted from 0, as ``data[N]``; an object keyed by id gives ``"key K"``)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".jsonl" and path.is_file():
        try:
            return [(f"line {n}", row) for n, row in _jsonl_rows(path)]
        except (UnicodeDecodeError, OSError) as exc:
            raise BenchmarkError(f"cannot read annotation file {path}: {exc}") from exc
    if suffix in (".csv", ".tsv") and path.is_file():
        try:
            with path.open(encoding="utf-8-sig", newline="") as f:
                reader = csv.DictReader(f, delimiter="\t" if suffix == ".tsv" else ",")
                out = []
                start = 2
                for row in reader:
                    out.append((f"line {start}", dict(row)))
                    start = reader.line_num + 1
                return out
        except (UnicodeDecodeError, csv.Error, OSError) as exc:
            raise BenchmarkError(f"cannot read annotation file {path}: {exc}") from exc
    rows = read_records(path)
    return [(f"key {row['_key']}" if "_key" in row else f"row {i}", row) for i, row in enumerate(rows)]


def _json_records(data: Any, path: Path) -> list[dict[str, Any]]:
    if isinstance(data, list):
        bad = next((i for i, row in enumerate(data) if not isinstance(row, dict)), None)
        if bad is not None:
            raise BenchmarkError(f"{path} row {bad} (counted from 0) is a JSON {type(data[bad]).__name__}, not an "
                                 f"object: {json.dumps(data[bad])[:80]}; expected a list of JSON objects")
        return list(data)
    if isinstance(data, dict) and "meta" in data and isinstance(data["meta"], (list, dict)):
        # a combined file of the form {"root": <the author's video folder>, "meta": <the rows>}
        return _json_records(data["meta"], path)
    if isinstance(data, dict):
        lists = [v for v in data.values() if isinstance(v, list) and v and all(isinstance(r, dict) for r in v)]
        if len(lists) == 1:
            return list(lists[0])
        if len(lists) > 1 and all(isinstance(v, list) and all(isinstance(r, dict) for r in v) for v in data.values()):
            # lists of rows keyed by group (a combined file: task name -> its questions)
            return [{"_group": str(k), **row} for k, rows in data.items() for row in rows]
        if data and all(isinstance(v, dict) for v in data.values()):
            return [{"_key": str(k), **v} for k, v in data.items()]
    raise BenchmarkError(f"{path}: expected a list of question objects (or an object holding one list of them)")


def _parquet_records(path: Path) -> list[dict[str, Any]]:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise BenchmarkError(
            f"reading {path} needs the optional package pyarrow (pip install pyarrow); "
            "or convert the file to .json/.jsonl first"
        ) from exc
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several unrelated types for bad files
        raise BenchmarkError(f"cannot read parquet file {path}: {exc}") from exc
    return [_plain(row) for row in table.to_pylist()]


def _plain(value: Any) -> Any:
    """Lists/dicts of python scalars (parquet and numpy give arrays and numpy scalars)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "tolist"):
        return _plain(value.tolist())
    return value


def annotation_files(path: str | os.PathLike[str], pattern: Sequence[str] = ANNOTATION_EXTENSIONS) -> list[Path]:
    """``path`` itself when it is a file, else the annotation files directly inside the folder, sorted."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise BenchmarkError(f"annotation path {path} does not exist")
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in pattern)
    if not files and (path / "json").is_dir():  # the benchmark's root folder was given
        return annotation_files(path / "json", pattern)
    if not files:
        raise BenchmarkError(f"no annotation files ({', '.join(pattern)}) in folder {path}")
    return files


class VideoFinder:
    """Finds the file of a video named in an annotation, inside one video folder.

    A name is tried, in order: as given (relative to each prefix folder, or absolute); with any
    video extension instead of its own (``x.webm`` finds ``x.MP4``; the extension's case is ignored,
    the name's is not: video ids such as YouTube's are case-sensitive); and, as a
    last resort, by file stem anywhere below the root, if exactly one file has that stem. The
    folder is only walked when a name is not found directly, and then once.

    Args:
        root: the video folder the user passed.
        allow_dirs: accept a folder of frame images where a video is expected.
    """

    def __init__(self, root: str | os.PathLike[str], allow_dirs: bool = False) -> None:
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise BenchmarkError(f"video folder {self.root} does not exist (or is not a folder)")
        self.allow_dirs = allow_dirs
        self._listings: dict[Path, dict[str, list[str]]] = {}
        self._stems: dict[str, list[Path]] | None = None

    def _listing(self, folder: Path) -> dict[str, list[str]]:
        """Video files in ``folder`` by stem (cached)."""
        if folder not in self._listings:
            table: dict[str, list[str]] = {}
            try:
                names = sorted(os.listdir(folder))
            except OSError:
                names = []
            for name in names:
                stem, ext = os.path.splitext(name)
                if ext.lower() in VIDEO_EXTENSIONS:
                    table.setdefault(stem, []).append(name)
            self._listings[folder] = table
        return self._listings[folder]

    def _direct(self, candidate: Path) -> Path | None:
        if candidate.is_file() or (self.allow_dirs and candidate.is_dir()):
            return candidate
        name = candidate.name
        stem = name[: -len(candidate.suffix)] if candidate.suffix.lower() in VIDEO_EXTENSIONS else name
        hits = self._listing(candidate.parent).get(stem, [])
        if hits:
            # prefer the common containers when several encodings sit side by side
            hits = sorted(hits, key=lambda n: (_ext_rank(os.path.splitext(n)[1]), n))
            return candidate.parent / hits[0]
        return None

    def _stem_index(self) -> dict[str, list[Path]]:
        if self._stems is None:
            index: dict[str, list[Path]] = {}
            seen: set[str] = set()
            for dirpath, dirnames, filenames in os.walk(self.root, followlinks=True):
                real = os.path.realpath(dirpath)
                if real in seen:  # a symlink loop
                    dirnames[:] = []
                    continue
                seen.add(real)
                dirnames.sort()
                for name in sorted(filenames):
                    stem, ext = os.path.splitext(name)
                    if ext.lower() in VIDEO_EXTENSIONS:
                        index.setdefault(stem, []).append(Path(dirpath) / name)
            self._stems = index
        return self._stems

    def find(self, name: str, prefixes: Sequence[str] = ("",)) -> tuple[Path | None, str]:
        """The file for ``name`` and the prefix it was found under (``""`` for the root or the
        stem search); ``(None, "")`` when not found or ambiguous.

        ``prefixes`` are sub-folders of the root to try in order; ``""`` is the root itself, and
        only when it is among them may the stem search return a file outside the prefixes.
        """
        name = str(name).strip()
        if not name:
            return None, ""
        given = Path(name).expanduser()
        if given.is_absolute():
            hit = self._direct(given)
            if hit is not None:
                return hit, ""
            rel_parts = given.parts[1:]
        else:
            rel_parts = tuple(p for p in given.parts if p not in (".", ""))
        # a path like "./videos/x.mp4" may already include part of the root
        tails = [Path(*rel_parts[i:]) for i in range(len(rel_parts))] if rel_parts else []
        for prefix in prefixes:
            base = self.root / prefix if prefix else self.root
            for tail in tails:
                hit = self._direct(base / tail)
                if hit is not None:
                    return hit, prefix
        if not tails:
            return None, ""
        stem = tails[-1].name
        if tails[-1].suffix.lower() in VIDEO_EXTENSIONS:
            stem = stem[: -len(tails[-1].suffix)]
        hits = self._stem_index().get(stem, [])
        under = [p for p in hits if any(pre and f"/{pre.strip('/')}/" in p.as_posix() for pre in prefixes)]
        if "" not in prefixes:
            # only the given folders: a same-named file elsewhere is another benchmark task's video
            hits = under
        elif len(hits) > 1 and under:
            hits = under
        hits = _dedupe_encodings(hits)
        if len(hits) == 1:
            posix = hits[0].as_posix()
            return hits[0], next((pre for pre in prefixes if pre and f"/{pre.strip('/')}/" in posix), "")
        return None, ""


def _ext_rank(ext: str) -> int:
    ext = ext.lower()
    return VIDEO_EXTENSIONS.index(ext) if ext in VIDEO_EXTENSIONS else len(VIDEO_EXTENSIONS)


def _dedupe_encodings(paths: list[Path]) -> list[Path]:
    """One path per folder+stem (the same video stored as .mp4 and .webm is one video)."""
    best: dict[tuple[Path, str], Path] = {}
    for p in paths:
        key = (p.parent, p.stem)
        if key not in best or _ext_rank(p.suffix) < _ext_rank(best[key].suffix):
            best[key] = p
    return sorted(best.values())


def annotation_digest(path: str | os.PathLike[str]) -> str:
    """SHA-256 of the annotation file's bytes; for a folder, of the names and bytes of the annotation
    files :func:`annotation_files` reads from it (so a run never resumes on changed questions)."""
    import hashlib

    path = Path(path)
    if path.is_file():
        files = [path]
    else:
        try:
            files = annotation_files(path)
        except BenchmarkError:
            return ""
    digest = hashlib.sha256()
    for file in files:
        if len(files) > 1:
            digest.update(file.name.encode() + b"\0")
        with file.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def first(row: dict[str, Any], *keys: str, default: Any = None) -> Any:
    """The value of the first of ``keys`` present in ``row`` and not empty."""
    for key in keys:
        if key in row and row[key] is not None and row[key] != "":
            return row[key]
    return default


def as_list(value: Any) -> list[Any]:
    """A list from a list, a tuple, or a JSON-encoded list in a string (csv cells)."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                parsed = json.loads(text)
            except ValueError:
                parsed = None
            if isinstance(parsed, list):
                return parsed
        return [text] if text else []
    return [value]


def text(value: Any) -> str:
    """A cell as clean text (``None`` -> ``""``, floats like ``3.0`` -> ``"3"``)."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


#: One annotation row with where it came from: ``(file, index in the file, row, where)``.
Row = tuple[Path, int, dict[str, Any], str]


def iter_with_source(files: Iterable[Path]) -> Iterator[tuple[Path, int, dict[str, Any], str]]:
    """``(file, index, row, where)`` for every row of every file: ``index`` counts the file's rows from 0,
    ``where`` names the row for messages (``"test.jsonl line 7"``, ``"action_count.json row 3"``)."""
    for path in files:
        for n, (place, row) in enumerate(locate_records(path)):
            yield path, n, row, f"{path.name} {place}"


__all__ = [
    "VIDEO_EXTENSIONS",
    "ANNOTATION_EXTENSIONS",
    "read_records",
    "locate_records",
    "annotation_files",
    "annotation_digest",
    "VideoFinder",
    "first",
    "as_list",
    "text",
    "iter_with_source",
    "Row",
]
