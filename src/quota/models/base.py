"""What every base-model adapter offers the pipeline.

An adapter wraps one loaded Hugging Face video-language model and its processor. It

* encodes frames to features on the model's native grid, ``[T, H, W, C]``, stopping before any
  fixed pooling the model would apply (:meth:`VideoLMAdapter.encode`);
* builds the model inputs for frames whose features were resized to grids of different sizes,
  with the right number of placeholder tokens, newline tokens and positions
  (:meth:`VideoLMAdapter.build_inputs`), and generates from them greedily
  (:meth:`VideoLMAdapter.generate`);
* runs the model's own, unmodified video path for the baseline (:meth:`VideoLMAdapter.generate_baseline`);
* generates text without any video, for the query decoupling step (:meth:`VideoLMAdapter.generate_text`).

No file of any model library is patched: everything goes through public model methods and the
``inputs_embeds`` / pre-computed-features arguments of stock ``transformers``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Sequence

import torch

from ..assign import Grid
from ..errors import BudgetError, ConfigError
from ..types import Frames, format_seconds
from .loading import load_model, load_processor, resolve_device, resolve_dtype


@dataclass
class ModelInputs:
    """Inputs for one forward pass or generation of a base model.

    Attributes:
        kwargs: keyword arguments for ``model(...)`` / ``model.generate(...)`` (``input_ids`` or
            ``inputs_embeds``, ``attention_mask``, and family-specific extras), batch size 1.
        visual_tokens: positions in the sequence that hold visual features or newline tokens.
        prompt: the text the placeholders were put into (for logs and tests).
    """

    kwargs: dict[str, Any]
    visual_tokens: int
    prompt: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class VideoLMAdapter(ABC):
    """Base class of the per-family adapters. Subclasses set the class attributes below."""

    #: Family name (``"llava_onevision"``, ``"qwen2_vl"``).
    family: ClassVar[str]
    #: ``config.model_type`` values this adapter handles.
    model_types: ClassVar[tuple[str, ...]]
    #: The newline policy of the family's own video path (used when the config says ``"auto"``); an
    #: adapter may set its own per checkpoint (LLaVA-Video vs LLaVA-OneVision).
    default_newline: ClassVar[str]
    #: How token counts become grids under ``grid_shape="auto"``: ``"square"`` (the paper) or ``"aspect"``.
    default_grid_shape: ClassVar[str] = "square"
    #: The ``transformers`` model class to load.
    model_class_name: ClassVar[str]
    #: The conversation the reference implementation runs this family in (``chat_template="paper"``), or
    #: ``None``: the checkpoint's own chat template under every setting.
    paper_conversation: ClassVar[str | None] = None

    def __init__(self, model: Any, processor: Any, *, model_id: str = "", encode_batch_size: int = 32) -> None:
        self.model = model
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.model_id = model_id
        self.encode_batch_size = int(encode_batch_size)

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(
        cls,
        model_id: str,
        *,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        trust_remote_code: bool = False,
        **kwargs: Any,
    ) -> "VideoLMAdapter":
        """Load model and processor from a hub id or a local checkpoint folder."""
        import transformers

        dev = resolve_device(device)
        processor = load_processor(model_id, trust_remote_code=trust_remote_code)
        model_class = getattr(transformers, cls.model_class_name)
        model = load_model(model_class, model_id, device=dev, dtype=resolve_dtype(dtype, dev),
                           trust_remote_code=trust_remote_code)
        return cls(model, processor, model_id=str(model_id), **kwargs)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    # ------------------------------------------------------------------ the family-specific part
    @abstractmethod
    def encode(self, frames: Frames) -> torch.Tensor:
        """Features of every frame on the model's native grid, ``[T, H, W, C]`` (C = LM hidden size)."""

    @abstractmethod
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
        """Model inputs for the kept frames' resized features and the prompt text.

        Args:
            prompt: the user turn's text (time instruction, question, options).
            features: one tensor per kept frame, ``[h, w, C]`` or ``[h·w, C]``.
            grids: the ``(h, w)`` grid of each kept frame (same order as ``features``).
            newline: newline token policy (``"auto"`` = the family's own).
            frame_labels: optional short text before each frame (for example its time).
            chat: the conversation, as :meth:`resolve_chat` names it.
        """

    @abstractmethod
    def baseline_inputs(self, frames: Frames, prompt: str, *, newline: str = "auto", chat: str = "model") -> ModelInputs:
        """Inputs of the model's own video path for these frames (the baseline), with its newline tokens
        (``"auto"``: as the checkpoint was trained), in the conversation ``chat``."""

    # ------------------------------------------------------------------ the stock path (adapter contract)
    #: The newline layout of the family's own path that :meth:`stock_inputs` runs.
    stock_newline: ClassVar[str] = "none"
    #: Frames the family's own video path (the baseline) merges into one step of tokens.
    baseline_temporal_patch: int = 1

    @abstractmethod
    def stock_grid(self, frames: Frames) -> Grid:
        """The per-frame token grid of the family's own path in :meth:`stock_inputs` (what uniform scores at
        ``T × h·w`` tokens must reproduce)."""

    @abstractmethod
    def stock_inputs(self, frames: Frames, prompt: str, *, frame_labels: Sequence[str] | None = None,
                     chat: str = "model") -> ModelInputs:
        """The model's own, unmodified path for these frames (the processor and the model's own encoding): the
        reference of the adapter contract (tests/test_adapter_contract.py), where :meth:`build_inputs` at
        :meth:`stock_grid` with :attr:`stock_newline` must give the same logits."""

    # ------------------------------------------------------------------ shared
    def frame_label(self, seconds: float) -> str:
        """The text put before a kept frame that is ``seconds`` into the video (the family's own time
        convention where it has one; ``"12.50s"`` otherwise)."""
        return format_seconds(seconds)

    def resolve_newline(self, newline: str | None) -> str:
        """The concrete newline policy: ``"auto"`` / ``None`` give this checkpoint's own."""
        return self.default_newline if newline in (None, "auto") else newline

    def require_no_newline(self, newline: str | None) -> None:
        """For a family without a newline token: accept ``"auto"`` / ``"none"`` only (:class:`BudgetError` otherwise)."""
        if self.resolve_newline(newline) != "none":
            raise BudgetError(f"{self.family} has no newline token; use newline='auto' or 'none', not {newline!r}")

    def resolve_grid_shape(self, shape: str | None) -> str:
        """The concrete grid shape rule: ``"auto"`` / ``None`` give this family's own."""
        return self.default_grid_shape if shape in (None, "auto") else shape

    def resolve_chat(self, chat_template: str | None) -> str:
        """The conversation of this family's turns for a ``chat_template`` setting: :attr:`paper_conversation`
        under ``"paper"`` when the family has one, else ``"model"`` (the checkpoint's own chat template)."""
        if chat_template == "paper" and self.paper_conversation is not None:
            return self.paper_conversation
        return "model"

    def video_turn(self, prompt: str, chat: str = "model") -> str:
        """One user turn of the video placeholder followed by ``prompt`` (:meth:`chat_text`)."""
        return self.chat_text([{"type": "video"}, {"type": "text", "text": prompt}], chat)

    def chat_text(self, content: list[dict[str, Any]], chat: str = "model") -> str:
        """One user turn, ready for the answer: rendered by the checkpoint's chat template (``chat="model"``),
        or in the conversation named ``chat`` (a family with a :attr:`paper_conversation` renders it)."""
        if chat != "model":
            raise ConfigError(f"{self.family} has no conversation {chat!r}; use the checkpoint's own ('model')")
        messages = [{"role": "user", "content": content}]
        return self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    @torch.inference_mode()
    def generate(
        self,
        prompt: str,
        features: Sequence[torch.Tensor],
        grids: Sequence[Grid],
        *,
        newline: str = "auto",
        frame_labels: Sequence[str] | None = None,
        max_new_tokens: int = 64,
        chat: str = "model",
        on_text: Callable[[str], None] | None = None,
    ) -> str:
        """Greedy answer from resized per-frame features, in the conversation ``chat``; ``on_text`` is called with
        each new piece of the answer as it is generated (see :class:`TextPieces`)."""
        if len(features) != len(grids):
            raise BudgetError(f"{len(features)} feature tensors for {len(grids)} grids")
        inputs = self.build_inputs(prompt, features, grids, newline=newline, frame_labels=frame_labels, chat=chat)
        return self._generate(inputs, max_new_tokens, on_text=on_text)

    @torch.inference_mode()
    def generate_baseline(self, frames: Frames, prompt: str, *, newline: str = "auto", max_new_tokens: int = 64,
                          chat: str = "model", on_text: Callable[[str], None] | None = None) -> str:
        """Greedy answer through the model's own video path (no QuoTA), in the conversation ``chat``; ``on_text`` as
        in :meth:`generate`."""
        return self._generate(self.baseline_inputs(frames, prompt, newline=newline, chat=chat), max_new_tokens,
                              on_text=on_text)

    @torch.inference_mode()
    def generate_text(
        self, prompt: str, max_new_tokens: int = 256, *, stop: Callable[[str], bool] | None = None,
        chat: str = "model",
    ) -> str:
        """Greedy text-only answer to ``prompt`` (one user turn, no video, in the conversation ``chat``).

        Args:
            stop: optional ``text -> bool`` called on the text generated so far after every new token;
                generation ends when it returns true (the text up to there is what a longer generation
                would have started with: decoding is greedy).
        """
        text = self.chat_text([{"type": "text", "text": prompt}], chat)
        enc = self.tokenizer(text, return_tensors="pt", add_special_tokens=False).to(self.device)
        return self._generate(ModelInputs(kwargs=dict(enc), visual_tokens=0, prompt=text), max_new_tokens, stop=stop)

    @torch.inference_mode()
    def logits(self, inputs: ModelInputs) -> torch.Tensor:
        """Next-token logits at every position, ``[1, L, V]`` (tests and diagnostics)."""
        return self.model(**inputs.kwargs).logits

    def _generate(self, inputs: ModelInputs, max_new_tokens: int, stop: Callable[[str], bool] | None = None,
                  on_text: Callable[[str], None] | None = None) -> str:
        kwargs = dict(inputs.kwargs)
        prompt_len = kwargs["input_ids"].shape[1] if "input_ids" in kwargs else 0
        pad_id = self.tokenizer.pad_token_id
        if pad_id is None:
            pad_id = self.tokenizer.eos_token_id
        if stop is not None:
            from transformers import StoppingCriteriaList

            kwargs["stopping_criteria"] = StoppingCriteriaList([_TextStop(self.tokenizer, prompt_len, stop)])
        if on_text is not None:
            kwargs["streamer"] = TextPieces(self.tokenizer, on_text, skip=prompt_len)
        out = self.model.generate(
            **kwargs,
            max_new_tokens=int(max_new_tokens),
            do_sample=False,
            num_beams=1,
            temperature=None,
            top_p=None,
            top_k=None,
            pad_token_id=pad_id,
        )
        new_tokens = out[0, prompt_len:] if out.shape[1] > prompt_len else out[0, :0]
        return self.tokenizer.decode(new_tokens, skip_special_tokens=True).strip()


