"""What every frame scorer shares: the protocol, input checks, batching with out-of-memory backoff, small
helpers about checkpoints, and :class:`CheckpointScorer`, the set-up of the scorers that run a checkpoint
(finding, loading and device/dtype defaults live in :mod:`quota.models.loading`, shared with the base-model
adapters).

A scorer maps ``(Frames, Clue)`` to one relevance score per frame, a float64 array ``[T]`` in [0, 1].
Nothing here imports a model class; the model-specific scorers live in :mod:`.lvlm` and :mod:`.clip`.
"""

from __future__ import annotations

import gc
import logging
import os
from typing import Any, Callable, ClassVar, Protocol, Sequence, TypeVar, runtime_checkable

import numpy as np

from ..errors import ConfigError, FramesError, ModelError, UnsupportedModelError
from ..types import Clue, Frames

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: ``config.json`` model types scored by :class:`~quota.scoring.lvlm.LVLMScorer` (yes-probability).
LVLM_FAMILIES: tuple[str, ...] = ("qwen2_vl", "qwen2_5_vl", "llava_onevision")
#: Of those, the ones whose processor takes a per-image pixel cap (``max_pixels``).
QWEN_FAMILIES: tuple[str, ...] = ("qwen2_vl", "qwen2_5_vl")
#: ``config.json`` model types scored by :class:`~quota.scoring.clip.ClipScorer` (image-text similarity).
CLIP_FAMILIES: tuple[str, ...] = ("clip", "siglip", "siglip2")
#: Of those, the ones trained with a sigmoid loss (scores are ``sigmoid(scale * cos + bias)``).
SIGMOID_FAMILIES: tuple[str, ...] = ("siglip", "siglip2")


@runtime_checkable
class Scorer(Protocol):
    """Anything that scores frames against a clue.

    ``score(frames, clue)`` returns a float64 array ``[T]`` of values in [0, 1], one per frame, in frame
    order. The same inputs give the same scores (models run in eval mode, no sampling).
    """

    def score(self, frames: Frames, clue: Clue) -> np.ndarray:  # pragma: no cover - protocol
        ...


def uses_clue(scorer: Any) -> bool:
    """Whether ``scorer`` reads the clue (its ``uses_clue`` attribute; scorers without one do). A scorer that
    does not (:class:`~quota.scoring.uniform.UniformScorer`) needs no query decoupling."""
    return bool(getattr(scorer, "uses_clue", True))


# ---------------------------------------------------------------------------------------------------------
# Input checks
# ---------------------------------------------------------------------------------------------------------


def as_frames(frames: Frames | np.ndarray) -> Frames:
    """``frames`` as :class:`Frames`; a raw uint8 array ``[T, H, W, 3]`` is wrapped (1 frame per second).

    Raises:
        FramesError: not a Frames or numpy array, wrong dtype or shape, or no frames.
    """
    if isinstance(frames, Frames):
        return frames
    if isinstance(frames, np.ndarray):
        return Frames.from_arrays(frames)  # validates dtype, shape and emptiness
    raise FramesError(
        f"frames must be quota.types.Frames or a uint8 numpy array [T, H, W, 3], got {type(frames).__name__}"
    )


