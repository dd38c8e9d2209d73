"""The small typed objects that cross module boundaries.

``video`` makes :class:`Frames`, ``decouple`` makes :class:`Clue`, ``assign`` (through the
pipeline) makes :class:`Plan`, and a model adapter makes :class:`Answer`. Each can be
printed, and the ones without pixels round-trip through JSON exactly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from typing import Any, Sequence

import numpy as np

from .errors import ConfigError, FramesError
from .tokens import newline_count


def format_seconds(seconds: float) -> str:
    """Seconds as LLaVA-Video's time instruction writes a frame time: two decimals and an ``s`` (``12.50s``)."""
    return f"{seconds:.2f}s"


#: Which frames' times the answer prompt lists: every sampled frame (the reference implementation) or
#: only the frames that kept tokens.
TIME_FRAMES = ("sampled", "kept")


def time_instruction(duration: float, timestamps: Sequence[float]) -> str:
    """LLaVA-Video's time instruction: the video's length and the time of each listed frame.

    Interface text, reproduced exactly (wording, ``.2f`` numbers, frame times joined by ``","`` with no
    space, and no space after the period before "Please"): the sentence LLaVA-Video was trained with
    (LLaVA-NeXT ``llava/train/train.py``, ``add_time_instruction``) and that lmms-eval's ``llava_vid``
    model puts before the question (``lmms_eval/models/simple/llava_vid.py``, ``add_time_instruction``).
    The answer prompt puts it on its own line before the question, as both do.

    Args:
        duration: length of the whole video in seconds.
        timestamps: presentation time in seconds of each listed frame, in order (the reference lists
            every sampled frame).
    """
    times = ",".join(format_seconds(t) for t in timestamps)
    return (
        f"The video lasts for {duration:.2f} seconds, and {len(timestamps)} frames are uniformly sampled "
        f"from it. These frames are located at {times}.Please answer the following questions related to "
        "this video."
    )


def check_pixels(pixels: Any, label: str, ndim: int = 4) -> np.ndarray:
    """``pixels`` when it is a non-empty uint8 RGB array: frames ``[T, H, W, 3]`` (``ndim=4``) or one frame
    ``[H, W, 3]`` (``ndim=3``). The one check of pixel input (:class:`Frames` runs it on construction).

    Raises:
        FramesError: not a numpy array, not uint8, the wrong shape, or no pixels; the message starts with
            ``label`` (``"Frames.pixels"``, ``"frame 3"``).
    """
    shape = "[T, H, W, 3]" if ndim == 4 else "[H, W, 3]"
    if not isinstance(pixels, np.ndarray):
        raise FramesError(f"{label}: expected a uint8 numpy array {shape}, got {type(pixels).__name__}")
    if pixels.dtype != np.uint8:
        raise FramesError(f"{label}: pixels must be uint8 RGB, got dtype {pixels.dtype}")
    if pixels.ndim != ndim or pixels.shape[-1] != 3:
        raise FramesError(f"{label}: expected shape {shape}, got {tuple(pixels.shape)}")
    if 0 in pixels.shape[:-1]:
        raise FramesError(f"{label}: empty, shape {tuple(pixels.shape)}")
    return pixels


