"""Run a benchmark through any answering function, resumably, on one or several processes.

``run_benchmark`` asks ``answer_fn`` every question of this process's share that the store does not
hold yet, and commits each outcome at once. A question that raises is stored as an error row and
the run goes on; Ctrl-C (``KeyboardInterrupt``) stops it, and a rerun with the same run folder picks
up where it stopped.

Questions are grouped by video: all questions about one video go to the same process and are asked
one after another, so a per-video cache on the answering side (decoded frames, frame scores) is hit.

Several processes: start them with ``torchrun``/``accelerate launch`` (or set ``RANK`` and
``WORLD_SIZE`` yourself), give each the same run folder, and call ``run_benchmark(...,
**dist_info().shard)``. Afterwards rank 0 waits for the others (``wait_for_ranks`` over the store, or
``barrier`` over ``torch.distributed``) and writes the report.
"""

from __future__ import annotations

import logging
import os
import time
import traceback as tb
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable, Iterable, Mapping, Protocol, Sequence, runtime_checkable

from tqdm.auto import tqdm

from ..errors import ConfigError
from ..runtime import DistInfo, check_shard as _check_shard, dist_info
from .benchmarks import Benchmark, Sample
from ..choices import extract_choice
from .store import RunStore

log = logging.getLogger("quota.eval")

TRACEBACK_CHARS = 4000

@runtime_checkable
class AnswerFn(Protocol):
    """Whatever answers one question: ``answer_fn(sample) -> (text, letter, plan, timings)``.

    Returns:
        text: the model's generated text.
        letter: the option letter it chose, or ``None`` to have it read from ``text`` with
            :func:`quota.choices.extract_choice`.
        plan: a small JSON-able summary of the token plan (``Plan.summary()``), or ``None``.
        timings: seconds per stage (``{"decode": 1.2, "generate": 3.4}``), or ``None``.

    A :class:`quota.types.Answer` is accepted as well. Raising marks the question as an error.
    """

    def __call__(self, sample: Sample) -> Any: ...


def barrier(timeout_s: float = 7 * 24 * 3600.0) -> bool:
    """Wait until every rank gets here, over ``torch.distributed``.

    Uses the process group the launcher set up, or creates a ``gloo`` one from ``MASTER_ADDR`` /
    ``MASTER_PORT`` (with a long timeout: ranks may finish hours apart). Returns ``False`` (and
    waits for nothing) with one process, without torch.distributed, or without the rendezvous
    variables; :func:`wait_for_ranks` needs none of them.
    """
    info = dist_info()
    if info.world_size <= 1:
        return False
    try:
        import torch.distributed as dist
    except ImportError:
        return False
    if not dist.is_available():
        return False
    if not dist.is_initialized():
        if "MASTER_ADDR" not in os.environ or "MASTER_PORT" not in os.environ:
            log.warning("no MASTER_ADDR/MASTER_PORT: cannot make a torch.distributed barrier")
            return False
        dist.init_process_group(
            "gloo", rank=info.rank, world_size=info.world_size, timeout=timedelta(seconds=timeout_s)
        )
    dist.barrier()
    return True


def _rank_key(rank: int) -> str:
    return f"rank/{rank}"


def pending_ranks(store: RunStore, world_size: int) -> list[int]:
    """The ranks whose last ``run_benchmark`` call on ``store`` (with this ``world_size``) has not returned."""
    pending = []
    for r in range(world_size):
        mark = store.get_meta(_rank_key(r)) or {}
        if mark.get("world_size") != world_size or mark.get("state") != "done":
            pending.append(r)
    return pending


def completion_key(store: RunStore, world_size: int) -> str:
    """A key naming this completion of the run: the ranks' completion marks (each holds the time its
    ``run_benchmark`` call returned), so a later resume of the same folder gets a new key."""
    import hashlib
    import json

    marks = [store.get_meta(_rank_key(r)) for r in range(world_size)]
    digest = hashlib.sha256(json.dumps(marks, sort_keys=True).encode()).hexdigest()[:16]
    return f"report/{world_size}/{digest}"