def check_image(image: Any, position: int) -> np.ndarray:
    """One frame as a uint8 array ``[H, W, 3]`` (non-empty), or :class:`FramesError` naming its position."""
    if not isinstance(image, np.ndarray):
        raise FramesError(f"frame {position}: expected a uint8 numpy array [H, W, 3], got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise FramesError(f"frame {position}: pixels must be uint8 RGB, got dtype {image.dtype}")
    if image.ndim != 3 or image.shape[-1] != 3:
        raise FramesError(f"frame {position}: expected shape [H, W, 3], got {tuple(image.shape)}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise FramesError(f"frame {position}: empty image of shape {tuple(image.shape)}")
    return image


def check_images(images: Sequence[np.ndarray] | np.ndarray) -> list[np.ndarray]:
    """A non-empty list of frames, each checked with :func:`check_image` (sizes may differ)."""
    if isinstance(images, Frames):
        images = images.pixels
    if isinstance(images, np.ndarray):
        if images.ndim != 4:
            raise FramesError(f"expected frames of shape [T, H, W, 3], got {tuple(images.shape)}")
        images = list(images)
    images = list(images)
    if not images:
        raise FramesError("no frames to score: the frame list is empty")
    return [check_image(im, i) for i, im in enumerate(images)]


def clue_text(clue: Clue) -> str:
    """The question a clue carries, or :class:`ConfigError` when it has neither objects nor a question.

    A clue without objects makes the scorer ask whether a frame holds enough to answer the user's question,
    so that question must be there.
    """
    if not isinstance(clue, Clue):
        raise ConfigError(f"clue must be a quota.types.Clue, got {type(clue).__name__}")
    if not clue.objects and not clue.question.strip():
        raise ConfigError(
            "the clue has no objects and no question, so there is nothing to score frames against; "
            "set Clue.question to the user's question"
        )
    return clue.question


def finish_scores(values: Any, count: int) -> np.ndarray:
    """Scores as float64 ``[count]`` clipped to [0, 1]; NaN means the model produced garbage."""
    scores = np.asarray(values, dtype=np.float64).reshape(-1)
    if scores.shape[0] != count:
        raise ModelError(f"scorer produced {scores.shape[0]} scores for {count} frames")
    if not np.all(np.isfinite(scores)):
        raise ModelError(
            "the scoring model produced non-finite scores (NaN or inf); its weights or dtype may be broken "
            "(try dtype=torch.float32)"
        )
    return np.clip(scores, 0.0, 1.0)


# ---------------------------------------------------------------------------------------------------------
# Batching with out-of-memory backoff
# ---------------------------------------------------------------------------------------------------------


def is_out_of_memory(exc: BaseException) -> bool:
    """True for the errors an allocator raises when a batch does not fit (GPU or CPU)."""
    try:
        import torch

        if isinstance(exc, torch.OutOfMemoryError):
            return True
    except (ImportError, AttributeError):  # pragma: no cover - very old torch
        pass
    if isinstance(exc, MemoryError):
        return True
    if isinstance(exc, RuntimeError):
        text = str(exc).lower()
        return "out of memory" in text or "not enough memory" in text
    return False


def release_memory() -> None:
    """Give cached accelerator memory back after an out-of-memory error."""
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # pragma: no cover - best effort only
        pass


def run_batched(
    count: int,
    batch_size: int,
    step: Callable[[int, int], T],
    *,
    progress: Any = None,
    what: str = "frames",
    hint: str = "",
) -> tuple[list[T], int]:
    """Run ``step(start, stop)`` over ``[0, count)`` in batches, halving the batch on out-of-memory.

    A batch that runs out of memory is retried at half its size (``8 -> 4 -> 2 -> 1``); the smaller size is
    kept for the rest of the run. A single item that still does not fit raises :class:`ModelError`.

    Args:
        count: number of items.
        batch_size: items per batch to start with (at least 1).
        step: called with half-open item ranges; its results are returned in order.
        progress: an object with ``update(n)`` (a tqdm bar). Each finished batch brings it to the number of
            items done; ``step`` may advance it within a batch (per small group of items), and a batch
            retried after running out of memory takes it back to where that batch started.
        what: name of the items, for messages.
        hint: what the user can do if even one item does not fit, appended to the message.

    Returns:
        ``(results, batch_size)``: one result per batch, and the batch size in use at the end.
    """
    if int(batch_size) < 1:
        raise ConfigError(f"batch_size must be at least 1, got {batch_size!r}")
    size = int(batch_size)
    results: list[T] = []
    shown = [0]  # items the bar shows, for bars without their own count ``n``

    def progress_to(position: int) -> None:
        if progress is not None:
            done = getattr(progress, "n", shown[0])
            if position != done:
                progress.update(position - done)
            shown[0] = position

    start = 0
    while start < count:
        stop = min(start + size, count)
        failure: str | None = None
        try:
            results.append(step(start, stop))
        except Exception as exc:  # filtered just below: anything but out-of-memory is raised again
            if not is_out_of_memory(exc):
                raise
            failure = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        if failure is not None:
            # Outside the except block, so the traceback (and the tensors it holds) is already gone.
            release_memory()
            if stop - start <= 1:
                raise ModelError(
                    f"out of memory while scoring a single one of {count} {what} ({failure}). "
                    f"{hint}".strip()
                )
            progress_to(start)
            size = max(1, (stop - start) // 2)
            logger.warning("out of memory with %d %s per batch; retrying with %d", stop - start, what, size)
            continue
        progress_to(stop)
        start = stop
    return results, size



# ---------------------------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------------------------


def model_device(model: Any) -> Any:
    """The device of a model's first parameter (CPU for a model without parameters)."""
    import torch

    for parameter in model.parameters():
        return parameter.device
    return torch.device("cpu")


def model_dtype(model: Any) -> Any:
    """The dtype of a model's first floating-point parameter (float32 if none)."""
    import torch

    for parameter in model.parameters():
        if parameter.is_floating_point():
            return parameter.dtype
    return torch.float32


class CheckpointScorer:
    """The set-up that the scorers running a Hugging Face checkpoint share (:class:`~quota.scoring.lvlm.LVLMScorer`,
    :class:`~quota.scoring.clip.ClipScorer`): which ``model_type`` values a class accepts, loading a checkpoint
    by id or folder, and taking over an already loaded model.
    """

    #: ``config.json`` model types the class accepts.
    families: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def _check_family(cls, family: str, name: str) -> str:
        """``family`` if the class accepts it, else :class:`UnsupportedModelError` naming ``name`` and the class."""
        if family not in cls.families:
            raise UnsupportedModelError(
                f"{name}: model type {family or 'unknown'!r} cannot be used by {cls.__name__}; supported model "
                f"types: {', '.join(cls.families)}"
            )
        return family

    @classmethod
    def _load_checkpoint(
        cls,
        model_id: str | os.PathLike[str],
        *,
        model_class: Callable[[str], Any],
        chat_template: bool,
        dtype: Any,
        device: Any,
        trust_remote_code: bool,
    ) -> tuple[Any, Any, str]:
        """``(model, processor, family)`` of a checkpoint, in eval mode on ``device`` in ``dtype``.

        The config is read and its family checked before anything heavy loads; ``model_class(family)`` is the
        transformers class that loads the weights; ``chat_template`` says whether the processor must have one.
        """
        from ..models.loading import load_config, load_model, load_processor, model_type_of, resolve_device, resolve_dtype

        config = load_config(model_id, trust_remote_code=trust_remote_code)
        family = cls._check_family(model_type_of(config), str(model_id))
        torch_device = resolve_device(device)
        torch_dtype = resolve_dtype(dtype, torch_device)
        processor = load_processor(model_id, trust_remote_code=trust_remote_code, chat_template=chat_template)
        model = load_model(
            model_class(family), model_id, device=torch_device, dtype=torch_dtype, trust_remote_code=trust_remote_code
        )
        return model, processor, family

    @classmethod
    def _adopt(cls, model: Any, model_id: str | None) -> tuple[Any, str, str]:
        """For ``from_model``: a blank instance, the loaded model's (checked) family and the name to show for it
        (``model_id``, else the model's own ``_name_or_path``, else its class name)."""
        from ..models.loading import model_type_of

        config = getattr(model, "config", None)
        family = cls._check_family(model_type_of(config), model_id or type(model).__name__)
        name = model_id or str(getattr(config, "_name_or_path", "") or type(model).__name__)
        return cls.__new__(cls), family, name


__all__ = [
    "Scorer",
    "CheckpointScorer",
    "LVLM_FAMILIES",
    "QWEN_FAMILIES",
    "CLIP_FAMILIES",
    "SIGMOID_FAMILIES",
    "uses_clue",
    "as_frames",
    "check_image",
    "check_images",
    "clue_text",
    "finish_scores",
    "is_out_of_memory",
    "release_memory",
    "run_batched",
    "model_device",
    "model_dtype",
]
