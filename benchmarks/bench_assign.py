"""Benchmark of the token-assignment core (quota.assign).

160 frames of 27×27×3584 float32 features (LLaVA-Video-7B's native SigLIP grid and hidden size),
a plan for the paper's 12,544-token budget from skewed scores, then ``resize_frames`` against a
plain per-frame loop over ``F.interpolate``, both measured in this run. Also prints the budget
used by the ``paper`` and ``exact`` allocation modes, and for Qwen-shaped native grids (16:9, 4:3,
portrait) the budget used by the paper's near-square grids against grids in the native aspect ratio.

    python benchmarks/bench_assign.py [--frames 160] [--channels 3584] [--repeat 7]
"""

from __future__ import annotations

import argparse
import timeit

import numpy as np
import torch
import torch.nn.functional as F

from quota.assign import allocate_grids, frame_weights, resize_frames, token_count


def per_frame_loop(features: torch.Tensor, grids) -> list[torch.Tensor]:
    """The baseline: one interpolate call per kept frame, as research code does it."""
    out = []
    for i, (h, w) in enumerate(grids):
        if h * w == 0:
            continue
        frame = features[i].permute(2, 0, 1).unsqueeze(0)
        out.append(F.interpolate(frame, size=(h, w), mode="bilinear", align_corners=False)[0].permute(1, 2, 0))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=160)
    parser.add_argument("--channels", type=int, default=3584)
    parser.add_argument("--budget", type=int, default=12544)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    features = torch.randn(args.frames, 27, 27, args.channels)
    # skewed: most frames barely relevant, a few very relevant (beta(0.5, 2) scores)
    scores = rng.beta(0.5, 2.0, args.frames)
    weights = frame_weights(scores)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, features {tuple(features.shape)} float32")

    for mode, cap in (("paper", False), ("paper", True), ("exact", True)):
        grids = allocate_grids(weights, budget=args.budget, native=(27, 27), cap=cap, mode=mode)
        kept = sum(1 for g in grids if g[0])
        used = token_count(grids)
        print(f"allocation {mode:5s} cap={cap!s:5s}: {used:6d} / {args.budget} tokens used "
              f"({100 * used / args.budget:.2f}%), {kept} of {args.frames} frames kept, "
              f"{len(set(g for g in grids if g[0]))} distinct grids")

    # Qwen bases: native merged-token grids of 640x360 (16:9), 640x480 (4:3) and 360x640 frames under the
    # processor's default pixel limits; 96 frames (a video under 1 h), skewed scores.
    qwen_weights = frame_weights(rng.beta(0.5, 2.0, 96))
    for name, native in (("16:9", (13, 23)), ("4:3", (17, 23)), ("9:16", (23, 13))):
        for cap in (False, True):
            row = []
            for shape in ("square", "aspect"):
                g = allocate_grids(qwen_weights, budget=args.budget, native=native, cap=cap, shape=shape)
                row.append(f"{shape} {100 * token_count(g) / args.budget:6.2f}%")
            print(f"qwen {name} native {native[0]}x{native[1]} cap={cap!s:5s}: budget used " + ", ".join(row))

    grids = allocate_grids(weights, budget=args.budget)
    ours = resize_frames(features, grids)
    ref = per_frame_loop(features, grids)
    identical = len(ours) == len(ref) and all(torch.equal(a, b) for a, b in zip(ours, ref))

    t_loop = min(timeit.repeat(lambda: per_frame_loop(features, grids), number=1, repeat=args.repeat))
    t_ours = min(timeit.repeat(lambda: resize_frames(features, grids), number=1, repeat=args.repeat))
    print(f"per-frame interpolate loop : {t_loop * 1e3:8.1f} ms")
    print(f"quota resize_frames        : {t_ours * 1e3:8.1f} ms")
    print(f"speed-up                   : {t_loop / t_ours:8.2f}x  (identical output: {identical})")

    uniform = allocate_grids(frame_weights(np.ones(args.frames)), budget=args.budget)
    t_loop_u = min(timeit.repeat(lambda: per_frame_loop(features, uniform), number=1, repeat=args.repeat))
    t_ours_u = min(timeit.repeat(lambda: resize_frames(features, uniform), number=1, repeat=args.repeat))
    print(f"uniform scores: loop {t_loop_u * 1e3:.1f} ms, ours {t_ours_u * 1e3:.1f} ms, "
          f"speed-up {t_loop_u / t_ours_u:.2f}x")
    if not identical:
        raise SystemExit("resize_frames output differs from the per-frame loop")


if __name__ == "__main__":
    main()
