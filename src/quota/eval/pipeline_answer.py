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

from ..errors import ConfigError, VideoError
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
    colors: str = "decord",
) -> Frames:
    """The sampled frames of the part ``[start, end]`` (seconds) of a video, as if it were a video of its own.

    The frames inside the part are picked with ``n`` uniform frames when ``n`` is given (the baseline),
    else with the paper's rule on the part's frame count (``sampling``: ``base``, ``per_hour``,
    ``max_frames``; see :func:`quota.video.sample_indices`). ``max_side``, ``max_pixels`` and ``max_bytes``
    bound the decoded frames and ``colors`` converts them, as in :func:`quota.video.load_frames`.

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
                         frame_fps=fps, max_pixels=max_pixels, max_bytes=max_bytes, colors=colors)
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


class VideoReadTimeoutError(VideoError, TimeoutError):
    """Reading one video's frames took longer than the run's read timeout (``quota eval --read-timeout``)."""


#: Seconds one video's frames may take to read before its question is recorded as an error
#: (``quota eval --read-timeout``; ``None`` waits for ever).
READ_TIMEOUT_S = 600.0


class _Read:
    """One video's frames being read on a daemon thread of its own.

    A daemon thread, not a pool: a read that never returns (a dead network mount) must not keep the
    process alive at exit or make :meth:`PipelineAnswer.close` (and so Ctrl-C) wait for it.
    """

    def __init__(self, key: tuple[Any, ...], read: Any, sample: Sample) -> None:
        import threading
        from concurrent.futures import Future

        self.key = key
        self.started = time.monotonic()
        self.future: Future[Frames] = Future()

        def work() -> None:
            try:
                self.future.set_result(read(sample))
            except BaseException as exc:  # handed to the question that needs these frames
                self.future.set_exception(exc)

        threading.Thread(target=work, name="quota-read", daemon=True).start()


class PipelineAnswer:
    """``answer_fn(sample) -> (text, letter, plan summary, timings)`` for :func:`quota.eval.run_benchmark`.

    Args:
        qa: a loaded :class:`quota.pipeline.QuoTA` with a base model.
        baseline: answer without QuoTA (the base model on ``config.baseline_frames`` uniform frames).
        prefetch: read the next video's frames while the models work on the current one (see
            :meth:`prefetch`); the frames, and so the results, are the same.
        read_timeout_s: seconds one video's frames may take to read (counted from the start of the read,
            so a read ahead has had its head start); past it the question fails with
            :class:`VideoReadTimeoutError` (an error row) and the run goes on. ``None``: no limit.

    Each call asks ``qa.answer(frames, sample.question, sample.options, baseline=..., formatted=sample.formatted)``:
    the model reads the benchmark's own prompt (:mod:`quota.eval.prompts`), the question and options
    drive decoupling and letter extraction. Frames are read here, once per video (or per part of a video,
    for ``start``/``end`` questions), and kept while the questions about that video are asked. The returned
    ``timings`` are the seconds this question cost per stage (``decode``, ``decouple``, ``score``,
    ``assign``, ``encode``, ``generate``, ``total``; a stage served from a cache costs nothing; ``decode`` is
    the time this question waited for its frames); the plan summary is :meth:`quota.types.Plan.summary`
    (``{}`` for the baseline). Exceptions (a damaged video, out of memory ...) pass through: the runner
    records them as error rows.

    Memory: the current video's frames plus at most one video read ahead (plus a read abandoned after
    its timeout, whose thread is left to finish or hang on its own).
    """

    def __init__(self, qa: Any, *, baseline: bool = False, prefetch: bool = False,
                 read_timeout_s: float | None = READ_TIMEOUT_S) -> None:
        import threading
        from collections import Counter

        if read_timeout_s is not None and not read_timeout_s > 0:
            raise ConfigError(f"the read timeout must be above 0 seconds, got {read_timeout_s!r}")
        self.qa = qa
        self.baseline = bool(baseline)
        self.stats = AnswerStats()
        #: Times each video file (absolute path) was read: 1 each in a run that reads each video once.
        self.reads: Counter[str] = Counter()
        self._count_lock = threading.Lock()
        self._frames_key: tuple[Any, ...] | None = None
        self._frames: Frames | None = None
        self.prefetching = bool(prefetch)
        self.read_timeout_s = read_timeout_s
        self._ahead: _Read | None = None  # at most one video ahead
        self._wanted: Sample | None = None  # the next video to read once the read ahead is taken
        self._failed: tuple[tuple[Any, ...], BaseException] | None = None  # the last video that could not be read

    def _key(self, sample: Sample) -> tuple[Any, ...]:
        cfg = self.qa.config
        return (os.path.abspath(sample.video), sample.start, sample.end, sample.fps, self.baseline,
                cfg.baseline_frames, tuple(sorted(cfg.sampling.items())), tuple(sorted(cfg.decode_options().items())))

    def _read(self, sample: Sample) -> Frames:
        """The frames the pipeline gets for ``sample``: the baseline's uniform ones, a part's, a frame folder's
        (at the benchmark's frame rate), or the paper's sampling of the whole video. Counted in
        :attr:`stats` ``decodes`` and :attr:`reads`."""
        with self._count_lock:
            self.stats.decodes += 1
            self.reads[os.path.abspath(sample.video)] += 1
        cfg = self.qa.config
        n = cfg.baseline_frames if self.baseline else None
        if sample.start is not None or sample.end is not None:
            return clip_frames(sample.video, sample.start, sample.end, n=n, sampling=cfg.sampling,
                               fps=sample.fps, **cfg.decode_options())
        from ..video import load_frames

        sampling = {} if n is not None else cfg.sampling
        return load_frames(sample.video, n=n, frame_fps=sample.fps, **cfg.decode_options(), **sampling)

    def prefetch(self, sample: Sample | None) -> None:
        """Read ``sample``'s frames in the background (no-op when prefetching is off, for the current video,
        or for the one already read ahead). One video is read ahead at a time: while the read ahead waits
        to be used, the next one is noted and starts as soon as it is taken, so at most two videos' frames
        (the current one and the next) are in memory. An error while reading is raised when that sample
        is answered."""
        if not self.prefetching or sample is None:
            return
        key = self._key(sample)
        if key == self._frames_key or (self._ahead is not None and self._ahead.key == key):
            return
        if self._ahead is None:
            self._ahead = _Read(key, self._read, sample)
        else:
            self._wanted = sample

    def _start_wanted(self) -> None:
        wanted, self._wanted = self._wanted, None
        if wanted is not None and self._ahead is None:
            self.prefetch(wanted)

    def close(self) -> None:
        """Forget the read ahead and the current frames (never waits for a read in progress)."""
        self._ahead = self._wanted = None
        self._frames_key, self._frames = None, None

    def _wait(self, read: _Read, sample: Sample) -> Frames:
        """The frames of ``read``, or :class:`VideoReadTimeoutError` once it has run ``read_timeout_s``."""
        from concurrent.futures import TimeoutError as FutureTimeout

        left = None if self.read_timeout_s is None else max(0.0, read.started + self.read_timeout_s - time.monotonic())
        try:
            return read.future.result(timeout=left)
        except FutureTimeout:
            raise VideoReadTimeoutError(
                f"reading the frames took more than {self.read_timeout_s:g} s (--read-timeout); "
                "question recorded as an error, the run goes on", sample.video) from None

    def formatted(self, sample: Sample) -> str | None:
        """The benchmark text the model reads for ``sample`` (:mod:`quota.eval.prompts`, the same text the
        lmms-eval plug-in sends for the same question), or ``None`` when the sample carries none (the
        pipeline then writes question and options itself)."""
        return sample.formatted or None

    def video_input(self, sample: Sample, timings: dict[str, float]) -> Frames:
        """The frames of ``sample``: kept from the previous question about the same video, taken from the
        read ahead, or read now; the seconds waited are added to ``timings["decode"]``."""
        key = self._key(sample)
        if self._frames_key == key and self._frames is not None:
            return self._frames
        if self._failed is not None and self._failed[0] == key:
            raise self._failed[1]  # the video's other questions fail at once, without reading it again
        self._frames_key, self._frames = None, None  # drop the previous video's pixels first
        start = time.perf_counter()
        ahead = self._ahead
        if ahead is not None and ahead.key == key:
            self._ahead = None
            read = ahead
            self._start_wanted()
        else:  # not read ahead (the first video, prefetch off): read now; a read ahead of another video goes on
            read = _Read(key, self._read, sample)
        try:
            frames = self._wait(read, sample)
        except Exception as exc:
            self._failed = (key, exc)
            raise
        timings["decode"] = timings.get("decode", 0.0) + time.perf_counter() - start
        self._frames_key, self._frames = key, frames
        return frames

    def __call__(self, sample: Sample) -> tuple[str, str | None, dict[str, Any], dict[str, float]]:
        self.stats.questions += 1
        early: dict[str, float] = {}
        video = self.video_input(sample, early)
        answer = self.qa.answer(video, sample.question, list(sample.options) or None, baseline=self.baseline,
                                formatted=self.formatted(sample))
        # Seconds spent on this question: stages served from a cache cost nothing here.
        timings = {k: 0.0 if k in answer.reused else float(v) for k, v in answer.timings.items() if k != "total"}
        timings.pop("decode", None)  # the pipeline got frames: what counts is the wait for them here
        for stage, seconds in early.items():
            timings[stage] = seconds
        timings.setdefault("decode", 0.0)
        timings["total"] = sum(timings.values())
        plan = answer.plan.summary() if answer.plan is not None else {}
        return answer.text, answer.choice, plan, timings


__all__ = ["AnswerStats", "PipelineAnswer", "READ_TIMEOUT_S", "VideoReadTimeoutError", "clip_frames"]
