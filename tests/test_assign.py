"""The token-assignment core: weights, grids, resizing, counting."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import example, given, settings
from hypothesis import strategies as st

from quota.assign import (
    allocate_grids,
    frame_weights,
    grid_for_tokens,
    grid_for_tokens_aspect,
    linspace_positions,
    merge_tokens,
    resize_frames,
    token_count,
)
from quota.errors import BudgetError

scores_st = st.lists(st.floats(0.0, 1.0, allow_nan=False), min_size=1, max_size=200)
budget_st = st.integers(1, 40000)
native_st = st.tuples(st.integers(1, 30), st.integers(1, 30))


# ---------------------------------------------------------------- weights
def test_weights_follow_the_paper_formula():
    s = np.array([0.1, 0.5, 0.9])
    raw = (100 * s) ** 2
    np.testing.assert_allclose(frame_weights(s), raw / raw.sum(), rtol=0, atol=1e-15)
    np.testing.assert_allclose(frame_weights(s, scale=1.0, power=1.0), s / s.sum())
    assert frame_weights(s).dtype == np.float64


@pytest.mark.parametrize("scale", [1.0, 3.5, 100.0, 1e4])
def test_the_weight_scale_cancels_out(scale):
    s = np.array([0.02, 0.3, 0.31, 0.97])
    for power in (1.0, 2.0, 3.0):
        np.testing.assert_allclose(frame_weights(s, scale=scale, power=power), s**power / (s**power).sum(),
                                   rtol=1e-12, atol=0)


def test_all_zero_scores_give_uniform_weights():
    np.testing.assert_array_equal(frame_weights([0.0] * 8), np.full(8, 1 / 8))


def test_tiny_scores_do_not_underflow_to_uniform():
    w = frame_weights([0.0, 1e-200, 2e-200])
    np.testing.assert_allclose(w, [0.0, 0.2, 0.8])


@pytest.mark.parametrize("bad", [[], [0.5, float("nan")], [1.5], [-0.1, 0.2], [float("inf")]])
def test_bad_scores_raise_value_error(bad):
    with pytest.raises(ValueError):
        frame_weights(bad)


@given(scores_st)
def test_weights_sum_to_one(scores):
    w = frame_weights(scores)
    assert w.shape == (len(scores),)
    assert abs(w.sum() - 1.0) < 1e-9
    assert np.all(w >= 0)


# ---------------------------------------------------------------- grids: exact cases
def test_paper_equal_scores_64_frames_give_14x14():
    assert allocate_grids(frame_weights([0.7] * 64)) == [(14, 14)] * 64


def test_paper_equal_scores_96_frames_give_11x11():
    # 12544 / 96 = 130.67 -> 130 tokens -> floor(sqrt) = 11; 12*11 = 132 > 130
    assert allocate_grids(frame_weights([0.3] * 96)) == [(11, 11)] * 96


def test_grid_rule_hand_checked():
    assert grid_for_tokens(0) == (0, 0)
    assert grid_for_tokens(1) == (1, 1)
    assert grid_for_tokens(2) == (2, 1)
    assert grid_for_tokens(5) == (2, 2)
    assert grid_for_tokens(6) == (3, 2)
    assert grid_for_tokens(196) == (14, 14)
    assert grid_for_tokens(209) == (14, 14)
    assert grid_for_tokens(210) == (15, 14)


def test_paper_drops_frames_with_zero_tokens():
    grids = allocate_grids([1000.0, 1.0, 0.0], budget=100)
    assert grids[2] == (0, 0)
    assert grids[1] == (0, 0)  # floor(100 * 1/1001) = 0
    assert grids[0] == (10, 9)  # floor(100 * 1000/1001) = 99 -> 9 + 1 rows


def test_paper_uncapped_can_exceed_native_and_cap_redistributes():
    w = [10.0, 1.0, 1.0, 1.0]
    free = allocate_grids(w, budget=2000, native=(27, 27))
    assert free[0][0] * free[0][1] > 729
    capped = allocate_grids(w, budget=2000, native=(27, 27), cap=True)
    assert capped[0] == (27, 27)
    # the rest, (2000 - 729) / 3 = 423.67 each -> 423 -> 20x20 + a row? 21*20 = 420 <= 423
    assert capped[1:] == [(21, 20)] * 3


def test_cap_repeats_until_no_frame_exceeds():
    # one pass would cap frame 0 only; redistributing then pushes frame 1 over the cap as well
    w = [100.0, 30.0, 1.0, 1.0]
    grids = allocate_grids(w, budget=1000, native=(10, 10), cap=True)
    assert grids[0] == (10, 10) and grids[1] == (10, 10)
    assert all(h * w <= 100 for h, w in grids)


def test_exact_mode_spends_the_leftover():
    w = frame_weights(np.random.default_rng(0).random(160))
    paper = allocate_grids(w, mode="paper")
    exact = allocate_grids(w, mode="exact")
    assert token_count(paper) < 12544
    assert token_count(exact) == 12544
    assert all(e[0] * e[1] >= p[0] * p[1] for p, e in zip(paper, exact))


def test_exact_mode_is_limited_by_native_grids():
    grids = allocate_grids([1.0] * 4, budget=10000, native=(5, 5), mode="exact")
    assert grids == [(5, 5)] * 4


@pytest.mark.parametrize(
    "kwargs",
    [dict(weights=[]), dict(weights=[-1.0]), dict(weights=[0.0, 0.0]), dict(weights=[1.0], budget=0),
     dict(weights=[1.0], mode="fancy"), dict(weights=[1.0], native=(0, 3)), dict(weights=[float("nan")])],
)
def test_bad_allocation_inputs_raise(kwargs):
    with pytest.raises(ValueError):
        allocate_grids(**kwargs)


# ---------------------------------------------------------------- grids: properties
@settings(max_examples=150, deadline=None)
@given(scores_st, budget_st, native_st, st.booleans(), st.sampled_from(["paper", "exact"]))
def test_grid_properties(scores, budget, native, cap, mode):
    weights = frame_weights(scores)
    grids = allocate_grids(weights, budget=budget, native=native, cap=cap, mode=mode)
    assert len(grids) == len(scores)
    assert token_count(grids) <= budget
    for h, w in grids:
        assert (h == 0) == (w == 0)
        assert 0 <= h - w <= 1  # near square, never wider than tall
    if cap or mode == "exact":
        assert all(h * w <= native[0] * native[1] for h, w in grids)
    # a higher score never gets a smaller grid (scores -> weights is monotone; scores so close to 0
    # that the paper's (100·s)² underflows to the same weight are equal as far as grids can know)
    sizes = np.array([h * w for h, w in grids])
    s = np.asarray(scores)
    higher_score = s[:, None] > s[None, :]
    assert np.all(weights[:, None] >= weights[None, :], where=higher_score)
    higher_weight = weights[:, None] > weights[None, :]
    assert np.all(sizes[:, None] >= sizes[None, :], where=higher_weight)
    # uniform scores give equal grids (in paper mode; exact mode may hand the leftover to some)
    if mode == "paper" and len(set(scores)) == 1:
        assert len(set(grids)) == 1


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(0.01, 1.0), min_size=1, max_size=100), budget_st)
def test_grids_follow_frame_order(scores, budget):
    """Reversing the frames reverses the grids: allocation is per frame, order preserved."""
    w = frame_weights(scores)
    assert allocate_grids(w[::-1], budget=budget) == allocate_grids(w, budget=budget)[::-1]


@settings(max_examples=80, deadline=None)
@given(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=100), budget_st, native_st)
def test_exact_never_uses_less_than_paper(scores, budget, native):
    w = frame_weights(scores)
    paper = allocate_grids(w, budget=budget, native=native, cap=True)
    exact = allocate_grids(w, budget=budget, native=native, mode="exact")
    assert token_count(paper) <= token_count(exact) <= budget


# ---------------------------------------------------------------- grids in the native aspect ratio (Qwen)
def test_aspect_grid_hand_checked():
    # 16:9 frame of Qwen's default processor at 640x360: 13x23 merged tokens
    assert grid_for_tokens_aspect(299, (13, 23)) == (13, 23)
    # ideal 7.50 x 13.33: rows 7 or 8, columns 13 or 14; the most cells within 100 is 7x14 = 98
    assert grid_for_tokens_aspect(100, (9, 16)) == (7, 14)
    assert grid_for_tokens_aspect(100, (16, 9)) == (14, 7)  # portrait: the transpose
    assert grid_for_tokens_aspect(100, (27, 27)) == (10, 10)
    assert grid_for_tokens_aspect(0, (3, 4)) == (0, 0)
    assert grid_for_tokens_aspect(1, (1, 40)) == (1, 1)
    assert grid_for_tokens_aspect(7, (1, 40)) == (1, 7)
    with pytest.raises(ValueError):
        grid_for_tokens_aspect(4, (0, 3))


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 20000), st.tuples(st.integers(1, 60), st.integers(1, 60)))
@example(265, (29, 58))  # two grids mirrored about the ratio: float rounding once broke the tie differently
def test_aspect_grid_properties(n, native):
    h, w = grid_for_tokens_aspect(n, native)
    if n == 0:
        assert (h, w) == (0, 0)
        return
    H, W = native
    assert 1 <= h * w <= n  # never over the frame's token count
    ideal_h, ideal_w = math.sqrt(n * H / W), math.sqrt(n * W / H)
    if ideal_h < 1 or ideal_w < 1:  # too few tokens for even one full row (column): one line of n
        assert (h, w) == ((1, n) if ideal_h < 1 else (n, 1))
        return
    # each side stays within two of its ideal length
    assert abs(h - ideal_h) < 2 and abs(w - ideal_w) < 2
    # at least as many cells as any rounding of the ideal sides that fits in n
    rounded = [(a, b) for a in {math.floor(ideal_h), math.ceil(ideal_h)}
               for b in {math.floor(ideal_w), math.ceil(ideal_w)} if a * b <= n]
    assert h * w >= max(a * b for a, b in rounded)
    # and more tokens never give a smaller grid
    smaller = grid_for_tokens_aspect(n - 1, native)
    assert smaller[0] * smaller[1] <= h * w
    # the transposed frame gets the transposed grid, unless the two orientations tie
    th, tw = grid_for_tokens_aspect(n, (W, H))
    assert th * tw == h * w
    if H != W:
        assert (th, tw) == (w, h)
    # a scaled native grid at its own token count is reproduced exactly
    for k in (1, 2, 3):
        assert grid_for_tokens_aspect(k * k * H * W, native) == (k * H, k * W)


@settings(max_examples=150, deadline=None)
@given(scores_st, budget_st, native_st, st.booleans(), st.sampled_from(["paper", "exact"]))
@example([0.0, 0.0] + [1.0] * 22 + [3.98e-84], 192, (4, 17), False, "exact")  # zero weights once got leftovers
@example([1.0, 0.5, 0.5, 0.75, 0.625, 0.96875], 253, (9, 28), False, "paper")  # 74 tokens once gave 4x16 < 5x14
@example([1.0, 1.0, 7.69e-110, 1.22e-108], 19, (3, 13), False, "exact")  # leftover ties once favoured a lower weight
def test_aspect_allocation_properties(scores, budget, native, cap, mode):
    weights = frame_weights(scores)
    grids = allocate_grids(weights, budget=budget, native=native, cap=cap, mode=mode, shape="aspect")
    square = allocate_grids(weights, budget=budget, native=native, cap=cap, mode=mode)
    assert len(grids) == len(scores)
    assert token_count(grids) <= budget
    assert [g == (0, 0) for g in grids] == [g == (0, 0) for g in square] or mode == "exact"
    if cap or mode == "exact":
        assert all(h <= native[0] and w <= native[1] for h, w in grids)
    higher_weight = weights[:, None] > weights[None, :]
    sizes = np.array([h * w for h, w in grids])
    assert np.all(sizes[:, None] >= sizes[None, :], where=higher_weight)


@pytest.mark.parametrize("native", [(9, 16), (12, 16), (16, 9), (3, 4), (27, 27), (13, 23)])
@pytest.mark.parametrize("frames", [1, 8, 96])
def test_aspect_uniform_at_native_count_gives_the_native_grid(native, frames):
    budget = frames * native[0] * native[1]
    grids = allocate_grids(frame_weights([0.5] * frames), budget=budget, native=native, shape="aspect")
    assert grids == [native] * frames


def test_aspect_uses_the_budget_better_on_wide_frames():
    """Skewed scores, 96 frames of a 13x23 native grid (Qwen at 640x360), the paper's budget."""
    rng = np.random.default_rng(0)
    w = frame_weights(rng.beta(0.5, 2.0, 96))
    square = allocate_grids(w, budget=12544, native=(13, 23), cap=True)
    aspect = allocate_grids(w, budget=12544, native=(13, 23), cap=True, shape="aspect")
    assert token_count(aspect) >= token_count(square)
    assert all(h <= w_ for h, w_ in (g for g in aspect if g[0]))  # wide frames get wide grids


