"""Benchmark: QuoTA end to end at the real model sizes, against the 64-frame baseline, in one process.

Builds LLaVA-Video-7B-Qwen2 (Hugging Face format) as the base model and Qwen2-VL-2B-Instruct as the scorer
from the published sizes in ``benchmarks/configs/`` (sources named in each file), with random weights
created directly on the target device in the target dtype, and tokenizers / processors built locally (no
download, no network). Then, on one generated video and three questions (as Video-MME asks), it runs:

- ``baseline``: the base model's own video path on 64 uniform frames (the paper's baseline);
- ``paper-noopt``: the paper's settings with our result-neutral speed-ups switched off (how quota ran before);
- ``paper``, ``paper-half``: the presets (speed-ups on: they do not change results);
- ``paper-noprefix``, ``paper-half-noprefix``: the presets without the scorer's prefix reuse (issue 21);
- ``paper-overlap``: ``paper`` with the chain of thought overlapped with decoding and the scorer's preparation;
- ``fast``: our cheaper preset (not the paper's settings).

For each it prints seconds per stage (probe+decode, decoupling, scorer preprocessing, scorer vision, scorer
language model, base vision, prefill, generation, the rest = assignment and input building), peak memory
(GPU, and host RSS), tokens fed to each model and the ratio to the baseline; then an analytic FLOP count per
stage at the real sizes (2·parameters·tokens + attention) for 640x360 and 1280x720 videos, with the scorer at
the paper's cap (1280·28·28 pixels) and at 448x448. Both tables end with "× the paper's reported ratio": the
ratio to the baseline divided by what the paper measured for the same setting (×1.42 for ``paper``, ×0.92 for
``paper-half``), so below 1 means cheaper than the paper's own overhead.

Random weights write arbitrary text and give arbitrary frame scores, so the run fixes what would otherwise
depend on the weights (printed with the table): every generation writes exactly ``--decouple-tokens`` (chain
of thought) and ``--answer-tokens`` (answer) tokens, and the plan is made from a fixed relevance profile
(``--scores profile``: a third of the frames relevant) while the scorer still runs in full for its time.

``--scale`` (for a CPU) keeps every token count (frames, image sizes, patches, budget, prompts) and the
vocabularies, but builds one layer per tower and divides every width by 8 (whole heads): one layer at the real
widths alone took 36 s for a 1,024-token prefill on the shared 2-core machine this was written on, so the real
widths cannot finish in minutes there. Dividing widths shrinks the matrix products (∝ width²) more than the
attention (∝ width · tokens²) and leaves the per-token overheads (generation steps, preprocessing on the CPU) as
they are, so the scaled ratios are indicative only; the FLOP table gives the real-size ratios, and
``benchmarks/gpu_e2e.sh`` measures them on a GPU.

Usage::

    python benchmarks/bench_e2e.py --scale              # 2-core CPU: 1 layer per tower, widths / 8, same tokens
    python benchmarks/bench_e2e.py --device cuda        # real size (see benchmarks/gpu_e2e.sh)
    python benchmarks/bench_e2e.py --flops-only         # the FLOP table alone, no model built
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402

HERE = Path(__file__).resolve().parent
CONFIGS = HERE / "configs"
CACHE = Path(os.environ.get("QUOTA_BENCH_CACHE", Path.home() / ".cache" / "quota-bench"))

QUESTIONS = [
    ("What colour is the umbrella the woman holds on the bridge?", ["red", "blue", "green", "yellow"]),
    ("How many times does the dog jump over the fence?", ["once", "twice", "three times", "never"]),
    ("What is the overall mood of the video?", ["tense", "joyful", "calm", "gloomy"]),
]
STAGES = ["decode", "decouple", "score_prep", "score_vision", "score_lm", "base_vision", "prefill", "generate",
          "other"]
STAGE_NAMES = {
    "decode": "probe+decode", "decouple": "decoupling", "score_prep": "scorer preprocess",
    "score_vision": "scorer vision", "score_lm": "scorer LM", "base_vision": "base vision",
    "prefill": "prefill", "generate": "generation", "other": "assign+other", "score_prefix": "scorer LM prefix",
}
#: What the paper reports as its wall time over the baseline's, per preset (the target of "× the paper's ratio").
PAPER_RATIOS = {"paper": 1.42, "paper-half": 0.92}


def paper_ratio(name: str) -> float | None:
    """The paper's reported ratio for a run or row name (``paper-half...`` → 0.92, other ``paper...`` → 1.42)."""
    if name.startswith("paper-half"):
        return PAPER_RATIOS["paper-half"]
    if name.startswith("paper"):
        return PAPER_RATIOS["paper"]
    return None


# ---------------------------------------------------------------------------------------------------------
# Models from the published sizes
# ---------------------------------------------------------------------------------------------------------


def load_size(name: str) -> dict[str, Any]:
    data = json.loads((CONFIGS / name).read_text())
    data.pop("_source", None)
    return data


