"""Frame scoring by image-text similarity with a CLIP, SigLIP or SigLIP 2 dual encoder.

A cheaper alternative to the yes-probability scorer: one image embedding per frame and one text
embedding per object (or one for the question when the clue has no objects); a frame's score is its best
match over the texts, mapped to [0, 1]:

* SigLIP / SigLIP 2 (trained with a sigmoid loss): ``sigmoid(exp(logit_scale) * cos + logit_bias)``,
  the model's own probability that image and text belong together.
* CLIP (trained with a softmax over a batch, so its logits have no absolute meaning for one pair):
  ``(cos + 1) / 2``, the cosine similarity moved from [-1, 1] to [0, 1]. No softmax over frames or texts
  is taken, so a frame's score does not depend on the other frames. Real CLIP cosines sit in a narrow band
  (about 0.1 to 0.35), so these scores vary little; the weighting step amplifies differences anyway.

Because the mapping is monotone, the best match over texts is the same before and after it.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar, Sequence

import numpy as np

from ..errors import ConfigError, ProcessorNotFoundError
from ..types import Clue, Frames
from .base import (
    CLIP_FAMILIES,
    SIGMOID_FAMILIES,
    CheckpointScorer,
    as_frames,
    check_images,
    clue_text,
    finish_scores,
    model_device,
    model_dtype,
    run_batched,
)

#: How each object of a clue is phrased for the text encoder (the question is used as it is).
DEFAULT_TEMPLATE = "a photo of {}."


class ClipScorer(CheckpointScorer):
    """Scores frames by their similarity to the clue's objects (best object) or to the question.

    Args:
        model_id: Hugging Face id or local folder of a CLIP, SigLIP or SigLIP 2 checkpoint (AutoModel +
            AutoProcessor).
        batch_size: frames per image-encoder pass to start with (halved on out-of-memory, down to 1).
        template: format string applied to each object, with one ``{}``; the question is not templated.
        dtype: torch dtype or name; ``None`` means bfloat16 on CUDA and float32 on the CPU.
        device: torch device; ``None`` means CUDA when available, else the CPU.
        quiet: no progress bar.
        trust_remote_code: allow checkpoints that need their own code (off unless asked).

    Raises:
        ModelNotFoundError, ProcessorNotFoundError, UnsupportedModelError: as for
        :class:`~quota.scoring.lvlm.LVLMScorer`.
    """

    families: ClassVar[tuple[str, ...]] = CLIP_FAMILIES
    #: The keyword options the constructor takes (besides the checkpoint).
    options: ClassVar[tuple[str, ...]] = ("batch_size", "template", "dtype", "device", "quiet", "trust_remote_code")

    @staticmethod
    def options_from_config(config: Any) -> dict[str, Any]:
        """The scorer settings of a :class:`~quota.config.QuotaConfig` this class uses (the batch size)."""
        return {"batch_size": config.scorer_batch_size}

    def reconfigured(self, config: Any) -> "ClipScorer":
        """A scorer on the same loaded model and processor with the scorer settings of ``config``."""
        return type(self).from_model(self.model, self.processor, template=self.template, quiet=self.quiet,
                                     model_id=self.model_id, **self.options_from_config(config))

    def __init__(
        self,
        model_id: str | os.PathLike[str],
        *,
        batch_size: int = 64,
        template: str = DEFAULT_TEMPLATE,
        dtype: Any = None,
        device: Any = None,
        quiet: bool = False,
        trust_remote_code: bool = False,
    ) -> None:
        _check_options(batch_size, template)
        model, processor, family = self._load_checkpoint(
            model_id, model_class=_auto_model, chat_template=False, dtype=dtype, device=device,
            trust_remote_code=trust_remote_code,
        )
        self._setup(model, processor, family, str(model_id), batch_size, template, quiet)

    @classmethod
    def from_model(
        cls,
        model: Any,
        processor: Any,
        *,
        batch_size: int = 64,
        template: str = DEFAULT_TEMPLATE,
        quiet: bool = False,
        model_id: str | None = None,
    ) -> "ClipScorer":
        """A scorer around an already loaded dual encoder and its processor."""
        _check_options(batch_size, template)
        obj, family, name = cls._adopt(model, model_id)
        obj._setup(model, processor, family, name, batch_size, template, quiet)
        return obj

    def _setup(
        self, model: Any, processor: Any, family: str, model_id: str, batch_size: int, template: str, quiet: bool
    ) -> None:
        if getattr(processor, "tokenizer", None) is None or getattr(processor, "image_processor", None) is None:
            raise ProcessorNotFoundError(
                f"{model_id}: the processor ({type(processor).__name__}) lacks a tokenizer or an image processor"
            )
        self.model = model.eval()
        self.processor = processor
        self.family = family
        self.model_id = model_id
        self.sigmoid = family in SIGMOID_FAMILIES
        self.batch_size = int(batch_size)
        self.working_batch_size = self.batch_size
        self.template = template
        self.quiet = bool(quiet)
        self.device = model_device(model)
        self.dtype = model_dtype(model)
        text_config = model.config.text_config if hasattr(model.config, "text_config") else model.config
        self.max_text_tokens = int(getattr(text_config, "max_position_embeddings", 64) or 64)

    def __repr__(self) -> str:
        return (
            f"ClipScorer(model_id={self.model_id!r}, family={self.family!r}, batch_size={self.batch_size}, "
            f"device={self.device}, dtype={self.dtype})"
        )

    # -----------------------------------------------------------------------------------------------------

    def texts_for(self, clue: Clue) -> list[str]:
        """The texts frames are compared with: each object through the template, else the question."""
        question = clue_text(clue)
        if clue.objects:
            return [self.template.format(obj) for obj in clue.objects]
        return [question.strip()]

    def _to_device(self, batch: Any) -> dict[str, Any]:
        import torch

        out = {}
        for key, value in batch.items():
            if isinstance(value, torch.Tensor):
                value = value.to(self.device)
                if value.is_floating_point():
                    value = value.to(self.dtype)
            out[key] = value
        return out

    def encode_texts(self, texts: Sequence[str]) -> Any:
        """Unit-length text embeddings ``[K, D]`` (float32 tensor on the model's device)."""
        import torch

        padding: Any = "max_length" if self.sigmoid else True  # SigLIP was trained on texts padded to full length
        tokens = self.processor.tokenizer(
            list(texts), padding=padding, truncation=True, max_length=self.max_text_tokens, return_tensors="pt"
        )
        with torch.inference_mode():
            feats = _pooled(self.model.get_text_features(**self._to_device(tokens))).float()
        return torch.nn.functional.normalize(feats, dim=-1)

    def encode_images(self, images: Sequence[np.ndarray]) -> Any:
        """Unit-length image embeddings ``[B, D]`` (float32 tensor on the model's device)."""
        import torch
        from PIL import Image

        pictures = [Image.fromarray(np.ascontiguousarray(image)) for image in images]
        pixels = self.processor.image_processor(images=pictures, return_tensors="pt")
        with torch.inference_mode():
            feats = _pooled(self.model.get_image_features(**self._to_device(pixels))).float()
        return torch.nn.functional.normalize(feats, dim=-1)

    def similarity_to_score(self, cosine: Any) -> Any:
        """The [0, 1] score of cosine similarities (tensor in, tensor out), as the module docstring says."""
        import torch

        if self.sigmoid:
            scale = self.model.logit_scale.detach().float().exp().to(cosine.device)
            bias = self.model.logit_bias.detach().float().to(cosine.device)
            return torch.sigmoid(cosine * scale + bias)
        return (cosine + 1.0) / 2.0

    def score(self, frames: Frames | np.ndarray, clue: Clue) -> np.ndarray:
        """Relevance of each frame to ``clue``: float64 ``[T]`` in [0, 1]."""
        frames = as_frames(frames)
        return self.score_images(frames.pixels, self.texts_for(clue))

    def score_images(self, images: Sequence[np.ndarray] | np.ndarray, texts: Sequence[str]) -> np.ndarray:
        """Best match of each image over ``texts``, mapped to [0, 1]: float64 ``[N]``."""
        from tqdm.auto import tqdm

        pictures = check_images(images)
        texts = [str(t) for t in texts]
        if not texts or not all(t.strip() for t in texts):
            raise ConfigError("ClipScorer needs at least one non-empty text to compare frames with")
        text_emb = self.encode_texts(texts)

        def step(start: int, stop: int) -> np.ndarray:
            cosine = self.encode_images(pictures[start:stop]) @ text_emb.T  # [B, K]
            return self.similarity_to_score(cosine).max(dim=1).values.double().cpu().numpy()

        with tqdm(total=len(pictures), desc="Scoring frames", unit="frame", disable=self.quiet, leave=False) as bar:
            parts, self.working_batch_size = run_batched(
                len(pictures), self.working_batch_size, step, progress=bar, what="frames",
                hint="Use a smaller dtype or a device with more memory.",
            )
        return finish_scores(np.concatenate(parts), len(pictures))


def _pooled(output: Any) -> Any:
    """The projected embedding from ``get_*_features`` (a tensor, or an output with ``pooler_output``)."""
    return output if hasattr(output, "dim") else output.pooler_output


def _check_options(batch_size: Any, template: Any) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or int(batch_size) < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
    if not isinstance(template, str) or template.count("{}") != 1:
        raise ConfigError(f"template must be a string with exactly one '{{}}', got {template!r}")


def _auto_model(family: str) -> Any:
    """Every dual-encoder family loads with ``AutoModel``."""
    from transformers import AutoModel

    return AutoModel


__all__ = ["ClipScorer", "DEFAULT_TEMPLATE"]
