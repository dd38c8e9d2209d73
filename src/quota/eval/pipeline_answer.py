"""The answering function of a benchmark run, made from a :class:`quota.pipeline.QuoTA` pipeline.

:func:`quota.eval.run_benchmark` asks ``answer_fn(sample)`` one question at a time; this module turns a
loaded pipeline into such a function::

    from quota import QuoTA
    from quota.eval import RunStore, load_benchmark, run_benchmark
    from quota.eval.pipeline_answer import PipelineAnswer

    qa = QuoTA.from_pretrained("llava-hf/LLaVA-Video-7B-Qwen2-hf")
    answer_fn = PipelineAnswer(qa, baseline=False)
    run_benchmark(load_benchmark("videomme", ann, videos), answer_fn, RunStore("runs/vmme", fingerprint))

The runner hands over the questions of one video one after another, so the pipeline's per-video cache
(decoded frames, vision features, frame scores per clue) is hit from the second question on. This module
adds what the pipeline does not cache or do on its own:

- the baseline's uniform frames are decoded once per video (the pipeline would decode them per question);
- questions about part of a video (MVBench samples with ``start``/``end``) get the frames of that part
  only, sampled by the same rules, with times counted from the start of the part.

:attr:`PipelineAnswer.stats` counts questions and frame decodes, so a caller (or a test) can see the cache
at work: a run over ``V`` videos decodes ``V`` times, whatever the number of questions.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import VideoError
from ..types import Frames
from .benchmarks import Sample


@dataclass
class AnswerStats:
    """Counters of one :class:`PipelineAnswer`.

    Attributes:
        questions: questions answered (errors included).
        decodes: times a video's frames were read from its file (a cache hit on the next question of
            the same video does not count).
    """

    questions: int = 0
    decodes: int = 0


def clip_frames(
    path: str | os.PathLike[str],
    start: float | None,
    end: float | None,
    *,
    n: int | None = None,
    sampling: dict[str, Any] | None = None,
    max_side: int | None = None,
    fps: float | None = None,
    max_pixels: int | None = None,
    max_bytes: int | None = None,
) -> Frames:
    """The sampled frames of the part ``[start, end]`` (seconds) of a video, as if it were a video of its own.

    The frames inside the part are picked with ``n`` uniform frames when ``n`` is given (the baseline),
    else with the paper's rule on the part's frame count (``sampling``: ``base``, ``per_hour``,
    ``max_frames``; see :func:`quota.video.sample_indices`). ``max_side``, ``max_pixels`` and ``max_bytes``
    bound the decoded frames as in :func:`quota.video.load_frames`.

    Returns:
        :class:`Frames` whose ``indices`` are frame numbers in the file, ``timestamps`` seconds since the
        first frame of the part, and ``duration`` the part's length in seconds.

    ``path`` may be a folder of frame images, read at ``fps`` (see :mod:`quota.video.frame_folder`).

    Raises:
        VideoError: the part holds no frame; the video errors of :func:`quota.video.load_frames`.
    """
    from ..video import is_frame_folder, load_frames, probe, sample_indices, uniform_indices
    from ..video.frame_folder import folder_index

    index: Any = folder_index(path, fps) if is_frame_folder(path) else probe(path)
    times = np.asarray(index.timestamps, dtype=np.float64)
    lo = 0.0 if start is None else float(start)
    hi = float("inf") if end is None else float(end)
    inside = np.flatnonzero((times >= lo) & (times <= hi))
    if len(inside) == 0:
        raise VideoError(
            f"no frame between {lo:.2f} s and {hi:.2f} s (the video lasts {index.duration:.2f} s); "
            "check the question's start/end",
            path,
        )
    fps = float(index.fps) if index.fps and index.fps > 0 else 1.0
    picks = uniform_indices(len(inside), n) if n is not None else sample_indices(len(inside), fps, **(sampling or {}))
    frames = load_frames(path, indices=inside[np.asarray(picks, dtype=np.int64)].tolist(), max_side=max_side,
                         frame_fps=fps, max_pixels=max_pixels, max_bytes=max_bytes)
    first = float(times[inside[0]])
    span = float(times[inside[-1]]) - first + 1.0 / fps
    return Frames(
        pixels=frames.pixels,
        indices=frames.indices,
        timestamps=frames.timestamps - first,
        duration=span,
        fps=frames.fps,
        path=frames.path,
    )


class PipelineAnswer:
    """``answer_fn(sample) -> (text, letter, plan summary, timings)`` for :func:`quota.eval.run_benchmark`.

    Args:
        qa: a loaded :class:`quota.pipeline.QuoTA` with a base model.
        baseline: answer without QuoTA (the base model on ``config.baseline_frames`` uniform frames).

    Each call asks ``qa.answer(video, sample.question, sample.options, baseline=..., formatted=sample.formatted)``:
    the model reads the benchmark's own prompt (:mod:`quota.eval.prompts`), the question and options
    drive decoupling and letter extraction. The returned
    ``timings`` are the seconds this question cost per stage (``decode``, ``decouple``, ``score``,
    ``assign``, ``encode``, ``generate``, ``total``; a stage served from a cache costs nothing); the plan summary is :meth:`quota.types.Plan.summary` (``{}`` for the baseline).
    Exceptions (a damaged video, out of memory ...) pass through: the runner records them as error rows.
    """

    def __init__(self, qa: Any, *, baseline: bool = False, prefetch: bool = False) -> None:
        """``prefetch``: read the next video's frames on a background thread while the models work on the
        current one (see :meth:`prefetch`); the frames, and so the results, are the same."""
        self.qa = qa
        self.baseline = bool(baseline)
        self.stats = AnswerStats()
        self._frames_key: tuple[Any, ...] | None = None
        self._frames: Frames | None = None
        self.prefetching = bool(prefetch)
        self._pool: Any = None
        self._pending: tuple[tuple[Any, ...], Any] | None = None  # (key, future): at most one video ahead

    def _key(self, sample: Sample) -> tuple[Any, ...]:
        cfg = self.qa.config
        return (os.path.abspath(sample.video), sample.start, sample.end, sample.fps, self.baseline,
                cfg.baseline_frames, tuple(sorted(cfg.sampling.items())), tuple(sorted(cfg.decode_limits().items())))

    def _read(self, sample: Sample) -> Frames:
        """The frames the pipeline gets for ``sample``: the baseline's uniform ones, a part's, a frame folder's
        (at the benchmark's frame rate), or the paper's sampling of the whole video."""
        cfg = self.qa.config
        n = cfg.baseline_frames if self.baseline else None
        if sample.start is not None or sample.end is not None:
            return clip_frames(sample.video, sample.start, sample.end, n=n, sampling=cfg.sampling,
                               fps=sample.fps, **cfg.decode_limits())
        from ..video import load_frames

        sampling = {} if n is not None else cfg.sampling
        return load_frames(sample.video, n=n, frame_fps=sample.fps, **cfg.decode_limits(), **sampling)

    def prefetch(self, sample: Sample | None) -> None:
        """Start reading ``sample``'s frames on a background thread (no-op when prefetching is off, for the
        current video, or for the one already being read). Only one video is read ahead, so at most two
        videos' frames are in memory. An error while reading is raised when that sample is answered."""
        if not self.prefetching or sample is None:
            return
        key = self._key(sample)
        if key == self._frames_key or (self._pending is not None and self._pending[0] == key):
            return
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="quota-prefetch")
        if self._pending is not None:
            self._pending[1].cancel()
        self._pending = (key, self._pool.submit(self._read, sample))

    def close(self) -> None:
        """Stop the prefetch thread (waits for a read in progress)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self._pending = None

    def formatted(self, sample: Sample) -> str | None:
        """The benchmark text the model reads for ``sample`` (:mod:`quota.eval.prompts`, the same text the
        lmms-eval plug-in sends for the same question), or ``None`` when the sample carries none (the
        pipeline then writes question and options itself)."""
        return sample.formatted or None

    def video_input(self, sample: Sample, timings: dict[str, float]) -> str | Frames:
        """What to give the pipeline for ``sample``: the path itself (the pipeline caches its frames), or
        frames read here once per video (baseline) or per part of a video (``start``/``end``)."""
        ranged = sample.start is not None or sample.end is not None
        folder = os.path.isdir(sample.video)  # frame images: read here, at the benchmark's frame rate
        if not ranged and not self.baseline and not folder and not self.prefetching:
            return sample.video
        key = self._key(sample)
        if self._frames_key != key or self._frames is None:
            self._frames_key, self._frames = None, None  # drop the previous video's pixels first
            start = time.perf_counter()
            pending, self._pending = self._pending, None
            if pending is not None and pending[0] == key:
                frames = pending[1].result()  # waits for the rest of the read; its error is this sample's
            else:
                if pending is not None:
                    pending[1].cancel()
                frames = self._read(sample)
            timings["decode"] = timings.get("decode", 0.0) + time.perf_counter() - start
            self._frames_key, self._frames = key, frames
        return self._frames

    def __call__(self, sample: Sample) -> tuple[str, str | None, dict[str, Any], dict[str, float]]:
        self.stats.questions += 1
        early: dict[str, float] = {}
        video = self.video_input(sample, early)
        answer = self.qa.answer(video, sample.question, list(sample.options) or None, baseline=self.baseline,
                                formatted=self.formatted(sample))
        if early or (isinstance(video, str) and "decode" not in answer.reused):
            self.stats.decodes += 1
        # Seconds spent on this question: stages served from a cache cost nothing here.
        timings = {k: 0.0 if k in answer.reused else float(v) for k, v in answer.timings.items() if k != "total"}
        for stage, seconds in early.items():  # frames read here count in the answer's timings
            timings[stage] = timings.get(stage, 0.0) + seconds
        timings["total"] = sum(timings.values())
        plan = answer.plan.summary() if answer.plan is not None else {}
        return answer.text, answer.choice, plan, timings


__all__ = ["AnswerStats", "PipelineAnswer", "clip_frames"]
