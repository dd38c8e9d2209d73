"""The QuoTA pipeline: sampling → decoupling → scoring → token assignment → answering.

    from quota import QuoTA
    qa = QuoTA.from_pretrained("llava-hf/LLaVA-Video-7B-Qwen2-hf")     # scorer: Qwen2-VL-2B (paper)
    answer = qa.answer("video.mp4", "What does the man put in the box?", options=["A. a cup", "B. a book"])
    answer.text, answer.choice, answer.plan, answer.timings

Work on one video is cached, so several questions about the same video (Video-MME has three)
decode its frames once, encode them once and score them once per distinct clue.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from .assign import LLAVA_NATIVE_GRID, Grid, allocate_grids, frame_weights, resize_frames
from .choices import extract_choice, option_letters, option_lines
from .config import QuotaConfig, get_config
from .decouple import Decoupler, scoring_question
from .errors import ConfigError, QuotaError
from .types import Answer, Clue, Frames, Plan, format_seconds, time_instruction

#: The paper's base model (Hugging Face format).
DEFAULT_BASE = "llava-hf/LLaVA-Video-7B-Qwen2-hf"
#: Instruction appended to multiple-choice questions (the wording lmms-eval's video tasks use).
MC_INSTRUCTION = "Answer with the option's letter from the given choices directly."

VideoInput = "str | os.PathLike[str] | Frames"


@dataclass
class _VideoState:
    """What the pipeline keeps about the current video: frames, features and scores per clue."""

    key: str
    frames: Frames
    features: torch.Tensor | None = None
    scores: dict[tuple[Any, ...], np.ndarray] | None = None


class QuoTA:
    """Query-oriented token assignment around one base model.

    Args:
        adapter: the base model's adapter (:mod:`quota.models`), or ``None`` for plan-only use with
            the uniform scorer (no model at all).
        scorer: anything with ``score(frames, clue) -> [T] scores`` (:mod:`quota.scoring`).
        config: the settings (:class:`~quota.config.QuotaConfig`; the ``paper`` preset by default).
        quiet: no progress bars.
    """

    def __init__(self, adapter: Any, scorer: Any, config: QuotaConfig | None = None, *, quiet: bool = False) -> None:
        self.adapter = adapter
        self.scorer = scorer
        self.config = config or get_config("paper")
        self.quiet = quiet
        self.uniform = type(scorer).__name__ == "UniformScorer"
        if adapter is None and not self.uniform:
            raise ConfigError("a base model is needed for query decoupling; give base=... or scorer='uniform'")
        self.decoupler = (
            Decoupler.from_config(adapter.generate_text, self.config) if adapter is not None else None
        )
        self._video: _VideoState | None = None
        self._clues: OrderedDict[tuple[Any, ...], Clue] = OrderedDict()
        self.last_frames: Frames | None = None

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_pretrained(
        cls,
        base: str | None = DEFAULT_BASE,
        scorer: Any = None,
        preset: str | QuotaConfig = "paper",
        *,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        quiet: bool = False,
        trust_remote_code: bool = False,
        **overrides: Any,
    ) -> "QuoTA":
        """Load the base model and the scorer.

        Args:
            base: base model id or local folder (LLaVA-OneVision / LLaVA-Video / Qwen2(.5)-VL), or
                ``None`` for plan-only use with ``scorer="uniform"``.
            scorer: a scorer model id or folder, ``"base"`` (reuse the base model), ``"uniform"``
                (no scoring: the paper's sampling with equal grids), or a scorer object. ``None``:
                the preset's scorer (paper: Qwen/Qwen2-VL-2B-Instruct).
            preset: a preset name (:data:`quota.config.PRESETS`) or a config.
            device, dtype: where and how to run both models (CUDA + bfloat16 when available,
                else CPU + float32).
            trust_remote_code: passed to ``from_pretrained``; off unless you ask for it.
            **overrides: config fields to change (``budget=6272``, ``resize="adaptive_pool"``...).
        """
        from .models import load_adapter
        from .scoring import load_scorer

        if scorer is None:
            scorer = overrides.pop("scorer", None)
        elif "scorer" in overrides and overrides["scorer"] != scorer:
            raise ConfigError(f"scorer given twice: {scorer!r} and scorer={overrides['scorer']!r}")
        overrides.pop("scorer", None)
        config = get_config(preset, **overrides)
        if scorer is None:
            scorer = config.scorer
        elif isinstance(scorer, str):
            config = config.replace(scorer=scorer)  # the config names the scorer that actually runs
        else:
            config = config.replace(scorer=type(scorer).__name__)
        adapter = None
        if base is not None:
            adapter = load_adapter(base, device=device, dtype=dtype, trust_remote_code=trust_remote_code)
        if isinstance(scorer, str):
            if scorer == "base":
                if adapter is None:
                    raise ConfigError("scorer='base' needs a base model")
                from .scoring import LVLMScorer

                qwen = adapter.family.startswith("qwen")
                scorer_obj = LVLMScorer.from_model(
                    adapter.model, adapter.processor, batch_size=config.scorer_batch_size,
                    normalize=config.score_normalize, quiet=quiet,
                    max_pixels=config.scorer_max_pixels if qwen else None,
                    vision_batch_size=config.scorer_vision_batch, prefill_chunk=config.scorer_prefill_chunk,
                )
            else:
                kw: dict[str, Any] = {"quiet": quiet}
                if scorer != "uniform":
                    kw.update(device=device, dtype=dtype, max_pixels=config.scorer_max_pixels,
                              batch_size=config.scorer_batch_size, normalize=config.score_normalize,
                              vision_batch_size=config.scorer_vision_batch,
                              prefill_chunk=config.scorer_prefill_chunk, trust_remote_code=trust_remote_code)
                scorer_obj = load_scorer(scorer, **kw)
        else:
            scorer_obj = scorer
        return cls(adapter, scorer_obj, config, quiet=quiet)

    # ------------------------------------------------------------------ stages
    def load_video(self, video: Any) -> Frames:
        """The sampled frames of ``video`` (a path, or :class:`Frames` used as they are)."""
        return self._state(video).frames

    def decouple(self, question: str, options: Sequence[str] | None = None) -> Clue:
        """The clue for ``question`` (cached per question and options)."""
        if self.uniform or self.config.decouple == "none" or self.decoupler is None:
            return Clue(objects=None, mode="none", question=question)
        key = (question, tuple(options or ()))
        if key not in self._clues:
            self._clues[key] = self.decoupler(question, list(options) if options else None)
            while len(self._clues) > 256:
                self._clues.popitem(last=False)
        return self._clues[key]

    def native_grid(self, frames: Frames) -> Grid:
        if self.adapter is None:
            return LLAVA_NATIVE_GRID
        return tuple(self.adapter.native_grid(frames))  # type: ignore[return-value]

    def plan(self, video: Any, question: str, options: Sequence[str] | None = None) -> Plan:
        """Sample, decouple and score: which frames the model sees and with how many tokens."""
        return self._plan(video, question, options, timings={})

    def answer(
        self,
        video: Any,
        question: str,
        options: Sequence[str] | None = None,
        *,
        baseline: bool = False,
    ) -> Answer:
        """Answer ``question`` about ``video``.

        Args:
            options: multiple-choice options (``"A. ..."`` or bare texts, lettered in order); the
                chosen letter is extracted into :attr:`Answer.choice`.
            baseline: skip QuoTA: the model's own video path on ``config.baseline_frames`` uniform
                frames (the paper's baseline), for comparison.
        """
        if self.adapter is None:
            raise ConfigError("answering needs a base model; load one with QuoTA.from_pretrained(base=...)")
        timings: dict[str, float] = {}
        start = time.perf_counter()
        if baseline:
            with _timer(timings, "decode"):
                frames = self._baseline_frames(video)
            self.last_frames = frames
            prompt = self.answer_prompt(question, options, frames.duration, frames.timestamps)
            with _timer(timings, "generate"):
                text = self.adapter.generate_baseline(frames, prompt, max_new_tokens=self.config.max_new_tokens)
            plan = None
        else:
            plan = self._plan(video, question, options, timings)
            state = self._video
            assert state is not None
            with _timer(timings, "encode"):
                if state.features is None:
                    state.features = self.adapter.encode(state.frames)
                method = self.config.resize
                resized = resize_frames(state.features, plan.grids, method)
            prompt = self.answer_prompt(question, options, plan.duration, plan.kept_timestamps)
            labels = [format_seconds(t) for t in plan.kept_timestamps]
            with _timer(timings, "generate"):
                text = self.adapter.generate(
                    prompt, resized, plan.kept_grids, newline=self.config.newline,
                    frame_labels=labels, max_new_tokens=self.config.max_new_tokens,
                )
        timings["total"] = time.perf_counter() - start
        choice = extract_choice(text, option_letters(len(options)), options) if options else None
        return Answer(text=text, plan=plan, timings=timings, choice=choice)

    def answer_prompt(
        self, question: str, options: Sequence[str] | None, duration: float, timestamps: Sequence[float]
    ) -> str:
        """The user turn's text: time instruction (if on), question, lettered options, instruction."""
        parts = []
        if self.config.time_prompt:
            parts.append(time_instruction(duration, [float(t) for t in timestamps]))
        parts.append(question.strip())
        if options:
            parts.extend(option_lines(options))
            parts.append(MC_INSTRUCTION)
        return "\n".join(parts)

    # ------------------------------------------------------------------ internals
    def _plan(self, video: Any, question: str, options: Sequence[str] | None, timings: dict[str, float]) -> Plan:
        if not isinstance(question, str) or not question.strip():
            raise ConfigError("the question must be a non-empty string")
        with _timer(timings, "decode"):
            state = self._state(video)
        frames = state.frames
        self.last_frames = frames
        with _timer(timings, "decouple"):
            clue = self.decouple(question, options)
        with _timer(timings, "score"):
            scores = self._scores(state, clue)
        cfg = self.config
        weights = frame_weights(scores, cfg.weight_scale, cfg.weight_power)
        native = self.native_grid(frames)
        cap = cfg.cap or cfg.resize != "bilinear"
        grids = allocate_grids(weights, budget=cfg.budget, native=native, cap=cap, mode=cfg.allocation)
        return Plan(
            indices=frames.indices.tolist(),
            timestamps=frames.timestamps.tolist(),
            scores=scores.tolist(),
            weights=weights.tolist(),
            grids=grids,
            budget=cfg.budget,
            native=native,
            method=cfg.resize,
            duration=frames.duration,
            clue=clue,
            video=frames.path,
            question=question,
        )

    def _scores(self, state: _VideoState, clue: Clue) -> np.ndarray:
        if self.uniform:
            key: tuple[Any, ...] = ("uniform",)
        else:
            key = (clue.objects, clue.mode, scoring_question(clue, clue.question))
        if state.scores is None:
            state.scores = {}
        if key not in state.scores:
            scores = np.asarray(self.scorer.score(state.frames, clue), dtype=np.float64).reshape(-1)
            if scores.shape[0] != len(state.frames):
                raise QuotaError(f"the scorer returned {scores.shape[0]} scores for {len(state.frames)} frames")
            state.scores[key] = np.clip(scores, 0.0, 1.0)
        return state.scores[key]

    def _sampling(self) -> dict[str, Any]:
        cfg = self.config
        return {"base": cfg.base_frames, "per_hour": cfg.frames_per_hour, "max_frames": cfg.max_frames}

    def _state(self, video: Any) -> _VideoState:
        key = _video_key(video, self._sampling())
        if self._video is None or self._video.key != key:
            self._video = None  # free the previous video's frames and features first
            if isinstance(video, Frames):
                frames = video
            else:
                from .video import load_frames

                frames = load_frames(video, max_side=self.config.decode_max_side, **self._sampling())
            self._video = _VideoState(key=key, frames=frames)
        return self._video

    def _baseline_frames(self, video: Any) -> Frames:
        if isinstance(video, Frames):
            if len(video) <= self.config.baseline_frames:
                return video
            from .video import uniform_indices

            return video.select(uniform_indices(len(video), self.config.baseline_frames))
        from .video import load_frames

        return load_frames(video, n=self.config.baseline_frames, max_side=self.config.decode_max_side)


def _video_key(video: Any, sampling: dict[str, Any]) -> str:
    if isinstance(video, Frames):
        return f"frames:{id(video)}"
    path = os.fspath(video)
    try:
        st = os.stat(path)
        stamp = f"{st.st_size}:{st.st_mtime_ns}"
    except OSError:
        stamp = "missing"
    raw = f"{os.path.abspath(path)}|{stamp}|{sorted(sampling.items())}"
    return hashlib.sha1(raw.encode()).hexdigest()


@contextmanager
def _timer(timings: dict[str, float], name: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[name] = timings.get(name, 0.0) + time.perf_counter() - start


__all__ = ["QuoTA", "DEFAULT_BASE", "MC_INSTRUCTION"]
