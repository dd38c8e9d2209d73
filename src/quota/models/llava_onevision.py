"""Adapter for the LLaVA-OneVision family (``LlavaOnevisionForConditionalGeneration``).

Covers LLaVA-OneVision and LLaVA-Video-Qwen2 in Hugging Face format (``llava-hf/...``): a SigLIP
vision tower, a projector and a Qwen2 language model.

The model's own video path (transformers): vision tower hidden state at ``vision_feature_layer``
→ projector → bilinear pooling of each frame's ``g×g`` grid to ``⌈g/2⌉×⌈g/2⌉`` → all frames'
tokens in a row → one ``image_newline`` token after the whole video. :meth:`encode` stops
before that pooling (27×27 for SigLIP-384), so the assigner resizes from the native grid.

Newline policies (``newline=``): ``"row"`` (one ``image_newline`` after every grid row: how
LLaVA-Video was trained and is evaluated by its own code), ``"video"`` (one after the whole video: the
Hugging Face video path, and LLaVA-OneVision's own setting), ``"frame"``, ``"none"``. ``"auto"``
resolves per checkpoint by :func:`newline_rule`: ``"row"`` for LLaVA-Video, ``"video"`` otherwise.

The baseline (:meth:`LlavaOnevisionAdapter.baseline_inputs`) is the model's own video path: the
processor's frames, the model's own 2× bilinear pooling (27×27 → 14×14). Under ``"video"`` it is the
stock Hugging Face call itself; under ``"row"`` (LLaVA-Video) the pooled features are laid out with a
newline after every row, since the Hugging Face path cannot do that.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import torch

from ..assign import Grid
from ..errors import BudgetError
from ..reference import QWEN_1_5, qwen_1_5_prompt, video_message
from ..types import Frames
from .base import ModelInputs, VideoLMAdapter, flatten_frame_features
from .loading import to_device


#: ``mm_newline_position`` of the original LLaVA-NeXT configs -> our newline policy.
_ORIGINAL_NEWLINE = {"grid": "row", "one_token": "video", "frame": "frame", "no_token": "none"}


def _name_parts(model_id: str) -> list[str]:
    """The names a checkpoint goes by: the hub id's name, the folder's name, and for a folder inside the
    Hugging Face cache (``models--org--name/snapshots/<hash>``) that cache entry's name."""
    names = [model_id.rstrip("/").split("/")[-1]]
    path = Path(model_id).expanduser()
    if path.exists():
        real = Path(os.path.realpath(path))
        names.append(real.name)
        names += [part for part in real.parts if part.startswith("models--")]
    return names


def newline_rule(model_id: str, config: Any) -> tuple[str, str]:
    """How a LLaVA-OneVision-class checkpoint lays out its newline tokens, and why.

    The Hugging Face port of LLaVA-Video is a ``llava_onevision`` checkpoint with nothing in its config
    that tells it apart from LLaVA-OneVision, so the rule looks at the config first, then the name:

    1. a ``mm_newline_position`` field (the original LLaVA-NeXT config key, kept by some conversions):
       ``grid`` -> ``"row"``, ``one_token`` -> ``"video"``, ``frame`` -> ``"frame"``, ``no_token`` -> ``"none"``;
    2. the checkpoint's name (hub id, folder name, or Hugging Face cache entry) contains ``llava-video`` or
       ``llava_video`` (any case), as ``llava-hf/LLaVA-Video-7B-Qwen2-hf`` does -> ``"row"``;
    3. otherwise LLaVA-OneVision -> ``"video"`` (one newline after the whole video).

    Returns:
        ``(policy, reason)``: the newline policy and a short text saying which rule decided.
    """
    original = getattr(config, "mm_newline_position", None)
    if isinstance(original, str) and original in _ORIGINAL_NEWLINE:
        return _ORIGINAL_NEWLINE[original], f"config mm_newline_position={original!r}"
    for name in _name_parts(str(model_id)):
        lowered = name.lower()
        if "llava-video" in lowered or "llava_video" in lowered:
            return "row", f"LLaVA-Video checkpoint by name ({name!r})"
    return "video", "LLaVA-OneVision (no LLaVA-Video name or config field)"


