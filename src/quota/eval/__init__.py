"""Benchmark evaluation: loaders for the paper's six benchmarks, a crash-safe results store, a
resumable (multi-process) runner, and accuracy reports that put runs side by side.

No model code is imported here; the answering function comes from the caller (the pipeline, the
CLI, or a plain Python function in tests)::

    from quota.eval import load_benchmark, RunStore, run_benchmark, metrics_from_store, format_table

    bench = load_benchmark("videomme", "videomme/test-00000-of-00001.parquet", "Video-MME/data")
    store = RunStore("runs/vmme-quota", {"benchmark": "videomme", "model": "...", "preset": "paper"})
    run_benchmark(bench, answer_fn, store)
    print(format_table([metrics_from_store("runs/vmme-base"), metrics_from_store("runs/vmme-quota")]))
"""

from __future__ import annotations

from .benchmarks import BENCHMARKS, Benchmark, BenchmarkSpec, Sample, get_spec, load_benchmark
from ..choices import extract_choice, format_options, option_letters
from .metrics import Metrics, Tally, compute_metrics, metrics_from_store
from ..runtime import DistInfo, dist_info
from .runner import (
    AnswerFn,
    RunSummary,
    barrier,
    order_samples,
    run_benchmark,
    shard_samples,
    wait_for_ranks,
)
from .store import Result, RunStore, open_run
from .table import format_table, plot_comparison, to_markdown

__all__ = [
    "BENCHMARKS",
    "Benchmark",
    "BenchmarkSpec",
    "Sample",
    "get_spec",
    "load_benchmark",
    "extract_choice",
    "format_options",
    "option_letters",
    "Metrics",
    "Tally",
    "compute_metrics",
    "metrics_from_store",
    "AnswerFn",
    "DistInfo",
    "RunSummary",
    "barrier",
    "dist_info",
    "order_samples",
    "run_benchmark",
    "shard_samples",
    "wait_for_ranks",
    "Result",
    "RunStore",
    "open_run",
    "format_table",
    "plot_comparison",
    "to_markdown",
]