def train_tokenizer(specials: list[str], chat_template: str) -> Any:
    """A byte-level BPE ``Qwen2Tokenizer`` trained here on quota's own prompt texts, so that prompts take
    about as many tokens as with the real Qwen2 vocabulary (whole common words, not single bytes)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import AddedToken, Qwen2Tokenizer

    from quota.decouple import build_decouple_prompt
    from quota.scoring.question import scoring_question
    from quota.types import Clue, time_instruction

    corpus = [build_decouple_prompt(q, o, mode=m) for q, o in QUESTIONS for m in ("entity", "event")]
    corpus += [scoring_question(Clue(objects=("woman", "umbrella", "bridge")), q) for q, _ in QUESTIONS]
    corpus += [scoring_question(None, q) for q, _ in QUESTIONS]
    corpus += [time_instruction(600.0, list(np.linspace(0, 600, 96)))]
    corpus += ["You are a helpful assistant. Answer with the option's letter from the given choices directly."]
    corpus += [" ".join(f"{i}.{j}s" for j in range(10)) for i in range(1000)]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=4000, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    bpe.train_from_iterator(corpus * 3, trainer)
    spec = json.loads(bpe.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in spec["merges"]]
    tok = Qwen2Tokenizer(vocab=spec["vocab"], merges=merges, unk_token=None, bos_token=None,
                         eos_token="<|endoftext|>", pad_token="<|endoftext|>", errors="replace",
                         model_max_length=32768, clean_up_tokenization_spaces=False, split_special_tokens=False)
    tok.add_tokens([AddedToken(t, special=True, normalized=False) for t in specials], special_tokens=True)
    tok.add_special_tokens({"additional_special_tokens": [t for t in specials if t not in ("<|endoftext|>", "<|im_end|>")]})
    tok.eos_token = "<|im_end|>"
    tok.chat_template = chat_template
    return tok


def shrink(size: dict[str, Any], layers: int | None, width_div: int) -> dict[str, Any]:
    """The sizes with ``layers`` layers per tower and every width divided by ``width_div`` (whole heads of the
    same head size; the vocabulary and the image / patch sizes, hence all token counts, stay)."""
    text, vision = size["text_config"], size["vision_config"]
    if layers:
        text["num_hidden_layers"] = layers
        vision["depth" if "depth" in vision else "num_hidden_layers"] = layers
    if width_div > 1:
        head = text["hidden_size"] // text["num_attention_heads"]
        text["num_attention_heads"] = max(1, text["num_attention_heads"] // width_div)
        text["num_key_value_heads"] = max(1, text["num_key_value_heads"] // width_div)
        while text["num_attention_heads"] % text["num_key_value_heads"]:
            text["num_key_value_heads"] -= 1
        text["hidden_size"] = text["num_attention_heads"] * head
        text["intermediate_size"] = max(1, text["intermediate_size"] // width_div)
        if "embed_dim" in vision:  # Qwen2-VL: embed_dim inside, hidden_size = the language model's width
            vhead = vision["embed_dim"] // vision["num_heads"]
            vision["num_heads"] = max(1, vision["num_heads"] // width_div)
            vision["embed_dim"] = vision["num_heads"] * vhead
            vision["hidden_size"] = text["hidden_size"]
        else:
            vhead = vision["hidden_size"] // vision["num_attention_heads"]
            vision["num_attention_heads"] = max(1, vision["num_attention_heads"] // width_div)
            vision["hidden_size"] = vision["num_attention_heads"] * vhead
            vision["intermediate_size"] = max(1, vision["intermediate_size"] // width_div)
    return size


def _instantiate(model_class: Any, config: Any, device: torch.device, dtype: torch.dtype) -> Any:
    """Random weights made on ``device`` in ``dtype`` directly: the model is built there with the models' own
    (slow) initialisers switched off, then every weight is filled in place with small uniform noise (std
    0.02; norm scales 1, biases 0). Buffers (rotary frequencies, position ids) are the model's own."""
    from transformers.initialization import no_init_weights

    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device), no_init_weights():
            model = model_class._from_config(config, dtype=dtype)
    finally:
        torch.set_default_dtype(default)
    if device.type == "meta":
        model.tie_weights()
        return model
    gen = torch.Generator(device=device).manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.dim() == 1 and ("norm" in name or "ln" in name):
                param.fill_(1.0)
            elif param.dim() == 1:
                param.zero_()
            else:
                param.uniform_(-0.0346, 0.0346, generator=gen)  # std 0.02
    model.tie_weights()  # tied embeddings (Qwen2-VL-2B) share one matrix, as in the checkpoint
    model.eval()
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.eos_token_id = None  # generations run exactly max_new_tokens (see module doc)
    return model


