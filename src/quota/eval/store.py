"""A results store for long benchmark runs that survives crashes: one SQLite file per run folder.

Each finished question is committed on its own, at once, so a run killed at any moment (SIGKILL,
power loss, a preempted job) loses at most the question in flight, and a rerun skips what is done.
Several processes (ranks) may write to the same store at the same time.

A store is bound to a *fingerprint*: a JSON-able dict naming what produced its results (model ids,
preset, config, benchmark ...). Opening a run folder with a different fingerprint is refused, so
results of two configurations never mix.

Keep run folders on a local disk or a file system with working POSIX locks: SQLite's write-ahead
log does not work on most network file systems (the store then falls back to a rollback journal,
which is safe where locks work, and slower).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

from ..errors import RunStoreError

DB_NAME = "results.sqlite"
SCHEMA_VERSION = 1
BUSY_TIMEOUT_S = 120.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS results (
    sample_id  TEXT PRIMARY KEY,
    prediction TEXT,
    choice     TEXT,
    answer     TEXT,
    correct    INTEGER,
    plan       TEXT,
    timings    TEXT,
    error      TEXT,
    traceback  TEXT,
    fields     TEXT,
    rank       INTEGER NOT NULL DEFAULT 0,
    time       REAL NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 1
);
"""


@dataclass
class Result:
    """One stored answer (or error) for one question.

    Attributes:
        sample_id: the question's id in its benchmark.
        prediction: the model's text (``""`` for an error row).
        choice: the option letter read from it, ``None`` when none was found.
        answer: the correct letter.
        correct: whether ``choice == answer``; ``None`` for an error row.
        plan: a short summary of the token plan (JSON object), ``{}`` for none.
        timings: seconds per stage (JSON object).
        error: ``"Type: message"`` when answering failed, else ``None``.
        traceback: the end of the traceback for an error row.
        fields: the question's reporting fields (e.g. ``{"duration": "long"}``).
        rank: the process that wrote the row.
        time: Unix time (s) the row was written.
        attempts: how many times the question was answered (errors retried count up).
    """

    sample_id: str
    prediction: str = ""
    choice: str | None = None
    answer: str = ""
    correct: bool | None = None
    plan: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    traceback: str | None = None
    fields: dict[str, str] = field(default_factory=dict)
    rank: int = 0
    time: float = 0.0
    attempts: int = 1

    @property
    def is_error(self) -> bool:
        return self.error is not None

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def canonical_fingerprint(fingerprint: Mapping[str, Any]) -> dict[str, Any]:
    """The fingerprint as plain JSON values (paths and other objects become strings), keys sorted."""
    if not isinstance(fingerprint, Mapping):
        raise RunStoreError(f"a run fingerprint must be a dict, got {type(fingerprint).__name__}")
    return json.loads(json.dumps(dict(fingerprint), sort_keys=True, default=str))


def _dumps(value: Any) -> str:
    return json.dumps(value if value is not None else {}, sort_keys=True, default=str)


