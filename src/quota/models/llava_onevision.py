"""Adapter for the LLaVA-OneVision family (``LlavaOnevisionForConditionalGeneration``).

Covers LLaVA-OneVision and LLaVA-Video-Qwen2 in Hugging Face format (``llava-hf/...``): a SigLIP
vision tower, a projector and a Qwen2 language model.

The model's own video path (transformers): vision tower hidden state at ``vision_feature_layer``
→ projector → bilinear pooling of each frame's ``g×g`` grid to ``⌈g/2⌉×⌈g/2⌉`` → all frames'
tokens in a row → one ``image_newline`` token after the whole video. :meth:`encode` stops
before that pooling (27×27 for SigLIP-384), so the assigner resizes from the native grid.

Newline policies (``newline=``): ``"video"`` (default: the Hugging Face path, one newline after
the video), ``"row"`` (original LLaVA-Video code: one after every grid row), ``"frame"``,
``"none"``. The newline embedding is the model's learned ``image_newline``.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from ..assign import Grid
from ..errors import BudgetError
from ..types import Frames
from .base import ModelInputs, VideoLMAdapter, flatten_frame_features


class LlavaOnevisionAdapter(VideoLMAdapter):
    family = "llava_onevision"
    model_types = ("llava_onevision",)
    default_newline = "video"
    model_class_name = "LlavaOnevisionForConditionalGeneration"

    def __init__(self, model: Any, processor: Any, **kwargs: Any) -> None:
        super().__init__(model, processor, **kwargs)
        self.video_token = getattr(processor, "video_token", "<video>")
        self.video_token_id = int(self.model.config.video_token_id)
        vision = self.model.config.vision_config
        side = vision.image_size // vision.patch_size
        self._native: Grid = (side, side)

    # ------------------------------------------------------------------ geometry
    def native_grid(self, frames: Frames | None = None) -> Grid:
        """SigLIP patch grid per frame (27×27 for SigLIP-so400m-patch14-384); frames are resized to it."""
        return self._native

    def pooled_grid(self) -> Grid:
        """The grid the model's own video path pools each frame to: ``⌈g/2⌉`` per side."""
        h, w = self._native
        return (-(-h // 2), -(-w // 2))

    # ------------------------------------------------------------------ encoding
    def _pixel_values(self, frames: Frames) -> torch.Tensor:
        out = self.processor.video_processor(videos=[frames.pixels], return_tensors="pt")
        return out["pixel_values_videos"][0]  # [T, 3, S, S]

    @torch.inference_mode()
    def encode(self, frames: Frames) -> torch.Tensor:
        """``[T, g, g, C]``: projector output on the SigLIP grid, before the model's own pooling."""
        pixels = self._pixel_values(frames)
        core = self.model.model
        cfg = self.model.config
        layer = cfg.vision_feature_layer
        chunks = []
        for start in range(0, pixels.shape[0], self.encode_batch_size):
            batch = pixels[start : start + self.encode_batch_size].to(self.device, self.dtype)
            hidden = core.vision_tower(batch, output_hidden_states=True, return_dict=True).hidden_states
            if isinstance(layer, int):
                selected = hidden[layer]
            else:
                selected = torch.cat([hidden[i] for i in layer], dim=-1)
            if cfg.vision_feature_select_strategy == "default":
                selected = selected[:, 1:]
            chunks.append(core.multi_modal_projector(selected))
        feats = torch.cat(chunks)
        h, w = self._native
        if feats.shape[1] != h * w:
            raise BudgetError(f"vision tower gave {feats.shape[1]} tokens per frame, expected {h}x{w}")
        return feats.view(feats.shape[0], h, w, feats.shape[-1])

    # ------------------------------------------------------------------ inputs
    def visual_sequence(self, features: Sequence[torch.Tensor], grids: Sequence[Grid], newline: str) -> torch.Tensor:
        """The visual embeddings in sequence order, ``[N, C]``, newline tokens placed by policy."""
        newline = self.resolve_newline(newline)
        flat = flatten_frame_features(features, grids)
        if not flat:
            raise BudgetError("no frame kept: the plan gave every frame 0 tokens")
        nl = self.model.model.image_newline.to(flat[0].device, flat[0].dtype)[None]
        parts: list[torch.Tensor] = []
        for rows, (h, w) in zip(flat, grids):
            if newline == "row":
                grid = rows.view(h, w, -1)
                parts.append(torch.cat([grid, nl.expand(h, 1, -1)], dim=1).reshape(-1, rows.shape[-1]))
            else:
                parts.append(rows)
                if newline == "frame":
                    parts.append(nl)
        if newline == "video":
            parts.append(nl)
        return torch.cat(parts)

    def _prompt_ids(self, prompt: str) -> tuple[str, torch.Tensor]:
        text = self.chat_text([{"type": "video"}, {"type": "text", "text": prompt}])
        ids = self.tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"][0]
        return text, ids

    def build_inputs(
        self,
        prompt: str,
        features: Sequence[torch.Tensor],
        grids: Sequence[Grid],
        *,
        newline: str = "auto",
        frame_labels: Sequence[str] | None = None,
    ) -> ModelInputs:
        visual = self.visual_sequence(features, grids, newline).to(self.device, self.dtype)
        text, ids = self._prompt_ids(prompt)
        slots = (ids == self.video_token_id).nonzero().flatten()
        if slots.numel() != 1:
            raise BudgetError(f"the chat template produced {slots.numel()} video placeholders, expected 1")
        at = int(slots[0])
        n = visual.shape[0]
        ids = torch.cat([ids[:at], torch.full((n,), self.video_token_id, dtype=ids.dtype), ids[at + 1 :]])
        ids = ids[None].to(self.device)
        embeds = self.model.get_input_embeddings()(ids)
        mask = (ids == self.video_token_id)[..., None].expand_as(embeds)
        embeds = embeds.masked_scatter(mask, visual)
        return ModelInputs(
            kwargs={"inputs_embeds": embeds, "attention_mask": torch.ones_like(ids)},
            visual_tokens=n,
            prompt=text,
            extra={"input_ids": ids},
        )

    def baseline_inputs(self, frames: Frames, prompt: str) -> ModelInputs:
        text = self.chat_text([{"type": "video"}, {"type": "text", "text": prompt}])
        enc = self.processor(text=text, videos=[frames.pixels], return_tensors="pt")
        enc = {k: v.to(self.device) for k, v in enc.items()}
        enc["pixel_values_videos"] = enc["pixel_values_videos"].to(self.dtype)
        n = int((enc["input_ids"] == self.video_token_id).sum())
        return ModelInputs(kwargs=enc, visual_tokens=n, prompt=text)


__all__ = ["LlavaOnevisionAdapter"]
