"""Tiny random-weight checkpoints of the newer video LLM families: Qwen3-VL, SmolVLM2, InternVL3, GLM-4.1V.

Same rules as :mod:`quota.testing.tiny_models` (whose tokenizer, language-model sizes, saving and cache these
builders share): the real transformers model, processor, image and video processor classes at toy sizes, the
family's chat template, no network. Registered in :data:`quota.testing.tiny_models.FAMILIES`.

Sizes (see :data:`TINY_FAMILY_FACTS`):

* Qwen3-VL: patch 16, spatial merge 2, temporal patch 2, two deepstack levels (fed to language-model layers 0 and
  1); frames resized to between 64x64 and 128x128 pixels in multiples of 32, so an 84x84 frame becomes 96x96:
  6x6 patches, 3x3 = 9 tokens.
* SmolVLM2: SigLIP-style tower at 64x64 pixels with patch 8 (8x8 patches), pixel shuffle by 2 before the
  projector, so a frame (or an image tile) is a 4x4 grid of 16 tokens; images are split into 64x64 tiles of at
  most 128 pixels per side plus the global view; video frames are one 64x64 global view each.
* InternVL3: InternViT-style tower at 112x112 pixels with patch 14 (8x8 patches), pixel shuffle 0.5 before the
  projector, so one tile (an image crop or a video frame) is a 4x4 grid of 16 tokens.
* GLM-4.1V: Qwen2-VL-like tower, patch 14, spatial merge 2, temporal patch 2; frames resized to between 56x56 and
  112x112 pixels (multiples of 28), so an 84x84 frame is 3x3 = 9 tokens.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .tiny_models import (
    _QWEN2_VL_SPECIALS,
    _build_tokenizer,
    _generation_config,
    _language_model_kwargs,
    _save,
    _token_id,
)
from ._cache import seeded_model

# Qwen3-VL vision settings.
_QWEN3_PATCH = 16
_QWEN3_MERGE = 2
_QWEN3_TEMPORAL = 2
_QWEN3_MIN_PIXELS = 64 * 64
_QWEN3_MAX_PIXELS = 128 * 128
# Rotary sections (temporal, height, width) in frequency pairs: sum = head_dim / 2 = 8.
_QWEN3_MROPE_SECTION = [2, 3, 3]

#: The families this module builds (the rest of :data:`quota.testing.tiny_models.FAMILIES` is built there).
NEWER_FAMILIES: tuple[str, ...] = ("qwen3_vl", "smolvlm", "internvl", "glm4v")

#: Numbers later code (adapters, tests) can rely on, per family.
TINY_FAMILY_FACTS: dict[str, dict[str, Any]] = {
    "smolvlm": {"image_size": 64, "patch_size": 8, "scale_factor": 2, "native_grid": 4, "tile_longest_edge": 128},
    "internvl": {"image_size": 112, "patch_size": 14, "downsample_ratio": 0.5, "native_grid": 4},
    "qwen3_vl": {
        "patch_size": _QWEN3_PATCH,
        "merge_size": _QWEN3_MERGE,
        "temporal_patch_size": _QWEN3_TEMPORAL,
        "deepstack_levels": 2,
        "min_pixels": _QWEN3_MIN_PIXELS,
        "max_pixels": _QWEN3_MAX_PIXELS,
    },
}

#: The user / assistant turn layout and vision placeholders of Qwen/Qwen3-VL-*-Instruct's chat template (its tool
#: and reasoning branches left out: the tests send none). Unlike Qwen2-VL's, it adds no default system turn.
QWEN3_VL_CHAT_TEMPLATE = (
    "{%- if messages[0].role == 'system' %}"
    "{{- '<|im_start|>system\\n' }}"
    "{%- if messages[0].content is string %}{{- messages[0].content }}"
    "{%- else %}{%- for content in messages[0].content %}{%- if 'text' in content %}{{- content.text }}{%- endif %}"
    "{%- endfor %}{%- endif %}"
    "{{- '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- set image_count = namespace(value=0) %}"
    "{%- set video_count = namespace(value=0) %}"
    "{%- for message in messages %}"
    "{%- if message.role == 'user' or message.role == 'assistant' %}"
    "{{- '<|im_start|>' + message.role + '\\n' }}"
    "{%- if message.content is string %}{{- message.content }}"
    "{%- else %}{%- for content in message.content %}"
    "{%- if content.type == 'image' or 'image' in content or 'image_url' in content %}"
    "{%- set image_count.value = image_count.value + 1 %}"
    "{%- if add_vision_id %}{{- 'Picture ' ~ image_count.value ~ ': ' }}{%- endif %}"
    "{{- '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{%- elif content.type == 'video' or 'video' in content %}"
    "{%- set video_count.value = video_count.value + 1 %}"
    "{%- if add_vision_id %}{{- 'Video ' ~ video_count.value ~ ': ' }}{%- endif %}"
    "{{- '<|vision_start|><|video_pad|><|vision_end|>' }}"
    "{%- elif 'text' in content %}{{- content.text }}"
    "{%- endif %}"
    "{%- endfor %}{%- endif %}"
    "{{- '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


def build_tiny_qwen3_vl(path: str | os.PathLike[str], *, seed: int = 0) -> Path:
    """Write a tiny random-weight Qwen3-VL checkpoint (``Qwen3VLForConditionalGeneration`` + ``Qwen3VLProcessor``).

    The vision tower has two blocks, both feeding a deepstack merger, so the language model's layers 0 and 1 get
    visual features added to their hidden states, as the real model's first three layers do.
    """
    from transformers import (
        Qwen2VLImageProcessor,
        Qwen3VLConfig,
        Qwen3VLForConditionalGeneration,
        Qwen3VLProcessor,
        Qwen3VLVideoProcessor,
    )

    tokenizer = _build_tokenizer(_QWEN2_VL_SPECIALS, QWEN3_VL_CHAT_TEMPLATE)
    ids = {t: _token_id(tokenizer, t) for t in _QWEN2_VL_SPECIALS}
    text = _language_model_kwargs(tokenizer, mrope_section=list(_QWEN3_MROPE_SECTION), mrope_interleaved=True)
    text.pop("max_window_layers")
    text["head_dim"] = 16
    vision = dict(
        depth=2,
        hidden_size=32,
        intermediate_size=64,
        num_heads=2,
        out_hidden_size=text["hidden_size"],
        patch_size=_QWEN3_PATCH,
        spatial_merge_size=_QWEN3_MERGE,
        temporal_patch_size=_QWEN3_TEMPORAL,
        num_position_embeddings=64,
        deepstack_visual_indexes=[0, 1],
    )
    config = Qwen3VLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )
    pixels = dict(
        size={"shortest_edge": _QWEN3_MIN_PIXELS, "longest_edge": _QWEN3_MAX_PIXELS},
        patch_size=_QWEN3_PATCH,
        temporal_patch_size=_QWEN3_TEMPORAL,
        merge_size=_QWEN3_MERGE,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )
    processor = Qwen3VLProcessor(
        image_processor=Qwen2VLImageProcessor(**pixels),
        # The video budget covers the whole clip (transformers' Qwen3-VL rule): room for 64 frames at the image
        # grid, so a short test clip's frames get the same grid as images.
        video_processor=Qwen3VLVideoProcessor(**{**pixels, "size": {"shortest_edge": _QWEN3_MIN_PIXELS,
                                                                    "longest_edge": _QWEN3_MAX_PIXELS * 64}},
                                              cap_pixels_per_frame=False),
        tokenizer=tokenizer,
        chat_template=QWEN3_VL_CHAT_TEMPLATE,
    )
    model = seeded_model(Qwen3VLForConditionalGeneration, config, seed)
    return _save(Path(path), model, processor, _generation_config(tokenizer), "qwen3_vl", seed)


# SmolVLM2: the image-splitting tokens of the real vocabulary (rows and columns of up to 6 tiles).
_SMOLVLM_SPECIALS = (
    ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<fake_token_around_image>", "<image>", "<end_of_utterance>",
     "<global-img>"]
    + [f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)]
)


def build_tiny_smolvlm(path: str | os.PathLike[str], *, seed: int = 0) -> Path:
    """Write a tiny random-weight SmolVLM2 checkpoint (``SmolVLMForConditionalGeneration`` + ``SmolVLMProcessor``
    with its image and video processors; Llama language model), with SmolVLM2's chat template (transformers' copy
    of it, ``DEFAULT_CHAT_TEMPLATE``)."""
    from transformers import (
        LlamaConfig,
        SmolVLMConfig,
        SmolVLMForConditionalGeneration,
        SmolVLMImageProcessor,
        SmolVLMProcessor,
        SmolVLMVideoProcessor,
    )
    from transformers.models.smolvlm.processing_smolvlm import DEFAULT_CHAT_TEMPLATE

    facts = TINY_FAMILY_FACTS["smolvlm"]
    tokenizer = _build_tokenizer(_SMOLVLM_SPECIALS, DEFAULT_CHAT_TEMPLATE)
    text = _language_model_kwargs(tokenizer)
    text.pop("max_window_layers")
    text["eos_token_id"] = _token_id(tokenizer, "<end_of_utterance>")
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                  image_size=facts["image_size"], patch_size=facts["patch_size"])
    config = SmolVLMConfig(
        text_config=LlamaConfig(**text, tie_word_embeddings=False),
        vision_config=vision,
        scale_factor=facts["scale_factor"],
        image_token_id=_token_id(tokenizer, "<image>"),
        pad_token_id=_token_id(tokenizer, "<|endoftext|>"),
        tie_word_embeddings=False,
    )
    norm = dict(image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5])
    tile = {"longest_edge": facts["image_size"]}
    image_processor = SmolVLMImageProcessor(
        do_image_splitting=True, size={"longest_edge": facts["tile_longest_edge"]}, max_image_size=tile, **norm)
    video_processor = SmolVLMVideoProcessor(size=tile, max_image_size=tile, **norm)
    seq = (facts["native_grid"]) ** 2
    processor = SmolVLMProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                 video_processor=video_processor, image_seq_len=seq,
                                 chat_template=DEFAULT_CHAT_TEMPLATE)
    model = seeded_model(SmolVLMForConditionalGeneration, config, seed)
    generation = _generation_config(tokenizer)
    generation.eos_token_id = [_token_id(tokenizer, "<end_of_utterance>"), _token_id(tokenizer, "<|endoftext|>")]
    return _save(Path(path), model, processor, generation, "smolvlm", seed)


#: The turn layout of the OpenGVLab/InternVL3-*-hf chat templates as transformers' InternVLProcessor reads it: an
#: image is ``<IMG_CONTEXT>`` and a video ``<video>``, each on its own line before the text.
INTERNVL_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}{{ '<IMG_CONTEXT>\\n' }}"
    "{% elif content['type'] == 'video' %}{{ '<video>\\n' }}"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}"
    "{% endif %}{% endfor %}{% endif %}"
    "{{ '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
_INTERNVL_NAMED = {"start_image_token": "<img>", "end_image_token": "</img>", "context_image_token": "<IMG_CONTEXT>",
                   "video_token": "<video>"}


def build_tiny_internvl(path: str | os.PathLike[str], *, seed: int = 0) -> Path:
    """Write a tiny random-weight InternVL3 checkpoint (``InternVLForConditionalGeneration`` + ``InternVLProcessor``
    with ``GotOcr2ImageProcessor`` and ``InternVLVideoProcessor``; Qwen2 language model)."""
    from transformers import (
        GotOcr2ImageProcessor,
        InternVLConfig,
        InternVLForConditionalGeneration,
        InternVLProcessor,
        InternVLVideoProcessor,
        Qwen2Config,
    )

    facts = TINY_FAMILY_FACTS["internvl"]
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", *_INTERNVL_NAMED.values()]
    tokenizer = _build_tokenizer(specials, INTERNVL_CHAT_TEMPLATE)
    tokenizer._set_model_specific_special_tokens(special_tokens=dict(_INTERNVL_NAMED))
    side = facts["image_size"]
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                  image_size=[side, side], patch_size=[facts["patch_size"]] * 2)
    config = InternVLConfig(
        vision_config=vision,
        text_config=Qwen2Config(**_language_model_kwargs(tokenizer), tie_word_embeddings=False),
        image_token_id=_token_id(tokenizer, "<IMG_CONTEXT>"),
        image_seq_length=facts["native_grid"] ** 2,
        downsample_ratio=facts["downsample_ratio"],
        tie_word_embeddings=False,
    )
    norm = dict(image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225])
    size = {"height": side, "width": side}
    processor = InternVLProcessor(
        image_processor=GotOcr2ImageProcessor(size=size, crop_to_patches=True, min_patches=1, max_patches=4, **norm),
        video_processor=InternVLVideoProcessor(size=size, **norm),
        tokenizer=tokenizer,
        image_seq_length=facts["native_grid"] ** 2,
        chat_template=INTERNVL_CHAT_TEMPLATE,
    )
    model = seeded_model(InternVLForConditionalGeneration, config, seed)
    return _save(Path(path), model, processor, _generation_config(tokenizer), "internvl", seed)


#: The turn layout and vision placeholders of the THUDM/GLM-4.1V-9B chat templates (system / user / assistant
#: turns after ``[gMASK]<sop>``; images and videos wrapped in their begin / end tokens); tool and reasoning
#: branches left out.
GLM4V_CHAT_TEMPLATE = (
    "[gMASK]<sop>"
    "{%- for msg in messages %}"
    "{%- if msg.role == 'system' %}{{- '<|system|>\\n' }}"
    "{%- elif msg.role == 'user' %}{{- '<|user|>\\n' }}"
    "{%- else %}{{- '<|assistant|>\\n' }}{%- endif %}"
    "{%- if msg.content is string %}{{- msg.content }}"
    "{%- else %}{%- for item in msg.content %}"
    "{%- if item.type == 'video' or 'video' in item %}{{- '<|begin_of_video|><|video|><|end_of_video|>' }}"
    "{%- elif item.type == 'image' or 'image' in item %}{{- '<|begin_of_image|><|image|><|end_of_image|>' }}"
    "{%- elif item.type == 'text' %}{{- item.text }}"
    "{%- endif %}{%- endfor %}{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|assistant|>\\n' }}{%- endif %}"
)
_GLM4V_SPECIALS = ["<|endoftext|>", "[MASK]", "[gMASK]", "[sMASK]", "<sop>", "<eop>", "<|system|>", "<|user|>",
                   "<|assistant|>", "<|observation|>", "<|begin_of_image|>", "<|end_of_image|>", "<|begin_of_video|>",
                   "<|end_of_video|>", "<|image|>", "<|video|>", "<|im_end|>"]


def build_tiny_glm4v(path: str | os.PathLike[str], *, seed: int = 0) -> Path:
    """Write a tiny random-weight GLM-4.1V checkpoint (``Glm4vForConditionalGeneration`` + ``Glm4vProcessor`` with
    ``Glm4vImageProcessor`` and ``Glm4vVideoProcessor``)."""
    from transformers import (
        Glm4vConfig,
        Glm4vForConditionalGeneration,
        Glm4vImageProcessor,
        Glm4vProcessor,
        Glm4vVideoProcessor,
    )

    tokenizer = _build_tokenizer(_GLM4V_SPECIALS, GLM4V_CHAT_TEMPLATE)
    tid = {t: _token_id(tokenizer, t) for t in _GLM4V_SPECIALS}
    # Half the head dimension is rotary (GLM's partial_rotary_factor 0.5): sections sum to 16 / 2 / 2 = 4 pairs.
    text = _language_model_kwargs(tokenizer, mrope_section=[1, 1, 2], partial_rotary_factor=0.5)
    text.pop("max_window_layers")
    vision = dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=text["hidden_size"],
                  image_size=56, patch_size=14, spatial_merge_size=2, temporal_patch_size=2)
    config = Glm4vConfig(
        text_config=text, vision_config=vision,
        image_token_id=tid["<|image|>"], video_token_id=tid["<|video|>"],
        image_start_token_id=tid["<|begin_of_image|>"], image_end_token_id=tid["<|end_of_image|>"],
        video_start_token_id=tid["<|begin_of_video|>"], video_end_token_id=tid["<|end_of_video|>"],
        tie_word_embeddings=False,
    )
    # GLM counts an image's pixels twice (its two temporal copies): 2 x 112 x 112 lets a 112x112 frame keep its size.
    pixels = dict(size={"shortest_edge": 56 * 56, "longest_edge": 2 * 112 * 112}, patch_size=14, temporal_patch_size=2,
                  merge_size=2)
    processor = Glm4vProcessor(
        image_processor=Glm4vImageProcessor(**pixels),
        # The video budget covers the whole clip: room for 64 frames at the image grid.
        video_processor=Glm4vVideoProcessor(**{**pixels, "size": {"shortest_edge": 56 * 56,
                                                                  "longest_edge": 112 * 112 * 64}}),
        tokenizer=tokenizer, chat_template=GLM4V_CHAT_TEMPLATE,
    )
    model = seeded_model(Glm4vForConditionalGeneration, config, seed)
    return _save(Path(path), model, processor, _generation_config(tokenizer), "glm4v", seed)


__all__ = ["GLM4V_CHAT_TEMPLATE", "build_tiny_glm4v", "INTERNVL_CHAT_TEMPLATE", "build_tiny_internvl", "NEWER_FAMILIES", "TINY_FAMILY_FACTS", "QWEN3_VL_CHAT_TEMPLATE", "build_tiny_qwen3_vl", "build_tiny_smolvlm"]
