"""Adapter for Qwen3-VL, dense (``Qwen3VLForConditionalGeneration``), built on the Qwen2-VL adapter.

What differs from Qwen2-VL:

* **Deepstack features.** The vision tower gives, besides the patch-merger output that fills the image
  placeholders, one more ``[tokens, C]`` feature map per deepstack level; the language model adds level ``k`` to
  the hidden states of the visual positions after its layer ``k``. A frame resized by QuoTA must carry all levels
  resized the same way, so :meth:`Qwen3VLAdapter.encode` returns them stacked along the channels,
  ``[T, gh, gw, C·(1+D)]`` (main features first, then the ``D`` levels in order), and
  :meth:`Qwen3VLAdapter.build_inputs` splits them again and hands both to the model (``mm_encoder_outputs``).
  Bilinear resizing, adaptive pooling and ``linspace`` act on every channel alike, so each level is resized
  exactly as it would be alone; ``merge`` matches tokens on all levels' channels together (the merged groups
  are then averaged on every level).
* **Frame times.** Its video path writes each temporal step's time as ``<3.0 seconds>`` before the step's
  ``<|vision_start|>``; QuoTA's frames get the same text (:meth:`Qwen3VLAdapter.frame_label`, one decimal).
* **Patch 16.** The native grid is the processor's frame size over 32 (patch 16 × merge 2).
* **No default system turn** in its chat template (the template decides; nothing here depends on it).

The stock path QuoTA matches at the native grid is the processor's image path (each frame an image, its time
text before it); the baseline is the model's own video path (frames in pairs through the temporal patch of 2,
one time text per pair, the pair's mean time), as for Qwen2-VL.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from ..assign import Grid
from ..errors import BudgetError
from ..types import Frames
from .base import ModelInputs, flatten_frame_features
from .qwen2_vl import QwenVLAdapter


class Qwen3VLAdapter(QwenVLAdapter):
    family = "qwen3_vl"
    model_types = ("qwen3_vl",)

    def __init__(self, model: Any, processor: Any, **kwargs: Any) -> None:
        super().__init__(model, processor, **kwargs)
        self.hidden = int(self.model.config.text_config.hidden_size)
        self.levels = len(self.model.config.vision_config.deepstack_visual_indexes)

    def frame_label(self, seconds: float) -> str:
        """Qwen3-VL's own time text before a frame: ``<3.0 seconds>``."""
        return f"<{float(seconds):.1f} seconds>"

    @torch.inference_mode()
    def encode(self, frames: Frames) -> torch.Tensor:
        """``[T, gh, gw, C·(1+D)]``: patch-merger output, then the ``D`` deepstack levels, of every frame as an image."""
        chunks = []
        for start in range(0, len(frames), self.encode_batch_size):
            enc = self._process(frames.pixels[start : start + self.encode_batch_size])
            thw = enc["image_grid_thw"].to(self.device)
            out = self.model.model.get_image_features(enc["pixel_values"].to(self.device, self.dtype), thw)
            chunks.extend(stack_deepstack(out))
            gh, gw = int(thw[0, 1]) // self.merge, int(thw[0, 2]) // self.merge
        feats = torch.stack(chunks)
        return feats.view(feats.shape[0], gh, gw, feats.shape[-1])

    def build_inputs(
        self,
        prompt: str,
        features: Sequence[torch.Tensor],
        grids: Sequence[Grid],
        *,
        newline: str = "auto",
        frame_labels: Sequence[str] | None = None,
        chat: str = "model",
    ) -> ModelInputs:
        inputs = super().build_inputs(prompt, features, grids, newline=newline, frame_labels=frame_labels, chat=chat)
        flat = flatten_frame_features(features, grids)
        width = self.hidden * (1 + self.levels)
        if flat[0].shape[-1] != width:
            raise BudgetError(f"qwen3_vl features have {flat[0].shape[-1]} channels, expected {width} "
                              f"({self.hidden} x (1 + {self.levels} deepstack levels)); encode them with this adapter")
        encoded = split_deepstack([f.to(self.device, self.dtype) for f in flat], self.hidden)
        inputs.kwargs["mm_encoder_outputs"] = {"image": encoded}
        inputs.visual_tokens = sum(v.shape[0] for v in encoded.pooler_output)
        return inputs

    def baseline_inputs(self, frames: Frames, prompt: str, *, newline: str = "auto", chat: str = "model") -> ModelInputs:
        """The processor's video path on exactly these frames (no resampling), their real frame numbers and rate as
        the metadata its time texts are computed from."""
        self.require_no_newline(newline)
        return self.exact_video_inputs(frames, prompt, chat)


def stack_deepstack(output: Any) -> list[torch.Tensor]:
    """Each image's main features and deepstack levels of a Qwen3-VL ``get_image_features`` output, stacked along
    the channels: one ``[tokens_i, C·(1+D)]`` tensor per image (main first, then the levels in order)."""
    levels = list(output.deepstack_features or [])
    return [torch.cat([main] + [level[i] for level in levels], dim=-1) for i, main in enumerate(output.pooler_output)]


def split_deepstack(features: Sequence[torch.Tensor], hidden: int) -> Any:
    """Per-image stacked features (:func:`stack_deepstack`, any token count) as the model's own vision output,
    ready for ``mm_encoder_outputs={"image": ...}``: ``hidden`` channels per level."""
    from transformers.models.qwen3_vl.modeling_qwen3_vl import BaseModelOutputWithDeepstackFeatures

    parts = [f.split(int(hidden), dim=-1) for f in features]
    levels = len(parts[0]) - 1 if parts else 0
    return BaseModelOutputWithDeepstackFeatures(
        pooler_output=tuple(p[0] for p in parts),
        deepstack_features=[tuple(p[1 + k] for p in parts) for k in range(levels)],
    )


__all__ = ["Qwen3VLAdapter", "stack_deepstack", "split_deepstack"]