@dataclass(frozen=True, eq=False)
class Frames:
    """Frames decoded from one video.

    Attributes:
        pixels: uint8 RGB array ``[T, H, W, 3]``.
        indices: ``[T]`` frame numbers in the file (0-based, decoding order of presentation).
        timestamps: ``[T]`` presentation times in seconds.
        duration: length of the whole video in seconds.
        fps: average frame rate of the stream in frames per second.
        path: the file they came from, if any.
        stated_duration: seconds the file's headers claim when its frames end clearly earlier (a
            truncated file: the frames cover only ``[0, duration]`` of it); ``None`` otherwise.
    """

    pixels: np.ndarray
    indices: np.ndarray
    timestamps: np.ndarray
    duration: float
    fps: float
    path: str | None = None
    stated_duration: float | None = None

    def __post_init__(self) -> None:
        pixels = check_pixels(self.pixels, "Frames.pixels")
        indices = np.asarray(self.indices, dtype=np.int64).reshape(-1)
        timestamps = np.asarray(self.timestamps, dtype=np.float64).reshape(-1)
        if len(indices) != len(pixels) or len(timestamps) != len(pixels):
            raise FramesError(
                f"Frames has {len(pixels)} pixel frames but {len(indices)} indices and "
                f"{len(timestamps)} timestamps"
            )
        object.__setattr__(self, "indices", indices)
        object.__setattr__(self, "timestamps", timestamps)
        object.__setattr__(self, "duration", float(self.duration))
        object.__setattr__(self, "fps", float(self.fps))

    @classmethod
    def from_arrays(
        cls,
        pixels: np.ndarray,
        fps: float = 1.0,
        indices: Sequence[int] | None = None,
        duration: float | None = None,
        path: str | None = None,
    ) -> "Frames":
        """Frames from an array alone (tests, images): frame k at ``indices[k] / fps`` seconds."""
        pixels = np.asarray(pixels)
        n = len(pixels)
        idx = np.arange(n) if indices is None else np.asarray(indices)
        ts = idx / float(fps)
        dur = (int(idx.max()) + 1) / float(fps) if duration is None and n else (duration or 0.0)
        return cls(pixels=pixels, indices=idx, timestamps=ts, duration=dur, fps=fps, path=path)

    def __len__(self) -> int:
        return int(self.pixels.shape[0])

    def __repr__(self) -> str:
        return (
            f"Frames(T={len(self)}, size={self.pixels.shape[2]}x{self.pixels.shape[1]}, "
            f"duration={self.duration:.2f}s, fps={self.fps:.3f}, path={self.path!r})"
        )

    def select(self, keep: Sequence[int]) -> "Frames":
        """The frames at positions ``keep`` (positions in this object, not file frame numbers)."""
        keep = np.asarray(list(keep), dtype=np.int64)
        return Frames(
            pixels=self.pixels[keep],
            indices=self.indices[keep],
            timestamps=self.timestamps[keep],
            duration=self.duration,
            fps=self.fps,
            path=self.path,
            stated_duration=self.stated_duration,
        )

    def time_prompt(self, keep: Sequence[int] | None = None) -> str:
        """The time instruction for these frames, or only for positions ``keep``."""
        ts = self.timestamps if keep is None else self.timestamps[np.asarray(list(keep), dtype=np.int64)]
        return time_instruction(self.duration, [float(t) for t in ts])


@dataclass(frozen=True)
class Clue:
    """What the query decoupling step found worth looking for.

    Attributes:
        objects: the things to look for in each frame (entities, or events in the event mode), or
            ``None`` when the question needs no specific thing (the scorer then asks whether the
            frame holds enough to answer).
        reasoning: the raw text the model wrote, kept for reports.
        mode: ``"entity"`` (the paper's default), ``"event"``, or ``"none"`` (no decoupling ran).
        question: the user's question the clue was made for (the scorer falls back to it when
            ``objects`` is ``None``).
        error: why the decoupling failed (the model raised, or its reply could not be read), or
            ``None`` when it worked. ``objects=None`` with no error means the model said that no
            particular object is needed; with an error, that nothing could be learnt. Either way the
            scorer asks about the question itself.
        options: the question's answer options as given (the reference's frame question without
            objects quotes the question with its options).
        prompts: whose wording the frame question about this clue uses: ``"paper"`` (the reference's,
            :mod:`quota.reference`) or ``"quota"`` (ours); the decoupler sets it from ``QuotaConfig.prompts``.
    """

    objects: tuple[str, ...] | None
    reasoning: str = ""
    mode: str = "entity"
    question: str = ""
    error: str | None = None
    options: tuple[str, ...] = ()
    prompts: str = "paper"

    @property
    def failed(self) -> bool:
        """Whether the decoupling failed (see ``error``)."""
        return self.error is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "objects": None if self.objects is None else list(self.objects),
            "reasoning": self.reasoning,
            "mode": self.mode,
            "question": self.question,
            "error": self.error,
            "options": list(self.options),
            "prompts": self.prompts,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Clue":
        objects = data.get("objects")
        return cls(
            objects=None if objects is None else tuple(str(o) for o in objects),
            reasoning=str(data.get("reasoning", "")),
            mode=str(data.get("mode", "entity")),
            question=str(data.get("question", "")),
            error=None if data.get("error") is None else str(data["error"]),
            options=tuple(str(o) for o in data.get("options") or ()),
            prompts=str(data.get("prompts", "quota")),  # plans saved before the field existed used ours
        )