def test_bad_shape_raises():
    with pytest.raises(ValueError):
        allocate_grids([1.0], shape="round")


# ---------------------------------------------------------------- resizing
def _features(t=6, h=7, w=7, c=5, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(t, h, w, c, generator=g).to(dtype)


GRIDS = [(3, 3), (0, 0), (7, 7), (9, 8), (1, 1), (3, 3)]


def _reference_loop(x, grids):
    out = []
    for i, (h, w) in enumerate(grids):
        if h * w == 0:
            continue
        frame = x[i].permute(2, 0, 1).unsqueeze(0)
        out.append(F.interpolate(frame, size=(h, w), mode="bilinear", align_corners=False)[0].permute(1, 2, 0))
    return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("workers", [1, 2])
def test_bilinear_is_bit_identical_to_per_frame_interpolate(dtype, workers):
    x = _features(dtype=dtype)
    ours = resize_frames(x, GRIDS, "bilinear", num_workers=workers)
    ref = _reference_loop(x, GRIDS)
    assert len(ours) == 5
    for a, b, (h, w) in zip(ours, ref, [g for g in GRIDS if g[0]]):
        assert a.shape == (h, w, 5) and a.dtype == dtype
        assert torch.equal(a, b)


def test_bilinear_on_contiguous_channels_first_input_matches_too():
    x = _features(c=16)
    # a [T, H, W, C] view of a channels-first tensor: still bit-identical
    y = x.permute(0, 3, 1, 2).contiguous().permute(0, 2, 3, 1)
    for a, b in zip(resize_frames(y, GRIDS), _reference_loop(x, GRIDS)):
        assert torch.equal(a, b)


def test_adaptive_pool_matches_torch():
    x = _features()
    grids = [(3, 3), (0, 0), (7, 7), (2, 1), (1, 1), (4, 3)]
    out = resize_frames(x, grids, "adaptive_pool")
    kept = [i for i, g in enumerate(grids) if g[0]]
    for o, i in zip(out, kept):
        ref = F.adaptive_avg_pool2d(x[i].permute(2, 0, 1), grids[i]).permute(1, 2, 0)
        assert torch.equal(o, ref)


def test_linspace_picks_evenly_spaced_tokens():
    x = _features(t=2)
    out = resize_frames(x, [(3, 2), (1, 1)], "linspace")
    assert out[0].shape == (6, 5) and out[1].shape == (1, 5)
    flat = x[0].reshape(49, 5)
    expected = flat[[0, 9, 19, 28, 38, 48]]
    assert torch.equal(out[0], expected)
    assert linspace_positions(49, 49).tolist() == list(range(49))


def test_merge_returns_target_count_and_preserves_mass():
    x = _features(t=1, h=6, w=6, c=8)[0].reshape(36, 8)
    for target in (36, 35, 20, 9, 1):
        merged = merge_tokens(x, target)
        assert merged.shape == (target, 8)
    one = merge_tokens(x, 1)
    torch.testing.assert_close(one[0], x.mean(0), rtol=1e-5, atol=1e-6)
    assert torch.equal(merge_tokens(x, 36), x)


def test_merge_joins_duplicates_first():
    base = torch.eye(4)
    # A = positions 0, 2, 4 and B = 1, 3, 5: the pairs (0, 1) and (4, 5) point the same way
    x = torch.stack([base[0], base[0] * 2, base[1], base[2], base[3], base[3]])
    merged = merge_tokens(x, 4)
    assert merged.shape == (4, 4)
    # the two identical-direction pairs were merged; the distinct ones survive untouched
    assert any(torch.allclose(m, base[0] * 1.5) for m in merged)
    assert any(torch.allclose(m, base[3]) for m in merged)
    assert any(torch.allclose(m, base[1]) for m in merged)
    assert any(torch.allclose(m, base[2]) for m in merged)
    # order of first appearance: the merged (0, 1) pair comes first
    assert torch.allclose(merged[0], base[0] * 1.5)


def test_merge_cannot_grow():
    with pytest.raises(BudgetError):
        resize_frames(_features(t=1), [(8, 8)], "merge")


def test_resize_rejects_mismatched_inputs():
    with pytest.raises(BudgetError):
        resize_frames(_features(t=3), [(1, 1)])
    with pytest.raises(BudgetError):
        resize_frames(torch.zeros(3, 4, 5), [(1, 1)] * 3)
    with pytest.raises(ValueError):
        resize_frames(_features(t=1), [(1, 1)], "nearest")


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 12), st.integers(0, 12)), min_size=1, max_size=8))
def test_resize_output_shapes_in_frame_order(raw):
    grids = [(h, w) if h and w else (0, 0) for h, w in raw]
    x = _features(t=len(grids), h=6, w=6, c=3)
    out = resize_frames(x, grids)
    kept = [g for g in grids if g[0]]
    assert [tuple(o.shape) for o in out] == [(h, w, 3) for h, w in kept]


