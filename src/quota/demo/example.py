"""The page's click-to-try example: a short synthetic video made at start-up (no download), with a question
whose answer can be seen in it."""

from __future__ import annotations

from pathlib import Path

QUESTION = "Which colour is the square in the top left corner at the start?"
OPTIONS = "A. red\nB. green\nC. blue"


def make_example(folder: str | Path, *, frames: int = 40, fps: int = 10, size: tuple[int, int] = (160, 120)) -> Path:
    """Write ``folder/example.mp4``: a red square in the top left corner, a blue one in the bottom left, and a
    green one moving from left to right, ``frames`` frames at ``fps`` frames/s of ``size`` (width, height)
    pixels (MPEG-4 Part 2, which every FFmpeg build writes). Returns the path."""
    import av
    import numpy as np

    width, height = size
    side = height // 3
    path = Path(folder) / "example.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            pixels = np.zeros((height, width, 3), dtype=np.uint8)
            pixels[:side, :side] = (220, 30, 30)
            pixels[-side:, :side] = (30, 60, 220)
            x = side + (width - 2 * side) * i // max(frames - 1, 1)
            pixels[side:2 * side, x:x + side] = (30, 200, 60)
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


__all__ = ["make_example", "QUESTION", "OPTIONS"]
