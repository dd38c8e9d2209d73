"""One loaded pipeline serving the questions of the demo page, without any web code.

:class:`DemoSession` runs one question the way ``quota ask --report`` does (decode, decouple, score,
answer, and optionally the baseline on the same video), one run at a time, and says which stage it is in
as it goes. The web page (:mod:`quota.demo.app`) only turns its :class:`Stage` events and its
:class:`DemoResult` into components; tests drive it directly.

The pipeline keeps the frames, features and scores of the last video, so a second question about the
same file reuses them.
"""

from __future__ import annotations

import dataclasses
import itertools
import queue
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Generator, Iterator, Sequence

from ..errors import ConfigError, QuotaError
from ..report import RunInfo, render_html
from ..types import Answer, Frames, Plan

#: The stages a run goes through, with the share of the work done when each starts (for progress bars).
STAGES: tuple[tuple[str, float], ...] = (
    ("decoding the video", 0.02),
    ("decoupling the question", 0.2),
    ("scoring the frames", 0.4),
    ("answering", 0.65),
    ("answering without QuoTA (baseline)", 0.85),
    ("writing the report", 0.95),
)
#: The page's stage each pipeline stage belongs to (the names :meth:`quota.pipeline.QuoTA.answer` passes to
#: its ``on_stage`` callback; ``assign`` is too quick to show).
PIPELINE_STAGES = {"decode": "decoding the video", "decouple": "decoupling the question", "score": "scoring the frames",
                   "encode": "answering", "resize": "answering", "generate": "answering"}


@dataclass(frozen=True)
class Stage:
    """A run entered a stage: ``name`` (one of :data:`STAGES`) and ``progress`` in ``[0, 1]``."""

    name: str
    progress: float


@dataclass(frozen=True)
class AnswerSoFar:
    """QuoTA's answer as far as the model has written it (the page shows it while it streams)."""

    text: str


def _ours(filename: str) -> bool:
    """Whether a warning was raised from quota's own code (the libraries' own notices stay off the page)."""
    return "quota" in Path(filename).parts


class RunStopped(QuotaError):
    """The page's Stop button ended the run between two stages."""


@dataclass
class DemoResult:
    """Everything one run produced.

    Attributes:
        answer: QuoTA's answer (its plan is :attr:`plan`; ``timings`` hold every stage, seconds).
        plan: the token plan.
        frames: the sampled frames the plan refers to (row ``i`` = plan position ``i``).
        baseline: the answer without QuoTA on the same video, when asked for.
        info: the answer, models, preset and timings as the report prints them.
        settings: the models and every setting the run used.
        plan_path: the plan as JSON (``quota plan``'s format).
        report_path: the HTML report (``quota ask --report``'s page).
        options: the options, one a line, as parsed.
        warnings: what the video's reading said (a file cut short, frames that could not be decoded), one line
            each, with the file named as the user knows it.
        baseline_grid: the native token grid ``(h, w)`` of each baseline frame (the model's own path).
    """

    answer: Answer
    plan: Plan
    frames: Frames | None
    baseline: Answer | None
    info: RunInfo
    settings: dict[str, Any]
    plan_path: Path
    report_path: Path
    options: list[str] = field(default_factory=list)
    warnings: tuple[str, ...] = ()
    baseline_grid: tuple[int, int] | None = None


def public_model_name(model: str | None) -> str | None:
    """How the page names a model: a hub id as it is, a local checkpoint folder by its own name only (the page
    shows no path of the server)."""
    if model is None or not Path(model).expanduser().exists():
        return model
    return Path(model).expanduser().resolve().name


def parse_options(text: str | Sequence[str] | None) -> list[str]:
    """Multiple-choice options from the page: one per line (blank lines ignored)."""
    if text is None:
        return []
    lines = text.splitlines() if isinstance(text, str) else list(text)
    return [" ".join(str(line).split()) for line in lines if str(line).strip()]


