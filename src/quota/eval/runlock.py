"""One writer per run folder: a lock that ``quota eval`` holds while it runs.

The lock is an advisory ``fcntl.flock`` on a file in the run folder. The operating system drops it when
the holding process ends in any way (exit, crash, ``SIGKILL``), so a killed run never leaves the folder
locked and a rerun resumes at once. A second ``quota eval`` on a folder a live run holds is refused.

Several ranks of one launch (``torchrun`` / ``accelerate launch``) write the same folder: rank 0 holds the
run lock (``writer.lock``) and records the launch's id; rank ``R > 0`` holds ``writer.rank<R>.lock`` and
checks that the run lock is held by its own launch. The launch id is ``TORCHELASTIC_RUN_ID`` or
``MASTER_ADDR:MASTER_PORT`` as the launcher sets them.

``flock`` needs a local file system (or one that supports it, as NFSv4 does); where it is not
supported the lock is skipped with a warning rather than stopping the run.
"""

from __future__ import annotations

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


def _try_flock(path: Path, exclusive: bool = True) -> Any | None:
    """The open file holding a non-blocking flock on ``path``, or ``None`` when another process holds it."""
    import fcntl

    fh = open(path, "a+", encoding="utf-8")
    try:
        fcntl.flock(fh.fileno(), (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        return None
    except OSError:
        fh.close()
        raise
    return fh


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
        except OSError as exc:  # flock unsupported here: run without the lock
            self.release()
            log.warning("cannot lock %s (%s); make sure only one quota eval writes to it", self.run_dir, exc)
        return self

    def _write_owner(self) -> None:
        import socket

        data = {"pid": os.getpid(), "host": socket.gethostname(), "launch": self.launch,
                "world_size": self.world_size, "started": time.time()}
        tmp = self.run_dir / f".{OWNER_NAME}.tmp{os.getpid()}"
        tmp.write_text(json.dumps(data), encoding="utf-8")
        os.replace(tmp, self.run_dir / OWNER_NAME)

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


__all__ = ["RunLock", "RunLockedError", "launch_id", "LOCK_NAME"]
