"""Frame scoring with a vision-language model: the probability that it answers "yes" about each frame.

For every frame the model gets one chat turn, the frame as an image followed by the two-option scoring
question of :func:`quota.scoring.question.scoring_question` (option :data:`~quota.scoring.question.YES_LETTER` = yes,
:data:`~quota.scoring.question.NO_LETTER` = no), rendered by the processor's own chat template with the assistant
turn opened. The frame's score is the softmax probability, over the whole vocabulary, of the yes letter's
token as the next token (``normalize="none"``, as in the paper), or that probability renormalised over the
two letters, ``P(yes) / (P(yes) + P(no))`` (``normalize="pair"``).

Frames are scored in batches. Rows are left-padded, so the last position is every row's real last token,
and the model is asked for the logits of that position only (``logits_to_keep=1``): the language-model head
runs on one position per row instead of the whole sequence, which is where most of the memory of a naive
implementation goes (a 151,936-word vocabulary makes full logits ~0.6 MB per token in float32). A batch
that runs out of memory is retried at half its size, down to one frame.

:class:`LVLMScorer` works with Qwen2-VL, Qwen2.5-VL and LLaVA-OneVision / LLaVA-Video checkpoints (the
latter through the processor's image path, which is how ``scorer="base"`` reuses the answering model);
:class:`QwenVLScorer` is the same with the paper's defaults (Qwen2-VL-2B-Instruct, at most 1280·28·28
pixels per frame).
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, ClassVar, Sequence

import numpy as np

from ..config import SCORE_NORMALIZATIONS, QuotaConfig
from .question import NO_LETTER, YES_LETTER, scoring_question
from ..errors import ConfigError, ProcessorNotFoundError, UnsupportedModelError
from ..types import Clue, Frames
from .prefix import PREFIX_KEY, PrefixEntry, frames_fingerprint, kv_bytes, prefix_bytes_in, prefix_split, tensor_digest
from .base import (
    DEEPSTACK_FAMILIES,
    LVLM_FAMILIES,
    QWEN_FAMILIES,
    CheckpointScorer,
    as_frames,
    check_images,
    clue_text,
    finish_scores,
    model_device,
    model_dtype,
    run_batched,
)

logger = logging.getLogger(__name__)

def _positive_int(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, np.integer)) and int(value) >= 1


def _check_options(batch_size: Any, normalize: Any, vision_batch_size: Any = None, prefill_chunk: Any = None) -> None:
    if normalize not in SCORE_NORMALIZATIONS:
        raise ConfigError(f"normalize={normalize!r} is not one of {', '.join(SCORE_NORMALIZATIONS)}")
    if not _positive_int(batch_size):
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
    if vision_batch_size is not None and not _positive_int(vision_batch_size):
        raise ConfigError(f"vision_batch_size must be a positive integer or None, got {vision_batch_size!r}")
    if prefill_chunk is not None and not _positive_int(prefill_chunk):
        raise ConfigError(f"prefill_chunk must be a positive integer or None, got {prefill_chunk!r}")


#: The paper's settings (the defaults of :class:`~quota.config.QuotaConfig`): the scorer's defaults come from them.
_DEFAULTS = QuotaConfig()
#: The paper's scoring model.
DEFAULT_QWEN_SCORER = _DEFAULTS.scorer
#: The paper's cap on pixels per frame for the Qwen-VL scorer (1280 merged tokens of 28x28 pixels).
DEFAULT_MAX_PIXELS = _DEFAULTS.scorer_max_pixels
#: The paper's frames per scoring forward pass.
DEFAULT_BATCH_SIZE = _DEFAULTS.scorer_batch_size
#: Frames per vision-encoder pass inside one scoring batch (bounds the vision tower's activations).
DEFAULT_VISION_BATCH_SIZE = _DEFAULTS.scorer_vision_batch
#: Families whose forward is exactly what :meth:`LVLMScorer._forward_chunked` rebuilds (token embeddings with the
#: image features scattered in, their rotary positions, the language model, the head): checked by the scorer
#: contract tests against the model's own forward. Any other family is refused on that path, never approximated.
_PLAIN_FORWARD_FAMILIES: tuple[str, ...] = ("qwen2_vl", "qwen2_5_vl", "llava_onevision", "smolvlm")


@dataclass(frozen=True)
class LVLMOptions:
    """How an LVLM scorer reads frames and splits its work: the scorer settings of a
    :class:`~quota.config.QuotaConfig` (``scorer_max_pixels``, ``scorer_batch_size``, ``score_normalize``,
    ``scorer_vision_batch``, ``scorer_prefill_chunk``), with the same defaults except ``max_pixels``, which is
    the processor's own (``None``) unless a class sets it (:class:`QwenVLScorer`: the paper's 1280·28·28).

    Attributes:
        max_pixels: most pixels per frame for Qwen-VL models (``None``: the processor's own setting); other
            families use fixed tile sizes and ignore it.
        batch_size: frames per forward pass to start with (halved on out-of-memory, down to 1).
        normalize: ``"none"`` P(yes) over the whole vocabulary (the paper) or ``"pair"`` P(yes)/(P(yes)+P(no)).
        vision_batch_size: frames per vision-encoder pass within a batch (``None``: the model encodes the whole
            batch itself); bounds the vision tower's activations, scores unchanged.
        prefill_chunk: the language model reads each prompt this many tokens at a time on a cache (``None``: one
            pass); bounds activation memory, scores equal to float rounding.
    """

    max_pixels: int | None = None
    batch_size: int = _DEFAULTS.scorer_batch_size
    normalize: str = _DEFAULTS.score_normalize
    vision_batch_size: int | None = _DEFAULTS.scorer_vision_batch
    prefill_chunk: int | None = _DEFAULTS.scorer_prefill_chunk

    def __post_init__(self) -> None:
        _check_options(self.batch_size, self.normalize, self.vision_batch_size, self.prefill_chunk)
        if self.max_pixels is not None and not _positive_int(self.max_pixels):
            raise ConfigError(f"max_pixels must be a positive integer or None, got {self.max_pixels!r}")

    @classmethod
    def from_config(cls, config: Any) -> "LVLMOptions":
        """The scorer settings of a :class:`~quota.config.QuotaConfig`."""
        return cls(max_pixels=config.scorer_max_pixels, batch_size=config.scorer_batch_size,
                   normalize=config.score_normalize, vision_batch_size=config.scorer_vision_batch,
                   prefill_chunk=config.scorer_prefill_chunk)

    def changed(self, settings: dict[str, Any], owner: str) -> "LVLMOptions":
        """These options with ``settings`` (option name -> value) changed; an unknown name is a ConfigError."""
        names = {f.name for f in fields(self)}
        unknown = sorted(set(settings) - names)
        if unknown:
            raise ConfigError(f"unknown option(s) {', '.join(unknown)} for {owner}; it takes {', '.join(sorted(names))}")
        return replace(self, **settings) if settings else self


def letter_token_id(tokenizer: Any, letter: str) -> int:
    """The id of the single token that spells ``letter`` (as the model writes it first in its answer).

    Raises:
        UnsupportedModelError: the tokenizer splits the letter into several tokens (or none), so its
            probability cannot be read from one position.
    """
    ids = list(tokenizer.encode(letter, add_special_tokens=False))
    if len(ids) != 1:
        raise UnsupportedModelError(
            f"the tokenizer ({type(tokenizer).__name__}) encodes the option letter {letter!r} as {len(ids)} "
            f"tokens {ids}; the yes-probability scorer needs it to be one token"
        )
    return int(ids[0])


def _size_value(size: Any, key: str) -> Any:
    if size is None:
        return None
    if isinstance(size, dict):
        return size.get(key)
    return getattr(size, key, None)


def qwen_image_kwargs(processor: Any, max_pixels: int | None) -> dict[str, Any]:
    """Processor keyword arguments that cap a Qwen-VL image at ``max_pixels`` pixels (``{}`` for no cap).

    The Qwen2-VL image processor resizes each image to a multiple of ``patch_size * merge_size`` pixels per
    side with between ``size["shortest_edge"]`` and ``size["longest_edge"]`` pixels in all (transformers 5
    names for min_pixels / max_pixels); only the upper bound changes here (and the lower one if it would
    exceed it).
    """
    if max_pixels is None:
        return {}
    image_processor = getattr(processor, "image_processor", None)
    patch = int(getattr(image_processor, "patch_size", 14) or 14)
    merge = int(getattr(image_processor, "merge_size", 2) or 2)
    factor = patch * merge
    if int(max_pixels) < factor * factor:
        raise ConfigError(
            f"max_pixels={max_pixels} is below one merged patch ({factor}x{factor} = {factor * factor} pixels); "
            "use a larger value (the paper uses 1280*28*28)"
        )
    size = getattr(image_processor, "size", None)
    shortest = _size_value(size, "shortest_edge") or factor * factor
    return {"size": {"shortest_edge": min(int(shortest), int(max_pixels)), "longest_edge": int(max_pixels)}}


class LVLMScorer(CheckpointScorer):
    """Scores frames by a vision-language model's probability of answering yes.

    Args:
        model_id: Hugging Face id or local folder of a Qwen2-VL, Qwen2.5-VL or LLaVA-OneVision checkpoint.
            ``None``: the class's :attr:`default_model_id` (:class:`QwenVLScorer`: the paper's scorer;
            :class:`LVLMScorer` has none, so it is a :class:`ConfigError` there).
        **settings: :class:`LVLMOptions` fields (``max_pixels``, ``batch_size``, ``normalize``,
            ``vision_batch_size``, ``prefill_chunk``) changed from the class's :attr:`default_options` (for
            ``max_pixels``: ``None`` here, the paper's 1280·28·28 for :class:`QwenVLScorer`).
        dtype: torch dtype or its name; ``None`` means bfloat16 on CUDA and float32 on the CPU.
        device: torch device; ``None`` means CUDA when available, else the CPU.
        quiet: no progress bar.
        trust_remote_code: allow checkpoints that need their own code (off unless asked).

    Raises:
        ModelNotFoundError: no such id or folder, or no weights in it.
        ProcessorNotFoundError: the checkpoint has weights but no processor, tokenizer or chat template.
        UnsupportedModelError: the checkpoint is not of a supported family, or the option letters are not
            single tokens.
        ConfigError: a bad option value.
    """

    #: ``config.json`` model types this class accepts.
    families: ClassVar[tuple[str, ...]] = LVLM_FAMILIES
    #: The checkpoint used when ``model_id`` is left out (``None``: it must be given).
    default_model_id: ClassVar[str | None] = None
    #: The options of a scorer built without settings.
    default_options: ClassVar[LVLMOptions] = LVLMOptions()
    #: The keyword options the constructor takes (besides the checkpoint).
    options: ClassVar[tuple[str, ...]] = tuple(f.name for f in fields(LVLMOptions)) + (
        "dtype", "device", "quiet", "trust_remote_code")

    @staticmethod
    def options_from_config(config: Any) -> dict[str, Any]:
        """The scorer settings of a :class:`~quota.config.QuotaConfig` as keyword options of this class
        (``max_pixels`` only matters for Qwen-VL checkpoints; other families ignore it)."""
        return asdict(LVLMOptions.from_config(config))

    def reconfigured(self, config: Any) -> "LVLMScorer":
        """A scorer on the same loaded model and processor with the scorer settings of ``config``."""
        return type(self).from_model(self.model, self.processor, quiet=self.quiet, model_id=self.model_id,
                                     **self.options_from_config(config))

    def __init__(
        self,
        model_id: str | os.PathLike[str] | None = None,
        *,
        dtype: Any = None,
        device: Any = None,
        quiet: bool = False,
        trust_remote_code: bool = False,
        **settings: Any,
    ) -> None:
        if model_id is None:
            if self.default_model_id is None:
                raise ConfigError(f"{type(self).__name__} needs a model id or checkpoint folder")
            model_id = self.default_model_id
        options = self.default_options.changed(settings, type(self).__name__)
        model, processor, family = self._load_checkpoint(
            model_id, model_class=_model_class, chat_template=True, dtype=dtype, device=device,
            trust_remote_code=trust_remote_code,
        )
        self._setup(model, processor, family, str(model_id), options, quiet)

    @classmethod
    def from_model(cls, model: Any, processor: Any, *, quiet: bool = False, model_id: str | None = None,
                   **settings: Any) -> "LVLMScorer":
        """A scorer around an already loaded model and processor (for example the answering model); ``settings``
        are :class:`LVLMOptions` fields changed from the class's :attr:`default_options`.

        The model is used on its own device and in its own dtype, and is not copied. The processor's
        tokenizer is switched to left padding (what batched scoring and batched generation both need).
        """
        options = cls.default_options.changed(settings, cls.__name__)
        obj, family, name = cls._adopt(model, model_id)
        obj._setup(model, processor, family, name, options, quiet)
        return obj

    # -----------------------------------------------------------------------------------------------------
    # Set-up
    # -----------------------------------------------------------------------------------------------------

    def _setup(self, model: Any, processor: Any, family: str, model_id: str, options: LVLMOptions, quiet: bool) -> None:
        max_pixels, batch_size, normalize = options.max_pixels, options.batch_size, options.normalize
        vision_batch_size = options.vision_batch_size
        #: The options this scorer runs with.
        self.settings = options
        self.prefill_chunk = options.prefill_chunk
        tokenizer = getattr(processor, "tokenizer", None)
        if tokenizer is None or not hasattr(processor, "apply_chat_template"):
            raise ProcessorNotFoundError(
                f"{model_id}: the processor ({type(processor).__name__}) has no tokenizer or chat template support; "
                "pass the checkpoint's AutoProcessor"
            )
        if getattr(processor, "chat_template", None) is None and getattr(tokenizer, "chat_template", None) is None:
            raise ProcessorNotFoundError(
                f"{model_id}: the processor has no chat template; save the full processor next to the weights"
            )
        # Left padding: the last position of every row is then that row's own last prompt token.
        tokenizer.padding_side = "left"
        if tokenizer.pad_token_id is None:
            raise ProcessorNotFoundError(f"{model_id}: the tokenizer has no padding token, so frames cannot be batched")
        self.model = model.eval()
        self.processor = processor
        self.tokenizer = tokenizer
        self.family = family
        self.model_id = model_id
        self.yes_token_id = letter_token_id(tokenizer, YES_LETTER)
        self.no_token_id = letter_token_id(tokenizer, NO_LETTER)
        vocab = _vocab_size(model)
        for letter, token in ((YES_LETTER, self.yes_token_id), (NO_LETTER, self.no_token_id)):
            if vocab is not None and token >= vocab:
                raise UnsupportedModelError(
                    f"{model_id}: the token id {token} of option letter {letter!r} is outside the model's vocabulary "
                    f"of {vocab}; the processor does not belong to this model"
                )
        if family in QWEN_FAMILIES:
            self.image_kwargs = qwen_image_kwargs(processor, max_pixels)
            self.max_pixels = max_pixels
        else:
            if max_pixels is not None:
                logger.debug("max_pixels=%s ignored for model type %s", max_pixels, family)
            self.image_kwargs = {}
            self.max_pixels = None
        self.batch_size = int(batch_size)
        self.normalize = normalize
        self.vision_batch_size = None if vision_batch_size is None else int(vision_batch_size)
        self.quiet = bool(quiet)
        self.device = model_device(model)
        self.dtype = model_dtype(model)
        #: Frames per batch that last fitted in memory (starts at ``batch_size``, only ever shrinks).
        self.working_batch_size = self.batch_size

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(model_id={self.model_id!r}, family={self.family!r}, "
            f"max_pixels={self.max_pixels}, batch_size={self.batch_size}, normalize={self.normalize!r}, "
            f"vision_batch_size={self.vision_batch_size}, "
            f"device={self.device}, dtype={self.dtype})"
        )

    # -----------------------------------------------------------------------------------------------------
    # Prompts and inputs
    # -----------------------------------------------------------------------------------------------------

    def question_for(self, clue: Clue) -> str:
        """The scoring question asked about every frame for ``clue``."""
        return scoring_question(clue, clue_text(clue))

    def prompt(self, question: str) -> str:
        """The full text of one chat turn (image placeholder + ``question``) with the assistant turn opened."""
        if not isinstance(question, str) or not question.strip():
            raise ConfigError("the scoring question must be a non-empty string")
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
        return self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def build_inputs(self, images: Sequence[np.ndarray], prompt: str) -> Any:
        """Processor outputs for one batch: one row per image, all with ``prompt``, left-padded.

        Args:
            images: uint8 arrays ``[H, W, 3]`` (sizes may differ).
            prompt: the text from :meth:`prompt`.

        Returns:
            A ``BatchFeature`` on the CPU (``input_ids`` / ``attention_mask`` ``[B, L]`` and the family's
            pixel tensors).
        """
        from PIL import Image

        pictures = [Image.fromarray(np.ascontiguousarray(image)) for image in images]
        kwargs: dict[str, Any] = {}
        if self.image_kwargs:
            kwargs["images_kwargs"] = dict(self.image_kwargs)
        inputs = self.processor(
            text=[prompt] * len(pictures),
            images=[[p] for p in pictures] if self.family == "smolvlm" else pictures,  # SmolVLM: images per row
            padding=True,
            padding_side="left",
            return_tensors="pt",
            **kwargs,
        )
        mask = inputs.get("attention_mask")
        if mask is not None and not bool(mask[:, -1].all()):
            raise UnsupportedModelError(
                f"{self.model_id}: the processor padded on the right although left padding was asked for; the "
                "last position would not be every row's last token. Score with batch_size=1"
            )
        return inputs

    def log_probs(self, inputs: Any, features: Sequence[Any] | None = None) -> np.ndarray:
        """Log-probabilities ``[B, 2]`` (yes, no) of the next token after each row's last position.

        The softmax runs over the whole vocabulary in float32, whatever the model's dtype. ``features``:
        the rows' image features when already computed (then ``inputs`` needs no pixels).
        """
        import torch

        batch = self._on_device(inputs)
        with torch.inference_mode():
            return self._yes_no(self._forward(batch, features).logits)

    def _on_device(self, inputs: Any) -> dict[str, Any]:
        """``inputs``' tensors on the model's device, floating ones in its dtype."""
        from ..models.loading import to_device

        return to_device(inputs, self.device, self.dtype)

    def _yes_no(self, logits: Any) -> np.ndarray:
        """Log-probabilities ``[B, 2]`` (yes, no) from logits ``[B, *, V]`` (last position; softmax in float32)."""
        import torch

        logp = torch.log_softmax(logits[:, -1, :].float(), dim=-1)
        return logp[:, [self.yes_token_id, self.no_token_id]].double().cpu().numpy()

    def _forward(self, batch: dict[str, Any], features: Sequence[Any] | None = None) -> Any:
        """One forward pass with logits for the last position only (vision encoded in chunks if asked, or
        ``features`` given)."""
        has_images = features is not None or batch.get("pixel_values") is not None
        if self.prefill_chunk is not None and has_images:
            return self._forward_chunked(batch, int(self.prefill_chunk), features)
        if features is None and (self.vision_batch_size is None or batch.get("pixel_values") is None):
            return self.model(**batch, logits_to_keep=1, use_cache=False)
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        if features is None:
            features = self.encode_images(batch)
        rest = {key: value for key, value in batch.items() if key not in ("pixel_values", "pixel_attention_mask")}
        if self.family in DEEPSTACK_FAMILIES:
            from ..models.qwen3_vl import split_deepstack

            encoded = {"image": split_deepstack(features, int(self.model.config.text_config.hidden_size))}
        else:
            encoded = {"image": BaseModelOutputWithPooling(pooler_output=tuple(features))}
        return self.model(**rest, mm_encoder_outputs=encoded, logits_to_keep=1, use_cache=False)

    def _forward_chunked(self, batch: dict[str, Any], chunk: int, features: Sequence[Any] | None = None) -> Any:
        """The forward pass of :meth:`_forward`, with the language model fed ``chunk`` tokens at a time.

        Builds what the model's own forward builds (token embeddings with the image features in the
        placeholders, and the same position ids: multimodal rotary positions for Qwen-VL, plain positions
        otherwise), then runs the language model chunk by chunk on a growing attention cache, and the
        output head on the last position only.
        """
        from types import SimpleNamespace

        self._check_plain_forward("chunked prefill", "prefill_chunk=None")
        ids, mask = batch["input_ids"], batch["attention_mask"]
        per_image = self.encode_images(batch) if features is None else features
        embeds = self._embeddings(ids, per_image)
        hidden, _ = self._language_model(embeds, self._positions(batch), mask, None, chunk)
        return SimpleNamespace(logits=self.model.lm_head(hidden[:, -1:]))

    def _check_plain_forward(self, what: str, instead: str) -> None:
        if self.family not in _PLAIN_FORWARD_FAMILIES:  # e.g. Qwen3-VL adds deepstack features inside its LM
            raise UnsupportedModelError(
                f"{self.model_id}: {what} rebuilds the forward of {', '.join(_PLAIN_FORWARD_FAMILIES)} only, "
                f"not of {self.family}; score with {instead}"
            )

    def _embeddings(self, ids: Any, per_image: Sequence[Any]) -> Any:
        """Token embeddings ``[B, L, hidden]`` of ``ids`` with the image features scattered into its image
        placeholders (every placeholder of ``ids`` gets one feature row, in order)."""
        import torch

        model = self.model
        embeds = model.get_input_embeddings()(ids)
        features = torch.cat(list(per_image)).to(embeds.device, embeds.dtype)
        slots = (ids == model.config.image_token_id)[..., None].expand_as(embeds)
        if int(slots[..., 0].sum()) != features.shape[0]:
            raise UnsupportedModelError(
                f"{self.model_id}: {int(slots[..., 0].sum())} image placeholders for {features.shape[0]} image "
                "features; score with prefill_chunk=None"
            )
        return embeds.masked_scatter(slots, features)

    def _positions(self, batch: dict[str, Any]) -> Any:
        """The position ids the model's own forward uses for the whole of ``batch``: Qwen-VL's multimodal rotary
        positions ``[3, B, L]`` (from its ``get_rope_index``), else ``0..L-1`` per row."""
        import torch

        ids, mask = batch["input_ids"], batch["attention_mask"]
        if self.family in QWEN_FAMILIES:
            positions, _ = self.model.model.get_rope_index(
                ids, mm_token_type_ids=batch["mm_token_type_ids"], image_grid_thw=batch["image_grid_thw"],
                attention_mask=mask,
            )
            return positions
        return torch.arange(ids.shape[1], device=ids.device).expand(ids.shape[0], -1)

    def _language_model(self, embeds: Any, positions: Any, mask: Any, cache: Any,
                        chunk: int | None) -> tuple[Any, Any]:
        """Run the language model over ``embeds`` ``[B, S, hidden]`` after the ``P`` positions already in
        ``cache`` (``None``: none), ``chunk`` tokens at a time (``None``: all at once).

        ``positions`` are the new tokens' position ids (``[..., B, S]``) and ``mask`` the padding mask of all
        ``P + S`` positions. Returns the last chunk's hidden states and the grown cache.
        """
        core = self.model.model
        language_model = getattr(core, "language_model", None) or core.text_model  # SmolVLM: text_model
        done = mask.shape[1] - embeds.shape[1]
        step = int(chunk or embeds.shape[1])
        out = None
        for start in range(0, embeds.shape[1], step):
            stop = min(start + step, embeds.shape[1])
            out = language_model(
                inputs_embeds=embeds[:, start:stop], position_ids=positions[..., start:stop],
                attention_mask=mask[:, : done + stop], cache=cache, use_cache=True,
            )
            cache = out.cache
        assert out is not None
        return out.last_hidden_state, cache

    def _tick(self, frames: int) -> None:
        """Advance the scoring bar by ``frames`` whose image features are ready."""
        bar = getattr(self, "_progress", None)
        if bar is not None:
            bar.update(frames)

    def encode_images(self, batch: dict[str, Any]) -> list[Any]:
        """Per-image features ``[tokens_i, hidden]`` of a batch, encoded ``vision_batch_size`` images at a time.

        Each row of the batch holds exactly one image (one chat turn per frame), so image ``i`` is row ``i``.
        """
        rows = int(batch["input_ids"].shape[0])
        step = int(self.vision_batch_size or rows)
        features: list[Any] = []
        if self.family in QWEN_FAMILIES:
            grid = batch["image_grid_thw"]
            bounds = [0] + grid.prod(dim=-1).cumsum(dim=0).tolist()  # patch rows of each image
            for i in range(0, rows, step):
                j = min(i + step, rows)
                out = self.model.get_image_features(
                    pixel_values=batch["pixel_values"][bounds[i] : bounds[j]], image_grid_thw=grid[i:j], return_dict=True
                )
                features.extend(_per_image(out))
                self._tick(j - i)
        elif self.family == "smolvlm":  # one row's tiles and global view are one feature set
            for i in range(0, rows, step):
                j = min(i + step, rows)
                mask = batch.get("pixel_attention_mask")
                out = self.model.get_image_features(
                    pixel_values=batch["pixel_values"][i:j], pixel_attention_mask=None if mask is None else mask[i:j],
                    return_dict=True,
                )
                features.extend(_per_image(out))
                self._tick(j - i)
        else:
            count = batch.get("batch_num_images")
            for i in range(0, rows, step):
                j = min(i + step, rows)
                out = self.model.get_image_features(
                    pixel_values=batch["pixel_values"][i:j],
                    image_sizes=batch["image_sizes"][i:j],
                    batch_num_images=None if count is None else count[i:j],
                    return_dict=True,
                )
                features.extend(_per_image(out))
                self._tick(j - i)
        if len(features) != rows:
            raise UnsupportedModelError(
                f"{self.model_id}: the vision encoder returned {len(features)} feature sets for {rows} images; "
                "score with vision_batch_size=None"
            )
        return features

    # -----------------------------------------------------------------------------------------------------
    # Scoring
    # -----------------------------------------------------------------------------------------------------

    @property
    def supports_feature_cache(self) -> bool:
        """Whether :meth:`score` can reuse image features through its ``cache`` argument (Qwen-VL families)."""
        return self.family in QWEN_FAMILIES

    @property
    def supports_prefix_cache(self) -> bool:
        """Whether :meth:`score` can keep the language model's prefix (system turn and image) per video
        through ``cache`` and ``prefix_cache_bytes`` (the Qwen-VL families; others run the full pass)."""
        return self.supports_feature_cache and self.family in _PLAIN_FORWARD_FAMILIES

    def score(self, frames: Frames | np.ndarray, clue: Clue, *, cache: dict[Any, Any] | None = None,
              prefix_cache_bytes: int = 0) -> np.ndarray:
        """Relevance of each frame to ``clue``: float64 ``[T]`` in [0, 1].

        Args:
            frames: :class:`~quota.types.Frames`, or a uint8 array ``[T, H, W, 3]``.
            clue: the decoupling result; its objects, else its question, make the scoring question.
            cache: a dict owned by the caller for one video (the pipeline keeps one per video). The image
                features of these frames are stored in it on the first call and reused by later calls with
                other clues, so the vision tower runs once per video. The scores are the same as without
                it (the image features do not depend on the question). Entries are keyed by a digest of the
                frames' pixels and the scorer settings, so a dict shared by mistake gives right scores
                (only slower). Ignored for non-Qwen families.
            prefix_cache_bytes: with ``cache``, also keep the language model's keys and values of each
                batch's prefix (system turn and image, everything before the question) in it, up to this many
                bytes in all, and run only the question's tokens on them for later questions (0: off; batches
                that do not fit run the full pass). Scores agree with the full pass to float rounding.
        """
        frames = as_frames(frames)
        question = self.question_for(clue)
        if cache is None or not self.supports_feature_cache:
            return self.score_images(frames.pixels, question)
        return self._score_cached(check_images(frames.pixels), question, cache, prefix_cache_bytes)

    def prepare(self, frames: Frames | np.ndarray, *, cache: dict[Any, Any], prefix_cache_bytes: int = 0) -> None:
        """Compute into ``cache`` what :meth:`score` would compute for these frames that does not depend on
        the question: the image features and, with ``prefix_cache_bytes``, the prefixes. A later
        :meth:`score` with the same cache and settings reuses them. Does nothing for families without the
        feature cache."""
        if not self.supports_feature_cache:
            return
        pictures = check_images(as_frames(frames).pixels)
        if prefix_cache_bytes > 0 and self.supports_prefix_cache:
            # the prefix ends before the question's first token, so any question gives the same one
            self._score_cached(pictures, "?", cache, prefix_cache_bytes, prefix_only=True)
        else:
            self.image_features(pictures, cache)

    # -----------------------------------------------------------------------------------------------------
    # Scoring with image features kept per video
    # -----------------------------------------------------------------------------------------------------

    def video_key(self, images: Sequence[np.ndarray]) -> tuple[Any, ...]:
        """What decides every cached result about these frames: the model, the scorer settings that change
        image features or prefixes (pixel cap, vision batch, chunk size, dtype, device) and the pixels."""
        return (id(self.model), self.max_pixels, self.vision_batch_size, self.prefill_chunk, str(self.dtype),
                str(self.device), frames_fingerprint(images))

    def image_features(self, images: Sequence[np.ndarray], cache: dict[Any, Any],
                       video: tuple[Any, ...] | None = None) -> tuple[list[Any], list[Any]]:
        """Per-image features ``[tokens_i, hidden]`` and ``image_grid_thw`` rows ``[3]`` of ``images``, from
        ``cache`` when it holds them (same frames, same scorer settings: :meth:`video_key`, or ``video`` when
        already computed), else computed (the processor's image path, ``vision_batch_size`` images per
        vision-tower pass) and stored there."""
        import torch
        from PIL import Image

        key = ("lvlm_image_features",) + (self.video_key(images) if video is None else video)
        entry = cache.get(key)
        if entry is not None and len(entry[0]) == len(images):
            return entry
        step = int(self.vision_batch_size or self.batch_size)
        features: list[Any] = []
        grids: list[Any] = []
        with torch.inference_mode():
            for start in range(0, len(images), step):
                pictures = [Image.fromarray(np.ascontiguousarray(im)) for im in images[start : start + step]]
                enc = self.processor.image_processor(images=pictures, return_tensors="pt", **self.image_kwargs)
                thw = enc["image_grid_thw"]
                out = self.model.get_image_features(
                    pixel_values=enc["pixel_values"].to(self.device, self.dtype),
                    image_grid_thw=thw.to(self.device), return_dict=True,
                )
                features.extend(_per_image(out))
                grids.extend(thw)
        cache[key] = (features, grids)
        return features, grids

    def text_inputs(self, prompt: str, grids: Sequence[Any]) -> dict[str, Any]:
        """What the processor would give for ``prompt`` with images of these ``image_grid_thw`` rows, without
        touching pixels: each row's image placeholder expanded to its token count, left-padded, with
        ``image_grid_thw`` and ``mm_token_type_ids``."""
        import torch

        token = getattr(self.processor, "image_token", "<|image_pad|>")
        merge = int(getattr(self.processor.image_processor, "merge_size", 2) or 2)
        texts = [prompt.replace(token, token * (int(torch.as_tensor(g).prod()) // (merge * merge)), 1) for g in grids]
        enc = dict(self.tokenizer(texts, padding=True, padding_side="left", return_tensors="pt"))
        ids = enc["input_ids"]
        image_id = self.tokenizer.convert_tokens_to_ids(token)
        enc["mm_token_type_ids"] = (ids == image_id).to(ids.dtype)
        enc["image_grid_thw"] = torch.stack([torch.as_tensor(g) for g in grids])
        return enc

    def _score_cached(self, pictures: Sequence[np.ndarray], question: str, cache: dict[Any, Any],
                      prefix_cache_bytes: int = 0, *, prefix_only: bool = False) -> np.ndarray:
        from tqdm.auto import tqdm

        prompt = self.prompt(question)
        video = self.video_key(pictures)
        features, grids = self.image_features(pictures, cache, video)
        use_prefix = prefix_cache_bytes > 0 and self.supports_prefix_cache

        def step(start: int, stop: int) -> np.ndarray:
            inputs = self.text_inputs(prompt, grids[start:stop])
            if use_prefix:
                where = video + (start, stop)
                got = self._prefix_log_probs(inputs, features[start:stop], cache, where, prefix_cache_bytes,
                                             prefix_only)
                if got is not None:
                    return got
            if prefix_only:
                return np.zeros((0, 2))
            return self.log_probs(inputs, features=features[start:stop])

        with tqdm(total=len(pictures), desc="Scoring frames", unit="frame", disable=self.quiet, leave=False) as bar:
            parts, self.working_batch_size = run_batched(
                len(pictures), self.working_batch_size, step, progress=bar, what="frames",
                hint="Lower max_pixels, use a smaller dtype (bfloat16) or score on a device with more memory.",
            )
        logp = np.concatenate(parts, axis=0)
        if prefix_only:
            return logp
        return finish_scores(scores_from_log_probs(logp, self.normalize), len(pictures))

    def _prefix_log_probs(self, inputs: Any, features: Sequence[Any], cache: dict[Any, Any], where: tuple[Any, ...],
                          limit: int, prefix_only: bool) -> np.ndarray | None:
        """:meth:`log_probs` of one batch on its prefix kept in ``cache`` (computed and stored first when
        missing): the language model runs the tokens after the image only, on the prefix's keys and values,
        with the position ids of the whole prompt (so its multimodal rotary positions continue exactly as in
        the full pass). ``None`` when the batch has no common prefix or a new one would take the prefix
        entries past ``limit`` bytes: the caller then runs the full pass. With ``prefix_only``, only ensures
        the entry (returns ``[0, 2]``)."""
        import torch

        batch = self._on_device(inputs)
        ids, mask = batch["input_ids"], batch["attention_mask"]
        split = prefix_split(ids, self.model.config.image_token_id)
        if split is None or split >= ids.shape[1]:
            return None
        key = (PREFIX_KEY,) + where + (tensor_digest(ids[:, :split]), tensor_digest(mask[:, :split]))
        entry = cache.get(key)
        needed = 0 if entry is not None else kv_bytes(self.model.config, ids.shape[0], split, self.dtype)
        if needed and prefix_bytes_in(cache) + needed > limit:
            return None
        with torch.inference_mode():
            positions = self._positions(batch)
            if entry is None:
                embeds = self._embeddings(ids[:, :split], features)
                _, kv = self._language_model(embeds, positions[..., :split], mask[:, :split], None, self.prefill_chunk)
                entry = cache[key] = PrefixEntry.from_cache(kv, split)
            if prefix_only:
                return np.zeros((0, 2))
            embeds = self.model.get_input_embeddings()(ids[:, split:])  # text only: split is past every image
            hidden, _ = self._language_model(embeds, positions[..., split:], mask, entry.cache(), self.prefill_chunk)
            return self._yes_no(self.model.lm_head(hidden[:, -1:]))

    def score_images(self, images: Sequence[np.ndarray] | np.ndarray, question: str) -> np.ndarray:
        """Relevance of each image to a scoring question: float64 ``[N]`` in [0, 1].

        Args:
            images: uint8 arrays ``[H, W, 3]`` (sizes may differ) or one array ``[N, H, W, 3]``.
            question: the text asked after each image (normally from :meth:`question_for`).
        """
        from tqdm.auto import tqdm

        pictures = check_images(images)
        prompt = self.prompt(question)

        def step(start: int, stop: int) -> np.ndarray:
            return self.log_probs(self.build_inputs(pictures[start:stop], prompt))

        with tqdm(total=len(pictures), desc="Scoring frames", unit="frame", disable=self.quiet, leave=False) as bar:
            self._progress = bar  # advanced per vision batch by encode_images
            try:
                parts, self.working_batch_size = run_batched(
                    len(pictures),
                    self.working_batch_size,
                    step,
                    progress=bar,
                    what="frames",
                    hint=(
                        "Lower max_pixels, use a smaller dtype (bfloat16) or score on a device with more memory."
                    ),
                )
            finally:
                self._progress = None
        logp = np.concatenate(parts, axis=0)
        return finish_scores(scores_from_log_probs(logp, self.normalize), len(pictures))


class QwenVLScorer(LVLMScorer):
    """:class:`LVLMScorer` for Qwen2-VL / Qwen2.5-VL with the paper's defaults.

    Qwen/Qwen2-VL-2B-Instruct, at most 1280·28·28 pixels per frame, 64 frames per batch, P(yes) over the
    whole vocabulary.
    """

    families: ClassVar[tuple[str, ...]] = QWEN_FAMILIES
    default_model_id: ClassVar[str | None] = DEFAULT_QWEN_SCORER
    default_options: ClassVar[LVLMOptions] = LVLMOptions.from_config(_DEFAULTS)


def scores_from_log_probs(logp: np.ndarray, normalize: str = "none") -> np.ndarray:
    """Scores from log-probabilities ``[N, 2]`` of the (yes, no) tokens.

    ``"none"``: ``exp(log P(yes))``. ``"pair"``: ``P(yes) / (P(yes) + P(no))``, computed in log space.
    """
    logp = np.asarray(logp, dtype=np.float64)
    if normalize == "none":
        return np.exp(logp[:, 0])
    if normalize == "pair":
        return np.exp(logp[:, 0] - np.logaddexp(logp[:, 0], logp[:, 1]))
    raise ConfigError(f"normalize={normalize!r} is not one of {', '.join(SCORE_NORMALIZATIONS)}")


def _per_image(output: Any) -> list[Any]:
    """The per-image feature tensors of a ``get_image_features`` result (an output object or a sequence); with
    deepstack features (Qwen3-VL), each image's levels stacked along the channels (:func:`stack_deepstack`)."""
    if getattr(output, "deepstack_features", None):
        from ..models.qwen3_vl import stack_deepstack

        return stack_deepstack(output)
    return list(getattr(output, "pooler_output", output))


def _model_class(family: str) -> Any:
    """The transformers class that loads a checkpoint of ``family`` with its language-model head."""
    if family == "qwen2_vl":
        from transformers import Qwen2VLForConditionalGeneration

        return Qwen2VLForConditionalGeneration
    if family == "qwen2_5_vl":
        from transformers import Qwen2_5_VLForConditionalGeneration

        return Qwen2_5_VLForConditionalGeneration
    from transformers import AutoModelForImageTextToText

    return AutoModelForImageTextToText


def _vocab_size(model: Any) -> int | None:
    config = getattr(model, "config", None)
    if config is None:
        return None
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    value = getattr(text, "vocab_size", None)
    return int(value) if value else None


__all__ = [
    "DEFAULT_QWEN_SCORER",
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_VISION_BATCH_SIZE",
    "LVLMScorer",
    "QwenVLScorer",
    "letter_token_id",
    "qwen_image_kwargs",
    "scores_from_log_probs",
]