# ---------------------------------------------------------------- counting
def test_token_count_policies():
    grids = [(14, 14), (0, 0), (3, 2)]
    assert token_count(grids) == 196 + 6
    assert token_count(grids, "row") == 196 + 6 + 14 + 3
    assert token_count(grids, "frame") == 196 + 6 + 2
    assert token_count(grids, "video") == 196 + 6 + 1
    assert token_count([(0, 0)], "video") == 0
    with pytest.raises(ValueError):
        token_count(grids, "page")


def test_token_count_of_a_plan_uses_its_newline_policy():
    from quota.types import Plan

    grids = [(14, 14), (0, 0), (5, 4)]
    plan = Plan(indices=[0, 1, 2], timestamps=[0.0, 1.0, 2.0], scores=[1.0, 0.0, 0.5], weights=[0.6, 0.0, 0.4],
                grids=grids, budget=300, native=(27, 27), newline="row")
    assert token_count(plan) == 196 + 20 + 14 + 5 == plan.positions
    assert plan.visual_tokens == plan.tokens == 216 and plan.newline_tokens == 19
    assert token_count(plan, "video") == 217 and token_count(plan, "none") == 216
    assert token_count(grids) == 216  # a bare list has no policy: features only
    video = Plan.from_json(plan.to_json().replace('"row"', '"video"'))
    assert video.newline == "video" and video.newline_tokens == 1 and token_count(video) == 217
    with pytest.raises(ValueError):
        Plan(indices=[0], timestamps=[0.0], scores=[1.0], weights=[1.0], grids=[(1, 1)], budget=1,
             native=(1, 1), newline="auto")


def test_paper_budget_is_64_pooled_frames():
    assert token_count([(14, 14)] * 64) == 12544 == 64 * math.ceil(27 / 2) ** 2
