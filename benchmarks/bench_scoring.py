"""Benchmark of frame scoring: quota's batched last-position scorer against full-logit scoring.

The model is a random-weight Qwen2-VL with the real 2B model's vocabulary (151,936), hidden size
(1,536), MLP size (8,960), attention heads and vision width (1,280), but only a few layers (2 language
layers, 2 vision layers by default) so it runs on a 2-core CPU. The processor is the tiny byte-level one of
:mod:`quota.testing` (its token ids are all below 300, so they fit the big embedding), at the paper's
1280·28·28 pixel cap: a 448x448 frame is 32x32 patches, 256 visual tokens, about 300 tokens per row.

Both ways score the same 16 frames in one batch from the same processor outputs, each in a fresh
subprocess:

- ``quota``: :class:`quota.scoring.LVLMScorer` (left padding, vision tower 8 frames at a time,
  ``logits_to_keep=1``, softmax of one row);
- ``quota-chunked``: the same scorer with ``prefill_chunk`` (the language model reads each row 64 tokens
  at a time on an attention cache, so its activations no longer grow with the row's length);
- ``full``: the paper's way, ``model(**inputs).logits`` for every position, then the last row's softmax
  (as the reference implementation's Qwen2-VL scoring tool does it).

Reported per way: peak resident memory above the loaded model (Linux peak-RSS counter reset after
loading via ``/proc/self/clear_refs``, or a 1 ms sampling thread where that is not allowed), seconds per
frame (after a one-frame warm-up), and the largest score difference between the two ways.

    python benchmarks/bench_scoring.py [--frames 16] [--size 448] [--layers 2] [--vision-depth 2] [--threads 2]
                                       [--vision-batch-size 8]   # 0: the model encodes the whole batch
                                       [--prefill-chunk 64]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

MAX_PIXELS = 1280 * 28 * 28
QUESTION = "Does this frame contain any of the following: dog, red car?\nA. Yes\nB. No\nReply with the letter A or B only."


# ---------------------------------------------------------------------------------------------------------
# Memory probes (Linux)
# ---------------------------------------------------------------------------------------------------------


def _status_kb(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS counter (VmHWM) to the current RSS; False where that is not allowed."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


class _Sampler:
    """Fallback peak tracker: reads the resident set from /proc/self/statm every millisecond."""

    def __init__(self) -> None:
        self.page = os.sysconf("SC_PAGE_SIZE")
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _rss(self) -> int:
        with open("/proc/self/statm", encoding="ascii") as fh:
            return int(fh.read().split()[1]) * self.page

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            time.sleep(0.001)

    def __enter__(self) -> "_Sampler":
        self.peak = self._rss()
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())


# ---------------------------------------------------------------------------------------------------------
# Worker: one way, in its own process
# ---------------------------------------------------------------------------------------------------------


def _build_model(processor_dir: Path, layers: int, vision_depth: int, seed: int = 0) -> Any:
    import torch
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    tiny = json.loads((processor_dir / "config.json").read_text())
    tokens = {k: tiny[k] for k in ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id")}
    text = dict(
        vocab_size=151936,
        hidden_size=1536,
        intermediate_size=8960,
        num_hidden_layers=layers,
        num_attention_heads=12,
        num_key_value_heads=2,
        max_position_embeddings=32768,
        max_window_layers=layers,
        rope_parameters={"rope_type": "default", "mrope_section": [16, 24, 24], "rope_theta": 1_000_000.0},
        bos_token_id=tiny["text_config"].get("bos_token_id"),
        eos_token_id=tiny["text_config"].get("eos_token_id"),
        pad_token_id=tiny["text_config"].get("pad_token_id"),
    )
    vision = dict(depth=vision_depth, embed_dim=1280, hidden_size=1536, mlp_ratio=4, num_heads=16, patch_size=14,
                  spatial_merge_size=2, temporal_patch_size=2)
    config = Qwen2VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=True, **tokens)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2VLForConditionalGeneration(config)
    return model.to(torch.float32).eval()


WAYS = ("quota", "quota-chunked", "full")


def worker(args: argparse.Namespace) -> None:
    import gc

    import torch
    from transformers import AutoProcessor

    from quota.scoring import LVLMScorer

    torch.set_num_threads(args.threads)
    processor_dir = Path(args.processor)
    processor = AutoProcessor.from_pretrained(processor_dir)
    model = _build_model(processor_dir, args.layers, args.vision_depth)
    scorer = LVLMScorer.from_model(
        model, processor, max_pixels=MAX_PIXELS, batch_size=args.frames, vision_batch_size=args.vision_batch_size or None,
        prefill_chunk=args.prefill_chunk if args.worker == "quota-chunked" else None, quiet=True,
    )
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (args.size, args.size, 3), dtype=np.uint8) for _ in range(args.frames)]
    prompt = scorer.prompt(QUESTION)

    def full_logits(batch: list[np.ndarray]) -> np.ndarray:
        inputs = scorer.build_inputs(batch, prompt)
        with torch.inference_mode():
            logits = model(**inputs).logits  # [B, L, V]: every position (and the KV cache, as the reference does)
            probs = logits[:, -1, :].float().softmax(dim=-1)
            return probs[:, scorer.yes_token_id].double().numpy()

    def ours(batch: list[np.ndarray]) -> np.ndarray:
        return scorer.score_images(batch, QUESTION)

    run = full_logits if args.worker == "full" else ours
    run(images[:1])  # warm-up: thread pools, allocator, lazy imports
    tokens = int(scorer.build_inputs(images[:1], prompt)["input_ids"].shape[1])
    gc.collect()
    base_kb = _status_kb("VmRSS")
    exact = _reset_peak()
    sampler = _Sampler()
    start = time.perf_counter()
    if exact:
        scores = run(images)
    else:
        with sampler:
            scores = run(images)
    seconds = time.perf_counter() - start
    peak_bytes = _status_kb("VmHWM") * 1024 if exact else sampler.peak
    print(json.dumps({
        "way": args.worker,
        "rss_loaded_mb": base_kb / 1024,
        "peak_above_mb": (peak_bytes - base_kb * 1024) / 2**20,
        "seconds": seconds,
        "per_frame_s": seconds / args.frames,
        "tokens_per_row": tokens,
        "peak_method": "VmHWM reset" if exact else "1 ms sampling",
        "scores": [float(s) for s in scores],
    }))


# ---------------------------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=448, help="frame side in pixels")
    parser.add_argument("--layers", type=int, default=2, help="language-model layers")
    parser.add_argument("--vision-depth", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--vision-batch-size", type=int, default=8, help="quota: frames per vision pass (0: all)")
    parser.add_argument("--prefill-chunk", type=int, default=64, help="quota-chunked: tokens per language-model pass")
    parser.add_argument("--worker", choices=WAYS, help=argparse.SUPPRESS)
    parser.add_argument("--processor", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    import torch
    import transformers

    from quota.testing import build_tiny_qwen2_vl

    print(f"torch {torch.__version__}, transformers {transformers.__version__}, threads {args.threads}, "
          f"{args.frames} frames of {args.size}x{args.size}, max_pixels {MAX_PIXELS}, "
          f"Qwen2-VL vocab 151936 / hidden 1536, {args.layers} LM layers, {args.vision_depth} vision layers, float32, "
          f"quota vision batch {args.vision_batch_size or 'all'}")
    results = {}
    with tempfile.TemporaryDirectory(prefix="quota-bench-scoring-") as tmp:
        processor_dir = build_tiny_qwen2_vl(Path(tmp) / "tiny")
        for way in WAYS:
            cmd = [sys.executable, __file__, "--worker", way, "--processor", str(processor_dir)]
            for name in ("frames", "size", "layers", "threads"):
                cmd += [f"--{name}", str(getattr(args, name))]
            cmd += ["--vision-depth", str(args.vision_depth), "--vision-batch-size", str(args.vision_batch_size),
                    "--prefill-chunk", str(args.prefill_chunk)]
            env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
            out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
            results[way] = json.loads(out.stdout.strip().splitlines()[-1])

    full = results["full"]
    print(f"tokens per row: {full['tokens_per_row']}; peak measured by {full['peak_method']}")
    print(f"{'way':<15}{'model RSS MB':>14}{'peak above MB':>15}{'s / frame':>11}")
    for way in WAYS:
        r = results[way]
        print(f"{way:<15}{r['rss_loaded_mb']:>14.0f}{r['peak_above_mb']:>15.1f}{r['per_frame_s']:>11.3f}")
    for way in ("quota", "quota-chunked"):
        ours = results[way]
        diff = float(np.max(np.abs(np.array(ours["scores"]) - np.array(full["scores"]))))
        rel = float(np.max(np.abs(np.array(ours["scores"]) / np.array(full["scores"]) - 1)))
        print(f"{way} vs full: peak memory above the model {full['peak_above_mb'] / max(ours['peak_above_mb'], 1e-9):.1f}x "
              f"less; time per frame {full['per_frame_s'] / ours['per_frame_s']:.2f}x faster; "
              f"largest score difference {diff:.2e} (relative {rel:.2e})")


if __name__ == "__main__":
    main()
