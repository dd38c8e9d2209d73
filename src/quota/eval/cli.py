"""``quota eval`` and ``quota report``: benchmark runs from the command line.

    quota eval --benchmark videomme --annotations ANN --videos DIR --out RUN_DIR [--baseline] [model options]
    quota report RUN_DIR [RUN_DIR ...] [--markdown FILE] [--png FILE]

``quota eval`` loads the benchmark (missing videos are reported before anything runs), binds RUN_DIR's
results store to a fingerprint of everything that changes the results, and answers every question the
store does not hold yet with the QuoTA pipeline (:class:`quota.eval.pipeline_answer.PipelineAnswer`),
committing each one at once. Rerunning the same command resumes; a different configuration in the same
RUN_DIR is refused. Under ``torchrun`` / ``accelerate launch`` every rank answers its share of the videos on
``cuda:LOCAL_RANK`` (or the CPU), all ranks write the same store, and rank 0 writes the report once all
ranks are done: the table on stdout, and ``results.jsonl``, ``metrics.json`` and ``report.md`` in RUN_DIR.

``quota report`` puts finished (or running) runs side by side: a terminal table, Markdown and a PNG chart.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import __version__
from ..commands import PROG, status
from ..errors import ConfigError, QuotaError
from .benchmarks import BENCHMARKS, Benchmark, get_spec, load_benchmark
from .benchmarks._base import ON_MISSING
from .metrics import Metrics, metrics_from_store
from ..outputs import check_outputs, write_atomic
from ..runtime import DistInfo, choose_device, dist_info
from .runner import (
    completion_key,
    order_samples,
    run_benchmark,
    shard_samples,
    wait_for_ranks,
)
from .benchmarks._files import annotation_digest
from .pipeline_answer import READ_TIMEOUT_S
from .runlock import RunLock
from .store import RunStore
from .table import format_table, plot_comparison, to_markdown

#: Files rank 0 writes into the run folder at the end of ``quota eval``.
RESULTS_FILE = "results.jsonl"
METRICS_FILE = "metrics.json"
REPORT_FILE = "report.md"
#: Seconds between two looks at the store while rank 0 waits for the other ranks.
WAIT_POLL_S = 2.0
#: Seconds rank 0 keeps waiting once none of the unfinished ranks is running (killed, or not started yet).
RANK_ABSENT_S = 60.0
#: Seconds between two looks at whether this rank's launcher is still there.
LAUNCHER_POLL_S = 2.0
#: Exit status of a rank that stops because its launcher is gone.
EXIT_LAUNCHER_GONE = 3
#: Exit status of a run in which every question asked failed.
EXIT_ALL_FAILED = 1


# ---------------------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------------------


@contextmanager
def _own_messages() -> Iterator[None]:
    """Mute the ``quota.eval`` logger's warnings while the command runs: it says the same things (missing
    videos) in its own words, once, on rank 0."""
    logger = logging.getLogger("quota.eval")
    old = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(old)


# ---------------------------------------------------------------------------------------------------------
# quota eval
# ---------------------------------------------------------------------------------------------------------


def add_eval_parser(subparsers: Any) -> argparse.ArgumentParser:
    from ..commands import add_model_options

    p = subparsers.add_parser(
        "eval", help="run a benchmark, resumably, and report accuracy",
        description="Answer every question of a benchmark with QuoTA (or the base model alone with --baseline), "
                    "committing each answer to RUN_DIR at once. Rerun the same command to resume; run it under "
                    "torchrun or accelerate launch to split the videos over processes. At the end the accuracy "
                    "table is printed and results.jsonl, metrics.json and report.md are written to RUN_DIR.",
        epilog="Example: quota eval --benchmark videomme --annotations Video-MME/videomme/test-00000-of-00001.parquet "
               "--videos Video-MME/data --out runs/vmme-quota. Docs: docs/eval.md",
    )
    g = p.add_argument_group("benchmark and run")
    g.add_argument("--benchmark", required=True, metavar="NAME",
                   help=f"benchmark: {', '.join(BENCHMARKS)}")
    g.add_argument("--annotations", required=True, metavar="PATH",
                   help="the benchmark's annotation file (or folder of per-task files for MLVU and MVBench)")
    g.add_argument("--videos", required=True, metavar="DIR", help="the folder the videos are in")
    g.add_argument("--out", required=True, metavar="RUN_DIR",
                   help="run folder: results store and report (a new folder for each configuration)")
    g.add_argument("--baseline", action="store_true",
                   help="answer without QuoTA: the base model on its own uniform frames (the paper's baseline)")
    g.add_argument("--limit", type=int, metavar="N", default=None,
                   help="only the first N questions (ordered by video, then id): a quick check")
    g.add_argument("--on-missing", choices=ON_MISSING, default="skip",
                   help="questions whose video is missing: skip them (default) or stop before running")
    g.add_argument("--retry-errors", action="store_true",
                   help="ask again the questions stored with an error (they are otherwise done)")
    g.add_argument("--no-read-ahead", action="store_true",
                   help="read each video only when its first question comes (default: the next video is read "
                        "while the models answer the current one; same results)")
    g.add_argument("--read-timeout", type=float, metavar="SECONDS", default=READ_TIMEOUT_S,
                   help=f"most seconds one video may take to read before its questions are recorded as errors "
                        f"and the run goes on (default {READ_TIMEOUT_S:g}; 0: no limit)")
    add_model_options(p)
    p.set_defaults(func=run_eval)
    return p


def run_config(args: argparse.Namespace) -> tuple[str, str, Any]:
    """``(base, scorer, config)`` the run will use, worked out from the options without loading a model
    (the same rules as :func:`quota.commands.load_pipeline` and :meth:`quota.pipeline.QuoTA.from_pretrained`).

    With ``--baseline`` no scorer is loaded and the scorer is recorded as ``uniform``: the baseline never
    scores frames, so its results do not depend on one. The answer's ``max_new_tokens`` is the benchmark's
    own (:data:`quota.eval.generation.ANSWER_MAX_NEW_TOKENS`) unless ``--set max_new_tokens=N`` gives one.
    """
    from ..commands import command_config
    from ..config import DEFAULT_BASE
    from .generation import answer_max_new_tokens

    config = command_config(args)
    if args.baseline:
        config = config.replace(scorer="uniform")
    own = answer_max_new_tokens(get_spec(args.benchmark).name)
    given = any(str(s).split("=", 1)[0].strip() == "max_new_tokens" for s in getattr(args, "settings", None) or [])
    if own is not None and not given:
        config = config.replace(max_new_tokens=own)
    return args.base or DEFAULT_BASE, config.scorer, config


def result_settings(config: Any) -> dict[str, Any]:
    """The settings the answers depend on: every config field except the result-neutral ones
    (:data:`quota.config.RESULT_NEUTRAL`, which change memory and speed only)."""
    from ..config import RESULT_NEUTRAL

    return {k: v for k, v in config.to_dict().items() if k not in RESULT_NEUTRAL}


def run_fingerprint(
    args: argparse.Namespace, benchmark: str, base: str, scorer: str, config: Any, *,
    device: str = "cpu", dtype: str = "float32", annotations_sha256: str = "",
) -> dict[str, Any]:
    """What the results of ``quota eval`` depend on: RUN_DIR keeps results of one fingerprint only.

    The preset's name is not part of it, only the settings it gives (minus the result-neutral ones):
    a ``paper-lowmem`` run resumes a ``paper`` run. The precision, the device class and the annotation
    file's content are, so a resumed run never mixes precisions or data.
    """
    return {
        "benchmark": benchmark,
        "annotations": Path(args.annotations).name,
        "annotations_sha256": annotations_sha256,
        "base": base,
        "scorer": scorer,
        "config": result_settings(config),
        "baseline": bool(args.baseline),
        "device": device,
        "dtype": dtype,
        "quota_version": __version__,
    }


def _report_missing(args: argparse.Namespace, bench: Benchmark) -> None:
    if not bench.missing:
        return
    names = bench.missing_videos
    total_videos = len(names) + len({s.video for s in bench.samples})
    total_questions = len(bench.missing) + len(bench.samples)
    shown = ", ".join(names[:5]) + (" ..." if len(names) > 5 else "")
    status(args, f"{len(names)} of {total_videos} videos not found under {args.videos} "
               f"({len(bench.missing)} of {total_questions} questions): {shown}; these questions are not asked and "
               "count as wrong, as in lmms-eval (--on-missing error stops instead)", always=True)


def _report_duplicates(args: argparse.Namespace, bench: Benchmark) -> None:
    """Repeated question ids, once on stderr (they are also listed in ``metrics.json``, ``run.duplicate_ids``)."""
    if bench.duplicates:
        status(args, f"{len(bench.duplicates)} question ids occur more than once in the annotations: "
                   + "; ".join(bench.duplicates[:3]) + (" ..." if len(bench.duplicates) > 3 else ""), always=True)


def _pending(bench: Benchmark, store: RunStore, args: argparse.Namespace, info: DistInfo) -> tuple[list[Any], list[Any]]:
    """``(run, todo)``: the questions of the whole run (after ``--limit``), and this rank's share of them
    that the store does not hold yet (the same selection :func:`run_benchmark` makes)."""
    root = bench.videos or None
    ordered = order_samples(bench.samples, root)
    if args.limit is not None:
        ordered = ordered[: args.limit]
    mine = shard_samples(ordered, info.rank, info.world_size, root)
    done = store.done_ids(args.retry_errors)
    return ordered, [s for s in mine if s.id not in done]


def _not_needed(sample: Any) -> Any:
    raise QuotaError("internal error: no model was loaded because nothing was left to answer")


def _wait_for_all(store: RunStore, info: DistInfo, ids: Sequence[str], args: argparse.Namespace) -> bool:
    """Rank 0 waits, by polling the store, until every rank has finished its share; ``True`` when all did.

    It waits as long as an unfinished rank is running (its lock is held), and gives up once none of them has
    been running for :data:`RANK_ABSENT_S` seconds (killed, or started by hand and not started yet). Any rank
    that finishes last while rank 0 is not running writes the report, so ranks started later merge the results
    themselves. Returns whether this rank should write the report."""
    if info.world_size <= 1:
        return True
    from .runlock import rank_running
    from .runner import pending_ranks

    finished = not pending_ranks(store, info.world_size) and not (set(ids) - store.done_ids(retry_errors=False))
    if not info.is_main:  # the last rank writes the report only when rank 0 is not there to do it
        return finished and not rank_running(store.run_dir, 0)
    if finished:
        return True
    status(args, f"waiting for the other ranks to finish (as long as they run; at most {RANK_ABSENT_S:g} s "
               "for ranks that are not running)")
    done = wait_for_ranks(store, info.world_size, ids, poll_s=WAIT_POLL_S, quiet=True,
                          alive=lambda r: rank_running(store.run_dir, r), absent_s=RANK_ABSENT_S)
    if not done:
        absent = pending_ranks(store, info.world_size)
        status(args, f"stopped waiting: rank(s) {', '.join(map(str, absent))} of {info.world_size} not running for "
                   f"{RANK_ABSENT_S:g} s; start them (RANK=<r> WORLD_SIZE={info.world_size} with the same command); "
                   "the last rank to finish writes the full report", always=True)
    return done


def _watch_launcher(args: argparse.Namespace, info: DistInfo) -> None:
    """Under a launcher (``torchrun``, ``accelerate launch``), stop this rank when the launcher is gone.

    A worker whose launcher was killed is adopted by another process (its parent id changes); it would
    otherwise go on alone and then wait for ranks that will never come. Every answer is committed as it is
    made, so leaving at once loses at most the question in flight; the lock is freed with the process."""
    if info.world_size <= 1 or "LOCAL_RANK" not in os.environ:
        return
    import threading

    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(LAUNCHER_POLL_S)
            if os.getppid() != parent:
                print(f"{PROG}: error: rank {info.rank}/{info.world_size}: the launcher (pid {parent}) is gone; "
                      f"stopping this rank. The answers given so far are saved in {args.out}; rerun the launch "
                      "to resume", file=sys.stderr, flush=True)
                os._exit(EXIT_LAUNCHER_GONE)

    threading.Thread(target=watch, name="quota-launcher-watch", daemon=True).start()


def _release_memory() -> None:
    """Give freed model memory back (to the GPU's other users) while this rank waits."""
    import gc

    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def _finish_distributed() -> None:
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    except (RuntimeError, ValueError) as exc:  # shutting down: nothing left to save
        logging.getLogger("quota.eval").debug("closing the process group failed: %s", exc)


def _settings_line(fp: dict[str, Any]) -> str:
    config = fp.get("config") or {}
    if fp.get("baseline"):
        return f"{config.get('baseline_frames')} uniform frames"
    return f"budget {config.get('budget')} tokens, {config.get('base_frames')} base frames"


def record_plan(store: RunStore, bench: Benchmark, ids: Sequence[str], args: argparse.Namespace, config: Any) -> None:
    """Note in the store what this run is meant to answer, for reports: the question ids, the questions
    whose video is missing (counted wrong), the annotation rows the loader skipped, and the settings
    in full (the preset's name and the result-neutral ones included)."""
    store.set_meta("plan", {"ids": list(ids), "limit": args.limit})
    missing = [] if args.limit is not None else [
        {"id": s.id, "video": s.video_name or s.video, "fields": dict(s.fields)} for s in bench.missing]
    store.set_meta("missing", missing)
    store.set_meta("skipped", list(bench.skipped))
    store.set_meta("settings", {"preset": args.preset, "config": config.to_dict()})


def write_run_report(store: RunStore, bench: Benchmark, ids: Sequence[str]) -> tuple[Metrics, dict[str, Path]]:
    """Write ``results.jsonl``, ``metrics.json`` and ``report.md`` into the run folder.

    Returns:
        the run's :class:`Metrics` and the paths written.
    """
    run_dir = store.run_dir
    metrics = metrics_from_store(store)
    counts = store.counts()
    stored = store.done_ids(retry_errors=False)
    left = sum(1 for i in ids if i not in stored)
    paths = {"results": run_dir / RESULTS_FILE, "metrics": run_dir / METRICS_FILE, "report": run_dir / REPORT_FILE}
    tmp = paths["results"].with_name(f".{RESULTS_FILE}.tmp{os.getpid()}")
    try:
        store.export_jsonl(tmp)
        os.replace(tmp, paths["results"])
    except OSError as exc:
        raise QuotaError(f"cannot write {paths['results']}: {exc.strerror or exc}") from None
    data = metrics.to_dict()
    data["run"] = {
        **metrics.run, "questions": len(ids), "not_answered_yet": left,
        "missing_videos": len(bench.missing_videos), "missing_questions": len(bench.missing), "counts": counts,
        "skipped": list(bench.skipped), "duplicate_ids": list(bench.duplicates), "written": time.time(),
    }
    write_atomic(paths["metrics"], json.dumps(data, indent=2, sort_keys=True) + "\n")
    fp = store.fingerprint
    title = get_spec(fp["benchmark"]).title if fp.get("benchmark") in BENCHMARKS else str(fp.get("benchmark"))
    lines = [
        f"# {title}: {metrics.name}",
        "",
        f"- mode: {'baseline (no QuoTA)' if fp.get('baseline') else 'QuoTA'}",
        f"- base model: `{fp.get('base')}`",
        f"- scorer: `{fp.get('scorer')}`",
        f"- preset: `{(store.get_meta('settings') or {}).get('preset')}`, " + _settings_line(fp),
        f"- device: {fp.get('device')}, dtype: {fp.get('dtype')}",
        f"- questions: {counts['rows']} stored of {len(ids)} in the run ({counts['errors']} errors)"
        + (f"; {len(bench.missing)} more with {len(bench.missing_videos)} missing videos, counted wrong"
           if bench.missing else ""),
        "- status: " + _status(left, counts),
        f"- score ({metrics.headline_rule}): "
        + ("-" if metrics.headline is None else f"{metrics.headline:.1f}"),
        f"- quota {fp.get('quota_version')}",
        "",
        to_markdown([metrics]),
        "",
    ]
    if bench.skipped:
        lines += [f"## Skipped annotation rows ({len(bench.skipped)})", "",
                  *[f"- {reason}" for reason in bench.skipped], ""]
    write_atomic(paths["report"], "\n".join(lines))
    return metrics, paths


def _status(left: int, counts: dict[str, int]) -> str:
    """The run's state for ``report.md``."""
    if left:
        return f"incomplete, {left} questions not answered yet"
    if counts["rows"] and counts["errors"] == counts["rows"]:
        return f"failed: every one of the {counts['rows']} questions asked ended with an error"
    return "complete"


def _check_run_dir(args: argparse.Namespace) -> None:
    """RUN_DIR is a folder of its own: not a file, not the annotations or the videos (its result files are the
    run's own and are rewritten as the run goes on)."""
    out = Path(args.out).expanduser()
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; give a folder for the run (it is created if missing)")
    for name, given in (("--annotations", args.annotations), ("--videos", args.videos)):
        source = Path(given).expanduser().resolve()
        if out.resolve() == source:
            raise ConfigError(f"--out {out} is {name} {given}; give the run its own folder")
    from ..preflight import check_device

    check_device(args.device)


def eval_preflight(args: argparse.Namespace, base: str, config: Any) -> None:
    """The checks of ``quota ask`` that need no weights, before any model loads: where the models come from,
    and the budget against the base model's context (with the text room for ``base_frames`` frames, the
    fewest any video gets).

    Raises:
        ModelNotFoundError, BudgetError: the first problem found.
    """
    from ..commands import text_reserve
    from ..preflight import base_context, check_budget, resolve_sources
    from ..scoring.registry import read_scorer

    if args.read_timeout is not None and (args.read_timeout < 0 or args.read_timeout != args.read_timeout):
        raise ConfigError(f"--read-timeout must be 0 (no limit) or more seconds, got {args.read_timeout}")
    scorer = None if args.baseline else read_scorer(config.scorer).checkpoint or None
    sources = resolve_sources({"base": base, "scorer": scorer})
    if args.baseline or not any(s.role == "base" for s in sources):
        return
    context = base_context(base, trust_remote_code=args.trust_remote_code)
    frames = config.base_frames
    check_budget(config.budget, frames=frames, context=context, reserve=text_reserve(frames, config))


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler's stop, ``kill``): handled like Ctrl-C, so the run says what is saved."""


@contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into :class:`Terminated` while the run goes on (main thread only)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise Terminated()

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def resume_command(args: argparse.Namespace) -> str:
    """The command that resumes this run: the one that was typed."""
    import shlex

    argv = getattr(args, "argv", None) or ["eval", "..."]
    return shlex.join([PROG, *argv])


def _interrupted(args: argparse.Namespace, store: RunStore | None, info: DistInfo, exc: KeyboardInterrupt) -> int:
    """Say what an interrupted run saved and how to resume it; the exit status (130 Ctrl-C, 143 SIGTERM)."""
    what = "stopped by SIGTERM" if isinstance(exc, Terminated) else "interrupted"
    try:
        saved = store.counts()["rows"] if store is not None else 0
    except QuotaError:
        saved = None
    where = f" (rank {info.rank}/{info.world_size})" if info.world_size > 1 else ""
    count = "the answers given so far are" if saved is None else f"{saved} answers are"
    how = ("rerun the launch with the same command" if info.world_size > 1 else "resume with") + ": "
    print(f"{PROG}: {what}{where}: {count} saved in {args.out}; {how}{resume_command(args)}",
          file=sys.stderr, flush=True)
    return 143 if isinstance(exc, Terminated) else 130


def run_eval(args: argparse.Namespace) -> int:
    """``quota eval``: check the options, load the benchmark, fix the run's fingerprint, then answer and report
    under the run folder's lock."""
    if args.limit is not None and args.limit < 0:
        raise ConfigError(f"--limit must be at least 0, got {args.limit}")
    _check_run_dir(args)
    info = dist_info()
    with _own_messages():
        bench = _load_benchmark(args, info)
        base, scorer, config = run_config(args)
        eval_preflight(args, base, config)
        device = choose_device(args.device, info)  # this rank's device: the fingerprint's and the models'
        fingerprint = run_fingerprint(args, bench.name, base, scorer, config, **_precision(device, args.dtype),
                                      annotations_sha256=annotation_digest(args.annotations))
        _watch_launcher(args, info)
        return _locked_run(args, bench, info, _Run(config, fingerprint, device))


@dataclass(frozen=True)
class _Run:
    """What one rank's run is bound to: the settings, the fingerprint of its results, the device it runs on."""

    config: Any
    fingerprint: dict[str, Any]
    device: str | None


def _load_benchmark(args: argparse.Namespace, info: DistInfo) -> Benchmark:
    """The benchmark's questions; rank 0 says what is missing, skipped or repeated in the annotations."""
    bench = load_benchmark(get_spec(args.benchmark).name, args.annotations, args.videos, on_missing=args.on_missing)
    if info.is_main:
        _report_missing(args, bench)
        if bench.skipped:
            status(args, f"{len(bench.skipped)} annotation rows are not multiple-choice questions and are left "
                         f"out (first: {bench.skipped[0]})")
        _report_duplicates(args, bench)
    return bench


def _precision(device: str | None, dtype: str | None) -> dict[str, str]:
    """``{"device": class, "dtype": name}`` the models will run in, by the rules model loading uses."""
    from ..pipeline import load_precision

    device_class, dtype_name = load_precision(device, dtype)
    return {"device": device_class, "dtype": dtype_name}


def _locked_run(args: argparse.Namespace, bench: Benchmark, info: DistInfo, run: _Run) -> int:
    """Answer and report while holding this rank's lock on RUN_DIR; an interruption says what is saved."""
    lock = RunLock(args.out, rank=info.rank, world_size=info.world_size).acquire()
    store: RunStore | None = None
    try:
        with _terminate_as_interrupt():
            store = RunStore(args.out, run.fingerprint, retry_errors=args.retry_errors)
            return _run_and_report(args, bench, store, info, run)
    except KeyboardInterrupt as exc:
        return _interrupted(args, store, info, exc)
    finally:
        if store is not None:
            store.close()
        lock.release()
        _finish_distributed()


def _answerer(args: argparse.Namespace, run: _Run) -> tuple[Any, Any]:
    """``(answer function, pipeline)`` for this rank: the models loaded on the run's device, quiet per question
    (the run shows one progress bar), checked against the run's fingerprint."""
    from ..commands import load_pipeline
    from .pipeline_answer import PipelineAnswer

    qa = load_pipeline(args, config=run.config, device=run.device, quiet=True)
    if result_settings(qa.config) != run.fingerprint["config"]:
        raise QuotaError("internal error: the loaded pipeline's settings differ from the run's "
                         "fingerprint; please report this")
    answer_fn = PipelineAnswer(qa, baseline=args.baseline, prefetch=not args.no_read_ahead,
                               read_timeout_s=args.read_timeout or None)
    return answer_fn, qa


def _run_and_report(args: argparse.Namespace, bench: Benchmark, store: RunStore, info: DistInfo, run: _Run) -> int:
    """Answer this rank's share, then (on the rank that finishes last, or rank 0) write the report."""
    ordered, todo = _pending(bench, store, args, info)
    ids = [s.id for s in ordered]
    if info.is_main:
        record_plan(store, bench, ids, args, run.config)
    where = f"rank {info.rank}/{info.world_size}: " if info.world_size > 1 else ""
    answer_fn: Any = _not_needed
    qa: Any = None
    if todo:
        status(args, f"{where}{len(todo)} questions to answer ({len(ordered)} in the run, "
                     f"{len(ordered) - len(todo)} done or on other ranks)")
        answer_fn, qa = _answerer(args, run)
    else:
        status(args, f"{where}nothing left to answer in {args.out} ({len(ordered)} questions in the run)")
    summary = run_benchmark(bench, answer_fn, store, limit=args.limit, quiet=args.quiet,
                            retry_errors=args.retry_errors, **info.shard)
    if summary.ran:
        status(args, str(summary))
    if qa is not None and info.world_size > 1:
        answer_fn = qa = None  # free the models before waiting for the other ranks
        _release_memory()
    all_done = _wait_for_all(store, info, ids, args)
    if not (info.is_main or all_done):
        return 0
    if info.world_size > 1 and all_done and not store.claim(completion_key(store, info.world_size)):
        return 0  # rank 0 and the last rank both saw the run finish: the other one writes the report
    return _final_report(args, store, bench, ids)


def _final_report(args: argparse.Namespace, store: RunStore, bench: Benchmark, ids: Sequence[str]) -> int:
    """Write the run's files, print the table, and say how many questions failed; the exit status."""
    metrics, paths = write_run_report(store, bench, ids)
    print(format_table([metrics]), flush=True)
    errors = metrics.overall.errors
    status(args, f"results in {store.run_dir}: {RESULTS_FILE}, {METRICS_FILE}, {REPORT_FILE}")
    asked = metrics.overall.total - metrics.overall.missing
    if errors and errors == asked:
        first = next((r.error for r in store.results() if r.error), "")
        status(args, f"error: every one of the {asked} questions asked failed (first: {first}); see "
                     f"{paths['results']}", always=True)
        return EXIT_ALL_FAILED
    if errors:
        status(args, f"{errors} questions failed with an error (see {paths['results']}; "
                     "--retry-errors asks them again)", always=True)
    return 0


# ---------------------------------------------------------------------------------------------------------
# quota report
# ---------------------------------------------------------------------------------------------------------


def add_report_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "report", help="compare benchmark runs side by side (table, Markdown, PNG)",
        description="Accuracy overall and per reporting field of one or more run folders of quota eval, side "
                    "by side (e.g. baseline and QuoTA), with a delta column last minus first for two or more.",
    )
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run folders of quota eval")
    p.add_argument("--names", nargs="+", metavar="NAME", default=None,
                   help="labels of the runs, in order (default: the folder names)")
    p.add_argument("--fields", nargs="+", metavar="FIELD", default=None,
                   help="reporting fields to show (default: all of the benchmark's); the chart uses the first")
    p.add_argument("--markdown", metavar="FILE", default=None, help="also write the table as Markdown")
    p.add_argument("--png", metavar="FILE", default=None, help="also draw a bar chart (PNG)")
    p.add_argument("--force", action="store_true", help="replace existing --markdown / --png files")
    p.add_argument("-q", "--quiet", action="store_true", help="no status lines")
    p.set_defaults(func=run_report)
    return p