class TextPieces:
    """A ``transformers`` streamer: calls ``on_text(piece)`` with each new piece of the decoded answer.

    The answer so far is decoded whole after every token (special tokens skipped) and only what it adds is passed
    on, so a character split across tokens arrives once, complete; the pieces joined are the decoded answer
    (before :meth:`VideoLMAdapter._generate` strips its ends). The first ``skip`` tokens (the prompt, which
    ``generate`` hands to its streamer first when it has ``input_ids``) are not part of the answer.
    """

    def __init__(self, tokenizer: Any, on_text: Callable[[str], None], skip: int = 0) -> None:
        self.tokenizer = tokenizer
        self.on_text = on_text
        self.skip = int(skip)
        self.tokens: list[int] = []
        self.sent = ""

    def put(self, value: torch.Tensor) -> None:
        ids = [int(t) for t in value.reshape(-1).tolist()]
        if self.skip:
            dropped = min(self.skip, len(ids))
            self.skip -= dropped
            ids = ids[dropped:]
        if not ids:
            return
        self.tokens += ids
        # a character still incomplete decodes as U+FFFD at the end: hold it back until its next token
        self._send(self.tokenizer.decode(self.tokens, skip_special_tokens=True).rstrip("\ufffd"))

    def end(self) -> None:
        self._send(self.tokenizer.decode(self.tokens, skip_special_tokens=True))

    def _send(self, text: str) -> None:
        if text.startswith(self.sent) and len(text) > len(self.sent):
            self.on_text(text[len(self.sent):])
            self.sent = text


