"""Adapter for Qwen2-VL and Qwen2.5-VL (``Qwen2VLForConditionalGeneration``, ``Qwen2_5_VLForConditionalGeneration``).

Each sampled frame is given to the model as its own image: the vision tower and patch merger
turn it into a ``(gh, gw)`` grid of tokens (its *native grid*: the processor's resized frame
divided by 28 = patch 14 × merge 2). QuoTA then resizes each frame's grid, and the model input
gets one ``<|vision_start|><|image_pad|>…<|vision_end|>`` run per kept frame with exactly
``h·w`` pad tokens, optionally preceded by a short label (the frame's time). The multimodal
rotary positions follow from an ``image_grid_thw`` row ``(1, 2h, 2w)`` per frame, computed by
the model's own ``get_rope_index``; the features go in through ``mm_encoder_outputs``.

Newline policy: the family has no newline token; its runs are delimited by the vision start and
end tokens, so ``"auto"`` means ``"none"``.

Grid shape: a Qwen frame's native grid has the frame's aspect ratio and the rotary positions encode
that layout, so ``grid_shape="auto"`` means ``"aspect"`` (:func:`quota.assign.grid_for_tokens_aspect`):
the paper's token count per frame, in a grid of the native aspect ratio. With equal scores and a budget
of ``T·H·W`` every frame keeps its native grid, and the input equals the processor's image path.

The baseline (:meth:`QwenVLAdapter.baseline_inputs`) is the model's own video path: frames in pairs
through the temporal patch, as the processor does for ``videos=``.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from ..assign import Grid
from ..errors import BudgetError
from ..types import Frames
from .base import ModelInputs, VideoLMAdapter, flatten_frame_features, video_metadata
from .loading import to_device


class QwenVLAdapter(VideoLMAdapter):
    family = "qwen2_vl"
    model_types = ("qwen2_vl", "qwen2_5_vl")
    default_newline = "none"
    default_grid_shape = "aspect"
    model_class_name = "AutoModelForImageTextToText"

    def __init__(self, model: Any, processor: Any, **kwargs: Any) -> None:
        """Frames reach the vision tower at the size the checkpoint's image processor gives them (its own
        pixel limits), which sets the native grid."""
        super().__init__(model, processor, **kwargs)
        cfg = self.model.config
        self.image_token_id = int(cfg.image_token_id)
        self.merge = int(cfg.vision_config.spatial_merge_size)
        if type(model).__name__.startswith("Qwen2_5"):
            self.family = "qwen2_5_vl"

    # ------------------------------------------------------------------ encoding
    def _process(self, pixels: Any) -> dict[str, torch.Tensor]:
        return self.processor.image_processor(images=list(pixels), return_tensors="pt")

    def native_grid(self, frames: Frames) -> Grid:
        """Merged-token grid of these frames (all frames of a video share their size)."""
        thw = self._process(frames.pixels[:1])["image_grid_thw"][0]
        return int(thw[1]) // self.merge, int(thw[2]) // self.merge

    @torch.inference_mode()
    def encode(self, frames: Frames) -> torch.Tensor:
        """``[T, gh, gw, C]``: patch-merger output of every frame as an image."""
        chunks = []
        for start in range(0, len(frames), self.encode_batch_size):
            enc = self._process(frames.pixels[start : start + self.encode_batch_size])
            thw = enc["image_grid_thw"].to(self.device)
            out = self.model.model.get_image_features(enc["pixel_values"].to(self.device, self.dtype), thw)
            chunks.extend(out.pooler_output)
            gh, gw = int(thw[0, 1]) // self.merge, int(thw[0, 2]) // self.merge
        feats = torch.stack(chunks)
        return feats.view(feats.shape[0], gh, gw, feats.shape[-1])

    # ------------------------------------------------------------------ inputs
    def _content(self, n_frames: int, prompt: str, frame_labels: Sequence[str] | None) -> list[dict[str, Any]]:
        content: list[dict[str, Any]] = []
        for k in range(n_frames):
            if frame_labels is not None:
                content.append({"type": "text", "text": frame_labels[k]})
            content.append({"type": "image"})
        content.append({"type": "text", "text": prompt})
        return content

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
        text = self.chat_text(self._content(len(flat), prompt, frame_labels), chat)
        ids = self.tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"][0]
        slots = (ids == self.image_token_id).nonzero().flatten().tolist()
        if len(slots) != len(flat):
            raise BudgetError(f"the chat template produced {len(slots)} image placeholders for {len(flat)} frames")
        pieces, prev = [], 0
        for at, (h, w) in zip(slots, grids):
            pieces += [ids[prev:at], torch.full((h * w,), self.image_token_id, dtype=ids.dtype)]
            prev = at + 1
        pieces.append(ids[prev:])
        ids = torch.cat(pieces)[None].to(self.device)
        thw = torch.tensor([[1, h * self.merge, w * self.merge] for h, w in grids], device=self.device)
        visual = tuple(f.to(self.device, self.dtype) for f in flat)
        kwargs = {
            "input_ids": ids,
            "attention_mask": torch.ones_like(ids),
            "mm_token_type_ids": (ids == self.image_token_id).long(),
            "image_grid_thw": thw,
            "mm_encoder_outputs": {"image": BaseModelOutputWithPooling(pooler_output=visual)},
        }
        return ModelInputs(kwargs=kwargs, visual_tokens=sum(v.shape[0] for v in visual), prompt=text)

    @property
    def baseline_temporal_patch(self) -> int:  # type: ignore[override]
        """The video path merges this many consecutive frames into one step (Qwen2-VL's temporal patch, 2)."""
        processor = getattr(self.processor, "video_processor", None) or self.processor.image_processor
        return int(getattr(processor, "temporal_patch_size", 2))

    def stock_grid(self, frames: Frames) -> Grid:
        """Each frame as an image keeps its native merged-patch grid."""
        return self.native_grid(frames)

    def stock_inputs(self, frames: Frames, prompt: str, *, frame_labels: Sequence[str] | None = None,
                     chat: str = "model") -> ModelInputs:
        return self.image_inputs(frames, prompt, frame_labels=frame_labels, chat=chat)

    def image_inputs(self, frames: Frames, prompt: str, frame_labels: Sequence[str] | None = None,
                     chat: str = "model") -> ModelInputs:
        """The processor's own image path for these frames (each frame an image): the reference our
        :meth:`build_inputs` reproduces exactly when every frame keeps its native grid."""
        text = self.chat_text(self._content(len(frames), prompt, frame_labels), chat)
        enc = self.processor(text=text, images=list(frames.pixels), return_tensors="pt")
        return self._inputs(enc, text, "pixel_values")

    def baseline_inputs(self, frames: Frames, prompt: str, *, newline: str = "auto", chat: str = "model") -> ModelInputs:
        self.require_no_newline(newline)
        text = self.video_turn(prompt, chat)
        metadata = [{"total_num_frames": len(frames), "fps": max(len(frames) / max(frames.duration, 1e-6), 1e-3)}]
        try:
            enc = self.processor(text=text, videos=[frames.pixels], video_metadata=metadata, return_tensors="pt")
        except (TypeError, ValueError):
            enc = self.processor(text=text, videos=[frames.pixels], return_tensors="pt")
        return self._inputs(enc, text, "pixel_values_videos")

    def exact_video_inputs(self, frames: Frames, prompt: str, chat: str = "model") -> ModelInputs:
        """The processor's video path on exactly these frames (no resampling), their real frame numbers, rate and the
        video's length as the metadata its time texts come from (Qwen3-VL, GLM-4.1V)."""
        text = self.video_turn(prompt, chat)
        enc = self.processor(text=text, videos=[frames.pixels], video_metadata=[video_metadata(frames)],
                             do_sample_frames=False, return_tensors="pt")
        return self._inputs(enc, text, "pixel_values_videos")

    def _inputs(self, enc: Any, text: str, pixel_key: str) -> ModelInputs:
        kwargs = to_device(enc, self.device, self.dtype, cast=(pixel_key,))
        video_id = getattr(self.model.config, "video_token_id", -1)
        n = int(((kwargs["input_ids"] == self.image_token_id) | (kwargs["input_ids"] == video_id)).sum())
        return ModelInputs(kwargs=kwargs, visual_tokens=n, prompt=text)


__all__ = ["QwenVLAdapter"]
