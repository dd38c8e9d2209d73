"""One writer per run folder: a lock that ``quota eval`` holds while it runs.

The lock is an advisory ``fcntl.flock`` on a file in the run folder. The operating system drops it when
the holding process ends in any way (exit, crash, ``SIGKILL``), so a killed run never leaves the folder
locked and a rerun resumes at once. A second ``quota eval`` on a folder a live run holds is refused.

Several ranks of one launch (``torchrun`` / ``accelerate launch``) write the same folder: rank 0 holds the
run lock (``writer.lock``) and records the launch's id; rank ``R > 0`` holds ``writer.rank<R>.lock`` and
checks that the run lock is held by its own launch. The launch id is ``TORCHELASTIC_RUN_ID`` or
``MASTER_ADDR:MASTER_PORT`` as the launcher sets them.

Ranks started by hand (``RANK=1 WORLD_SIZE=4 quota eval ...``, no launcher, so no launch id) may start in
any order and hours apart: a hand-started rank ``R > 0`` is let in when rank 0 is not running, or when the
running rank 0 was started by hand with the same ``WORLD_SIZE``. Each rank's own lock file tells the others
whether it is running (:func:`rank_running`).

``flock`` needs a local file system (or one that supports it, as NFSv4 does); where the file system does
not support it the lock is skipped with a warning. Any other failure (a full disk, no permission) stops
the run with one line: a run never goes on without its lock.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Mapping

from ..errors import RunStoreError

log = logging.getLogger("quota.eval")

LOCK_NAME = "writer.lock"
OWNER_NAME = "writer.owner.json"
#: Seconds a rank > 0 waits for its own rank 0 to take the run lock.
RANK_WAIT_S = 30.0
#: ``flock`` errors that mean "not supported on this file system" (the lock is then skipped, with a warning).
_UNSUPPORTED = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS}


class RunLockedError(RunStoreError):
    """Another live process writes to this run folder."""


def launch_id(env: Mapping[str, str] | None = None) -> str:
    """An id shared by the ranks of one launch, unique to it (``""`` for a single process)."""
    env = os.environ if env is None else env
    if env.get("TORCHELASTIC_RUN_ID"):
        return f"torchelastic:{env['TORCHELASTIC_RUN_ID']}"
    if env.get("MASTER_ADDR") and env.get("MASTER_PORT"):
        return f"master:{env['MASTER_ADDR']}:{env['MASTER_PORT']}"
    return ""


class _Unsupported(OSError):
    """``flock`` is not supported where the run folder is."""


def _try_flock(path: Path, exclusive: bool = True) -> Any | None:
    """The open file holding a non-blocking flock on ``path``, or ``None`` when another process holds it.

    Raises:
        _Unsupported: the file system has no ``flock``.
        OSError: the lock file cannot be made (full disk, no permission ...).
    """
    import fcntl

    fh = open(path, "a+", encoding="utf-8")
    try:
        fcntl.flock(fh.fileno(), (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        return None
    except OSError as exc:
        fh.close()
        if exc.errno in _UNSUPPORTED:
            raise _Unsupported(exc.errno, exc.strerror) from exc
        raise
    return fh


def rank_running(run_dir: str | os.PathLike[str], rank: int) -> bool:
    """Whether a live process holds rank ``rank``'s lock of ``run_dir`` (rank 0: the run lock)."""
    path = Path(run_dir) / (LOCK_NAME if rank == 0 else f"writer.rank{rank}.lock")
    if not path.exists():
        return False
    try:
        probe = _try_flock(path, exclusive=False)
    except OSError:
        return False
    if probe is None:
        return True
    probe.close()
    return False


class RunLock:
    """The writer lock of a run folder, held from :meth:`acquire` to :meth:`release` (or process end).

    Args:
        run_dir: the run folder (created if needed).
        rank, world_size: this process's place in the launch.
        env: the environment to read the launch id from (default ``os.environ``).
    """

    def __init__(self, run_dir: str | os.PathLike[str], *, rank: int = 0, world_size: int = 1,
                 env: Mapping[str, str] | None = None) -> None:
        self.run_dir = Path(run_dir).expanduser()
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.launch = launch_id(env)
        self._files: list[Any] = []

    @property
    def held(self) -> bool:
        return bool(self._files)

    def _owner(self) -> dict[str, Any]:
        try:
            return json.loads((self.run_dir / OWNER_NAME).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    def _refuse(self, what: str) -> RunLockedError:
        owner = self._owner()
        who = f" (pid {owner['pid']} on {owner.get('host', '?')})" if owner.get("pid") else ""
        return RunLockedError(
            f"{self.run_dir} is in use by another quota eval{who}{what}; one run writes to a run folder at a time. "
            "Wait for it to finish (or stop it), then rerun this command to resume."
        )

    def acquire(self) -> "RunLock":
        """Take the lock.

        Raises:
            RunLockedError: another live run (or another launch's rank) holds it.
        """
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            if self.rank == 0:
                fh = _try_flock(self.run_dir / LOCK_NAME)
                if fh is None:
                    raise self._refuse("")
                self._files.append(fh)
                self._write_owner()
            else:
                fh = _try_flock(self.run_dir / f"writer.rank{self.rank}.lock")
                if fh is None:
                    raise self._refuse(f" (its rank {self.rank})")
                self._files.append(fh)
                self._check_own_launch()
        except RunLockedError:
            self.release()
            raise
        except _Unsupported as exc:  # this file system has no flock: run without the lock, loudly
            self.release()
            log.warning("cannot lock %s (%s); make sure only one quota eval writes to it", self.run_dir, exc)
        except OSError as exc:  # full disk, no permission ...: never run without the lock
            self.release()
            raise RunStoreError(f"cannot lock the run folder {self.run_dir}: {exc.strerror or exc}") from None
        return self

    def _write_owner(self) -> None:
        import socket

        data = {"pid": os.getpid(), "host": socket.gethostname(), "launch": self.launch,
                "world_size": self.world_size, "started": time.time()}
        tmp = self.run_dir / f".{OWNER_NAME}.tmp{os.getpid()}"
        try:
            tmp.write_text(json.dumps(data), encoding="utf-8")
            os.replace(tmp, self.run_dir / OWNER_NAME)
        except OSError:
            tmp.unlink(missing_ok=True)
            raise

    def _check_own_launch(self) -> None:
        """Rank > 0: the run lock must be held, and by this launch's rank 0 (wait for it to start)."""
        deadline = time.monotonic() + RANK_WAIT_S
        while True:
            probe = _try_flock(self.run_dir / LOCK_NAME, exclusive=False)
            if probe is not None:  # nobody holds the run lock yet: rank 0 still starting
                probe.close()
            else:
                owner = self._owner()
                if owner.get("launch") == self.launch and self.launch:
                    return
                if not self.launch and not owner.get("launch") and owner.get("world_size") == self.world_size:
                    return  # ranks started by hand: rank 0 was too, with the same WORLD_SIZE
            if probe is not None and not self.launch:
                return  # started by hand, rank 0 not running: ranks may start in any order
            if time.monotonic() >= deadline:
                if probe is not None:
                    raise RunLockedError(f"rank {self.rank}: rank 0 of this launch did not take the lock of "
                                         f"{self.run_dir} within {RANK_WAIT_S:.0f} s")
                raise self._refuse(" of another launch")
            time.sleep(0.2)

    def release(self) -> None:
        """Drop the lock (the process ending drops it too)."""
        for fh in self._files:
            try:
                fh.close()
            except OSError:
                pass
        self._files = []

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


__all__ = ["RunLock", "RunLockedError", "launch_id", "rank_running", "LOCK_NAME"]