@dataclass
class Plan:
    """Which frames the model sees and with how many tokens each.

    One entry per *sampled* frame in every list; a frame whose grid is ``(0, 0)`` was dropped. Two plans are
    equal when they assign the same tokens to the same frames for the same question (``timings``,
    ``reused`` and ``frames`` say how a plan was made and take no part in the comparison).

    Attributes:
        indices: frame numbers in the file.
        timestamps: presentation times in seconds.
        scores: relevance scores in [0, 1] from the scorer.
        weights: normalised weights (sum to 1).
        grids: token grid ``(h, w)`` given to each frame; ``(0, 0)`` means dropped.
        budget: the total visual token budget the grids were made for (tokens).
        native: the model's native feature grid ``(H, W)`` the grids are resized from.
        method: the resize method (``bilinear``, ``adaptive_pool``, ``linspace``, ``merge``).
        duration: length of the video in seconds.
        clue: the decoupling result the scores came from, if any.
        video: the video path, if any.
        question: the user's question.
        stated_duration: the length the video file claims when its frames end clearly earlier (a
            truncated upload); the plan then saw only ``[0, duration]`` seconds of it. ``None`` when
            the whole stated length was seen.
        timings: seconds each stage took (``decode``, ``decouple``, ``score``, ``assign``); a stage served
            from the pipeline's cache counts the seconds it took when it was computed.
        reused: the stages whose results came from the cache for this plan.
        frames: the sampled :class:`Frames` the plan is about (pixels: kept in memory, never written to
            JSON; ``None`` for a plan read back from JSON).
        newline: the newline token policy the model input uses for this plan (``"row"``, ``"video"``,
            ``"frame"`` or ``"none"``; resolved from ``auto`` for the base model).
        grid_shape: how token counts became grids (``"square"``: the paper; ``"aspect"``: the native
            grid's aspect ratio, for Qwen bases).
        conversation: the conversation the base model's turns use for this plan: ``"qwen_1_5"`` (LLaVA-NeXT's,
            as the reference runs LLaVA bases) or ``"model"`` (the checkpoint's own chat template).
    """

    indices: list[int]
    timestamps: list[float]
    scores: list[float]
    weights: list[float]
    grids: list[tuple[int, int]]
    budget: int
    native: tuple[int, int]
    method: str = "bilinear"
    duration: float = 0.0
    clue: Clue | None = None
    video: str | None = None
    question: str = ""
    stated_duration: float | None = None
    timings: dict[str, float] = field(default_factory=dict, compare=False)
    reused: list[str] = field(default_factory=list, compare=False)
    frames: Frames | None = field(default=None, repr=False, compare=False)
    newline: str = "none"
    grid_shape: str = "square"
    conversation: str = "model"

    def __post_init__(self) -> None:
        self.indices = [int(i) for i in self.indices]
        self.timestamps = [float(t) for t in self.timestamps]
        self.scores = [float(s) for s in self.scores]
        self.weights = [float(w) for w in self.weights]
        self.grids = [(int(h), int(w)) for h, w in self.grids]
        self.native = (int(self.native[0]), int(self.native[1]))
        self.budget = int(self.budget)
        self.duration = float(self.duration)
        self.stated_duration = None if self.stated_duration is None else float(self.stated_duration)
        self.timings = {str(k): float(v) for k, v in self.timings.items()}
        self.reused = [str(r) for r in self.reused]
        if self.newline not in ("none", "row", "frame", "video"):
            raise ConfigError(f"Plan.newline must be a resolved policy (none, row, frame, video), got {self.newline!r}")
        if self.grid_shape not in ("square", "aspect"):
            raise ConfigError(f"Plan.grid_shape must be 'square' or 'aspect', got {self.grid_shape!r}")
        n = len(self.indices)
        for name in ("timestamps", "scores", "weights", "grids"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"Plan.{name} has {len(getattr(self, name))} entries, expected {n}")

    @property
    def keep(self) -> list[int]:
        """Positions (into the sampled frames) of the frames that got at least one token."""
        return [i for i, (h, w) in enumerate(self.grids) if h * w > 0]

    @property
    def kept_grids(self) -> list[tuple[int, int]]:
        return [self.grids[i] for i in self.keep]

    @property
    def kept_timestamps(self) -> list[float]:
        return [self.timestamps[i] for i in self.keep]

    @property
    def tokens(self) -> int:
        """Visual feature tokens in the plan (no newline tokens): what the budget counts."""
        return sum(h * w for h, w in self.grids)

    @property
    def visual_tokens(self) -> int:
        """Same as :attr:`tokens`: feature tokens, ``Σ h·w`` over kept frames."""
        return self.tokens

    @property
    def newline_tokens(self) -> int:
        """Newline tokens the model input adds under :attr:`newline` (``row``: ``Σ h``)."""
        return newline_count(self.grids, self.newline)

    @property
    def positions(self) -> int:
        """Sequence positions the video takes in the model input: visual plus newline tokens."""
        return self.visual_tokens + self.newline_tokens

    def time_prompt(self, frames: str = "sampled") -> str:
        """The time instruction listing every sampled frame (``frames="sampled"``, the reference) or only
        the kept ones (``"kept"``)."""
        if frames not in TIME_FRAMES:
            raise ConfigError(f"frames={frames!r} is not one of {', '.join(TIME_FRAMES)}")
        listed = self.timestamps if frames == "sampled" else self.kept_timestamps
        return time_instruction(self.duration, listed)

    def to_dict(self) -> dict[str, Any]:
        """Every field but ``frames`` (pixels stay out of JSON), as JSON-able values."""
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "frames"}
        data["grids"] = [list(g) for g in self.grids]
        data["native"] = list(self.native)
        data["clue"] = None if self.clue is None else self.clue.to_dict()
        data["timings"] = dict(self.timings)
        data["reused"] = list(self.reused)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Plan":
        data = dict(data)
        data.pop("extra", None)  # written by quota 0.1.0 plans, always empty
        clue = data.pop("clue", None)
        data["grids"] = [tuple(g) for g in data["grids"]]
        data["native"] = tuple(data["native"])
        return cls(clue=None if clue is None else Clue.from_dict(clue), **data)

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_json(cls, text: str) -> "Plan":
        return cls.from_dict(json.loads(text))

    def summary(self) -> dict[str, Any]:
        """A few numbers for logs and result stores."""
        return {
            "sampled": len(self.indices),
            "kept": len(self.keep),
            "tokens": self.tokens,
            "newline_tokens": self.newline_tokens,
            "newline": self.newline,
            "conversation": self.conversation,
            "budget": self.budget,
            "objects": None if self.clue is None or self.clue.objects is None else list(self.clue.objects),
            "decouple_error": None if self.clue is None else self.clue.error,
        }


