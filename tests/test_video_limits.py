"""Video input that is large, long, cut short or oddly named: bounded decode size, truncation
warnings, and paths that FFmpeg must not read as protocols."""

from __future__ import annotations

import os
import shutil
import warnings

import numpy as np
import pytest

from quota import QuoTA
from quota.config import DECODE_CAP_FACTOR, get_config
from quota.errors import ConfigError, VideoDecodeError, VideoNotFoundError, VideoSourceError
from quota.scoring import UniformScorer
from quota.testing import videos as tv
from quota.types import Plan
from quota.video import clear_cache, decode_size, load_frames, probe


@pytest.fixture(autouse=True)
def _fresh_index_cache():
    clear_cache()
    yield
    clear_cache()


def _plan_only(**overrides) -> QuoTA:
    return QuoTA(None, UniformScorer(), get_config("paper", **overrides), quiet=True)


# --- decode size ----------------------------------------------------------------------------------


def test_decode_size_rule():
    limits = get_config("paper").decode_limits()
    assert limits["max_pixels"] == DECODE_CAP_FACTOR * 1280 * 28 * 28 == 4_014_080
    # Up to 1080p nothing changes for the paper's frame counts (96 frames, 160 for an hour, 2.5 hours).
    for frames in (96, 160, 256):
        assert decode_size(1920, 1080, frames, **limits) == (1920, 1080)
        assert decode_size(1080, 1920, frames, **limits) == (1080, 1920)
    # 8K: under the pixel cap, aspect ratio kept.
    w, h = decode_size(8192, 8192, 96, **limits)
    assert w * h <= limits["max_pixels"] and w == h and w > 1900
    w, h = decode_size(7680, 4320, 96, **limits)
    assert w * h <= limits["max_pixels"] and abs(w / h - 16 / 9) < 0.01
    # Ten hours (736 frames) of 1080p: the memory budget wins.
    w, h = decode_size(1920, 1080, 736, **limits)
    assert 736 * w * h * 3 <= limits["max_bytes"] and abs(w / h - 16 / 9) < 0.01
    # Limits off: stored size; never enlarged; at least one pixel.
    assert decode_size(8192, 8192, 96) == (8192, 8192)
    assert decode_size(64, 48, 10, max_pixels=10**9, max_bytes=10**12) == (64, 48)
    assert decode_size(64, 48, 10, max_pixels=1) == (1, 1)
    assert decode_size(640, 480, 10, max_side=100, max_pixels=10**9) == (100, 75)


@pytest.mark.parametrize("bad", [0, -5, 1.5, True])
def test_decode_limits_are_checked(bad):
    with pytest.raises(ConfigError):
        decode_size(64, 48, 10, max_pixels=bad)
    with pytest.raises(ConfigError):
        get_config("paper", decode_max_bytes=bad)
    with pytest.raises(ConfigError):
        get_config("paper", decode_max_pixels=bad)


def test_1080p_frames_reach_the_models_unchanged(tmp_path):
    """The pipeline's default limits leave a 1080p video's pixels exactly as a full-size decode."""
    path = tv.make_video(tmp_path / "hd.mp4", n_frames=3, fps=10, size=(1920, 1080), gop=2)
    full = load_frames(path)  # no limits: today's full-size decode
    got = _plan_only().load_video(path)
    assert got.pixels.shape == (3, 1080, 1920, 3)
    np.testing.assert_array_equal(got.pixels, full.pixels)
    np.testing.assert_array_equal(got.indices, full.indices)


def test_frames_over_the_cap_are_shrunk_while_decoding(tmp_path):
    path = tv.make_video(tmp_path / "big.mp4", n_frames=4, fps=10, size=(2400, 1800), gop=2)
    qa = _plan_only()
    frames = qa.load_video(path)
    cap = qa.config.decode_limits()["max_pixels"]
    t, h, w, _ = frames.pixels.shape
    assert t == 4 and h * w <= cap and h * w > 0.98 * cap
    assert abs(w / h - 4 / 3) < 0.01
    assert tv.frame_numbers(frames.pixels) == [0, 1, 2, 3]  # the right frames, still legible
    # A memory budget bounds all frames together.
    small = load_frames(path, max_bytes=4 * 3 * 300 * 200)
    assert small.pixels.nbytes <= 4 * 3 * 300 * 200
    assert tv.frame_numbers(small.pixels) == [0, 1, 2, 3]
    # Switched off (a value above the frame size): the stored size.
    assert _plan_only(decode_max_pixels=10**8).load_video(path).pixels.shape[1:3] == (1800, 2400)


