"""Benchmark: ``quota eval`` on a 12-video Video-MME-format fixture with the tiny models: decodes per video and
the wall time with reading ahead against without.

Builds the tiny random-weight LLaVA-OneVision (base) and Qwen2-VL (scorer) checkpoints of
``quota.testing`` and twelve generated videos (two questions each), then runs the real command line
(``quota.cli.main(["eval", ...])``) twice per repeat, alternating: with reading ahead (the default: the next
video is decoded on a background thread while the models answer the current one) and with
``--no-read-ahead``. Every call of the frame decoder (``quota.video.load_frames``) is counted per video; each
video must be decoded exactly once per run. Both runs must store the same answers.

The tiny models answer in milliseconds, so decoding is a large share of the time here; with real models the
share is smaller and the saving is at most the decode time of all videos but the first.

Usage::

    python benchmarks/bench_eval.py                 # 12 videos of 320x240, 150 frames each, 2 repeats
    python benchmarks/bench_eval.py --repeats 3 --size 640x360
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import torch  # noqa: E402

import quota.video  # noqa: E402
from quota.cli import main  # noqa: E402
from quota.eval import open_run  # noqa: E402
from quota.testing.tiny_models import build_tiny_model  # noqa: E402
from quota.testing.videos import make_video  # noqa: E402

N_VIDEOS = 12
PER_VIDEO = 2


def write_fixture(root: Path, size: tuple[int, int], frames: int) -> Path:
    """Twelve videos in ``root/data`` and a Video-MME JSON annotation file with two questions each."""
    (root / "data").mkdir(parents=True, exist_ok=True)
    rows = []
    for v in range(N_VIDEOS):
        make_video(root / "data" / f"vid{v:02d}.mp4", n_frames=frames + 5 * v, fps=25, size=size)
        for q in range(PER_VIDEO):
            rows.append({"videoID": f"vid{v:02d}", "question_id": f"{v:03d}-{q}", "duration": "short",
                         "domain": "Knowledge", "sub_category": "Counting", "task_type": "Counting Problem",
                         "question": f"How many squares are there in part {q}?",
                         "options": ["A. one", "B. two", "C. three", "D. four"], "answer": "ABCD"[(v + q) % 4]})
    ann = root / "videomme.json"
    ann.write_text(json.dumps(rows), encoding="utf-8")
    return ann


def counting_decoder() -> Counter[str]:
    """Count every call of the frame decoder by video file name (in any thread)."""
    calls: Counter[str] = Counter()
    real = quota.video.load_frames

    def load_frames(path, *args, **kwargs):
        calls[Path(str(path)).name] += 1
        return real(path, *args, **kwargs)

    quota.video.load_frames = load_frames
    return calls


def run(argv: list[str], calls: Counter[str]) -> tuple[float, Counter[str]]:
    import contextlib
    import io

    calls.clear()
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # the accuracy table of each run
        status = main(argv)
    seconds = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"quota eval exited with {status}")
    return seconds, Counter(calls)


def main_bench() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--size", default="320x240", help="video size WxH")
    parser.add_argument("--frames", type=int, default=150, help="frames of the first video (+5 per video)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    width, height = (int(x) for x in args.size.split("x"))
    with tempfile.TemporaryDirectory(prefix="bench_eval_") as tmp:
        tmp_path = Path(tmp)
        base = build_tiny_model("llava_onevision", tmp_path / "base")
        scorer = build_tiny_model("qwen2_vl", tmp_path / "scorer")
        ann = write_fixture(tmp_path / "vmme", (width, height), args.frames)
        calls = counting_decoder()
        common = ["eval", "--benchmark", "videomme", "--annotations", str(ann), "--videos", str(tmp_path / "vmme"),
                  "--base", str(base), "--scorer", str(scorer), "--device", "cpu", "--budget", "64",
                  "--set", "base_frames=16", "--set", "decouple_max_new_tokens=8", "--set", "max_new_tokens=2",
                  "-q"]
        times: dict[str, list[float]] = {"read ahead": [], "no read ahead": []}
        decodes: dict[str, Counter[str]] = {}
        answers: dict[str, dict] = {}
        for r in range(args.repeats):
            for mode, extra in (("no read ahead", ["--no-read-ahead"]), ("read ahead", [])):
                out = tmp_path / f"run-{r}-{mode.replace(' ', '-')}"
                seconds, counted = run([*common, "--out", str(out), *extra], calls)
                times[mode].append(seconds)
                decodes[mode] = counted
                with open_run(out) as st:
                    answers[mode] = {x.sample_id: (x.prediction, x.plan) for x in st.results()}
    print(f"quota eval, {N_VIDEOS} videos x {PER_VIDEO} questions, {width}x{height}, tiny models on the CPU, "
          f"{args.repeats} repeats (best of)")
    print()
    print(f"{'video':<12} {'decodes (read ahead)':>21} {'decodes (no read ahead)':>24}")
    for v in range(N_VIDEOS):
        name = f"vid{v:02d}.mp4"
        print(f"{name:<12} {decodes['read ahead'][name]:>21} {decodes['no read ahead'][name]:>24}")
    print()
    best = {m: min(t) for m, t in times.items()}
    print(f"{'run':<16} {'wall s (best)':>14} {'all runs':>24}")
    for mode in ("no read ahead", "read ahead"):
        print(f"{mode:<16} {best[mode]:>14.2f} {', '.join(f'{t:.2f}' for t in times[mode]):>24}")
    print(f"ratio read ahead / no read ahead: {best['read ahead'] / best['no read ahead']:.2f}")
    once = all(decodes[m][f"vid{v:02d}.mp4"] == 1 for m in decodes for v in range(N_VIDEOS))
    same = answers["read ahead"] == answers["no read ahead"]
    print(f"each video decoded once per run: {'yes' if once else 'NO'}; same answers and plans: "
          f"{'yes' if same else 'NO'}")
    if not (once and same):
        raise SystemExit(1)


if __name__ == "__main__":
    main_bench()