def wait_for_ranks(
    store: RunStore,
    world_size: int,
    ids: Iterable[str] | None = None,
    *,
    poll_s: float = 10.0,
    timeout_s: float | None = None,
    quiet: bool = False,
    alive: Callable[[int], bool] | None = None,
    absent_s: float | None = None,
) -> bool:
    """Wait, by polling the store, until every rank has finished its share.

    A rank has finished when its last ``run_benchmark`` call on this store (with the same
    ``world_size``) returned. With ``ids``, every one of those questions must also have a row.
    A rank that was killed counts as unfinished until it is run again: ``timeout_s`` bounds the whole
    wait, and with ``alive(rank)`` (is that rank's process running?) ``absent_s`` bounds the time
    unfinished ranks may all be not running (dead, or not started yet).

    Returns:
        ``True`` when all finished, ``False`` when a bound ran out first.
    """
    wanted = None if ids is None else set(ids)
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    absent_since: float | None = None
    waited = False
    while True:
        pending = pending_ranks(store, world_size)
        left = len(wanted - store.done_ids(retry_errors=False)) if wanted is not None else 0
        if not pending and left == 0:
            return True
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            return False
        if alive is not None and absent_s is not None:
            if any(alive(r) for r in pending):
                absent_since = None
            else:
                absent_since = now if absent_since is None else absent_since
                if now - absent_since >= absent_s:
                    return False
        if not waited and not quiet:
            log.info("waiting for ranks %s (%d questions left)", pending, left)
        waited = True
        time.sleep(poll_s)


def video_key(sample: Sample, root: str | None = None) -> str:
    """The key questions are grouped and sharded by: the video path relative to the benchmark's
    video folder (the same on every machine that has the same layout)."""
    if root:
        try:
            return os.path.relpath(sample.video, root)
        except ValueError:  # other drive on Windows
            pass
    return sample.video


def order_samples(samples: Iterable[Sample], root: str | None = None) -> list[Sample]:
    """Samples sorted by (video key, id): questions about one video next to each other."""
    return sorted(samples, key=lambda s: (video_key(s, root), s.id))


def shard_samples(samples: Iterable[Sample], rank: int, world_size: int, root: str | None = None) -> list[Sample]:
    """This rank's share: the distinct videos, sorted, dealt out round-robin (video ``i`` goes to
    rank ``i % world_size``), with all questions of a video on one rank. The shares of all ranks
    together hold every sample exactly once. Ordered by (video key, id)."""
    _check_shard(rank, world_size)
    ordered = order_samples(samples, root)
    keys = sorted({video_key(s, root) for s in ordered})
    mine = {k for i, k in enumerate(keys) if i % world_size == rank}
    return [s for s in ordered if video_key(s, root) in mine]


def _plain_mapping(value: Any, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if hasattr(value, "summary") and callable(value.summary):  # a quota.types.Plan
        value = value.summary()
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"answer_fn returned a {what} of type {type(value).__name__}; expected a dict or None")


def unpack_answer(output: Any) -> tuple[str, str | None, dict[str, Any], dict[str, Any]]:
    """``(text, letter, plan, timings)`` from what an answer function returned.

    Accepts a tuple/list ``(text, letter[, plan[, timings]])``, a :class:`quota.types.Answer`
    (``text``, ``choice``, ``plan``, ``timings``) or a bare string (the text).

    Raises:
        TypeError: anything else (a bug in the answer function, not a property of one question).
    """
    if isinstance(output, str):
        return output, None, {}, {}
    if hasattr(output, "text") and hasattr(output, "timings"):
        return (
            str(output.text),
            getattr(output, "choice", None),
            _plain_mapping(getattr(output, "plan", None), "plan"),
            _plain_mapping(output.timings, "timings"),
        )
    if isinstance(output, (tuple, list)) and 1 <= len(output) <= 4:
        parts = list(output) + [None] * (4 - len(output))
        text, letter, plan, timings = parts
        text = "" if text is None else str(text)
        return text, letter, _plain_mapping(plan, "plan"), _plain_mapping(timings, "timings")
    raise TypeError(
        f"answer_fn returned {type(output).__name__}; expected (text, letter, plan, timings), "
        "an Answer, or a string"
    )