def build_base(device: torch.device, dtype: torch.dtype, layers: int | None, width_div: int = 1) -> tuple[Any, Any]:
    from transformers import (
        LlavaOnevisionConfig,
        LlavaOnevisionForConditionalGeneration,
        LlavaOnevisionImageProcessor,
        LlavaOnevisionProcessor,
        LlavaOnevisionVideoProcessor,
    )

    from quota.testing.tiny_models import LLAVA_ONEVISION_CHAT_TEMPLATE, _LLAVA_OV_SPECIALS

    tok = train_tokenizer(_LLAVA_OV_SPECIALS, LLAVA_ONEVISION_CHAT_TEMPLATE)
    size = shrink(load_size("llava-video-7b-qwen2-hf.json"), layers, width_div)
    size.pop("model_type")
    ids = tok.convert_tokens_to_ids(["<image>", "<video>", "<|endoftext|>", "<|im_end|>"])
    size["text_config"].update(bos_token_id=ids[2], eos_token_id=ids[3], pad_token_id=ids[2])
    config = LlavaOnevisionConfig(image_token_index=ids[0], video_token_index=ids[1], **size)
    norm = dict(image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5])
    image = config.vision_config.image_size
    processor = LlavaOnevisionProcessor(
        image_processor=LlavaOnevisionImageProcessor(size={"height": image, "width": image},
                                                     image_grid_pinpoints=config.image_grid_pinpoints, **norm),
        video_processor=LlavaOnevisionVideoProcessor(size={"height": image, "width": image}, **norm),
        tokenizer=tok, num_image_tokens=(image // config.vision_config.patch_size) ** 2,
        vision_feature_select_strategy="full", chat_template=LLAVA_ONEVISION_CHAT_TEMPLATE,
        vision_aspect_ratio="anyres_max_9",
    )
    return _instantiate(LlavaOnevisionForConditionalGeneration, config, device, dtype), processor


def build_scorer_model(device: torch.device, dtype: torch.dtype, layers: int | None, width_div: int = 1
                       ) -> tuple[Any, Any]:
    import transformers as tf

    from quota.testing.tiny_models import QWEN2_VL_CHAT_TEMPLATE, _QWEN2_VL_SPECIALS

    tok = train_tokenizer(_QWEN2_VL_SPECIALS, QWEN2_VL_CHAT_TEMPLATE)
    size = shrink(load_size("qwen2-vl-2b-instruct.json"), layers, width_div)
    size.pop("model_type")
    names = ["<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>", "<|endoftext|>", "<|im_end|>"]
    ids = dict(zip(names, tok.convert_tokens_to_ids(names)))
    size["text_config"].update(bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"],
                               pad_token_id=ids["<|endoftext|>"])
    config = tf.Qwen2VLConfig(image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
                           vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
                           **size)
    processor = tf.Qwen2VLProcessor(image_processor=tf.Qwen2VLImageProcessor(), video_processor=tf.Qwen2VLVideoProcessor(),
                                 tokenizer=tok, chat_template=QWEN2_VL_CHAT_TEMPLATE)
    return _instantiate(tf.Qwen2VLForConditionalGeneration, config, device, dtype), processor


def build_siglip(device: torch.device, dtype: torch.dtype, layers: int | None, width_div: int = 1) -> tuple[Any, Any]:
    """SigLIP-base (the ``fast`` preset's scorer) with a locally built tokenizer and processor."""
    from transformers import SiglipConfig, SiglipImageProcessor, SiglipModel, SiglipProcessor

    from quota.testing.tiny_clip import _siglip_text_kwargs, _siglip_tokenizer

    size = load_size("siglip-base-patch16-224.json")
    size.pop("model_type")
    for part in ("text_config", "vision_config"):
        sub = size[part]
        if layers:
            sub["num_hidden_layers"] = layers
        if width_div > 1:
            head = sub["hidden_size"] // sub["num_attention_heads"]
            sub["num_attention_heads"] = max(1, sub["num_attention_heads"] // width_div)
            sub["hidden_size"] = sub["num_attention_heads"] * head
            sub["intermediate_size"] //= width_div
    tok = _siglip_tokenizer()
    text = {**_siglip_text_kwargs(tok), **size["text_config"]}
    text["vocab_size"] = max(text["vocab_size"], len(tok))
    text["projection_size"] = text["hidden_size"]  # SigLIP's text head keeps the width
    config = SiglipConfig(text_config=text, vision_config=size["vision_config"])
    image = config.vision_config.image_size
    processor = SiglipProcessor(image_processor=SiglipImageProcessor(size={"height": image, "width": image}),
                                tokenizer=tok)
    return _instantiate(SiglipModel, config, device, dtype), processor


# ---------------------------------------------------------------------------------------------------------
# Stage timers (forward hooks; observe only)
# ---------------------------------------------------------------------------------------------------------


@dataclass
class Meter:
    """Seconds and tokens per stage for one variant."""

    seconds: dict[str, float] = field(default_factory=lambda: {s: 0.0 for s in STAGES})
    tokens: dict[str, int] = field(default_factory=dict)

    def add_tokens(self, key: str, n: int) -> None:
        self.tokens[key] = self.tokens.get(key, 0) + int(n)


class Probe:
    """Forward hooks that time the models' parts and count their tokens, split by pipeline phase."""

    def __init__(self, base: Any, scorer_model: Any, device: torch.device, clip_model: Any = None) -> None:
        self.cuda = device.type == "cuda"
        self.phase = "idle"  # "decouple", "answer" or "score" (set by wrappers around the pipeline calls)
        self.meter = Meter()
        self._open: dict[int, float] = {}
        self._handles: list[Any] = []
        self._inner_vision = 0.0
        self._base_id = id(base)
        self._watch(base.model.vision_tower, self._base_vision)
        self._watch(base, self._base_lm)
        self._watch(scorer_model.model.visual, self._score_vision)
        self._watch(scorer_model.model.language_model, self._score_lm)
        self._watch(scorer_model.lm_head, self._score_head)
        if clip_model is not None:  # the contrastive scorer: image tower = scorer vision, text tower = "LM"
            self._watch(clip_model.vision_model, self._clip_vision)
            self._watch(clip_model.text_model, self._score_head)

    def _sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def _watch(self, module: Any, done: Any) -> None:
        def pre(mod: Any, args: Any, kwargs: Any) -> None:
            self._sync()
            self._open[id(mod)] = time.perf_counter()
            mod._probe_args = (args, kwargs)

        def post(mod: Any, args: Any, kwargs: Any, output: Any) -> None:
            self._sync()
            seconds = time.perf_counter() - self._open.pop(id(mod))
            done(seconds, *mod._probe_args)

        self._handles.append(module.register_forward_pre_hook(pre, with_kwargs=True))
        self._handles.append(module.register_forward_hook(post, with_kwargs=True))

    def _base_vision(self, seconds: float, args: Any, kwargs: Any) -> None:
        pixels = args[0] if args else kwargs.get("pixel_values")
        if self._base_id in self._open:  # inside a forward of the whole model (the baseline's video path)
            self._inner_vision += seconds
        if self.phase == "answer":
            self.meter.seconds["base_vision"] += seconds
            self.meter.add_tokens("base vision patches", pixels.shape[0] * 729 if pixels is not None else 0)

    def _base_lm(self, seconds: float, args: Any, kwargs: Any) -> None:
        seconds -= self._inner_vision  # the baseline's first forward runs the vision tower inside
        self._inner_vision = 0.0
        x = kwargs.get("inputs_embeds")
        if x is None:
            x = kwargs.get("input_ids")
        n = int(x.shape[1]) if x is not None else 0
        cached = kwargs.get("cache", kwargs.get("past_key_values"))
        length = cached.get_seq_length() if hasattr(cached, "get_seq_length") else 0
        first = cached is None or length == 0 or n > 1
        if self.phase == "decouple":
            self.meter.add_tokens("decouple prompt" if first else "decouple generated", n if first else 1)
        elif self.phase == "answer":
            stage = "prefill" if first else "generate"
            self.meter.seconds[stage] += seconds
            self.meter.add_tokens("base prefill" if first else "answer generated", n if first else 1)

    def _score_vision(self, seconds: float, args: Any, kwargs: Any) -> None:
        self.meter.seconds["score_vision"] += seconds
        x = args[0] if args else kwargs.get("hidden_states")
        self.meter.add_tokens("scorer vision patches", x.shape[0] if x is not None else 0)

    def _score_lm(self, seconds: float, args: Any, kwargs: Any) -> None:
        self.meter.seconds["score_lm"] += seconds
        x = kwargs.get("inputs_embeds")
        if x is not None:
            self.meter.add_tokens("scorer LM", x.shape[0] * x.shape[1])

    def _clip_vision(self, seconds: float, args: Any, kwargs: Any) -> None:
        self.meter.seconds["score_vision"] += seconds
        x = kwargs.get("pixel_values", args[0] if args else None)
        if x is not None:
            self.meter.add_tokens("scorer vision patches", x.shape[0] * (x.shape[-1] // 16) * (x.shape[-2] // 16))

    def _score_head(self, seconds: float, args: Any, kwargs: Any) -> None:
        self.meter.seconds["score_lm"] += seconds

    def close(self) -> None:
        for h in self._handles:
            h.remove()


@contextmanager
def phase(probe: Probe, name: str) -> Iterator[None]:
    before, probe.phase = probe.phase, name
    try:
        yield
    finally:
        probe.phase = before


class RssPeak:
    """Highest resident set size (bytes) of this process while running, sampled every 20 ms."""

    def __init__(self) -> None:
        import psutil

        self._proc = psutil.Process()
        self.peak = self._proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self._proc.memory_info().rss)

    def __enter__(self) -> "RssPeak":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)


# ---------------------------------------------------------------------------------------------------------
# One variant
# ---------------------------------------------------------------------------------------------------------


class ProfileScorer:
    """Runs the real scorer (for its time) but plans from a fixed relevance profile (see module doc):
    a third of the frames, in three runs spread over the video, score 0.8-0.95; the rest 0-0.02."""

    def __init__(self, inner: Any, seed: int) -> None:
        self.inner = inner
        self.seed = seed
        self.supports_feature_cache = getattr(inner, "supports_feature_cache", False)
        self.supports_prefix_cache = getattr(inner, "supports_prefix_cache", False)
        self.model = getattr(inner, "model", None)

    def prepare(self, frames: Any, **kwargs: Any) -> None:
        self.inner.prepare(frames, **kwargs)

    def score(self, frames: Any, clue: Any, **kwargs: Any) -> np.ndarray:
        self.inner.score(frames, clue, **kwargs)
        n = len(frames)
        rng = np.random.default_rng(self.seed + len(str(clue.question)))
        scores = rng.uniform(0.0, 0.02, n)
        for start in rng.choice(np.arange(0, n - n // 9), 3, replace=False):
            scores[start : start + n // 9] = rng.uniform(0.8, 0.95, len(scores[start : start + n // 9]))
        return scores


def param_bytes(model: Any) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())


def real_weight_gib() -> dict[str, float]:
    """Weights in GiB at bfloat16 of the three models at their published sizes (built on the meta device)."""
    out = {}
    for name, build in (("LLaVA-Video-7B", build_base), ("Qwen2-VL-2B", build_scorer_model),
                        ("SigLIP-base", build_siglip)):
        model, _ = build(torch.device("meta"), torch.bfloat16, None, 1)
        out[name] = param_bytes(model) / 2**30
    return out


def run_variant(name: str, preset: str, overrides: dict[str, Any], base: Any, scorer_model: Any, clip: Any,
                args: Any, video: Path, probe: Probe) -> dict[str, Any]:
    from quota import QuoTA
    from quota.config import get_config
    from quota.eval.benchmarks import Sample
    from quota.eval.pipeline_answer import PipelineAnswer
    from quota.models import LlavaOnevisionAdapter
    from quota.scoring import QwenVLScorer

    cfg = get_config(preset, max_new_tokens=args.answer_tokens, decouple_max_new_tokens=args.decouple_tokens,
                     scorer_batch_size=args.scorer_batch, **overrides)
    model, processor = base
    adapter = LlavaOnevisionAdapter(model, processor, encode_batch_size=args.encode_batch)
    if "siglip" in cfg.scorer:
        from quota.scoring import ClipScorer

        cmodel, cprocessor = clip
        scorer = ClipScorer.from_model(cmodel, cprocessor, batch_size=cfg.scorer_batch_size, quiet=True)
    else:
        smodel, sprocessor = scorer_model
        scorer = QwenVLScorer.from_model(smodel, sprocessor, max_pixels=cfg.scorer_max_pixels,
                                         batch_size=cfg.scorer_batch_size, vision_batch_size=cfg.scorer_vision_batch,
                                         prefill_chunk=cfg.scorer_prefill_chunk, quiet=True)
    if args.scores == "profile":
        scorer = ProfileScorer(scorer, seed=0)
    qa = QuoTA(adapter, scorer, cfg, quiet=True)
    used = [model] if name == "baseline" else [model, getattr(scorer, "inner", scorer).model]
    weights = sum(param_bytes(m) for m in used)
    # the decoupler holds the adapter's generate_text bound to the pipeline's conversation
    real_text, real_gen, real_base = qa.decoupler.generate_text, adapter.generate, adapter.generate_baseline

    def gen_text(*a: Any, **k: Any) -> str:
        with phase(probe, "decouple"):
            return real_text(*a, **k)

    def gen(*a: Any, **k: Any) -> str:
        with phase(probe, "answer"):
            return real_gen(*a, **k)

    def gen_base(*a: Any, **k: Any) -> str:
        with phase(probe, "answer"):
            return real_base(*a, **k)

    adapter.generate, adapter.generate_baseline = gen, gen_base
    qa.decoupler.generate_text = gen_text
    # the base vision tower of the QuoTA path runs inside the timed "encode" step, outside generate
    real_encode = adapter.encode

    def encode(frames: Any) -> Any:
        with phase(probe, "answer"):
            return real_encode(frames)

    adapter.encode = encode
    probe.meter = Meter()
    if probe.cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    gpu_before = torch.cuda.memory_allocated() if probe.cuda else 0
    totals: dict[str, float] = {s: 0.0 for s in STAGES}
    plans = []
    wall = 0.0
    # the path of `quota eval`: frames read once per video (the baseline's too), questions one after another
    answer_fn = PipelineAnswer(qa, baseline=(name == "baseline"))
    with RssPeak() as rss:
        for k, (question, options) in enumerate(QUESTIONS[: args.questions]):
            sample = Sample(id=str(k), video=str(video), question=question, options=list(options), answer="A")
            start = time.perf_counter()
            _, _, plan, timings = answer_fn(sample)
            if probe.cuda:
                torch.cuda.synchronize()
            wall += time.perf_counter() - start
            totals["decode"] += timings.get("decode", 0.0)
            if plan:
                plans.append(plan)
            totals["decouple"] += timings.get("decouple", 0.0)
            totals["score_prep"] += timings.get("score", 0.0)
    meter = probe.meter
    for stage in ("score_vision", "score_lm", "base_vision", "prefill", "generate"):
        totals[stage] = meter.seconds[stage]
    totals["score_prep"] = max(0.0, totals["score_prep"] - totals["score_vision"] - totals["score_lm"])
    totals["other"] = max(0.0, wall - sum(v for k, v in totals.items() if k != "other"))
    return {
        "name": name,
        "seconds": totals,
        "wall": wall,
        "tokens": dict(meter.tokens),
        # weights of the models this run uses + its own peak of everything else (activations, caches, features)
        "gpu_peak": (weights + torch.cuda.max_memory_allocated() - gpu_before) if probe.cuda else None,
        "rss_peak": rss.peak,
        "kept": [p["kept"] for p in plans],
        "sampled": [p["sampled"] for p in plans],
    }


VARIANTS: list[tuple[str, str, dict[str, Any]]] = [
    ("baseline", "paper", {}),
    ("paper-noopt", "paper", {"encode_kept_only": False, "scorer_feature_cache": False, "decouple_early_stop": False,
                              "scorer_prefix_cache": False}),
    ("paper-noprefix", "paper", {"scorer_prefix_cache": False}),
    ("paper", "paper", {}),
    ("paper-overlap", "paper", {"overlap_stages": True}),
    ("paper-half-noprefix", "paper-half", {"scorer_prefix_cache": False}),
    ("paper-half", "paper-half", {}),
    ("fast-qwen", "fast-qwen", {}),
    ("fast", "fast", {}),
]


# ---------------------------------------------------------------------------------------------------------
# Analytic FLOPs at the real sizes
# ---------------------------------------------------------------------------------------------------------


def lm_flops(text: dict[str, Any], tokens: int, context: int = 0, logits: int = 1) -> float:
    """Forward FLOPs of a decoder for ``tokens`` new tokens after ``context`` cached ones: 2·params·tokens
    for the layers, causal attention (QKᵀ and AV, 2 FLOPs per multiply-add), and the head on ``logits``
    positions."""
    d, inter, layers = text["hidden_size"], text["intermediate_size"], text["num_hidden_layers"]
    heads, kv = text["num_attention_heads"], text["num_key_value_heads"]
    head_dim = d // heads
    per_layer = d * (d + 2 * kv * head_dim) + d * d + 3 * d * inter
    attn = 4 * d * (tokens * context + tokens * (tokens + 1) / 2)
    return layers * (2 * per_layer * tokens + attn) + 2 * d * text["vocab_size"] * logits


def vit_flops(width: int, inter: int, layers: int, patches: int, images: int) -> float:
    """Bidirectional ViT on ``images`` images of ``patches`` patches each."""
    per_layer = 4 * width * width + 2 * width * inter
    return images * layers * (2 * per_layer * patches + 4 * width * patches * patches)


def qwen_grid(height: int, width: int, max_pixels: int) -> tuple[int, int]:
    """Merged-token grid Qwen2-VL's image processor gives a ``height``×``width`` frame (its own resize rule)."""
    from transformers import Qwen2VLImageProcessor

    proc = Qwen2VLImageProcessor()
    image = np.zeros((height, width, 3), dtype=np.uint8)
    out = proc(images=[image], return_tensors="pt", size={"shortest_edge": 56 * 56, "longest_edge": max_pixels})
    t, h, w = out["image_grid_thw"][0].tolist()
    return h // 2, w // 2


@dataclass
class FlopInputs:
    """Token counts of the FLOP table. Defaults: as measured by the scaled run (``--scale``, 10-minute 640x360
    video, three questions, the tokenizer trained here, the reference's prompts; issue 21); a full run fills them
    from its own measurements."""

    frames: int = 96  # sampled: the paper's 96, plus 64 per hour of video
    baseline_frames: int = 64
    kept: int = 29  # frames with tokens (the relevance profile keeps about a third)
    budget: int = 12544
    decouple_prompt: int = 781
    decouple_tokens: int = 40
    answer_prompt: int = 662  # question, options and the time instruction (every sampled frame's time)
    answer_tokens: int = 2
    scorer_text: int = 87  # text tokens in each frame's scoring turn (chat template, question, padding)
    scorer_prefix_text: int = 21  # of those, the ones before the image (system turn, user header, vision start)


def flop_table(inputs: FlopInputs) -> list[tuple[str, dict[str, float], tuple[str, ...]]]:
    """Rows ``(label, FLOPs per stage for one question, the stages computed once per video)``."""
    base = load_size("llava-video-7b-qwen2-hf.json")
    scorer = load_size("qwen2-vl-2b-instruct.json")
    clip = load_size("siglip-base-patch16-224.json")
    bt, bv = base["text_config"], base["vision_config"]
    st, sv = scorer["text_config"], scorer["vision_config"]
    cv, ct = clip["vision_config"], clip["text_config"]
    grid = (bv["image_size"] // bv["patch_size"]) ** 2  # 729
    proj = 2 * (bv["hidden_size"] * bt["hidden_size"] + bt["hidden_size"] ** 2)

    def base_vision(n: int) -> float:
        return vit_flops(bv["hidden_size"], bv["intermediate_size"], bv["num_hidden_layers"], grid, n) + proj * grid * n

    def answer(visual: int) -> tuple[float, float]:
        prompt = visual + inputs.answer_prompt
        gen = sum(lm_flops(bt, 1, prompt + k) for k in range(inputs.answer_tokens - 1))
        return lm_flops(bt, prompt), gen

    rows: list[tuple[str, dict[str, float], tuple[str, ...]]] = []
    per_video = ("score_vision",)  # the scorer's image features, once per video (scorer_feature_cache)
    with_prefix = ("score_vision", "score_prefix")  # and its prefixes (scorer_prefix_cache)
    b_pref, b_gen = answer(inputs.baseline_frames * 196 + 1)
    rows.append(("baseline, 64 frames", {"base_vision": base_vision(inputs.baseline_frames), "prefill": b_pref,
                                         "generate": b_gen}, ()))
    decouple = lm_flops(bt, inputs.decouple_prompt) + sum(
        lm_flops(bt, 1, inputs.decouple_prompt + k) for k in range(inputs.decouple_tokens - 1))
    pref, gen = answer(inputs.budget + 1)
    half_pref, half_gen = answer(inputs.budget // 2 + 1)
    # the contrastive scorer: one 224x224 image embedding per frame, a few short texts
    c_patches = (cv["image_size"] // cv["patch_size"]) ** 2
    c_vis = vit_flops(cv["hidden_size"], cv["intermediate_size"], cv["num_hidden_layers"], c_patches, inputs.frames)
    c_txt = vit_flops(ct["hidden_size"], ct["intermediate_size"], ct["num_hidden_layers"], 16, 4)
    for (h, w) in ((360, 640), (720, 1280)):
        res = f"{w}x{h}"
        for cap_name, cap in (("paper cap 1280·28²", 1280 * 28 * 28), ("448x448", 448 * 448),
                              ("64·28²", 64 * 28 * 28)):
            gh, gw = qwen_grid(h, w, cap)
            merged = gh * gw
            svis = vit_flops(sv["embed_dim"], sv["embed_dim"] * sv["mlp_ratio"], sv["depth"], merged * 4, inputs.frames)
            svis += inputs.frames * merged * 2 * (4 * sv["embed_dim"]) * (4 * sv["embed_dim"] + sv["hidden_size"])
            slm = inputs.frames * lm_flops(st, merged + inputs.scorer_text)
            # prefix reuse: system turn + image once per video (no head), the question's tokens per question
            prefix = merged + inputs.scorer_prefix_text
            suffix = inputs.scorer_text - inputs.scorer_prefix_text
            s_prefix = inputs.frames * lm_flops(st, prefix, logits=0)
            s_suffix = inputs.frames * lm_flops(st, suffix, context=prefix)
            common = {"decouple": decouple, "score_vision": svis, "score_lm": slm}
            reused = {"decouple": decouple, "score_vision": svis, "score_prefix": s_prefix, "score_lm": s_suffix}
            tag = f"{res}, scorer {cap_name} = {merged} tok/frame"
            answer_full = {"base_vision": base_vision(inputs.kept), "prefill": pref, "generate": gen}
            answer_half = {"base_vision": base_vision(inputs.kept), "prefill": half_pref, "generate": half_gen}
            if cap == 1280 * 28 * 28:
                rows.append((f"paper-noopt {tag}", {**common, "base_vision": base_vision(inputs.frames),
                                                    "prefill": pref, "generate": gen}, ()))
                rows.append((f"paper-noprefix {tag}", {**common, **answer_full}, per_video))
                rows.append((f"paper {tag}", {**reused, **answer_full}, with_prefix))
                rows.append((f"paper-half-noprefix {tag}", {**common, **answer_half}, per_video))
                rows.append((f"paper-half {tag}", {**reused, **answer_half}, with_prefix))
            else:
                name = "fast-qwen" if cap == 64 * 28 * 28 else "paper"
                rows.append((f"{name} {tag}", {**reused, **answer_full}, with_prefix))
        rows.append((f"fast {res}, scorer SigLIP-base 224² = {c_patches} patches/frame", {
            "decouple": decouple, "score_vision": c_vis, "score_lm": c_txt, "base_vision": base_vision(inputs.kept),
            "prefill": pref, "generate": gen}, ()))
    return rows


def base_family_rows(inputs: FlopInputs, scorer_flops: float) -> list[tuple[str, float, float, float]]:
    """QuoTA against each base's own 64-frame video path on a 640x360 video, at the published sizes:
    ``(base, baseline FLOPs, QuoTA FLOPs, QuoTA's scorer vision FLOPs)``. QuoTA's budget is the tokens of that
    base's own video path (as the paper's 12,544 is LLaVA-Video's); its kept frames go through the base's vision
    tower each as one image; the scorer is the paper's (Qwen2-VL-2B at its cap, ``scorer_flops``)."""
    rows: list[tuple[str, float, float, float]] = []

    def add(name: str, text: dict[str, Any], unit_vision: float, per_frame: int, per_frame_text: int,
            baseline_units: int, baseline_tokens: int) -> None:
        def answer(visual: int, frames: int) -> float:
            prompt = visual + frames * per_frame_text + inputs.answer_prompt
            return lm_flops(text, prompt) + sum(lm_flops(text, 1, prompt + k) for k in range(inputs.answer_tokens - 1))

        decouple = lm_flops(text, inputs.decouple_prompt) + sum(
            lm_flops(text, 1, inputs.decouple_prompt + k) for k in range(inputs.decouple_tokens - 1))
        baseline = unit_vision * baseline_units + answer(baseline_tokens, inputs.baseline_frames)
        quota = decouple + scorer_flops + unit_vision * inputs.kept + answer(baseline_tokens, inputs.kept)
        rows.append((name, baseline, quota, per_frame))

    llava = load_size("llava-video-7b-qwen2-hf.json")
    bt, bv = llava["text_config"], llava["vision_config"]
    grid = (bv["image_size"] // bv["patch_size"]) ** 2
    proj = 2 * (bv["hidden_size"] * bt["hidden_size"] + bt["hidden_size"] ** 2)
    add("LLaVA-Video-7B", bt, vit_flops(bv["hidden_size"], bv["intermediate_size"], bv["num_hidden_layers"], grid, 1)
        + proj * grid, 196, 0, inputs.baseline_frames, inputs.baseline_frames * 196 + 1)
    # InternVL3-8B: one 448 tile per frame, 1,024 patches + CLS, 256 tokens; "FrameN: <img>…</img>\n" ≈ 6 text tokens
    iv = load_size("internvl3-8b-hf.json")
    it, ivv = iv["text_config"], iv["vision_config"]
    patches = (ivv["image_size"] // ivv["patch_size"]) ** 2
    tokens = int(patches * ivv["downsample_ratio"] ** 2)
    wide = int(ivv["hidden_size"] / ivv["downsample_ratio"] ** 2)
    tile = vit_flops(ivv["hidden_size"], ivv["intermediate_size"], ivv["num_hidden_layers"], patches + 1, 1)
    tile += tokens * 2 * (wide * it["hidden_size"] + it["hidden_size"] ** 2)
    add("InternVL3-8B", it, tile, tokens, 6, inputs.baseline_frames, inputs.baseline_frames * tokens)
    # Qwen3-VL-8B: a 640x360 frame becomes 352x640 pixels (multiples of 32 = patch 16 x merge 2): 11x20 = 220 tokens;
    # the video path merges frames in pairs (32 steps for 64 frames), assumed here at the same grid (its clip-wide
    # pixel budget can only lower it). Each merged token goes through the merger and the three deepstack mergers.
    qv = load_size("qwen3-vl-8b-instruct.json")
    qt, qvv = qv["text_config"], qv["vision_config"]
    gh, gw = round(360 / 32), round(640 / 32)
    tokens = gh * gw
    width = qvv["hidden_size"] * qvv["spatial_merge_size"] ** 2
    mergers = 1 + len(qvv["deepstack_visual_indexes"])
    step = vit_flops(qvv["hidden_size"], qvv["intermediate_size"], qvv["depth"], tokens * 4, 1)
    step += tokens * mergers * 2 * (width * width + width * qt["hidden_size"])
    add("Qwen3-VL-8B", qt, step, tokens, 8, inputs.baseline_frames // 2, inputs.baseline_frames // 2 * tokens)
    return rows


def print_flops(inputs: FlopInputs, out: list[str], questions: int = 3) -> None:
    gib = real_weight_gib()
    out.append("")
    out.append("Weights at the published sizes in bfloat16: " + ", ".join(f"{k} {v:.1f} GiB" for k, v in gib.items())
               + f"; with the paper's scorer the weights alone are {1 + gib['Qwen2-VL-2B'] / gib['LLaVA-Video-7B']:.2f}× "
               f"the baseline's, with fast's {1 + gib['SigLIP-base'] / gib['LLaVA-Video-7B']:.2f}×.")
    rows = flop_table(inputs)
    base_total = sum(rows[0][1].values())
    cols = ["decouple", "score_vision", "score_prefix", "score_lm", "base_vision", "prefill", "generate"]
    out.append("")
    out.append(f"Analytic TFLOPs per question at the real sizes ({inputs.frames} sampled frames, {inputs.kept} kept, "
               f"budget {inputs.budget}; text tokens: decoupling {inputs.decouple_prompt} + {inputs.decouple_tokens} "
               f"written, answer prompt {inputs.answer_prompt} + visual, {inputs.answer_tokens} written, scorer "
               f"{inputs.scorer_text} per frame, {inputs.scorer_prefix_text} of them before the image). "
               f"'{questions} q/video': per question over a video with {questions} questions, the scorer's image "
               "features (and, with prefix reuse, its prefixes: rows without '-noprefix') computed once per video. "
               "'overlapped': the same with the chain of thought of the video's first question run while the "
               "scorer prepares (overlap_stages; the FLOPs are the same, this is the critical path). Last column: "
               f"'{questions} q/video' divided by the paper's reported ratio (1.42 paper, 0.92 paper-half).")
    out.append("| run | " + " | ".join(STAGE_NAMES.get(c, c) for c in cols) + " | total | × baseline | "
               f"× baseline, {questions} q/video | overlapped | × the paper's reported ratio |")
    out.append("|---|" + "---|" * (len(cols) + 5))
    for label, parts, once in rows:
        total = sum(parts.values())
        shared = sum(parts.get(stage, 0.0) for stage in once)
        amortised = total - shared * (1 - 1 / questions)
        hidden = min(parts.get("decouple", 0.0), shared) / questions if once else 0.0
        cells = " | ".join(f"{parts.get(c, 0.0) / 1e12:.1f}" for c in cols)
        ratio = paper_ratio(label) if "paper cap" in label else None
        versus = f"{amortised / base_total / ratio:.2f}" if ratio else "-"
        out.append(f"| {label} | {cells} | {total / 1e12:.1f} | {total / base_total:.2f} | "
                   f"{amortised / base_total:.2f} | {(amortised - hidden) / base_total:.2f} | {versus} |")
    paper = next(parts for label, parts, _ in rows if label.startswith("paper 640x360"))
    out.append("")
    out.append("Other bases, each against its own 64-frame video path on the same 640x360 video (QuoTA's budget = "
               "that path's visual tokens; the paper's scorer at its cap; published sizes, "
               "benchmarks/configs/*.json):")
    out.append(f"| base | tokens/frame | baseline TFLOPs | QuoTA TFLOPs | × baseline | × baseline, {questions} q/video |")
    out.append("|---|---|---|---|---|---|")
    per_video = paper["score_vision"] + paper.get("score_prefix", 0.0)  # the scorer's features and prefixes
    for name, baseline, quota, per_frame in base_family_rows(inputs, per_video + paper["score_lm"]):
        amortised = quota - per_video * (1 - 1 / questions)
        out.append(f"| {name} | {per_frame} | {baseline / 1e12:.1f} | {quota / 1e12:.1f} | {quota / baseline:.2f} | "
                   f"{amortised / baseline:.2f} |")


# ---------------------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------------------


def make_bench_video(width: int, height: int, minutes: float, fps: float) -> Path:
    from quota.testing.videos import make_video

    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"e2e_{width}x{height}_{minutes:g}min_{fps:g}fps.mp4"
    if not path.exists():
        tmp = path.with_suffix(".part.mp4")
        make_video(tmp, n_frames=int(minutes * 60 * fps), fps=fps, size=(width, height), gop=int(10 * fps))
        tmp.rename(path)
    return path


def format_table(results: list[dict[str, Any]], out: list[str]) -> None:
    base = results[0]
    out.append("| run | " + " | ".join(STAGE_NAMES[s] for s in STAGES)
               + " | total s | × baseline | × the paper's reported ratio | kept/sampled | GPU peak GiB | "
               "host RSS peak GiB |")
    out.append("|---|" + "---|" * (len(STAGES) + 6))
    for r in results:
        secs = " | ".join(f"{r['seconds'][s]:.2f}" for s in STAGES)
        kept = f"{np.mean(r['kept']):.0f}/{r['sampled'][0]}" if r["kept"] else "64/64"
        gpu = f"{r['gpu_peak'] / 2**30:.2f}" if r["gpu_peak"] is not None else "-"
        ratio = paper_ratio(r["name"])
        versus = f"{r['wall'] / base['wall'] / ratio:.2f}" if ratio else "-"
        out.append(f"| {r['name']} | {secs} | {r['wall']:.2f} | {r['wall'] / base['wall']:.2f} | {versus} | {kept} | "
                   f"{gpu} | {r['rss_peak'] / 2**30:.2f} |")
    out.append("")
    out.append("Tokens fed to each model (all questions):")
    for r in results:
        out.append(f"- {r['name']}: " + ", ".join(f"{k} {v:,}" for k, v in sorted(r["tokens"].items())))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", action="store_true",
                        help="1 layer per tower and widths / 8, same token counts: runs on a 2-core CPU")
    parser.add_argument("--layers", type=int, default=None, help="layers per tower (default: real, or 1 with --scale)")
    parser.add_argument("--width-div", type=int, default=None,
                        help="divide every width by this (whole heads; default: 1, or 8 with --scale)")
    parser.add_argument("--device", default=None, help="cuda / cpu (default: cuda when available)")
    parser.add_argument("--dtype", default=None, help="bfloat16 on CUDA, float32 on CPU by default")
    parser.add_argument("--size", default="640x360", help="video width x height (default 640x360)")
    parser.add_argument("--minutes", type=float, default=10.0, help="video length in minutes (default 10)")
    parser.add_argument("--fps", type=float, default=2.0, help="video frame rate (default 2)")
    parser.add_argument("--questions", type=int, default=3, help="questions about the video (default 3, as Video-MME)")
    parser.add_argument("--decouple-tokens", type=int, default=40, help="tokens every chain of thought writes")
    parser.add_argument("--answer-tokens", type=int, default=2, help="tokens every answer writes (letter + end)")
    parser.add_argument("--scorer-batch", type=int, default=64, help="scorer frames per batch (paper: 64)")
    parser.add_argument("--encode-batch", type=int, default=32, help="base vision frames per pass")
    parser.add_argument("--scores", choices=("profile", "model"), default="profile",
                        help="plan from a fixed relevance profile (default) or from the random model's scores")
    parser.add_argument("--variants", default=",".join(v[0] for v in VARIANTS), help="comma-separated runs")
    parser.add_argument("--no-warmup", action="store_true", help="skip the untimed warm-up question")
    parser.add_argument("--flops-only", action="store_true", help="print the analytic FLOP table only")
    parser.add_argument("--out", default=None, help="also write the tables to this file")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args(argv)
    out: list[str] = []
    if args.flops_only:
        print_flops(FlopInputs(decouple_tokens=args.decouple_tokens, answer_tokens=args.answer_tokens), out,
                    args.questions)
        print("\n".join(out))
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    from quota.models.loading import resolve_device, resolve_dtype

    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    layers = args.layers or (1 if args.scale else None)
    width, height = (int(x) for x in args.size.lower().split("x"))
    t0 = time.perf_counter()
    video = make_bench_video(width, height, args.minutes, args.fps)
    t1 = time.perf_counter()
    div = args.width_div or (8 if args.scale else 1)
    base = build_base(device, dtype, layers, div)
    scorer_model = build_scorer_model(device, dtype, layers, div)
    wanted = args.variants.split(",")
    clip = build_siglip(device, dtype, layers, div) if "fast" in wanted else None
    if device.type == "cuda":
        torch.cuda.synchronize()
    t2 = time.perf_counter()
    probe = Probe(base[0], scorer_model[0], device, clip[0] if clip else None)
    if not args.no_warmup:  # one untimed question through each model path first (allocator, kernels, caches)
        warm = argparse.Namespace(**{**vars(args), "questions": 1})
        for name, preset, overrides in VARIANTS:
            if name in wanted and name in ("baseline", "paper", "fast"):
                run_variant(name, preset, overrides, base, scorer_model, clip, warm, video, probe)
        print("  warm-up done", file=sys.stderr, flush=True)
    results = []
    for name, preset, overrides in VARIANTS:
        if name in wanted:
            results.append(run_variant(name, preset, overrides, base, scorer_model, clip, args, video, probe))
            print(f"  {name}: {results[-1]['wall']:.1f} s", file=sys.stderr, flush=True)
    probe.close()
    layer_note = (f"{layers or 'all'} layer(s) per tower, widths / {div}" if (layers or div > 1)
                  else "real sizes")
    out.append(f"quota end-to-end benchmark: {device.type} {dtype}, {layer_note}, torch threads "
               f"{torch.get_num_threads()}; video {width}x{height}, {args.minutes:g} min at {args.fps:g} fps; "
               f"{args.questions} questions; every chain of thought writes {args.decouple_tokens} tokens and every "
               f"answer {args.answer_tokens}; plan from the {args.scores} scores; video made in {t1 - t0:.0f} s, "
               f"models built in {t2 - t1:.0f} s")
    out.append("Seconds for all questions together, per stage:")
    format_table(results, out)
    pre = next((r for r in results if r["name"] == "paper-noopt"), None)
    cur = next((r for r in results if r["name"] == "paper"), None)
    if pre and cur:
        out.append(f"\npaper with the result-neutral speed-ups / without them: {cur['wall'] / pre['wall']:.2f}")
    for new, old, what in (("paper", "paper-noprefix", "with the scorer's prefix reuse / without"),
                           ("paper-half", "paper-half-noprefix", "with the scorer's prefix reuse / without"),
                           ("paper-overlap", "paper", "with the stages overlapped / without")):
        a = next((r for r in results if r["name"] == new), None)
        b = next((r for r in results if r["name"] == old), None)
        if a and b:
            out.append(f"{new} / {old} ({what}): {a['wall'] / b['wall']:.2f}")
    # the scorer's full prompt length comes from a run without prefix reuse (with it, later questions run less)
    tokens = next((r["tokens"] for r in results if r["name"] == "paper"), {})
    scorer_tokens = next((r["tokens"] for r in results if r["name"] in ("paper-noprefix", "paper-noopt")), {})
    n_q = max(args.questions, 1)
    inputs = FlopInputs(
        decouple_prompt=int(tokens.get("decouple prompt", 700 * n_q) / n_q),
        decouple_tokens=args.decouple_tokens, answer_tokens=args.answer_tokens,
        kept=int(np.mean(cur["kept"])) if cur and cur["kept"] else 32,
        answer_prompt=max(0, int(results[0]["tokens"].get("base prefill", 0) / n_q) - 12545) or 594,
    )
    if cur and cur["kept"] and scorer_tokens.get("scorer LM"):
        from quota.config import get_config

        merged = int(np.prod(qwen_grid(height, width, get_config("paper").scorer_max_pixels)))
        calls = n_q * cur["sampled"][0] * (2 if "paper-noopt" in wanted and "paper-noprefix" not in wanted else 1)
        inputs.scorer_text = max(0, round(scorer_tokens["scorer LM"] / calls) - merged)
    print_flops(inputs, out, args.questions)
    text = "\n".join(out)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