def _is_busy(exc: sqlite3.Error) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def _diff(old: Any, new: Any, path: str = "") -> list[str]:
    """Human-readable differences between two JSON values."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in sorted(set(old) | set(new)):
            sub = f"{path}.{key}" if path else str(key)
            if key not in old:
                out.append(f"{sub}: (absent) -> {new[key]!r}")
            elif key not in new:
                out.append(f"{sub}: {old[key]!r} -> (absent)")
            else:
                out += _diff(old[key], new[key], sub)
        return out
    return [] if old == new else [f"{path or '(value)'}: {old!r} -> {new!r}"]


class RunStore:
    """The results of one run, in ``RUN_DIR/results.sqlite``.

    Args:
        run_dir: the run folder (created if needed).
        fingerprint: what produced the results (JSON-able dict). ``None`` opens an existing store
            whatever its fingerprint, without changing the file (for reports).
        retry_errors: if true, questions stored with an error are not "done" and are run again.
        timeout: seconds to wait for another process's write lock before failing.

    Raises:
        RunStoreError: the folder holds results of another fingerprint, the store is unreadable,
            or ``fingerprint=None`` and there is no store yet.
    """

    def __init__(
        self,
        run_dir: str | os.PathLike[str],
        fingerprint: Mapping[str, Any] | None,
        *,
        retry_errors: bool = False,
        timeout: float = BUSY_TIMEOUT_S,
    ) -> None:
        self.run_dir = Path(run_dir).expanduser()
        self.path = self.run_dir / DB_NAME
        self.retry_errors = bool(retry_errors)
        self._lock = threading.Lock()
        if fingerprint is None and not self.path.is_file():
            raise RunStoreError(f"no results store in {self.run_dir} (expected {self.path})")
        wanted = None if fingerprint is None else canonical_fingerprint(fingerprint)
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(
                str(self.path), timeout=timeout, isolation_level=None, check_same_thread=False
            )
        except (OSError, sqlite3.Error) as exc:
            raise RunStoreError(f"cannot open results store {self.path}: {exc}") from exc
        try:
            self._setup(timeout, create=wanted is not None)
            self.fingerprint = self._bind(wanted)
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            if _is_busy(exc):
                raise RunStoreError(
                    f"{self.path} stayed locked by another process for {timeout:.0f} s; "
                    "is a process hung while holding it?"
                ) from exc
            raise RunStoreError(
                f"{self.path} is not a usable results store ({exc}); move it away or use another run folder"
            ) from exc
        except RunStoreError:
            self._conn.close()
            raise

    # -- setup -------------------------------------------------------------------------------

    def _setup(self, timeout: float, create: bool) -> None:
        """Connection settings, and the tables when ``create`` (a reader changes nothing)."""
        conn = self._conn
        conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
        # FULL: a committed row survives power loss as well as a killed process.
        conn.execute("PRAGMA synchronous = FULL")
        if not create:
            self.journal_mode = str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower()
            return
        # WAL: readers never block the writer; the mode is stored in the file and stays on.
        self.journal_mode = self._enable_wal(timeout)
        with self._transaction():
            # one statement at a time: executescript() would commit on its own
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)

    def _enable_wal(self, timeout: float) -> str:
        """Switch the file to write-ahead logging; returns the journal mode in force.

        Changing the mode needs the file to itself, and SQLite does not wait for that on its own
        (the busy timeout does not apply), so two ranks creating one store at the same moment
        would fail: retry until ``timeout``.
        """
        deadline = time.monotonic() + timeout
        pause = 0.005
        while True:
            try:
                mode = self._conn.execute("PRAGMA journal_mode").fetchone()[0]
                if str(mode).lower() != "wal":
                    mode = self._conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                return str(mode).lower()
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc) or time.monotonic() >= deadline:
                    raise
                time.sleep(pause)
                pause = min(2 * pause, 0.25)

    class _Tx:
        def __init__(self, store: "RunStore") -> None:
            self.store = store

        def __enter__(self) -> sqlite3.Connection:
            self.store._lock.acquire()
            try:
                self.store._conn.execute("BEGIN IMMEDIATE")
            except BaseException:
                self.store._lock.release()
                raise
            return self.store._conn

        def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
            try:
                self.store._conn.execute("ROLLBACK" if exc_type else "COMMIT")
            finally:
                self.store._lock.release()

    def _transaction(self) -> "RunStore._Tx":
        """A write transaction that takes the database write lock at once (no upgrade deadlocks)."""
        return RunStore._Tx(self)

    def _bind(self, wanted: dict[str, Any] | None) -> dict[str, Any]:
        """Store ``wanted`` as the fingerprint of a new store, or check it against the stored one."""
        if wanted is None:
            rows = self._conn.execute("SELECT value FROM meta WHERE key = 'fingerprint'").fetchall()
            if not rows:
                raise RunStoreError(f"{self.path} has no fingerprint: it was never used by a run")
            return json.loads(rows[0][0])
        with self._transaction() as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = 'fingerprint'").fetchone()
            if row is None:
                conn.execute("INSERT INTO meta VALUES ('fingerprint', ?)", (_dumps(wanted),))
                conn.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
                conn.execute("INSERT OR REPLACE INTO meta VALUES ('created', ?)", (repr(time.time()),))
                return wanted
            stored = json.loads(row[0])
        if stored != wanted:
            changes = _diff(stored, wanted)
            shown = "; ".join(changes[:8]) + (" ..." if len(changes) > 8 else "")
            raise RunStoreError(
                f"{self.run_dir} holds results of another configuration ({shown}). "
                "Use a new run folder for this configuration, or rerun with the original settings to resume."
            )
        return stored

    # -- writing -----------------------------------------------------------------------------

    def record(
        self,
        sample_id: str,
        *,
        prediction: str = "",
        choice: str | None = None,
        answer: str = "",
        correct: bool | None = None,
        plan: Mapping[str, Any] | None = None,
        timings: Mapping[str, Any] | None = None,
        error: str | None = None,
        traceback: str | None = None,
        fields: Mapping[str, Any] | None = None,
        rank: int = 0,
    ) -> None:
        """Store one question's outcome and commit it at once.

        A later answer to the same question replaces an error row; an error never replaces a
        stored answer (two ranks racing on one question keep the answer). ``correct`` defaults to
        ``choice == answer`` for answers and is ``None`` for error rows.
        """
        if error is not None:
            correct = None
        elif correct is None:
            correct = choice is not None and choice == answer
        values = (
            str(sample_id),
            "" if prediction is None else str(prediction),
            choice,
            "" if answer is None else str(answer),
            None if correct is None else int(bool(correct)),
            _dumps(plan),
            _dumps(timings),
            None if error is None else str(error),
            None if traceback is None else str(traceback),
            _dumps({k: str(v) for k, v in (fields or {}).items()}),
            int(rank),
            time.time(),
        )
        try:
            with self._transaction() as conn:
                conn.execute(
                    """
                    INSERT INTO results (sample_id, prediction, choice, answer, correct, plan, timings,
                                         error, traceback, fields, rank, time)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    ON CONFLICT(sample_id) DO UPDATE SET
                        prediction = excluded.prediction, choice = excluded.choice,
                        answer = excluded.answer, correct = excluded.correct, plan = excluded.plan,
                        timings = excluded.timings, error = excluded.error,
                        traceback = excluded.traceback, fields = excluded.fields,
                        rank = excluded.rank, time = excluded.time,
                        attempts = results.attempts + 1
                    WHERE results.error IS NOT NULL OR excluded.error IS NULL
                    """,
                    values,
                )
        except sqlite3.Error as exc:
            raise RunStoreError(f"cannot write to results store {self.path}: {exc}") from exc

    def set_meta(self, key: str, value: Any) -> None:
        """Store a JSON-able value under ``key`` (run notes, per-rank completion marks)."""
        if key in ("fingerprint", "schema"):
            raise RunStoreError(f"meta key {key!r} is reserved")
        try:
            with self._transaction() as conn:
                conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, _dumps(value)))
        except sqlite3.Error as exc:  # a full disk, a read-only folder: one line, not a traceback
            raise RunStoreError(f"cannot write to results store {self.path}: {exc}") from exc

    def claim(self, key: str, value: Any = True) -> bool:
        """Set ``key`` only when it is not set yet, atomically across processes: ``True`` for the one caller that
        set it (ranks use it so that exactly one of them writes the report of a finished run)."""
        if key in ("fingerprint", "schema"):
            raise RunStoreError(f"meta key {key!r} is reserved")
        try:
            with self._transaction() as conn:
                return conn.execute("INSERT OR IGNORE INTO meta VALUES (?, ?)", (key, _dumps(value))).rowcount == 1
        except sqlite3.Error as exc:
            raise RunStoreError(f"cannot write to results store {self.path}: {exc}") from exc

    # -- reading -----------------------------------------------------------------------------

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return self._conn.execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                raise RunStoreError(f"cannot read results store {self.path}: {exc}") from exc

    def get_meta(self, key: str, default: Any = None) -> Any:
        rows = self._query("SELECT value FROM meta WHERE key = ?", (key,))
        return json.loads(rows[0][0]) if rows else default

    def meta(self) -> dict[str, Any]:
        """Every meta entry (fingerprint included) as JSON values."""
        out = {}
        for key, value in self._query("SELECT key, value FROM meta ORDER BY key"):
            try:
                out[key] = json.loads(value)
            except ValueError:
                out[key] = value
        return out

    def done_ids(self, retry_errors: bool | None = None) -> set[str]:
        """Ids of the questions that need no (re)run: all stored ones, or only the answered ones
        when errors are retried (``retry_errors`` overrides the store's setting)."""
        retry = self.retry_errors if retry_errors is None else retry_errors
        sql = "SELECT sample_id FROM results" + (" WHERE error IS NULL" if retry else "")
        return {row[0] for row in self._query(sql)}

    def error_ids(self) -> set[str]:
        return {row[0] for row in self._query("SELECT sample_id FROM results WHERE error IS NOT NULL")}

    def results(self) -> list[Result]:
        """Every stored row, sorted by question id."""
        rows = self._query(
            "SELECT sample_id, prediction, choice, answer, correct, plan, timings, error, traceback, "
            "fields, rank, time, attempts FROM results ORDER BY sample_id"
        )
        return [
            Result(
                sample_id=r[0],
                prediction=r[1] or "",
                choice=r[2],
                answer=r[3] or "",
                correct=None if r[4] is None else bool(r[4]),
                plan=json.loads(r[5] or "{}"),
                timings=json.loads(r[6] or "{}"),
                error=r[7],
                traceback=r[8],
                fields=json.loads(r[9] or "{}"),
                rank=int(r[10]),
                time=float(r[11]),
                attempts=int(r[12]),
            )
            for r in rows
        ]

    def __iter__(self) -> Iterator[Result]:
        return iter(self.results())

    def __len__(self) -> int:
        return int(self._query("SELECT COUNT(*) FROM results")[0][0])

    def counts(self) -> dict[str, int]:
        """``{"rows", "answered", "correct", "errors"}``."""
        rows, errors, correct = self._query(
            "SELECT COUNT(*), COUNT(error), COALESCE(SUM(correct), 0) FROM results"
        )[0]
        return {"rows": rows, "answered": rows - errors, "correct": int(correct), "errors": errors}

    def export_jsonl(self, path: str | os.PathLike[str]) -> Path:
        """Write every row as one JSON object a line (for sharing or other tools)."""
        path = Path(path)
        with path.open("w", encoding="utf-8") as f:
            for result in self.results():
                f.write(json.dumps(result.to_dict(), sort_keys=True) + "\n")
        return path

    # -- lifetime ----------------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            try:
                self._conn.close()
            except sqlite3.Error:
                pass

    def __enter__(self) -> "RunStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RunStore({str(self.run_dir)!r}, rows={len(self)}, journal={self.journal_mode})"


def open_run(run_dir: str | os.PathLike[str]) -> RunStore:
    """An existing run's store, whatever its fingerprint (for reports)."""
    return RunStore(run_dir, None)


__all__ = ["RunStore", "Result", "open_run", "canonical_fingerprint", "DB_NAME"]