def _letter(sample: Sample, text: str, letter: Any) -> str | None:
    """The chosen letter: the one given (read like model text unless it is a bare letter), else
    the one ``text`` names."""
    if letter is not None:
        value = str(letter).strip().strip("().").strip()
        if len(value) == 1 and value.isalpha() and value.upper() in sample.letters:
            return value.upper()
        found = extract_choice(value, sample.letters, sample.options) if value else None
        if found is not None:
            return found
    return extract_choice(text, sample.letters, sample.options)


@dataclass
class RunSummary:
    """What one ``run_benchmark`` call did (this process only).

    Attributes:
        benchmark: the benchmark's name.
        rank, world_size: this process's shard.
        total: questions in the run (all ranks, after ``limit``).
        assigned: questions in this rank's share.
        already_done: of those, how many the store held at the start.
        answered, errors, correct: outcomes of the questions asked now.
        seconds: wall time of the loop.
        missing: questions left out because their video is missing.
    """

    benchmark: str
    rank: int
    world_size: int
    total: int
    assigned: int
    already_done: int
    answered: int = 0
    errors: int = 0
    correct: int = 0
    seconds: float = 0.0
    missing: int = 0

    @property
    def ran(self) -> int:
        return self.answered + self.errors

    def __str__(self) -> str:
        acc = f", {100.0 * self.correct / self.answered:.1f}% right" if self.answered else ""
        return (
            f"{self.benchmark} rank {self.rank}/{self.world_size}: {self.assigned} of {self.total} questions, "
            f"{self.already_done} already done, {self.answered} answered{acc}, {self.errors} errors "
            f"in {self.seconds:.1f} s"
        )


def _unpack_benchmark(benchmark: Benchmark | Sequence[Sample]) -> tuple[str, str | None, list[Sample], int]:
    """``(name, video root, samples, missing count)`` of a loaded benchmark or a plain list of samples."""
    if isinstance(benchmark, Benchmark):
        return benchmark.name, benchmark.videos or None, benchmark.samples, len(benchmark.missing)
    samples = list(benchmark)
    return (samples[0].benchmark if samples else ""), None, samples, 0


def plan_share(
    benchmark: Benchmark | Sequence[Sample],
    store: RunStore,
    *,
    limit: int | None = None,
    rank: int = 0,
    world_size: int = 1,
    retry_errors: bool | None = None,
) -> tuple[list[Sample], RunSummary]:
    """This rank's questions still to answer, in run order, and the summary to fill while answering them.

    The run order sorts by video, then id; ``limit`` keeps its first questions (the same on every rank);
    the rank's share is whole videos (:func:`shard_samples`); what the store holds is left out.
    """
    _check_shard(rank, world_size)
    if limit is not None and limit < 0:
        raise ConfigError(f"limit must be at least 0, got {limit}")
    name, root, samples, missing = _unpack_benchmark(benchmark)
    ordered = order_samples(samples, root)
    if limit is not None:
        ordered = ordered[:limit]
    mine = shard_samples(ordered, rank, world_size, root)
    done = store.done_ids(retry_errors)
    todo = [s for s in mine if s.id not in done]
    summary = RunSummary(
        benchmark=name, rank=rank, world_size=world_size, total=len(ordered), assigned=len(mine),
        already_done=len(mine) - len(todo), missing=missing,
    )
    return todo, summary


def answer_one(sample: Sample, answer_fn: AnswerFn, store: RunStore, rank: int = 0) -> bool | None:
    """Ask ``answer_fn`` one question and commit the outcome at once.

    Returns:
        whether the answer is right; ``None`` when answering raised (stored as an error row).

    Raises:
        KeyboardInterrupt: passed on, nothing stored for this question.
        TypeError: ``answer_fn`` returned something that is not an answer.
    """
    t0 = time.perf_counter()
    try:
        output = answer_fn(sample)
    except Exception as exc:  # one question failing must not end a run of hours
        store.record(
            sample.id, answer=sample.answer, error=f"{type(exc).__name__}: {exc}",
            traceback=tb.format_exc()[-TRACEBACK_CHARS:], fields=sample.fields, rank=rank,
            timings={"total": time.perf_counter() - t0},
        )
        log.debug("%s failed: %s", sample.id, exc)
        return None
    elapsed = time.perf_counter() - t0
    text, letter, plan, timings = unpack_answer(output)
    choice = _letter(sample, text, letter)
    correct = choice is not None and choice == sample.answer
    timings.setdefault("total", elapsed)
    store.record(
        sample.id, prediction=text, choice=choice, answer=sample.answer, correct=correct,
        plan=plan, timings=timings, fields=sample.fields, rank=rank,
    )
    return correct


