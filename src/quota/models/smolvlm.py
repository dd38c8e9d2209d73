"""Adapter for SmolVLM / SmolVLM2 (``SmolVLMForConditionalGeneration``), built on the shared adapter base.

The model's own video path (transformers' ``SmolVLMProcessor`` with ``videos=``): every frame is resized to one
square global view of ``max_image_size`` pixels (no image splitting for video), goes through the SigLIP tower,
the connector's pixel shuffle (``scale_factor``² neighbouring patches become one token's channels) and the
projector: a ``g×g`` grid of tokens per frame (512 px / patch 16 / shuffle 4 = 8×8 = 64 for SmolVLM2). The text
around the frames is the processor's: an opening line giving the frame count (in words) and the duration
(``H:MM:SS``), then per frame ``\\nFrame from MM:SS:`` and
``<fake_token_around_image><global-img><image>×g²<fake_token_around_image>``, then a blank line.

QuoTA keeps that layout exactly and only changes how many ``<image>`` tokens each frame has: :meth:`encode` stops
after the projector (the pixel shuffle belongs to the encoder: its output is the row-major ``g×g`` grid the
language model sees), a kept frame's grid is resized bilinearly there, and its run gets ``h·w`` placeholders.
Frame times use the family's ``MM:SS`` (:meth:`SmolVLMAdapter.frame_label`). The opening line states the number
of kept frames and the time of the last one (what the processor states when it is not given the duration).

Newline policy: none (frames are delimited by their fake tokens). Grid shape: ``square`` (frames are square).
The baseline is the processor's video path on the sampled frames, with the video's real duration.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any, Sequence

import torch

from ..assign import Grid
from ..errors import BudgetError
from ..types import Frames
from .base import ModelInputs, VideoLMAdapter, expand_placeholder, flatten_frame_features, video_metadata

_LABEL = re.compile(r"^(\d+):(\d{2})$")


class SmolVLMAdapter(VideoLMAdapter):
    family = "smolvlm"
    model_types = ("smolvlm",)
    default_newline = "none"
    default_grid_shape = "square"
    model_class_name = "AutoModelForImageTextToText"

    def __init__(self, model: Any, processor: Any, **kwargs: Any) -> None:
        super().__init__(model, processor, **kwargs)
        cfg = self.model.config
        self.image_token_id = int(cfg.image_token_id)
        side = int(processor.video_processor.max_image_size["longest_edge"])
        grid = side // int(cfg.vision_config.patch_size) // int(cfg.scale_factor)
        self._native: Grid = (grid, grid)

    # ------------------------------------------------------------------ geometry and labels
    def native_grid(self, frames: Frames | None = None) -> Grid:
        """Tokens per side of one frame's global view after the pixel shuffle (8×8 for SmolVLM2)."""
        return self._native

    def frame_label(self, seconds: float) -> str:
        """SmolVLM's frame time, ``MM:SS`` (whole seconds)."""
        seconds = int(seconds)
        return f"{seconds // 60:02d}:{seconds % 60:02d}"

    # ------------------------------------------------------------------ encoding
    def _pixels(self, frames: Frames) -> dict[str, torch.Tensor]:
        return self.processor.video_processor(videos=[frames.pixels], do_sample_frames=False, return_tensors="pt")

    @torch.inference_mode()
    def encode(self, frames: Frames) -> torch.Tensor:
        """``[T, g, g, C]``: the connector's output (pixel shuffle + projector) of every frame's global view."""
        enc = self._pixels(frames)
        pixels, mask = enc["pixel_values"][0], enc["pixel_attention_mask"][0]
        chunks = []
        for start in range(0, pixels.shape[0], self.encode_batch_size):
            stop = start + self.encode_batch_size
            out = self.model.model.get_image_features(
                pixels[start:stop, None].to(self.device, self.dtype), mask[start:stop, None].to(self.device))
            chunks.extend(out.pooler_output)
        feats = torch.stack(chunks)
        h, w = self._native
        if feats.shape[1] != h * w:
            raise BudgetError(f"smolvlm gave {feats.shape[1]} tokens per frame, expected {h}x{w}")
        return feats.view(feats.shape[0], h, w, feats.shape[-1])

    # ------------------------------------------------------------------ inputs
    def _video_text(self, grids: Sequence[Grid], labels: Sequence[str] | None) -> str:
        """The processor's expansion of ``<video>`` for frames of these grids."""
        from transformers.models.smolvlm import processing_smolvlm as stock

        proc = self.processor
        if labels is None:
            labels = ["00:00"] * len(grids)
        last = _LABEL.match(labels[-1]) if labels else None
        duration = int(last.group(1)) * 60 + int(last.group(2)) if last else 0
        text = stock.DEFAULT_VIDEO_INTRO.format(frame_count=stock.num2words(len(grids)),
                                                video_duration=str(timedelta(seconds=duration)))
        for (h, w), label in zip(grids, labels):
            text += stock.FRAME_TIMESTAMP_MESSAGE.format(timestamp=label) + (
                proc.fake_image_token + proc.global_image_token + proc.image_token * (h * w) + proc.fake_image_token)
        return text + stock.DEFAULT_MEDIA_OUTTRO

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
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        self.require_no_newline(newline)
        flat = flatten_frame_features(features, grids)
        text = expand_placeholder(self.video_turn(prompt, chat), self.processor.video_token,
                                  self._video_text(list(grids), frame_labels))
        ids = self.tokenizer(text, return_tensors="pt")["input_ids"].to(self.device)
        visual = torch.cat(flat).to(self.device, self.dtype)
        if int((ids == self.image_token_id).sum()) != visual.shape[0]:
            raise BudgetError(f"{int((ids == self.image_token_id).sum())} image tokens for {visual.shape[0]} features")
        kwargs = {"input_ids": ids, "attention_mask": torch.ones_like(ids),
                  "mm_encoder_outputs": {"image": BaseModelOutputWithPooling(pooler_output=(visual,))}}
        return ModelInputs(kwargs=kwargs, visual_tokens=visual.shape[0], prompt=text)

    def _stock(self, frames: Frames, prompt: str, chat: str, with_duration: bool) -> ModelInputs:
        text = self.video_turn(prompt, chat)
        metadata = video_metadata(frames, duration=with_duration)
        enc = self.processor(text=text, videos=[frames.pixels], video_metadata=[metadata], do_sample_frames=False,
                             return_tensors="pt")
        kwargs = {k: v.to(self.device) for k, v in enc.items() if isinstance(v, torch.Tensor)}
        kwargs["pixel_values"] = kwargs["pixel_values"].to(self.dtype)
        n = int((kwargs["input_ids"] == self.image_token_id).sum())
        return ModelInputs(kwargs=kwargs, visual_tokens=n, prompt=text)

    def stock_grid(self, frames: Frames) -> Grid:
        """Every frame of the video path is one global view at the native grid."""
        return self._native

    def stock_inputs(self, frames: Frames, prompt: str, *, frame_labels: Sequence[str] | None = None,
                     chat: str = "model") -> ModelInputs:
        """The processor's video path on these frames, told no duration (so it states the last frame's time)."""
        return self._stock(frames, prompt, chat, False)

    def baseline_inputs(self, frames: Frames, prompt: str, *, newline: str = "auto", chat: str = "model") -> ModelInputs:
        self.require_no_newline(newline)
        return self._stock(frames, prompt, chat, True)


__all__ = ["SmolVLMAdapter"]
