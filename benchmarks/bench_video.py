"""Benchmark: reading the paper's 160 frames from a one-hour video.

Makes (once, cached in ``~/.cache/quota-bench``) a one-hour 640x360 H.264 video at 25 fps with a
keyframe every 10 s (250 frames), then times, each in a fresh subprocess so that peak memory (max
RSS, which sees FFmpeg's C allocations) belongs to one method alone:

- ``quota``: ``quota.video.load_frames(path)`` (the paper's rule gives 160 frames for one hour);
- ``quota_decord``: the same through the decord backend, when decord is installed;
- ``naive``: PyAV decoding every frame in order and keeping the wanted ones;
- ``decord``: ``decord.VideoReader(path).get_batch(indices)``, when decord is installed.

All methods must return the same frames (checked with the frame number drawn into each frame).

Usage::

    python benchmarks/bench_video.py                 # all methods, table + ratios
    python benchmarks/bench_video.py --minutes 10    # a shorter video
    python benchmarks/bench_video.py --method quota  # one method (used internally)
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
WIDTH, HEIGHT, FPS, GOP = 640, 360, 25, 250
#: The frame number pattern occupies this top-left box of every frame.
PATTERN_W, PATTERN_H = 192, 128


def bench_video(minutes: float = 60.0, quiet: bool = False) -> Path:
    """The cached benchmark video of ``minutes`` minutes, encoded on first use."""
    import av
    from tqdm import tqdm

    from quota.testing.videos import frame_pattern

    n_frames = int(round(minutes * 60 * FPS))
    path = CACHE / f"bench_{WIDTH}x{HEIGHT}_{FPS}fps_g{GOP}_{n_frames}f.mp4"
    if path.exists():
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part.mp4")
    rng = np.random.default_rng(0)
    # A smooth random texture, twice as wide as the frame, that drifts one pixel per frame:
    # low motion, but real motion vectors and residuals for the decoder to work on.
    coarse = rng.integers(0, 256, size=(HEIGHT // 8 + 1, (2 * WIDTH) // 8 + 1, 3), dtype=np.uint8)
    texture = np.repeat(np.repeat(coarse, 8, axis=0), 8, axis=1)[:HEIGHT, : 2 * WIDTH]
    texture = ((texture.astype(np.uint16) + np.roll(texture, 4, axis=1) + np.roll(texture, 4, axis=0)) // 3)
    texture = texture.astype(np.uint8)
    t0 = time.perf_counter()
    with av.open(str(tmp), "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "23",
                          "x264-params": f"keyint={GOP}:min-keyint={GOP}:scenecut=0"}
        for i in tqdm(range(n_frames), desc="encoding benchmark video", disable=quiet, mininterval=5):
            x = i % WIDTH
            img = np.ascontiguousarray(texture[:, x : x + WIDTH])
            img[:PATTERN_H, :PATTERN_W] = frame_pattern(i, PATTERN_W, PATTERN_H)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            frame.time_base = Fraction(1, FPS)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    os.replace(tmp, path)
    if not quiet:
        print(f"encoded {n_frames} frames in {time.perf_counter() - t0:.0f} s -> {path} "
              f"({path.stat().st_size / 1e6:.0f} MB)", file=sys.stderr)
    return path


def wanted_indices(path: Path) -> list[int]:
    import av

    from quota.video import sample_indices

    with av.open(str(path)) as c:
        s = c.streams.video[0]
        total = s.frames
        fps = float(s.average_rate)
    return sample_indices(total, fps)


def run_method(method: str, path: Path) -> dict:
    """Run one method in this process; returns seconds, peak RSS and the frame numbers read."""
    from quota.testing.videos import read_frame_number

    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    if method in ("quota", "quota_decord"):
        from quota.video import load_frames

        frames = load_frames(path, backend="pyav" if method == "quota" else "decord")
        pixels, indices = frames.pixels, [int(i) for i in frames.indices]
    elif method == "naive":
        import av

        indices = wanted_indices(path)
        want = set(indices)
        kept = []
        with av.open(str(path)) as c:
            stream = c.streams.video[0]
            stream.thread_type = "AUTO"
            for k, frame in enumerate(c.decode(stream)):
                if k in want:
                    kept.append(frame.to_ndarray(format="rgb24"))
                if k >= indices[-1]:
                    break
        pixels = np.stack(kept)
    elif method == "decord":
        import decord

        indices = wanted_indices(path)
        vr = decord.VideoReader(str(path), ctx=decord.cpu(0))
        pixels = vr.get_batch(indices).asnumpy()
    else:
        raise SystemExit(f"unknown method {method}")
    seconds = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    numbers = [read_frame_number(p[:PATTERN_H, :PATTERN_W]) for p in pixels]
    return {
        "method": method,
        "seconds": seconds,
        "cpu_seconds": cpu,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "frames": len(pixels),
        "shape": list(pixels.shape),
        "exact": numbers == list(indices),
        "checksum": int(pixels.astype(np.uint64).sum()),
    }


def baseline_rss() -> float:
    """Peak RSS (MB) of a subprocess that only imports what the methods import."""
    code = ("import resource, numpy, av, quota.video, quota.testing.videos;"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)")
    return float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                check=True).stdout.strip())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=60.0, help="length of the benchmark video")
    parser.add_argument("--method", help="run only this method in this process and print JSON")
    parser.add_argument("--methods", default="quota,naive,decord,quota_decord",
                        help="comma-separated methods to compare")
    parser.add_argument("--repeat", type=int, default=1, help="runs per method (the best is kept)")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)

    path = bench_video(args.minutes, quiet=args.quiet)
    if args.method:
        print(json.dumps(run_method(args.method, path)))
        return 0

    try:
        import decord  # noqa: F401

        have_decord = True
    except ImportError:
        have_decord = False
    methods = [m for m in args.methods.split(",") if m and (have_decord or "decord" not in m)]
    results = {}
    for method in methods:
        best = None
        for _ in range(args.repeat):
            proc = subprocess.run(
                [sys.executable, __file__, "--minutes", str(args.minutes), "--method", method, "--quiet"],
                capture_output=True, text=True,
            )
            if proc.returncode != 0:
                print(f"{method}: failed\n{proc.stderr[-2000:]}", file=sys.stderr)
                break
            res = json.loads(proc.stdout.strip().splitlines()[-1])
            if best is None or res["seconds"] < best["seconds"]:
                best = res
        if best is not None:
            results[method] = best

    base = baseline_rss()
    print(f"video: {path.name} ({path.stat().st_size / 1e6:.0f} MB), {args.minutes:g} min")
    print(f"baseline RSS of the imports alone: {base:.0f} MB")
    print(f"load average (1 min) during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"{'method':<14}{'frames':>7}{'seconds':>9}{'CPU s':>8}{'peak RSS MB':>13}{'exact':>7}")
    for m, r in results.items():
        print(f"{m:<14}{r['frames']:>7}{r['seconds']:>9.2f}{r['cpu_seconds']:>8.2f}{r['peak_rss_mb']:>13.0f}"
              f"{str(r['exact']):>7}")
    if "quota" in results:
        q, qc = results["quota"]["seconds"], results["quota"]["cpu_seconds"]
        for m, r in results.items():
            if m != "quota":
                print(f"quota is {r['seconds'] / q:.2f}x faster than {m} "
                      f"(wall clock; {r['cpu_seconds'] / qc:.2f}x less CPU time)")
        sums = {m: r["checksum"] for m, r in results.items()}
        print("same pixels as quota:", {m: s == sums["quota"] for m, s in sums.items()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