@dataclass
class Answer:
    """The model's answer to one question about one video.

    Attributes:
        text: the generated text.
        plan: the token plan the answer was made with (``None`` in the baseline mode).
        timings: seconds per stage (``decode``, ``decouple``, ``score``, ``assign``, ``encode``,
            ``generate``) and their sum, ``total``. Stages served from the pipeline's cache (listed in
            ``reused``) count the seconds they took when computed.
        choice: the option letter extracted from ``text`` when the question had options.
        reused: the stages whose results came from the pipeline's cache for this answer.
        frames: the frames the model was shown (all sampled frames for QuoTA, of which the plan keeps
            some; the uniform frames in the baseline mode). Not written to JSON.
    """

    text: str
    plan: Plan | None = None
    timings: dict[str, float] = field(default_factory=dict)
    choice: str | None = None
    reused: list[str] = field(default_factory=list)
    frames: Frames | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "choice": self.choice,
            "timings": dict(self.timings),
            "reused": list(self.reused),
            "plan": None if self.plan is None else self.plan.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Answer":
        plan = data.get("plan")
        return cls(
            text=data["text"],
            plan=None if plan is None else Plan.from_dict(plan),
            timings=dict(data.get("timings", {})),
            choice=data.get("choice"),
            reused=list(data.get("reused", [])),
        )


__all__ = ["Frames", "Clue", "Plan", "Answer", "check_pixels", "time_instruction", "format_seconds", "TIME_FRAMES"]