def _mark_rank(store: RunStore, summary: RunSummary, state: str) -> None:
    """Note this rank's state in the store (``running`` / ``done``) for :func:`wait_for_ranks`."""
    if state == "running":
        value = {"state": state, "world_size": summary.world_size, "started": time.time()}
    else:
        value = {"state": state, "world_size": summary.world_size, "finished": time.time(),
                 "answered": summary.answered, "errors": summary.errors}
    store.set_meta(_rank_key(summary.rank), value)


def _next_video(todo: Sequence[Sample], k: int) -> Sample | None:
    """The first sample after ``todo[k]`` whose video differs from ``todo[k]``'s, if any."""
    return next((s for s in todo[k + 1 :] if s.video != todo[k].video), None)


def run_benchmark(
    benchmark: Benchmark | Sequence[Sample],
    answer_fn: AnswerFn,
    store: RunStore,
    *,
    limit: int | None = None,
    rank: int = 0,
    world_size: int = 1,
    quiet: bool = False,
    retry_errors: bool | None = None,
) -> RunSummary:
    """Answer every question of this rank's share that ``store`` does not hold yet.

    Args:
        benchmark: a loaded :class:`Benchmark` (or a plain list of samples).
        answer_fn: see :class:`AnswerFn`.
        store: where each outcome is committed as soon as it is known.
        limit: only the first ``limit`` questions of the run order (sorted by video, then id), for
            quick checks; the same on every rank.
        rank, world_size: this process's shard (see :func:`dist_info`).
        quiet: no progress bar.
        retry_errors: ask questions stored with an error again (default: the store's setting).

    Returns:
        A :class:`RunSummary` of this call.

    Raises:
        KeyboardInterrupt: passed on (everything finished so far is stored).
        TypeError: ``answer_fn`` returned something that is not an answer.
    """
    todo, summary = plan_share(benchmark, store, limit=limit, rank=rank, world_size=world_size,
                               retry_errors=retry_errors)
    if summary.missing and not quiet:
        log.warning("%s: %d questions left out because their video is missing", summary.benchmark, summary.missing)
    _mark_rank(store, summary, "running")
    start = time.perf_counter()
    desc = (summary.benchmark or "eval") + (f" [{rank}/{world_size}]" if world_size > 1 else "")
    bar = tqdm(total=len(todo), disable=quiet, desc=desc, unit="q", dynamic_ncols=True)
    prefetch = getattr(answer_fn, "prefetch", None)
    try:
        for k, sample in enumerate(todo):
            if callable(prefetch):  # let the answerer read the next video while this one is answered
                prefetch(_next_video(todo, k))
            correct = answer_one(sample, answer_fn, store, rank)
            if correct is None:
                summary.errors += 1
            else:
                summary.answered += 1
                summary.correct += int(correct)
            bar.update(1)
            if summary.answered:
                bar.set_postfix(acc=f"{100.0 * summary.correct / summary.answered:.1f}%", err=summary.errors)
    finally:
        bar.close()
        if callable(getattr(answer_fn, "close", None)):
            answer_fn.close()  # type: ignore[union-attr]  # stops a read-ahead thread
        summary.seconds = time.perf_counter() - start
    _mark_rank(store, summary, "done")
    return summary


__all__ = [
    "AnswerFn",
    "DistInfo",
    "RunSummary",
    "dist_info",
    "barrier",
    "wait_for_ranks",
    "pending_ranks",
    "video_key",
    "order_samples",
    "shard_samples",
    "unpack_answer",
    "plan_share",
    "answer_one",
    "run_benchmark",
]
