"""One loaded pipeline serving the questions of the demo page, without any web code.

:class:`DemoSession` runs one question the way ``quota ask --report`` does (decode, decouple, score,
answer, and optionally the baseline on the same video), one run at a time, and says which stage it is in
as it goes. The web page (:mod:`quota.demo.app`) only turns its :class:`Stage` events and its
:class:`DemoResult` into components; tests drive it directly.

The pipeline keeps the frames, features and scores of the last video, so a second question about the
same file reuses them.
"""

from __future__ import annotations

import itertools
import queue
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Generator, Iterator, Sequence

from ..errors import ConfigError
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
        self.base = base
        self.scorer = scorer if scorer is not None else qa.config.scorer
        self.preset = preset
        self._lock = threading.Lock()
        self._runs = itertools.count(1)
        self._variant: Any = None  # the pipeline for the last budget other than the loaded one

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
        return {"base": self.base, "scorer": self.scorer, "preset": self.preset, **qa.config.to_dict()}

    # ------------------------------------------------------------------ runs
    def run(self, video: str | None, question: str, options: Any = None, *, budget: Any = None,
            baseline: bool = False) -> DemoResult:
        """:meth:`stages` to the end: the result alone."""
        result = None
        for event in self.stages(video, question, options, budget=budget, baseline=baseline):
            if isinstance(event, DemoResult):
                result = event
        assert result is not None
        return result

    def stages(self, video: str | None, question: str, options: Any = None, *, budget: Any = None,
               baseline: bool = False) -> Iterator[Stage | DemoResult]:
        """Answer ``question`` about ``video``, yielding a :class:`Stage` as each stage starts and the
        :class:`DemoResult` last. One run at a time: a second caller waits for the first.

        Args:
            video: path of the video file (``None``: nothing was given).
            question: the question.
            options: multiple-choice options, one per line or a list.
            budget: total visual tokens (``None`` or empty: the loaded setting).
            baseline: also answer without QuoTA on the same video.

        Raises:
            QuotaError: bad input (no video, a file that is not a video, an empty question, a budget out
                of range) with the command line's message, before any model runs.
        """
        opts = parse_options(options)
        qa = self._checked(video, question, budget)
        with self._lock:
            yield from self._run(qa, str(video), question, opts, baseline)

    def _checked(self, video: str | None, question: str, budget: Any) -> Any:
        """The pipeline for ``budget``, once the question, the budget and the video are known to be good
        (the video is opened, as the command line does before any model runs)."""
        from ..choices import check_question
        from ..video import probe

        check_question(question)
        qa = self.pipeline_for(parse_budget(budget))
        if video is None or not str(video).strip():
            raise ConfigError("no video: upload a file or pick one from the list")
        probe(str(video))
        return qa

    def _run(self, qa: Any, video: str, question: str, options: list[str], baseline: bool
             ) -> Iterator[Stage | DemoResult]:
        stage = dict(STAGES)
        answer = yield from _staged(lambda began: qa.answer(video, question, options=options or None, on_stage=began))
        plan = answer.plan
        assert plan is not None
        frames = plan.frames
        base_answer = None
        if baseline:
            yield Stage("answering without QuoTA (baseline)", stage["answering without QuoTA (baseline)"])
            base_answer = qa.answer(video, question, options=options or None, baseline=True)
        yield Stage("writing the report", stage["writing the report"])
        yield self._result(qa, answer, plan, frames, base_answer, options)

    def _result(self, qa: Any, answer: Answer, plan: Plan, frames: Frames | None, base_answer: Answer | None,
                options: list[str]) -> DemoResult:
        from ..commands import plan_json

        info = RunInfo(answer=answer.text, choice=answer.choice, options=tuple(options), base=self.base,
                       scorer=self.scorer, preset=self.preset, timings=dict(answer.timings))
        folder = self.out_dir / f"run-{next(self._runs):04d}"
        folder.mkdir(parents=True, exist_ok=True)
        plan_path = folder / "plan.json"
        plan_path.write_text(plan_json(plan) + "\n", encoding="utf-8")
        report_path = folder / "report.html"
        render_html(plan, frames, report_path, info=info)
        return DemoResult(answer=answer, plan=plan, frames=frames, baseline=base_answer, info=info,
                          settings=self.settings(qa), plan_path=plan_path, report_path=report_path,
                          options=options)


def _staged(work: Callable[[Callable[[str], None]], Any]) -> Generator[Stage, None, Any]:
    """Run ``work(on_stage)`` (a pipeline call) in a worker thread, yield a :class:`Stage` as each page stage
    starts (:data:`PIPELINE_STAGES`, each once), and return what ``work`` returned (or raise what it raised).

    The worker is waited for even when the caller stops early, so the models are never used by two runs."""
    events: queue.Queue[str | None] = queue.Queue()
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = work(events.put)
        except BaseException as exc:  # handed to the caller below
            outcome["error"] = exc
        finally:
            events.put(None)

    worker = threading.Thread(target=target, name="quota-demo-run", daemon=True)
    worker.start()
    progress, shown = dict(STAGES), set()
    try:
        while (name := events.get()) is not None:
            page = PIPELINE_STAGES.get(name)
            if page is not None and page not in shown:
                shown.add(page)
                yield Stage(page, progress[page])
    finally:
        worker.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


__all__ = ["DemoSession", "DemoResult", "Stage", "STAGES", "parse_options", "parse_budget"]
