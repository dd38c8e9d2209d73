"""The QuoTA pipeline: sampling → decoupling → scoring → token assignment → answering.

    from quota import QuoTA
    qa = QuoTA.from_pretrained("llava-hf/LLaVA-Video-7B-Qwen2-hf")     # scorer: Qwen2-VL-2B (paper)
    answer = qa.answer("video.mp4", "What does the man put in the box?", options=["A. a cup", "B. a book"])
    answer.text, answer.choice, answer.plan, answer.timings

Work on one video is cached, so several questions about the same video (Video-MME has three)
decode its frames once, encode them once and score them once per distinct clue.
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

from .assign import LLAVA_NATIVE_GRID, Grid, allocate_grids, frame_weights, resize_frames, token_count
from .choices import check_question, extract_choice, option_letters, option_lines
from .config import DEFAULT_BASE, QuotaConfig, get_config, resolve_config, settings_for
from .decouple import Decoupler
from .errors import BudgetError, ConfigError, QuotaError
from .reference import answer_question, reference_query
from .scoring.question import scoring_question
from .types import Answer, Clue, Frames, Plan, time_instruction

#: Instruction appended to multiple-choice questions (the wording lmms-eval's video tasks use).
MC_INSTRUCTION = "Answer with the option's letter from the given choices directly."
#: Called with a stage's name as the stage starts (:meth:`QuoTA.plan`, :meth:`QuoTA.answer`).
StageCallback = Callable[[str], None]
#: Questions whose clue stays cached (per pipeline family, see :meth:`QuoTA.with_config`).
CLUE_CACHE_SIZE = 256

#: Settings that decide which frames are decoded (and so the frame, feature and score caches' video key).
_FRAME_FIELDS = settings_for("frames")
#: Settings a scorer object is built with; changing one rebuilds the scorer around the same model.
_SCORER_FIELDS = tuple(f for f in settings_for("score") if f not in ("scorer", "prompts"))
#: Settings the decoupler is built with (the chat template wraps its prompt for a LLaVA base).
_DECOUPLE_FIELDS = settings_for("decouple")


@dataclass
class _Timed:
    """A stage's result and the seconds it took when it was computed."""

    value: Any
    seconds: float


@dataclass
class _VideoWork:
    """What is kept about the current video: its frames, the base model's features, scores per clue."""

    key: tuple[Any, ...]
    frames: _Timed
    features: _Timed | None = None
    scores: dict[tuple[Any, ...], _Timed] = field(default_factory=dict)
    #: Native-grid features ``[H, W, C]`` of single frames, by position (``encode_kept_only``).
    frame_features: dict[int, torch.Tensor] = field(default_factory=dict)
    #: The scorer's own per-video cache (its image features and prefixes; ``scorer_feature_cache``,
    #: ``scorer_prefix_cache``).
    scorer_cache: dict[Any, Any] = field(default_factory=dict)


class _WorkCache:
    """Work shared by a pipeline and the pipelines :meth:`QuoTA.with_config` makes from it (same models).

    Every key holds what determines the result: the video's identity and the frame settings, the question
    with its options and the decoupling settings, the clue with the scorer settings. One video is kept at a
    time (its pixels and features are large); clues are kept for :data:`CLUE_CACHE_SIZE` questions.
    """

    def __init__(self) -> None:
        self.video: _VideoWork | None = None
        self.clues: OrderedDict[tuple[Any, ...], _Timed] = OrderedDict()


