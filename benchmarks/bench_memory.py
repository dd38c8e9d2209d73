"""Benchmark: peak memory of planning an 8K video and a ten-hour video.

Two generated files (cached in ``~/.cache/quota-bench``):

- ``8k``: 96 frames of 8192x8192 H.264 at 24 fps (4 s; a flat picture with the frame number drawn
  in a corner, so the file is small, as the hostile upload in issue 12 was);
- ``10h``: ten hours of 64x36 H.264 at 1 fps with a keyframe every ten minutes (36,000 frames);
- ``10h-hd``: ten hours of 1920x1080 H.264 at one frame every 50 s (720 frames, keyframe every 50
  minutes): the paper's rule asks for 736 frames, so all 720 are decoded, 4.5 GB at full size.

Each method runs in a fresh subprocess, so its peak RSS (which sees FFmpeg's C allocations) is its
own; "above imports" is that peak less the peak the process had reached after its imports (the
memory the work itself needed).

- ``plan``: ``QuoTA(None, UniformScorer()).plan(path, question)`` with the ``paper`` preset, i.e.
  probing, sampling and decoding with the default limits (the models are left out: this is the
  memory *above* the models);
- ``unbounded``: ``load_frames(path)`` without limits, the decode before issue 12 (run for the 8K
  and 10h-hd cases only with ``--unbounded``: they need about 19 GB and 4.5 GB).

Usage::

    python benchmarks/bench_memory.py                 # both cases
    python benchmarks/bench_memory.py --case 8k
    python benchmarks/bench_memory.py --case 8k --unbounded
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

CACHE = Path(os.environ.get("QUOTA_BENCH_CACHE", Path.home() / ".cache" / "quota-bench"))
#: case -> (width, height, fps, frames, keyframe interval in frames)
CASES = {
    "8k": (8192, 8192, 24, 96, 48),
    "10h": (64, 36, 1, 36_000, 600),
    "10h-hd": (1920, 1080, Fraction(1, 50), 720, 60),
}


def pattern_box(width: int, height: int) -> tuple[int, int]:
    """``(w, h)`` of the frame-number pattern in the top-left corner of a ``width`` x ``height`` frame."""
    return min(192, width), min(128, height)


def case_video(case: str, quiet: bool = False) -> Path:
    """The cached video of ``case``, encoded on first use (a flat grey picture, frame number in a corner)."""
    from quota.testing.videos import frame_pattern, make_video

    width, height, fps, n_frames, gop = CASES[case]
    path = CACHE / f"mem_{case}_{width}x{height}_{str(fps).replace('/', 'over')}fps_g{gop}_{n_frames}f.mp4"
    if path.exists():
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part.mp4")
    t0 = time.perf_counter()
    canvas = np.full((height, width, 3), 128, dtype=np.uint8)
    pw, ph = pattern_box(width, height)

    def picture(i: int) -> np.ndarray:
        canvas[:ph, :pw] = frame_pattern(i, pw, ph)
        return canvas

    make_video(tmp, n_frames, fps=fps, size=(width, height), gop=gop, preset="ultrafast", crf=30, frame_fn=picture)
    os.replace(tmp, path)
    if not quiet:
        print(f"encoded {case}: {n_frames} frames in {time.perf_counter() - t0:.0f} s -> {path} "
              f"({path.stat().st_size / 1e6:.1f} MB)", file=sys.stderr)
    return path


def run_method(method: str, path: Path) -> dict:
    """Run one method in this process: seconds, peak RSS, frames and their size."""
    from quota import QuoTA
    from quota.config import get_config
    from quota.scoring import UniformScorer
    from quota.testing.videos import read_frame_number
    from quota.video import load_frames

    imports_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # peak so far: the imports
    t0 = time.perf_counter()
    if method == "plan":
        qa = QuoTA(None, UniformScorer(), get_config("paper"), quiet=True)
        plan = qa.plan(path, "What happens in the video?")
        frames = qa.load_video(path)
        assert len(plan.indices) == len(frames)
    elif method == "unbounded":
        frames = load_frames(path)
    else:
        raise SystemExit(f"unknown method {method}")
    seconds = time.perf_counter() - t0
    # The frame number is drawn in the top-left corner of every frame (see pattern_box).
    h, w = frames.pixels.shape[1:3]
    width, height = CASES[next(c for c in CASES if path.name.startswith(f"mem_{c}_"))][:2]
    pw, ph = pattern_box(width, height)
    bw, bh = int(pw * w / width), int(ph * h / height)
    exact = None
    if bw >= 24 and bh >= 16:  # smaller, the pattern's cells cannot be read back
        exact = [read_frame_number(p[:bh, :bw]) for p in frames.pixels] == [int(i) for i in frames.indices]
    return {
        "method": method,
        "seconds": seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "imports_mb": imports_mb,
        "frames": len(frames),
        "size": f"{w}x{h}",
        "pixels_mb": frames.pixels.nbytes / 2**20,
        "exact": exact,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", choices=sorted(CASES), action="append", help="case(s) to run (default: all)")
    parser.add_argument("--method", help="run only this method in this process and print JSON (internal)")
    parser.add_argument("--unbounded", action="store_true", help="also run the unbounded decode of the 8K case")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    cases = args.case or sorted(CASES)

    if args.method:
        print(json.dumps(run_method(args.method, case_video(cases[0], quiet=True))))
        return 0

    rows = []
    for case in cases:
        path = case_video(case, quiet=args.quiet)
        methods = ["plan"]
        if case == "10h" or args.unbounded:
            methods.append("unbounded")
        for method in methods:
            proc = subprocess.run([sys.executable, __file__, "--case", case, "--method", method, "--quiet"],
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                print(f"{case} {method}: failed (exit {proc.returncode})\n{proc.stderr[-1500:]}", file=sys.stderr)
                continue
            rows.append((case, path, json.loads(proc.stdout.strip().splitlines()[-1])))

    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; 'above imports' is the peak RSS "
          "less the peak reached by the imports in the same process")
    print(f"{'case':<5}{'file MB':>8} {'method':<10}{'frames':>7}{'frame size':>12}{'pixels MB':>10}"
          f"{'seconds':>9}{'peak RSS MB':>12}{'above imports':>14}{'exact':>7}")
    for case, path, r in rows:
        print(f"{case:<5}{path.stat().st_size / 1e6:>8.1f} {r['method']:<10}{r['frames']:>7}{r['size']:>12}"
              f"{r['pixels_mb']:>10.0f}{r['seconds']:>9.2f}{r['peak_rss_mb']:>12.0f}"
              f"{r['peak_rss_mb'] - r['imports_mb']:>14.0f}{str(r['exact']):>7}")
    for case in cases:
        if case != "10h" and not args.unbounded:
            w, h, _, n, _ = CASES[case]
            print(f"{case} unbounded (not run): {n} frames x {w}x{h} x 3 bytes = {n * w * h * 3 / 2**30:.1f} GiB "
                  "of pixels alone")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