def test_progress_counts_frames_and_quiet_prints_nothing(tmp_path, capsys):
    path = tv.make_video(tmp_path / "clip.mp4", n_frames=30, fps=10)

    class Counter:
        n = 0

        def update(self, k):
            self.n += k

    counter = Counter()
    frames = load_frames(path, n=7, progress=counter)
    assert counter.n == len(frames) == 7
    capsys.readouterr()
    _plan_only(base_frames=5).plan(path, "What happens?")
    assert capsys.readouterr().err == ""
    QuoTA(None, UniformScorer(), get_config("paper", base_frames=6), quiet=False).plan(path, "What happens?")
    err = capsys.readouterr().err
    assert "Decoding frames" in err and "/6 " in err and "Indexing video" not in err  # index was cached


# --- truncated files -------------------------------------------------------------------------------


def test_truncated_file_warns_and_the_plan_says_what_was_seen(tmp_path):
    src = tv.make_video(tmp_path / "full.mp4", n_frames=200, fps=25, gop=50, faststart=True)  # 8 s
    path = tv.truncate_file(src, tmp_path / "cut.mp4", 0.5)
    with pytest.warns(RuntimeWarning, match=r"lasts 8\.00s but its frames end at \d+\.\d\ds") as rec:
        index = probe(path)
    assert index.stated_duration == pytest.approx(8.0)
    assert 0 < index.duration < 7.0
    assert f"{index.duration:.2f}s" in str(rec[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plan = _plan_only(base_frames=8).plan(path, "What happens?")
    assert plan.stated_duration == pytest.approx(8.0) and plan.duration == pytest.approx(index.duration)
    again = Plan.from_json(plan.to_json())
    assert again.stated_duration == plan.stated_duration and again.to_dict() == plan.to_dict()


def test_whole_file_has_no_stated_duration(tmp_path):
    path = tv.make_video(tmp_path / "full.mp4", n_frames=50, fps=25, faststart=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plan = _plan_only(base_frames=4).plan(path, "What happens?")
    assert plan.stated_duration is None
    assert Plan.from_json(plan.to_json()).stated_duration is None
    # JSON written before the field existed still loads.
    data = plan.to_dict()
    del data["stated_duration"]
    assert Plan.from_dict(data).stated_duration is None


# --- names FFmpeg could misread ------------------------------------------------------------------


def test_file_named_like_a_protocol_is_read_as_itself(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tv.make_video(tmp_path / "a.mp4", n_frames=20, fps=10)
    tv.make_video(tmp_path / "b.mp4", n_frames=30, fps=10)
    name = "concat:a.mp4|b.mp4"
    tv.make_video(tmp_path / "own.mp4", n_frames=7, fps=10)
    shutil.copy(tmp_path / "own.mp4", tmp_path / name)
    assert probe(name).n_frames == 7  # its own 7 frames, not the 50 of a.mp4 + b.mp4
    frames = load_frames(name)
    assert tv.frame_numbers(frames.pixels) == list(range(7))
    # The same name holding text: an error, never the other files' frames.
    (tmp_path / name).write_text("not a video\n")
    clear_cache()
    with pytest.raises(VideoDecodeError):
        probe(name)
    os.remove(tmp_path / name)
    with pytest.raises(VideoSourceError, match="protocol"):
        probe(name)


@pytest.mark.parametrize("url", ["http://example.com/v.mp4", "https://x.org/a.mkv", "rtsp://cam.local/live"])
def test_urls_have_their_own_message(url):
    with pytest.raises(VideoSourceError, match="URL") as info:
        probe(url)
    assert not isinstance(info.value, VideoNotFoundError) and "not found" not in str(info.value)


def test_symlink_loops_and_dangling_links(tmp_path):
    a, b = tmp_path / "a.mp4", tmp_path / "b.mp4"
    os.symlink(b, a)
    os.symlink(a, b)
    with pytest.raises(VideoSourceError, match="loop") as info:
        probe(a)
    assert "not found" not in str(info.value)
    dangling = tmp_path / "gone.mp4"
    os.symlink(tmp_path / "missing.mp4", dangling)
    with pytest.raises(VideoNotFoundError, match="symbolic link"):
        probe(dangling)