class QuoTA:
    """Query-oriented token assignment around one base model.

    Args:
        adapter: the base model's adapter (:mod:`quota.models`), or ``None`` for plan-only use with
            the uniform scorer (no model at all).
        scorer: anything with ``score(frames, clue) -> [T] scores`` (:mod:`quota.scoring`). A scorer whose
            ``uses_clue`` is false (the uniform scorer) needs no query decoupling, so none runs.
        config: the settings (:class:`~quota.config.QuotaConfig`; the ``paper`` preset by default). They are
            fixed for the pipeline's life: :meth:`with_config` gives a pipeline with other settings.
        quiet: no progress bars.
    """

    def __init__(self, adapter: Any, scorer: Any, config: QuotaConfig | None = None, *, quiet: bool = False) -> None:
        self.adapter = adapter
        self.scorer = scorer
        self._config = config or get_config("paper")
        self.quiet = quiet
        if adapter is None and self.uses_clue:
            raise ConfigError("a base model is needed for query decoupling; give base=... or scorer='uniform'")
        self.decoupler = (
            Decoupler.from_config(partial(adapter.generate_text, chat=self.conversation), self._config)
            if adapter is not None else None
        )
        self._cache = _WorkCache()

    @property
    def config(self) -> QuotaConfig:
        """The settings this pipeline runs with (read-only; see :meth:`with_config`)."""
        return self._config

    @property
    def conversation(self) -> str:
        """The conversation of the base model's turns: ``"qwen_1_5"`` for a LLaVA base under
        ``chat_template="paper"``, else ``"model"`` (the checkpoint's own chat template)."""
        if self.adapter is None:
            return "model"
        return self.adapter.resolve_chat(self._config.chat_template)

    @property
    def uses_clue(self) -> bool:
        """Whether the scorer reads the clue (``False`` for the uniform scorer: no decoupling runs)."""
        from .scoring.base import uses_clue

        return uses_clue(self.scorer)

    @property
    def uniform(self) -> bool:
        """Whether frames are scored without looking at the question (the uniform scorer)."""
        return not self.uses_clue

    def with_config(self, config: QuotaConfig | None = None, **changes: Any) -> "QuoTA":
        """A pipeline with other settings that shares this one's loaded models and cached work.

        What depends on the settings is rebuilt: the decoupler (mode, token limit) and the scorer object
        (its settings, around the same loaded model). Cached frames, features, clues and scores are shared
        where the settings that determine them are equal, and recomputed where they differ.

        Args:
            config: a whole new config (its ``scorer`` must name the loaded scorer, or be ``"uniform"``).
            **changes: fields to change (values may be strings, as on the command line).

        Raises:
            ConfigError: an unknown field or a bad value, or a change of the scorer model or of
                ``attn_implementation`` (load a new pipeline with :meth:`from_pretrained` for those).
        """
        new_config = resolve_config(config or self._config, changes, source="with_config")
        if new_config.attn_implementation != self._config.attn_implementation:
            raise ConfigError(
                "with_config cannot change attn_implementation: the loaded models are shared with this pipeline; "
                "load a new pipeline with QuoTA.from_pretrained(..., attn_implementation=...)"
            )
        scorer = self.scorer
        if new_config.scorer != self._config.scorer:
            from .scoring import build_scorer, read_scorer

            if read_scorer(new_config.scorer).loads_checkpoint or read_scorer(new_config.scorer).is_base:
                raise ConfigError(
                    f"with_config cannot swap the scorer model ({self._config.scorer!r} -> {new_config.scorer!r}); "
                    "load a new pipeline with QuoTA.from_pretrained"
                )
            scorer = build_scorer(new_config.scorer, new_config, quiet=self.quiet)  # one that runs no model
        elif any(getattr(new_config, f) != getattr(self._config, f) for f in _SCORER_FIELDS):
            reconfigure = getattr(scorer, "reconfigured", None)
            if reconfigure is not None:
                scorer = reconfigure(new_config)
        other = QuoTA(self.adapter, scorer, new_config, quiet=self.quiet)
        other._cache = self._cache
        return other

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
            **overrides: config fields to change (``budget=6272``, ``resize="adaptive_pool"``...); values
                may be strings, as on the command line (:func:`quota.config.resolve_config`).
        """
        from .models import load_adapter
        from .scoring import build_scorer

        config, scorer = _config_and_scorer(preset, overrides, scorer)
        from .preflight import resolve_sources

        # a model only the hub has, with the hub off or out of reach: one line now, not a minute of retries
        from .scoring.registry import read_scorer

        named = read_scorer(scorer).checkpoint or None if isinstance(scorer, (str, os.PathLike)) else None
        resolve_sources({"base": base, "scorer": named})
        adapter = None
        if base is not None:
            adapter = load_adapter(base, device=device, dtype=dtype, trust_remote_code=trust_remote_code)
        scorer_obj = build_scorer(scorer, config, adapter=adapter, device=device, dtype=dtype, quiet=quiet,
                                  trust_remote_code=trust_remote_code)
        from .models.loading import set_attn_implementation

        for model in (getattr(adapter, "model", None), getattr(scorer_obj, "model", None)):
            if model is not None and hasattr(model, "set_attn_implementation"):
                set_attn_implementation(model, config.attn_implementation)
        return cls(adapter, scorer_obj, config, quiet=quiet)

    # ------------------------------------------------------------------ stages
    def load_video(self, video: Any) -> Frames:
        """The sampled frames of ``video`` (a path, or :class:`Frames` used as they are)."""
        return self._video(video).frames.value

    def decouple(self, question: str, options: Sequence[str] | None = None) -> Clue:
        """The clue for ``question`` (cached per question, options and decoupling settings)."""
        return self._clue(question, options)[0].value

    def check_question(self, question: str, options: Sequence[str] | None = None) -> None:
        """Raise before any work when the question is empty, has more options than letters, or cannot fit in the
        base model's context together with the token budget (:class:`BudgetError`)."""
        check_question(question, options)
        if self.adapter is not None:
            self._check_fits("\n".join([question, *option_lines(options)]), self._config.budget)

    def native_grid(self, frames: Frames) -> Grid:
        if self.adapter is None:
            return LLAVA_NATIVE_GRID
        return tuple(self.adapter.native_grid(frames))  # type: ignore[return-value]

    def plan(self, video: Any, question: str, options: Sequence[str] | None = None, *,
             on_stage: StageCallback | None = None) -> Plan:
        """Sample, decouple and score: which frames the model sees and with how many tokens.

        The plan carries the sampled frames (:attr:`Plan.frames`) and the seconds each stage took
        (:attr:`Plan.timings`; stages served from the cache are listed in :attr:`Plan.reused`).
        ``on_stage`` is called with each stage's name as it starts (``decode``, ``decouple``, ``score``,
        ``assign``: the keys of :attr:`Plan.timings`, in order; also for stages the cache serves), so a
        caller can say what is running without running the stages itself.
        """
        self.check_question(question, options)
        timings: dict[str, float] = {}
        reused: list[str] = []
        began = on_stage or _ignore
        work, clued = self._video_and_clue(video, question, options, timings, reused, began)
        clue = self._stage(timings, reused, "decouple", clued)
        began("score")
        scores = self._stage(timings, reused, "score", self._scores(work, clue))
        frames = work.frames.value
        cfg = self._config
        began("assign")
        with _timer(timings, "assign"):
            weights = frame_weights(scores, cfg.weight_scale, cfg.weight_power)
            native = self.native_grid(frames)
            cap = cfg.cap or cfg.resize != "bilinear"
            newline, shape = self._layout()
            grids = allocate_grids(weights, budget=cfg.budget, native=native, cap=cap, mode=cfg.allocation,
                                   shape=shape)
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
            stated_duration=frames.stated_duration,
            timings=timings,
            reused=reused,
            frames=frames,
            newline=newline,
            grid_shape=shape,
            conversation=self.conversation,
        )

    def _layout(self) -> tuple[str, str]:
        """The concrete newline policy and grid shape for this base model (``auto`` resolved by the adapter;
        with no model, ``auto`` means no newline and the paper's square grids)."""
        cfg = self._config
        if self.adapter is None:
            return ("none" if cfg.newline == "auto" else cfg.newline,
                    "square" if cfg.grid_shape == "auto" else cfg.grid_shape)
        return self.adapter.resolve_newline(cfg.newline), self.adapter.resolve_grid_shape(cfg.grid_shape)

    def answer(
        self,
        video: Any,
        question: str,
        options: Sequence[str] | None = None,
        *,
        baseline: bool = False,
        formatted: str | None = None,
        on_stage: StageCallback | None = None,
        on_text: Callable[[str], None] | None = None,
    ) -> Answer:
        """Answer ``question`` about ``video``.

        Args:
            options: multiple-choice options (``"A. ..."`` or bare texts, lettered in order); the
                chosen letter is extracted into :attr:`Answer.choice`.
            baseline: skip QuoTA: the model's own video path on ``config.baseline_frames`` uniform
                frames (the paper's baseline), for comparison.
            formatted: the question text exactly as the model should read it (a benchmark's own prompt,
                options and instruction included; :mod:`quota.eval.prompts`). It replaces question,
                option lines and instruction in the answer prompt, verbatim; ``question`` and ``options``
                still drive decoupling and scoring, and ``options`` the letter extraction.
            on_stage: called with each stage's name as it starts: those of :meth:`plan`, then ``encode``,
                ``resize``, ``generate`` (with ``baseline``: ``decode``, ``generate``); the keys of
                :attr:`Answer.timings` but ``total``, in order.
            on_text: called with each new piece of the answer as the model writes it (streaming); the pieces
                joined are the answer text before its ends are stripped. The answer is the same with or without.

        Returns:
            The :class:`Answer`; its ``timings`` hold the seconds of every stage (those served from the
            cache, listed in ``reused``, with what they took when computed) and ``total``, their sum.
        """
        if self.adapter is None:
            raise ConfigError("answering needs a base model; load one with QuoTA.from_pretrained(base=...)")
        if baseline:
            return self._answer_baseline(video, question, options, formatted, on_stage or _ignore, on_text)
        plan = self.plan(video, question, options, on_stage=on_stage)
        began = on_stage or _ignore
        timings, reused = dict(plan.timings), list(plan.reused)
        listed = plan.timestamps if self._config.time_frames == "sampled" else plan.kept_timestamps
        prompt = self.answer_prompt(question, options, plan.duration, listed, formatted=formatted)
        self._check_fits(prompt, token_count(plan))
        work = self._cache.video
        assert work is not None
        began("encode")
        if self._config.encode_kept_only:  # the vision tower never sees frames without tokens
            features = self._stage(timings, reused, "encode", self._kept_features(work, plan.keep))
            grids = plan.kept_grids
        else:
            features = self._stage(timings, reused, "encode", self._features(work))
            grids = plan.grids
        began("resize")
        with _timer(timings, "resize"):
            resized = resize_frames(features, grids, self._config.resize)
        labels = [self.adapter.frame_label(t) for t in plan.kept_timestamps]
        began("generate")
        with _timer(timings, "generate"):
            text = self.adapter.generate(
                prompt, resized, plan.kept_grids, newline=plan.newline,
                frame_labels=labels, max_new_tokens=self._config.max_new_tokens, chat=plan.conversation,
                on_text=on_text,
            )
        return self._finish(text, options, plan, timings, reused)

    def answer_prompt(
        self, question: str, options: Sequence[str] | None, duration: float, timestamps: Sequence[float],
        *, formatted: str | None = None,
    ) -> str:
        """The user turn's text: time instruction (if on; LLaVA-Video's, :func:`~quota.types.time_instruction`,
        listing ``timestamps``), then the question on the next line. With ``formatted``: ``formatted`` verbatim
        (a benchmark harness's text). With options under ``prompts="paper"``: the reference's answer text
        (:func:`quota.reference.answer_question`); under ``"quota"``: question, lettered options and
        instruction, one per line. A question without options is used as it is."""
        parts = []
        if self._config.time_prompt:
            parts.append(time_instruction(duration, [float(t) for t in timestamps]))
        if formatted is not None:
            parts.append(formatted)
            return "\n".join(parts)
        if options and self._config.prompts == "paper":
            parts.append(answer_question(reference_query(question, options)))
            return "\n".join(parts)
        parts.append(question.strip())
        if options:
            parts.extend(option_lines(options))
            parts.append(MC_INSTRUCTION)
        return "\n".join(parts)

    # ------------------------------------------------------------------ internals
    def _answer_baseline(self, video: Any, question: str, options: Sequence[str] | None,
                         formatted: str | None, began: StageCallback,
                         on_text: Callable[[str], None] | None = None) -> Answer:
        check_question(question, options)
        timings: dict[str, float] = {}
        began("decode")
        with _timer(timings, "decode"):
            frames = self._baseline_frames(video)
        prompt = self.answer_prompt(question, options, frames.duration, frames.timestamps, formatted=formatted)
        self._check_fits(prompt, 0)
        began("generate")
        with _timer(timings, "generate"):
            text = self.adapter.generate_baseline(frames, prompt, newline=self._config.newline,
                                                  max_new_tokens=self._config.max_new_tokens, chat=self.conversation,
                                                  on_text=on_text)
        return self._finish(text, options, None, timings, [], frames=frames)

    def _check_fits(self, prompt: str, visual_tokens: int) -> None:
        """Raise :class:`BudgetError` before any encoding when the prompt, the visual tokens and the answer do not
        fit in the base model's context."""
        from .preflight import context_tokens

        context = context_tokens(self.adapter.model.config)
        tokenizer = getattr(self.adapter.processor, "tokenizer", None)
        if context is None or tokenizer is None:
            return
        text = len(tokenizer(prompt)["input_ids"])
        needed = text + visual_tokens + self._config.max_new_tokens
        if needed > context:
            raise BudgetError(
                f"the question and prompt ({text} tokens), {visual_tokens} visual tokens and up to "
                f"{self._config.max_new_tokens} answer tokens need {needed} positions, more than the base model's "
                f"context of {context}; shorten the question or lower the budget"
            )

    @staticmethod
    def _finish(text: str, options: Sequence[str] | None, plan: Plan | None, timings: dict[str, float],
                reused: list[str], frames: Frames | None = None) -> Answer:
        timings["total"] = sum(timings.values())
        choice = extract_choice(text, option_letters(len(options)), options) if options else None
        return Answer(text=text, plan=plan, timings=timings, choice=choice, reused=reused,
                      frames=frames if plan is None else plan.frames)

    @staticmethod
    def _stage(timings: dict[str, float], reused: list[str], name: str, timed: tuple[_Timed, bool]) -> Any:
        """Record a stage's seconds (and whether it came from the cache); returns its value."""
        result, was_cached = timed
        timings[name] = timings.get(name, 0.0) + result.seconds
        if was_cached:
            reused.append(name)
        return result.value

    def _video(self, video: Any, timings: dict[str, float] | None = None,
               reused: list[str] | None = None) -> _VideoWork:
        key = _video_key(video, self._config)
        work = self._cache.video
        hit = work is not None and work.key == key
        if not hit:
            self._cache.video = None  # free the previous video's frames and features first
            start = time.perf_counter()
            if isinstance(video, Frames):
                frames = video
            else:
                from .video import load_frames

                frames = load_frames(video, **self._config.decode_options(), progress=not self.quiet,
                                     **self._config.sampling)
            work = self._cache.video = _VideoWork(key=key, frames=_Timed(frames, time.perf_counter() - start))
        assert work is not None
        if timings is not None and reused is not None:
            self._stage(timings, reused, "decode", (work.frames, hit))
        return work

    def _video_and_clue(self, video: Any, question: str, options: Sequence[str] | None, timings: dict[str, float],
                        reused: list[str], began: Any) -> tuple[_VideoWork, tuple[_Timed, bool]]:
        """The video's work and the clue: one after the other, or (``overlap_stages``, when the chain of thought
        has to run) the chain of thought on a second thread while this one decodes the video and lets the scorer
        prepare what does not depend on the question (``began`` then hears "decode" and "decouple" before both
        start). The thread is always joined before this returns or raises."""
        if not self._overlaps(question, options):
            began("decode")
            work = self._video(video, timings, reused)
            began("decouple")
            return work, self._clue(question, options)
        from concurrent.futures import ThreadPoolExecutor

        began("decode")
        began("decouple")
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="quota-decouple") as pool:
            pending = pool.submit(self._clue_on_own_stream, question, options)
            work = self._video(video, timings, reused)
            self._prepare_scorer(work, timings)
            return work, pending.result()

    def _clue_on_own_stream(self, question: str, options: Sequence[str] | None) -> tuple[_Timed, bool]:
        """:meth:`_clue` on a CUDA stream of its own when the base model is on a GPU (threads otherwise queue
        their kernels on the same default stream, one after the other)."""
        device = next(self.adapter.model.parameters()).device
        if device.type != "cuda":
            return self._clue(question, options)
        with torch.cuda.stream(torch.cuda.Stream(device)):
            return self._clue(question, options)

    def _overlaps(self, question: str, options: Sequence[str] | None) -> bool:
        """Whether :meth:`_video_and_clue` runs the chain of thought on a second thread: asked for, a chain of
        thought to run (not cached), and two different models (a scorer on the base model runs after it)."""
        if not self._config.overlap_stages or not self._decouples():
            return False
        if self._clue_key(question, options) in self._cache.clues:
            return False
        return getattr(self.scorer, "model", None) is not getattr(self.adapter, "model", None)

    def _prepare_scorer(self, work: _VideoWork, timings: dict[str, float]) -> None:
        """The scorer's question-independent work on this video (image features, prefixes) into its per-video
        cache, timed as part of the ``score`` stage."""
        prepare = getattr(self.scorer, "prepare", None)
        if prepare is None or not self._config.scorer_feature_cache:
            return
        if not getattr(self.scorer, "supports_feature_cache", False):
            return
        with _timer(timings, "score"):
            prepare(work.frames.value, cache=work.scorer_cache, **self._scorer_options())

    def _scorer_options(self) -> dict[str, Any]:
        """The scorer's keyword options for its per-video cache: the prefix bound when prefix reuse is on and
        the scorer supports it."""
        cfg = self._config
        if cfg.scorer_prefix_cache and getattr(self.scorer, "supports_prefix_cache", False):
            return {"prefix_cache_bytes": cfg.scorer_prefix_cache_bytes}
        return {}

    def _decouples(self) -> bool:
        """Whether a chain of thought runs for a question (a clue-reading scorer, decoupling on, a base model)."""
        return self.uses_clue and self._config.decouple != "none" and self.decoupler is not None

    def _clue_key(self, question: str, options: Sequence[str] | None) -> tuple[Any, ...]:
        cfg = self._config
        return (question, tuple(options or ())) + tuple(getattr(cfg, f) for f in _DECOUPLE_FIELDS)

    def _clue(self, question: str, options: Sequence[str] | None) -> tuple[_Timed, bool]:
        if not self._decouples():
            return _Timed(Clue(objects=None, mode="none", question=question), 0.0), False
        key = self._clue_key(question, options)
        clues = self._cache.clues
        if key in clues:
            clues.move_to_end(key)
            return clues[key], True
        start = time.perf_counter()
        clue = self.decoupler(question, list(options) if options else None)
        clues[key] = _Timed(clue, time.perf_counter() - start)
        while len(clues) > CLUE_CACHE_SIZE:
            clues.popitem(last=False)
        return clues[key], False

    def _scores(self, work: _VideoWork, clue: Clue) -> tuple[_Timed, bool]:
        cfg = self._config
        scorer = type(self.scorer)
        key: tuple[Any, ...] = (scorer.__module__, scorer.__qualname__, getattr(self.scorer, "model_id", None))
        key += tuple(getattr(cfg, f) for f in settings_for("score"))
        if self.uses_clue:  # a clue-blind scorer is keyed by its identity and settings alone
            key += (clue.objects, clue.mode, scoring_question(clue, clue.question))
        if key in work.scores:
            return work.scores[key], True
        frames = work.frames.value
        start = time.perf_counter()
        if cfg.scorer_feature_cache and getattr(self.scorer, "supports_feature_cache", False):
            # image features (and prefixes) once per video
            raw = self.scorer.score(frames, clue, cache=work.scorer_cache, **self._scorer_options())
        else:
            raw = self.scorer.score(frames, clue)
        scores = np.asarray(raw, dtype=np.float64).reshape(-1)
        if scores.shape[0] != len(frames):
            raise QuotaError(f"the scorer returned {scores.shape[0]} scores for {len(frames)} frames")
        work.scores[key] = _Timed(np.clip(scores, 0.0, 1.0), time.perf_counter() - start)
        return work.scores[key], False

    def _kept_features(self, work: _VideoWork, keep: Sequence[int]) -> tuple[_Timed, bool]:
        """``[K, H, W, C]`` native-grid features of the kept frames. Only frames not encoded before for this
        video go through the vision tower (frames with no tokens never do); the seconds are those spent now."""
        if not keep:
            raise BudgetError("no frame kept: the plan gave every frame 0 tokens")
        cached = work.frame_features
        missing = [i for i in keep if i not in cached]
        start = time.perf_counter()
        if missing:
            encoded = self.adapter.encode(work.frames.value.select(missing))
            for pos, feat in zip(missing, encoded):
                cached[pos] = feat
        stacked = torch.stack([cached[i] for i in keep])
        return _Timed(stacked, time.perf_counter() - start), not missing

    def _features(self, work: _VideoWork) -> tuple[_Timed, bool]:
        if work.features is not None:
            return work.features, True
        start = time.perf_counter()
        features = self.adapter.encode(work.frames.value)
        work.features = _Timed(features, time.perf_counter() - start)
        return work.features, False

    def _baseline_frames(self, video: Any) -> Frames:
        if isinstance(video, Frames):
            if len(video) <= self._config.baseline_frames:
                return video
            from .video import uniform_indices

            return video.select(uniform_indices(len(video), self._config.baseline_frames))
        from .video import load_frames

        return load_frames(video, n=self._config.baseline_frames, **self._config.decode_options(),
                           progress=not self.quiet)