def parse_budget(value: Any) -> int | None:
    """The page's budget field: empty means the loaded setting; anything else must be a whole number.

    Raises:
        ConfigError: a value that is not a whole number (the range is checked by the config).
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"budget must be an integer, got {value!r}") from None
    if not number.is_integer():
        raise ConfigError(f"budget must be an integer, got {value!r}")
    return int(number)


class DemoSession:
    """A loaded :class:`~quota.pipeline.QuoTA` answering the page's questions one at a time.

    Args:
        qa: the pipeline (models loaded once for the life of the page).
        out_dir: folder for each run's plan JSON and HTML report (one sub-folder per run).
        base, scorer, preset: the names shown in reports and settings.
    """

    def __init__(self, qa: Any, out_dir: str | Path, *, base: str | None = None, scorer: str | None = None,
                 preset: str | None = None) -> None:
        self.qa = qa
        self.out_dir = Path(out_dir)
        self.base = public_model_name(base)
        self.scorer = public_model_name(scorer if scorer is not None else qa.config.scorer)
        self.preset = preset
        self._lock = threading.Lock()
        self._runs = itertools.count(1)
        self._variant: Any = None  # the pipeline for the last budget other than the loaded one
        self._stop = threading.Event()
        self._running = False  # a run holds the models
        self._warnings: dict[str, list[str]] = {}  # video path -> what reading it said

    # ------------------------------------------------------------------ settings
    def pipeline_for(self, budget: int | None) -> Any:
        """The pipeline to use for ``budget`` tokens: the loaded one, or one sharing its models and its
        cached video with only the budget changed.

        Raises:
            ConfigError: a budget the config rejects (same message as ``--budget``).
        """
        if budget is None or budget == self.qa.config.budget:
            return self.qa
        if self._variant is not None and self._variant.config.budget == budget:
            return self._variant
        self._variant = self.qa.with_config(budget=budget)  # shares the models and the cached work
        return self._variant

    def settings(self, qa: Any) -> dict[str, Any]:
        """The models, the preset and every config field of ``qa``."""
        return {**qa.config.to_dict(), "base": self.base, "scorer": self.scorer, "preset": self.preset}

    # ------------------------------------------------------------------ runs
    def run(self, video: str | None, question: str, options: Any = None, *, budget: Any = None,
            baseline: bool = False, name: str | None = None) -> DemoResult:
        """:meth:`stages` to the end: the result alone."""
        result = None
        for event in self.stages(video, question, options, budget=budget, baseline=baseline, name=name):
            if isinstance(event, DemoResult):
                result = event
        assert result is not None
        return result

    def stages(self, video: str | None, question: str, options: Any = None, *, budget: Any = None,
               baseline: bool = False, name: str | None = None) -> Iterator[Stage | AnswerSoFar | DemoResult]:
        """Answer ``question`` about ``video``, yielding a :class:`Stage` as each stage starts, an
        :class:`AnswerSoFar` as QuoTA's answer is written, and the :class:`DemoResult` last. One run at a time: a second caller waits for the first.

        Args:
            video: path of the video file (``None``: nothing was given).
            question: the question.
            options: multiple-choice options, one per line or a list.
            budget: total visual tokens (``None`` or empty: the loaded setting).
            baseline: also answer without QuoTA on the same video.
            name: the video's name as the user knows it (an upload's file name); the plan, the report and the
                warnings name the video so instead of by its path on the server.

        Raises:
            QuotaError: bad input (no video, a file that is not a video, an empty question, options lettered
                out of order, a budget out of range for the video or the model) with the command line's
                message, before any model runs; :class:`RunStopped` after :meth:`stop`.
        """
        opts = parse_options(options)
        qa = self._recording(str(video), name, lambda: self._checked(video, question, opts, budget))
        with self._lock:
            self._stop.clear()
            self._running = True
            try:
                yield from self._run(qa, str(video), question, opts, baseline, name)
            finally:
                self._running = False

    def stop(self) -> bool:
        """End the run that holds the models at its next stage (the page's Stop button); returns whether one
        did. Runs waiting for the models, and later ones, are not affected."""
        if self._running:
            self._stop.set()
        return self._running

    def _recording(self, video: str, name: str | None, work: Any) -> Any:
        """``work()``, keeping the warnings quota's own code gave meanwhile (see :meth:`_note`)."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                return work()
            finally:
                self._note(video, [w for w in caught if _ours(w.filename)], name)

    def _note(self, video: str, caught: list, name: str | None) -> None:
        """Keep the warnings the video gave (per file, since the pipeline caches what it read and warns once)."""
        lines = [" ".join(str(w.message).split()) for w in caught]
        if name:
            lines = [line.replace(video, name) for line in lines]
        if lines:
            kept = self._warnings.setdefault(video, [])
            kept.extend(line for line in lines if line not in kept)

    def _checked(self, video: str | None, question: str, options: list[str], budget: Any) -> Any:
        """The pipeline for ``budget``, once the question, the options, the budget and the video are known to be
        good: the video is opened and the budget checked against its sampled frames and the base model's
        context, as the command line does before any model runs (:func:`quota.preflight.check_budget`)."""
        from ..choices import check_option_labels, check_question
        from ..preflight import check_budget, context_tokens
        from ..video import probe, sample_indices

        check_question(question)
        check_option_labels(options)
        qa = self.pipeline_for(parse_budget(budget))
        if video is None or not str(video).strip():
            raise ConfigError("no video: upload a file or pick one from the list")
        index = probe(str(video))
        cfg = qa.config
        frames = len(sample_indices(index.n_frames, index.fps or 1.0, **cfg.sampling))
        adapter = getattr(qa, "adapter", None)
        context = context_tokens(adapter.model.config) if adapter is not None else None
        check_budget(cfg.budget, frames=frames, context=context, max_new_tokens=cfg.max_new_tokens)
        return qa

    def _run(self, qa: Any, video: str, question: str, options: list[str], baseline: bool, name: str | None
             ) -> Iterator[Stage | AnswerSoFar | DemoResult]:
        stage = dict(STAGES)

        # The pipeline says as each of its stages starts (on_stage); Stop ends the run there, mid-answer too.
        def began(stage_name: str, report: Callable[[str], None]) -> None:
            if self._stop.is_set():
                raise RunStopped("stopped: the run was ended with the Stop button")
            report(stage_name)

        answer = yield from _staged(lambda report, stream: self._recording(
            video, name, lambda: qa.answer(video, question, options=options or None,
                                           on_stage=lambda n: began(n, report), on_text=stream)))
        plan = answer.plan
        assert plan is not None
        frames = plan.frames
        base_answer = None
        if baseline:
            title = "answering without QuoTA (baseline)"
            yield self._stage(title, stage[title])
            base_answer = self._recording(
                video, name, lambda: qa.answer(video, question, options=options or None, baseline=True))
        yield self._stage("writing the report", stage["writing the report"])
        if name:
            plan = dataclasses.replace(plan, video=name)
        grid = None
        if base_answer is not None and base_answer.frames is not None:
            grid = tuple(qa.native_grid(base_answer.frames))
        yield self._result(qa, answer, plan, frames, base_answer, options,
                           tuple(self._warnings.get(video, ())), grid)

    def _stage(self, title: str, progress: float) -> Stage:
        if self._stop.is_set():
            raise RunStopped("stopped: the run was ended with the Stop button")
        return Stage(title, progress)

    def _result(self, qa: Any, answer: Answer, plan: Plan, frames: Frames | None, base_answer: Answer | None,
                options: list[str], notes: tuple[str, ...] = (), grid: Any = None) -> DemoResult:
        from ..commands import plan_json

        info = RunInfo(answer=answer.text, choice=answer.choice, options=tuple(options), base=self.base,
                       scorer=self.scorer, preset=self.preset, timings=dict(answer.timings), warnings=notes)
        folder = self.out_dir / f"run-{next(self._runs):04d}"
        folder.mkdir(parents=True, exist_ok=True)
        plan_path = folder / "plan.json"
        plan_path.write_text(plan_json(plan) + "\n", encoding="utf-8")
        report_path = folder / "report.html"
        render_html(plan, frames, report_path, info=info)
        return DemoResult(answer=answer, plan=plan, frames=frames, baseline=base_answer, info=info,
                          settings=self.settings(qa), plan_path=plan_path, report_path=report_path,
                          options=options, warnings=notes, baseline_grid=grid)


def _staged(work: Callable[[Callable[[str], None], Callable[[str], None]], Any]
            ) -> Generator[Stage | AnswerSoFar, None, Any]:
    """Run ``work(on_stage, on_text)`` (a pipeline call) in a worker thread, yield a :class:`Stage` as each page
    stage starts (:data:`PIPELINE_STAGES`, each once) and an :class:`AnswerSoFar` as each piece of the answer
    arrives, and return what ``work`` returned (or raise what it raised).

    The worker is waited for even when the caller stops early, so the models are never used by two runs."""
    events: queue.Queue[tuple[str, str] | None] = queue.Queue()
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = work(lambda n: events.put(("stage", n)), lambda piece: events.put(("text", piece)))
        except BaseException as exc:  # handed to the caller below
            outcome["error"] = exc
        finally:
            events.put(None)

    worker = threading.Thread(target=target, name="quota-demo-run", daemon=True)
    worker.start()
    progress, shown, text = dict(STAGES), set(), ""
    try:
        while (event := events.get()) is not None:
            kind, value = event
            if kind == "text":
                text += value
                yield AnswerSoFar(text)
                continue
            page = PIPELINE_STAGES.get(value)
            if page is not None and page not in shown:
                shown.add(page)
                yield Stage(page, progress[page])
    finally:
        worker.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


__all__ = ["DemoSession", "DemoResult", "RunStopped", "Stage", "AnswerSoFar", "STAGES", "parse_options", "parse_budget"]