class _TextStop:
    """A ``transformers`` stopping criterion: decode the new tokens, ask ``stop(text)`` (batch size 1)."""

    def __init__(self, tokenizer: Any, prompt_len: int, stop: Callable[[str], bool]) -> None:
        self.tokenizer = tokenizer
        self.prompt_len = int(prompt_len)
        self.stop = stop

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        text = self.tokenizer.decode(input_ids[0, self.prompt_len :], skip_special_tokens=True)
        done = bool(self.stop(text))
        return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)


def flatten_frame_features(features: Sequence[torch.Tensor], grids: Sequence[Grid]) -> list[torch.Tensor]:
    """Each kept frame's features as ``[h·w, C]`` rows in row-major order, checked against its grid; at least one
    frame (:class:`BudgetError` when the plan kept none)."""
    flat = []
    for k, (feat, (h, w)) in enumerate(zip(features, grids)):
        rows = feat.reshape(-1, feat.shape[-1])
        if rows.shape[0] != h * w:
            raise BudgetError(f"frame {k}: {rows.shape[0]} feature tokens for a {h}x{w} grid")
        flat.append(rows)
    if not flat:
        raise BudgetError("no frame kept: the plan gave every frame 0 tokens")
    return flat


def video_metadata(frames: Frames, *, duration: bool = True) -> dict[str, Any]:
    """What a processor's video path needs to know about frames it is handed already sampled: their real frame
    numbers and the stream's rate (from which processors compute each frame's time), the frame count of the
    file up to the last of them, and (``duration=True``) the video's length in seconds."""
    fps = frames.fps if frames.fps > 0 else max(len(frames) / max(frames.duration, 1e-6), 1e-3)
    meta: dict[str, Any] = {"total_num_frames": int(frames.indices.max()) + 1, "fps": float(fps),
                            "frames_indices": [int(i) for i in frames.indices]}
    if duration:
        meta["duration"] = float(frames.duration)
    return meta


def expand_placeholder(text: str, token: str, expansion: str) -> str:
    """``text`` with its one ``token`` (the chat template's video placeholder) replaced by ``expansion``."""
    if text.count(token) != 1:
        raise BudgetError(f"the chat template produced {text.count(token)} video placeholders, expected 1")
    return text.replace(token, expansion)


__all__ = ["VideoLMAdapter", "ModelInputs", "TextPieces", "flatten_frame_features", "video_metadata", "expand_placeholder"]