def _config_and_scorer(preset: str | QuotaConfig, overrides: dict[str, Any], scorer: Any) -> tuple[QuotaConfig, Any]:
    """The config of :meth:`QuoTA.from_pretrained` and the scorer to build; ``scorer`` may come as the argument
    or as ``scorer=`` among the overrides (not both, unless equal). The config names the scorer that runs."""
    overrides = dict(overrides)
    given = overrides.pop("scorer", None)
    if scorer is not None and given is not None and given != scorer:
        raise ConfigError(f"scorer given twice: {scorer!r} and scorer={given!r}")
    scorer = scorer if scorer is not None else given
    config = resolve_config(preset, overrides)
    if scorer is None:
        return config, config.scorer
    name = os.fspath(scorer) if isinstance(scorer, (str, os.PathLike)) else type(scorer).__name__
    return config.replace(scorer=str(name)), scorer


def load_precision(device: str | torch.device | None = None, dtype: str | torch.dtype | None = None) -> tuple[str, str]:
    """``(device class, dtype)`` that :meth:`QuoTA.from_pretrained` loads the models in for these arguments
    (``("cuda", "bfloat16")``, ``("cpu", "float32")`` ...), worked out without loading anything."""
    from .models.loading import resolve_device, resolve_dtype

    dev = resolve_device(device)
    return dev.type, str(resolve_dtype(dtype, dev)).replace("torch.", "")


def _video_key(video: Any, config: QuotaConfig) -> tuple[Any, ...]:
    """What decides a video's sampled frames: the file (path, size, modification time) or the given
    :class:`Frames` object, and the frame settings."""
    settings = tuple(getattr(config, f) for f in _FRAME_FIELDS) + (config.decode_limits()["max_pixels"],)
    if isinstance(video, Frames):
        return ("frames", id(video)) + settings
    path = os.fspath(video)
    try:
        st = os.stat(path)
        stamp = f"{st.st_size}:{st.st_mtime_ns}"
    except OSError:
        stamp = "missing"
    return ("file", os.path.abspath(path), stamp) + settings


def _ignore(stage: str) -> None:
    """The stage callback when none is given."""


@contextmanager
def _timer(timings: dict[str, float], name: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[name] = timings.get(name, 0.0) + time.perf_counter() - start


__all__ = ["QuoTA", "DEFAULT_BASE", "MC_INSTRUCTION", "load_precision"]
