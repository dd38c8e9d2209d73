"""Adapter for GLM-4.1V (``Glm4vForConditionalGeneration``), built on the Qwen2-VL adapter.

GLM-4.1V's vision side is Qwen2-VL's (patch 14, spatial merge 2, temporal patch 2, per-image ``image_grid_thw``
rows, 3-D rotary positions computed by the model from ``mm_token_type_ids``), so the Qwen2-VL adapter applies with
three differences:

* **Frame layout.** An image is ``<|begin_of_image|><|image|>…<|end_of_image|>``. The video path writes each
  temporal step the same way (with ``<|image|>`` tokens), followed by the step's time in whole seconds (``…<|end_of_image|>3``),
  all inside ``<|begin_of_video|>…<|end_of_video|>``. QuoTA's frames are images followed by their time text in the
  same place and form (:meth:`Glm4vAdapter.frame_label`: whole seconds).
* **Time texts after the frame**, not before it (:meth:`Glm4vAdapter._content`).
* **The baseline** is the processor's video path on exactly the sampled frames (no resampling), their real frame
  numbers and rate as its metadata.

The stock path QuoTA matches at the native grid is the processor's image path (each frame an image, its time after
it); the video path merges frames in pairs (temporal patch 2) and is the baseline, as for Qwen2-VL.
"""

from __future__ import annotations

from typing import Any, Sequence

from ..types import Frames
from .base import ModelInputs
from .qwen2_vl import QwenVLAdapter


class Glm4vAdapter(QwenVLAdapter):
    family = "glm4v"
    model_types = ("glm4v",)

    def frame_label(self, seconds: float) -> str:
        """GLM-4.1V's frame time: whole seconds, written after the frame."""
        return str(int(seconds))

    def _content(self, n_frames: int, prompt: str, frame_labels: Sequence[str] | None) -> list[dict[str, Any]]:
        content: list[dict[str, Any]] = []
        for k in range(n_frames):
            content.append({"type": "image"})
            if frame_labels is not None:
                content.append({"type": "text", "text": frame_labels[k]})
        content.append({"type": "text", "text": prompt})
        return content

    def baseline_inputs(self, frames: Frames, prompt: str, *, newline: str = "auto", chat: str = "model") -> ModelInputs:
        self.require_no_newline(newline)
        inputs = self.exact_video_inputs(frames, prompt, chat)
        # video frames are written with image tokens: count the visual positions by their token type
        inputs.visual_tokens = int((inputs.kwargs["mm_token_type_ids"] > 0).sum())
        return inputs


__all__ = ["Glm4vAdapter"]
