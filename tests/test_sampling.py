"""The paper's dynamic frame sampling and uniform sampling (pure functions)."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quota.errors import ConfigError
from quota.video import frame_budget, sample_indices, uniform_indices


@pytest.mark.parametrize(
    "total, fps, expected",
    [
        (250, 25, 96),  # 10 s clip: the base count
        (90_000, 25, 160),  # exactly one hour: 96 + 64
        (89_999, 25, 159),  # a frame short of an hour
        (45_000, 25, 128),  # half an hour: 96 + 32
        (36_000, 1, 736),  # ten hours at 1 fps: 96 + 640
        (107_892, 30000 / 1001, 159),  # 3599.99 s of NTSC video
        (107_893, 30000 / 1001, 160),  # 3600.03 s
    ],
)
def test_paper_frame_counts(total, fps, expected):
    idx = sample_indices(total, fps)
    assert len(idx) == expected
    assert idx[0] == 0 and idx[-1] == total - 1


def test_matches_numpy_linspace_truncation():
    total, fps = 90_000, 25
    expected = np.linspace(0, total - 1, 160).astype(int).tolist()
    assert sample_indices(total, fps) == expected


def test_custom_rule_and_cap():
    assert len(sample_indices(90_000, 25, base=32, per_hour=16)) == 48
    assert len(sample_indices(90_000, 25, max_frames=64)) == 64
    assert sample_indices(90_000, 25, max_frames=64) == uniform_indices(90_000, 64)
    assert len(sample_indices(90_000, 25, per_hour=0)) == 96


def test_max_fps_cap():
    # a 4 s clip at 30 fps: the rule wants 96 frames, 2 per second allows 8
    assert sample_indices(120, 30, max_fps=2) == uniform_indices(120, 8)
    assert len(sample_indices(90_000, 25, max_fps=1)) == 160  # an hour: the cap does not bite
    assert sample_indices(10, 30, max_fps=1) == [0]  # never fewer than one frame
    with pytest.raises(ConfigError):
        sample_indices(100, 25, max_fps=0)


def test_short_video_gives_every_frame_once():
    assert sample_indices(40, 10) == list(range(40))
    assert sample_indices(96, 25) == list(range(96))
    assert sample_indices(1, 25) == [0]
    assert sample_indices(0, 25) == []


def test_uniform_indices():
    assert uniform_indices(100, 1) == [0]
    assert uniform_indices(100, 2) == [0, 99]
    assert uniform_indices(10, 4) == [0, 3, 6, 9]
    assert uniform_indices(5, 50) == [0, 1, 2, 3, 4]
    assert uniform_indices(0, 3) == []


@pytest.mark.parametrize(
    "call",
    [
        lambda: sample_indices(-1, 25),
        lambda: sample_indices(10.5, 25),
        lambda: sample_indices(True, 25),
        lambda: sample_indices(100, 0),
        lambda: sample_indices(100, -3),
        lambda: sample_indices(100, float("nan")),
        lambda: sample_indices(100, 25, base=0),
        lambda: sample_indices(100, 25, per_hour=-1),
        lambda: sample_indices(100, 25, max_frames=0),
        lambda: uniform_indices(100, 0),
        lambda: uniform_indices(-5, 3),
        lambda: frame_budget(-1.0),
    ],
)
def test_bad_arguments_raise_config_error(call):
    with pytest.raises(ConfigError):
        call()


def _exact_count(total: int, fps: Fraction, base: int, per_hour: int) -> int:
    return base + math.floor(Fraction(total) / fps / 3600 * per_hour)


@settings(max_examples=300, deadline=None)
@given(
    total=st.integers(0, 2_000_000),
    fps_num=st.sampled_from([1, 10, 24, 25, 30, 50, 60, 24000, 30000, 60000]),
    base=st.integers(1, 200),
    per_hour=st.integers(0, 128),
)
def test_properties(total, fps_num, base, per_hour):
    fps = Fraction(fps_num, 1001) if fps_num >= 24000 else Fraction(fps_num)
    idx = sample_indices(total, float(fps), base=base, per_hour=per_hour)
    want = _exact_count(total, fps, base, per_hour)
    # Equal to the exact count, except within float rounding of a whole number of frames.
    exact_frac = Fraction(total) / fps / 3600 * per_hour
    if abs(exact_frac - round(exact_frac)) > Fraction(1, 10**6):
        assert len(idx) == min(want, total)
    assert idx == sorted(set(idx))  # increasing, no duplicates
    if total:
        assert idx[0] == 0
        assert idx[-1] == (total - 1 if len(idx) > 1 else 0)
        if len(idx) < total:
            assert idx == np.linspace(0, total - 1, len(idx)).astype(int).tolist()
    else:
        assert idx == []


@settings(max_examples=200, deadline=None)
@given(total=st.integers(1, 10**7), n=st.integers(1, 5000))
def test_uniform_properties(total, n):
    idx = uniform_indices(total, n)
    assert len(idx) == min(n, total)
    assert idx == sorted(set(idx))
    assert idx[0] == 0
    assert idx[-1] == (total - 1 if n > 1 or total == 1 else 0)
    # Gaps differ by at most one frame: the spread is uniform.
    if len(idx) > 2:
        gaps = np.diff(idx)
        assert gaps.max() - gaps.min() <= 1
