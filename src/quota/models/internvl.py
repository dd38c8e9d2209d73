"""Adapter for InternVL3 / InternVL3.5 in transformers format (``InternVLForConditionalGeneration``, the ``-hf``
checkpoints).

The model's own video path (``InternVLProcessor`` with ``videos=``): every frame is resized to one tile
(448×448 on the real checkpoints), goes through the InternViT tower, the pixel shuffle (``downsample_ratio`` 0.5:
2×2 neighbouring patches become one token's channels) and the projector: a 16×16 grid of 256 tokens per frame,
written as ``Frame{i}: <img><IMG_CONTEXT>×256</img>``, frames separated by a line break, no times.

QuoTA keeps that text and changes only the number of ``<IMG_CONTEXT>`` tokens of each kept frame: :meth:`encode`
stops after the projector (the pixel shuffle belongs to the encoder; its output keeps the image's row-major
orientation), a kept frame's grid is resized bilinearly there, and its ``<img>…</img>`` run gets ``h·w`` tokens.
Kept frames are numbered ``Frame1:``, ``Frame2:``, … in order, as the video path numbers its frames; the frames'
times reach the model through the answer prompt's time instruction only (the family's video path has none).

Newline policy: none (frames are delimited by ``<img>`` / ``</img>``). Grid shape: ``square`` (tiles are square).
The baseline is the processor's video path on the sampled frames.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from ..assign import Grid
from ..errors import BudgetError
from ..types import Frames
from .base import ModelInputs, VideoLMAdapter, expand_placeholder, flatten_frame_features


class InternVLAdapter(VideoLMAdapter):
    family = "internvl"
    model_types = ("internvl",)
    default_newline = "none"
    default_grid_shape = "square"
    model_class_name = "AutoModelForImageTextToText"

    def __init__(self, model: Any, processor: Any, **kwargs: Any) -> None:
        super().__init__(model, processor, **kwargs)
        cfg = self.model.config
        self.image_token_id = int(cfg.image_token_id)
        side = int(processor.image_seq_length ** 0.5)
        if side * side != int(processor.image_seq_length):
            raise BudgetError(f"internvl: {processor.image_seq_length} tokens per tile is not a square grid")
        self._native: Grid = (side, side)

    def native_grid(self, frames: Frames | None = None) -> Grid:
        """Tokens per side of one tile after the pixel shuffle (16×16 for 448-pixel tiles)."""
        return self._native

    @torch.inference_mode()
    def encode(self, frames: Frames) -> torch.Tensor:
        """``[T, g, g, C]``: the projector's output of every frame as one tile (the video path's preprocessing)."""
        pixels = self.processor.video_processor(videos=[frames.pixels], return_tensors="pt")["pixel_values_videos"][0]
        cfg = self.model.config
        chunks = []
        for start in range(0, pixels.shape[0], self.encode_batch_size):
            batch = pixels[start : start + self.encode_batch_size].to(self.device, self.dtype)
            out = self.model.model.get_image_features(
                pixel_values=batch, vision_feature_layer=cfg.vision_feature_layer,
                vision_feature_select_strategy=cfg.vision_feature_select_strategy)
            chunks.append(out.pooler_output)
        feats = torch.cat(chunks)
        h, w = self._native
        if feats.shape[1] != h * w:
            raise BudgetError(f"internvl gave {feats.shape[1]} tokens per frame, expected {h}x{w}")
        return feats.view(feats.shape[0], h, w, feats.shape[-1])

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
        proc = self.processor
        frames_text = "\n".join(f"Frame{i + 1}: {proc.start_image_token}{proc.image_token * (h * w)}{proc.end_image_token}"
                                for i, (h, w) in enumerate(grids))
        text = expand_placeholder(self.video_turn(prompt, chat), proc.video_token, frames_text)
        ids = self.tokenizer(text, return_tensors="pt")["input_ids"].to(self.device)
        visual = torch.cat(flat).to(self.device, self.dtype)[None]  # the model counts batch × tokens
        kwargs = {"input_ids": ids, "attention_mask": torch.ones_like(ids),
                  "mm_encoder_outputs": {"image": BaseModelOutputWithPooling(pooler_output=visual)}}
        return ModelInputs(kwargs=kwargs, visual_tokens=visual.shape[1], prompt=text)

    def stock_grid(self, frames: Frames) -> Grid:
        """Every frame of the video path is one tile at the native grid."""
        return self._native

    def stock_inputs(self, frames: Frames, prompt: str, *, frame_labels: Sequence[str] | None = None,
                     chat: str = "model") -> ModelInputs:
        """The processor's video path on these frames (it writes no times: ``frame_labels`` are not part of it)."""
        return self.baseline_inputs(frames, prompt, chat=chat)

    def baseline_inputs(self, frames: Frames, prompt: str, *, newline: str = "auto", chat: str = "model") -> ModelInputs:
        self.require_no_newline(newline)
        text = self.video_turn(prompt, chat)
        enc = self.processor(text=text, videos=[frames.pixels], return_tensors="pt")
        kwargs = {k: v.to(self.device) for k, v in enc.items() if isinstance(v, torch.Tensor)}
        kwargs["pixel_values"] = kwargs["pixel_values"].to(self.dtype)
        n = int((kwargs["input_ids"] == self.image_token_id).sum())
        return ModelInputs(kwargs=kwargs, visual_tokens=n, prompt=text)


__all__ = ["InternVLAdapter"]