class LlavaOnevisionAdapter(VideoLMAdapter):
    family = "llava_onevision"
    model_types = ("llava_onevision",)
    default_newline = "video"
    model_class_name = "LlavaOnevisionForConditionalGeneration"
    #: The reference (LLaVA-NeXT code, lmms-eval's ``llava_vid``) runs LLaVA-Video in this conversation.
    paper_conversation = QWEN_1_5

    def __init__(self, model: Any, processor: Any, **kwargs: Any) -> None:
        super().__init__(model, processor, **kwargs)
        self.video_token = getattr(processor, "video_token", "<video>")
        self.video_token_id = int(self.model.config.video_token_id)
        vision = self.model.config.vision_config
        side = vision.image_size // vision.patch_size
        self._native: Grid = (side, side)
        #: This checkpoint's own newline policy and the rule that chose it (:func:`newline_rule`).
        self.default_newline, self.newline_reason = newline_rule(self.model_id, self.model.config)
        self.variant = "llava_video" if self.default_newline == "row" else "llava_onevision"

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

    def chat_text(self, content: list[dict[str, Any]], chat: str = "model") -> str:
        """One user turn: the checkpoint's chat template, or (``chat="qwen_1_5"``) LLaVA-NeXT's ``qwen_1_5``
        conversation around the text, after the video placeholder and a line break when there is a video
        (:func:`quota.reference.video_message`)."""
        if chat != QWEN_1_5:
            return super().chat_text(content, chat)
        text = "".join(part["text"] for part in content if part["type"] == "text")
        if any(part["type"] == "video" for part in content):
            text = video_message(self.video_token, text)
        return qwen_1_5_prompt(text)

    def _prompt_ids(self, prompt: str, chat: str) -> tuple[str, torch.Tensor]:
        text = self.video_turn(prompt, chat)
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
        chat: str = "model",
    ) -> ModelInputs:
        visual = self.visual_sequence(features, grids, newline).to(self.device, self.dtype)
        text, ids = self._prompt_ids(prompt, chat)
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

    def baseline_inputs(self, frames: Frames, prompt: str, *, newline: str = "auto", chat: str = "model") -> ModelInputs:
        """The stock model at these frames: its own pooling to :meth:`pooled_grid`, newlines as trained.

        ``"video"``: the Hugging Face processor and video path, unchanged. Any other policy (``"row"`` for
        LLaVA-Video): the same pooled features (the model's own ``apply_pooling``) laid out by policy.
        """
        policy = self.resolve_newline(newline)
        if policy != "video":
            pooled = self.pooled_features(frames)
            grid = self.pooled_grid()
            return self.build_inputs(prompt, list(pooled), [grid] * len(pooled), newline=policy, chat=chat)
        text = self.video_turn(prompt, chat)
        enc = self.processor(text=text, videos=[frames.pixels], return_tensors="pt")
        enc = to_device(enc, self.device, self.dtype, cast=("pixel_values_videos",))
        n = int((enc["input_ids"] == self.video_token_id).sum())
        return ModelInputs(kwargs=enc, visual_tokens=n, prompt=text)

    #: The Hugging Face video path puts one newline after the whole video.
    stock_newline = "video"

    def stock_grid(self, frames: Frames) -> Grid:
        """The Hugging Face video path pools each frame to :meth:`pooled_grid`."""
        return self.pooled_grid()

    def stock_inputs(self, frames: Frames, prompt: str, *, frame_labels: Sequence[str] | None = None,
                     chat: str = "model") -> ModelInputs:
        """The Hugging Face processor and video path, unchanged (frame labels are not part of it)."""
        return self.baseline_inputs(frames, prompt, newline="video", chat=chat)

    @torch.inference_mode()
    def pooled_features(self, frames: Frames) -> torch.Tensor:
        """``[T, h, w, C]``: each frame pooled by the model's own ``apply_pooling`` (27×27 -> 14×14)."""
        native = self.encode(frames)
        t, h, w, c = native.shape
        pooled = self.model.model.apply_pooling(native.reshape(t, h * w, c))
        ph, pw = self.pooled_grid()
        return pooled.reshape(t, ph, pw, c)


__all__ = ["LlavaOnevisionAdapter"]