def load_runs(run_dirs: Sequence[str], names: Sequence[str] | None = None) -> list[Metrics]:
    """The metrics of each run folder, labelled by ``names`` or the folder names.

    Raises:
        RunStoreError: a folder holds no results store.
        ConfigError: ``names`` has the wrong length, or the runs are of different benchmarks.
    """
    if names is not None and len(names) != len(run_dirs):
        raise ConfigError(f"--names gives {len(names)} labels for {len(run_dirs)} runs")
    runs = [metrics_from_store(d, name=None if names is None else names[i]) for i, d in enumerate(run_dirs)]
    kinds = {m.benchmark for m in runs}
    if len(kinds) > 1:
        listed = ", ".join(f"{d}: {m.benchmark}" for d, m in zip(run_dirs, runs))
        raise ConfigError(f"the runs are of different benchmarks ({listed}); compare runs of one benchmark")
    return runs


def _check_suffix(path: str | None, suffix: str, option: str) -> None:
    if path is not None and Path(path).suffix.lower() != suffix:
        raise ConfigError(f"{option} {path!r}: expected a {suffix} file")


def run_report(args: argparse.Namespace) -> int:
    _check_suffix(args.png, ".png", "--png")
    stores = [Path(d) / name for d in args.runs for name in (RESULTS_FILE, METRICS_FILE, REPORT_FILE)]
    check_outputs({"--markdown": args.markdown, "--png": args.png}, [*args.runs, *stores], force=args.force)
    runs = load_runs(args.runs, args.names)
    fields = args.fields
    if fields is not None:
        known = {f for m in runs for f in m.fields}
        unknown = [f for f in fields if f not in known]
        if unknown:
            raise ConfigError(f"--fields {', '.join(unknown)}: not a reporting field of these runs; "
                              f"known: {', '.join(sorted(known))}")
    print(format_table(runs, fields=fields), flush=True)
    if args.markdown:
        title = get_spec(runs[0].benchmark).title if runs[0].benchmark else "Benchmark"
        text = f"# {title}: " + " vs ".join(m.name for m in runs) + "\n\n" + to_markdown(runs, fields=fields) + "\n"
        write_atomic(args.markdown, text)
        status(args, f"Markdown table written to {args.markdown}")
    if args.png:
        try:
            plot_comparison(runs, args.png, fields=fields[:1] if fields else None)
        except OSError as exc:
            raise QuotaError(f"cannot write {args.png}: {exc.strerror or exc}") from None
        status(args, f"chart written to {args.png}")
    return 0


__all__ = [
    "add_eval_parser",
    "add_report_parser",
    "load_runs",
    "run_config",
    "run_eval",
    "run_fingerprint",
    "run_report",
    "write_run_report",
]
