"""Token assignment: the pure math of QuoTA (no models, no I/O).

Three steps turn per-frame relevance scores into per-frame visual features:

1. :func:`frame_weights`: scores in [0, 1] -> weights that sum to 1, ``w_i ∝ (scale·s_i)^power``.
2. :func:`allocate_grids`: weights and a token budget -> one token grid ``(h, w)`` per frame, near-square
   (the paper's rule, :func:`grid_for_tokens`) or in the native grid's aspect ratio
   (:func:`grid_for_tokens_aspect`, for models whose native grid is not square: Qwen2-VL / Qwen2.5-VL).
3. :func:`resize_frames`: native-grid features ``[T, H, W, C]`` -> one resized tensor per kept frame.

:func:`token_count` (:mod:`quota.tokens`, re-exported here) says how many tokens the language model then sees,
newline tokens included.
"""

from __future__ import annotations

import functools
import heapq
import math
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .config import ALLOCATION_MODES, GRID_SHAPE_RULES, RESIZE_METHODS
from .errors import BudgetError, ConfigError
from .tokens import Grid, newline_count, token_count

DROPPED: Grid = (0, 0)

#: The paper's total budget: 64 frames × 196 tokens (LLaVA-Video's pooled 14×14 grid).
PAPER_BUDGET = 12544
#: LLaVA-Video / LLaVA-OneVision native grid (SigLIP-so400m-patch14-384: 27×27 patches).
LLAVA_NATIVE_GRID: Grid = (27, 27)

#: How a frame's token count becomes a grid: ``"square"`` (the paper) or ``"aspect"`` (the native grid's shape).
GRID_SHAPES = GRID_SHAPE_RULES


# --------------------------------------------------------------------------------------------
# 1. weights
# --------------------------------------------------------------------------------------------
def frame_weights(scores: Sequence[float] | np.ndarray, scale: float = 100.0, power: float = 2.0) -> np.ndarray:
    """Normalised frame weights ``w_i = (scale·s_i)^power / Σ_j (scale·s_j)^power``.

    Args:
        scores: ``[T]`` relevance scores, each in [0, 1].
        scale: multiplier applied before the power (paper: 100).
        power: exponent (paper: 2).

    Returns:
        float64 array ``[T]`` summing to 1. When every score is 0 (where the paper's code divides by
        zero), the weights are uniform, ``1/T`` each: with no evidence, no frame is preferred.

    Raises:
        BudgetError: empty scores, a NaN or infinite score, or a score outside [0, 1].
        ConfigError: a non-positive ``scale``/``power``.
    """
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if s.size == 0:
        raise BudgetError("frame_weights needs at least one score, got an empty list")
    if not np.all(np.isfinite(s)):
        raise BudgetError(f"scores must be finite numbers in [0, 1]; got NaN or infinity at positions "
                         f"{np.flatnonzero(~np.isfinite(s)).tolist()[:10]}")
    bad = np.flatnonzero((s < 0.0) | (s > 1.0))
    if bad.size:
        raise BudgetError(f"scores must lie in [0, 1]; position {int(bad[0])} holds {s[bad[0]]!r}")
    if not (scale > 0 and power > 0):
        raise ConfigError(f"scale and power must be positive, got scale={scale!r}, power={power!r}")
    if not np.any(s > 0):
        return np.full(s.size, 1.0 / s.size)
    raw = np.power(scale * s, power)
    total = raw.sum()
    if not (total > 0.0 and np.isfinite(total)):
        # Under- or overflow of the paper's formula with extreme scores: the same weights, computed
        # relative to the largest score (scale cancels out of the normalised ratio).
        raw = np.power(s / s.max(), power)
        total = raw.sum()
    return raw / total


# --------------------------------------------------------------------------------------------
# 2. grids
# --------------------------------------------------------------------------------------------
def grid_for_tokens(n: int) -> Grid:
    """The paper's near-square grid for ``n`` tokens: ``h = w = ⌊√n⌋``, then ``h += 1`` if it fits.

    ``n = 0`` gives :data:`DROPPED`. The grid never holds more than ``n`` tokens.
    """
    n = int(n)
    if n <= 0:
        return DROPPED
    side = math.isqrt(n)
    h, w = side, side
    if (h + 1) * w <= n:
        h += 1
    return h, w


def _next_grid(grid: Grid) -> Grid:
    """The next larger near-square grid: (0,0)→(1,1)→(2,1)→(2,2)→(3,2)→(3,3)→…"""
    h, w = grid
    if h == 0:
        return (1, 1)
    return (h + 1, w) if h == w else (h, w + 1)


def _ideal_side(n: int, num: int, den: int) -> tuple[int, int]:
    """Floor and ceiling of ``√(n·num/den)``, in exact integer arithmetic."""
    lo = math.isqrt(n * num // den)  # ⌊√⌊x⌋⌋ = ⌊√x⌋ for x ≥ 0
    hi = lo if lo * lo * den == n * num else lo + 1
    return lo, hi


def grid_for_tokens_aspect(n: int, native: Grid) -> Grid:
    """A grid of at most ``n`` tokens in the aspect ratio of ``native`` (as closely as integers allow).

    The ideal real grid has the native grid's aspect ratio and exactly ``m`` cells:
    ``h* = √(m·H/W)``, ``w* = √(m·W/H)``. Rounding each side down or up gives at most four grids; the
    rounding of ``m`` is the one with the most cells that still fits in ``m``, ties going to the smaller
    aspect-ratio error ``|ln(h/w) − ln(H/W)|``, then to the longer short side, then to fewer rows. The grid for ``n`` is the largest of
    the roundings of every ``m ≤ n`` (same tie rules), so more tokens never give a smaller grid (a frame
    with a higher weight never gets fewer tokens), each side stays close to its ideal length, and
    ``n = H·W`` gives the native grid itself. (When a side's ideal length is below 1, which needs
    ``n < W/H`` or ``n < H/W``, the grid is one row, or one column, of ``n`` tokens.)

    Args:
        n: tokens the frame may have (the paper's ``⌊budget·w_i⌋``); ``n ≤ 0`` gives :data:`DROPPED`.
        native: the model's native grid ``(H, W)`` of this frame, both positive.

    Returns:
        ``(h, w)`` with ``1 ≤ h·w ≤ n``, or ``(0, 0)``.
    """
    n = int(n)
    nh, nw = int(native[0]), int(native[1])
    if nh < 1 or nw < 1:
        raise BudgetError(f"native grid must be positive, got {native!r}")
    if n <= 0:
        return DROPPED
    return _largest_aspect_grid(n, nh, nw)


@functools.lru_cache(maxsize=1 << 16)
def _largest_aspect_grid(n: int, nh: int, nw: int) -> Grid:
    """The largest :func:`_aspect_rounding` of any ``m ≤ n``. Only ``m > n − h* − w*`` can win: the rounding
    of ``n`` itself has at least ``(h*−1)(w*−1) > n − h* − w*`` cells, more than any smaller ``m`` holds."""
    target = math.log(nh / nw)
    best = _aspect_rounding(n, nh, nw)
    best_key = _aspect_key(best, target)
    rows, cols = _ideal_side(n, nh, nw), _ideal_side(n, nw, nh)
    for m in range(n - 1, max(0, n - rows[1] - cols[1]), -1):
        grid = _aspect_rounding(m, nh, nw)
        key = _aspect_key(grid, target)
        if key < best_key:
            best, best_key = grid, key
    return best


def _aspect_rounding(n: int, nh: int, nw: int) -> Grid:
    """The rounding of the ideal ``n``-cell grid of aspect ``nh:nw`` (see :func:`grid_for_tokens_aspect`)."""
    rows, cols = _ideal_side(n, nh, nw), _ideal_side(n, nw, nh)
    if rows[1] <= 1 and rows[0] == 0:  # h* < 1: a single row of all n tokens
        return (1, n)
    if cols[1] <= 1 and cols[0] == 0:  # w* < 1: a single column
        return (n, 1)
    target = math.log(nh / nw)
    best: tuple[int, float, int, int] | None = None
    grid = (1, 1)
    for h in sorted(set(rows)):
        for w in sorted(set(cols)):
            if h * w > n or h < 1 or w < 1:
                continue
            key = _aspect_key((h, w), target)
            if best is None or key < best:
                best, grid = key, (h, w)
    return grid


def _aspect_key(grid: Grid, target: float) -> tuple[int, float, int, int]:
    """Order of preference among grids: more cells, then the smaller aspect error, then the longer short side
    (so a transposed frame gets the transposed grid), then fewer rows. The aspect error is rounded to 9 decimals:
    two grids mirrored about the target ratio (11×24 and 12×22 for 29:58) have the same error, which float
    rounding would otherwise break differently for the transposed frame."""
    h, w = grid
    return (-(h * w), round(abs(math.log(h / w) - target), 9), -min(h, w), h)


def grid_for(n: int, native: Grid, shape: str = "square") -> Grid:
    """The grid of ``n`` tokens by the rule ``shape`` (``"square"``: :func:`grid_for_tokens`, ``"aspect"``:
    :func:`grid_for_tokens_aspect`)."""
    if shape == "square":
        return grid_for_tokens(n)
    if shape == "aspect":
        return grid_for_tokens_aspect(n, native)
    raise ConfigError(f"shape={shape!r} is not one of {', '.join(GRID_SHAPES)}")


def _next_aspect_grid(grid: Grid, native: Grid) -> Grid:
    """The next larger grid of the aspect rule: the first token count above ``h·w`` whose grid is larger."""
    h, w = grid
    n = h * w + 1
    while True:
        nxt = grid_for_tokens_aspect(n, native)
        if nxt[0] * nxt[1] > h * w:
            return nxt
        n += 1


def _check_weights(weights: Sequence[float] | np.ndarray) -> np.ndarray:
    w = np.asarray(weights, dtype=np.float64).reshape(-1)
    if w.size == 0:
        raise BudgetError("allocate_grids needs at least one weight, got an empty list")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise BudgetError("weights must be finite and non-negative")
    total = w.sum()
    if total <= 0:
        raise BudgetError("weights sum to zero: at least one weight must be positive")
    return w / total


def _capped_targets(w: np.ndarray, budget: int, cap_tokens: int | None) -> np.ndarray:
    """Real-valued token targets ``budget·w_i``, water-filled under a per-frame cap.

    Frames whose share exceeds ``cap_tokens`` are fixed at the cap and the rest of the budget is
    shared by the other frames in proportion to their weights, repeated until no frame exceeds.

    Returns:
        targets ``[T]`` float64; capped frames hold exactly ``cap_tokens``.
    """
    capped = np.zeros(w.size, dtype=bool)
    targets = budget * w
    if cap_tokens is None:
        return targets
    while True:
        free = ~capped
        free_weight = w[free].sum()
        remaining = budget - cap_tokens * int(capped.sum())
        targets = np.where(capped, float(cap_tokens), 0.0)
        if free_weight > 0 and remaining > 0:
            targets[free] = remaining * w[free] / free_weight
        over = free & (targets > cap_tokens)
        if not over.any():
            return targets
        capped |= over


def allocate_grids(
    weights: Sequence[float] | np.ndarray,
    budget: int = PAPER_BUDGET,
    native: Grid = LLAVA_NATIVE_GRID,
    cap: bool = False,
    mode: str = "paper",
    shape: str = "square",
) -> list[Grid]:
    """One token grid ``(h, w)`` per frame for a total budget of visual tokens.

    Args:
        weights: ``[T]`` non-negative frame weights (normalised here if they do not sum to 1).
        budget: total visual tokens over all frames (paper: 12,544).
        native: the model's native feature grid ``(H, W)`` per frame.
        cap: ``mode="paper"`` only: when true, no frame gets more than ``H·W`` tokens; the excess is
            shared by the other frames in proportion to their weights until no frame exceeds the
            cap (the paper's code makes a single pass; this is exact). When false (the paper's
            bilinear setting) a grid may be larger than the native grid.
        mode: ``"paper"``: ``n_i = ⌊budget·w_i⌋`` tokens as :func:`grid_for_tokens` (frames with
            ``n_i = 0`` are dropped). ``"exact"`` (ours): the same capped targets, then what the
            floors and near-square grids leave unused is handed out, largest shortfall first, one
            grid step at a time, so the grids use as much of the budget as they can; never more
            than the budget, never more than the native token count per frame (``cap`` is implied).
        shape: how a frame's token count ``n_i`` becomes a grid: ``"square"`` (the paper's near-square
            grid, :func:`grid_for_tokens`) or ``"aspect"`` (the native grid's aspect ratio,
            :func:`grid_for_tokens_aspect`; with equal weights and ``budget = T·H·W`` every frame gets
            exactly its native grid). The token counts ``n_i`` are the same for both.

    Returns:
        ``[T]`` grids in frame order; :data:`DROPPED` ``(0, 0)`` for a frame with no tokens.

    Raises:
        BudgetError: bad weights, a budget below 1 or a non-positive native grid.
        ConfigError: an unknown mode or shape.
    """
    if mode not in ALLOCATION_MODES:
        raise ConfigError(f"mode={mode!r} is not one of {', '.join(ALLOCATION_MODES)}")
    if shape not in GRID_SHAPES:
        raise ConfigError(f"shape={shape!r} is not one of {', '.join(GRID_SHAPES)}")
    budget = int(budget)
    if budget < 1:
        raise BudgetError(f"budget must be at least 1 token, got {budget}")
    nh, nw = int(native[0]), int(native[1])
    if nh < 1 or nw < 1:
        raise BudgetError(f"native grid must be positive, got {native!r}")
    w = _check_weights(weights)
    native_tokens = nh * nw
    use_cap = cap or mode == "exact"
    targets = _capped_targets(w, budget, native_tokens if use_cap else None)

    counts = np.floor(targets).astype(np.int64)
    # Guard against float round-off pushing the floors over the budget (it needs sum(w) > 1).
    while counts.sum() > budget:
        counts[int(np.argmax(counts))] -= 1
    grids = [grid_for(int(n), (nh, nw), shape) for n in counts]
    if mode == "exact":
        grow = _next_grid if shape == "square" else (lambda g: _next_aspect_grid(g, (nh, nw)))
        grids = _fill_leftover(grids, targets, budget, native_tokens, grow)
    return grids


def _fill_leftover(grids: list[Grid], targets: np.ndarray, budget: int, native_tokens: int,
                   grow: Callable[[Grid], Grid] = _next_grid) -> list[Grid]:
    """Grow grids one step of their shape rule at a time, the frame furthest below its target first. A frame
    whose target is zero (its weight is zero) stays dropped, as in the paper's rule."""
    grids = list(grids)
    left = budget - sum(h * w for h, w in grids)
    # furthest below target first; on a tie, the frame with the larger target (a higher weight never loses)
    heap = [(-(targets[i] - h * w), -targets[i], i) for i, (h, w) in enumerate(grids) if targets[i] > 0]
    heapq.heapify(heap)
    while heap and left > 0:
        *_, i = heapq.heappop(heap)
        h, w = grids[i]
        nh, nw = grow((h, w))
        cost = nh * nw - h * w
        if nh * nw > native_tokens or cost > left:
            continue  # this frame cannot grow any more within the budget; others still may
        grids[i] = (nh, nw)
        left -= cost
        heapq.heappush(heap, (-(targets[i] - nh * nw), -targets[i], i))
    return grids


# --------------------------------------------------------------------------------------------
# 3. resizing features
# --------------------------------------------------------------------------------------------
def resize_frames(
    features: torch.Tensor,
    grids: Sequence[Grid],
    method: str = "bilinear",
    *,
    num_workers: int | None = None,
) -> list[torch.Tensor]:
    """Resize each frame's native-grid features to its grid.

    Args:
        features: ``[T, H, W, C]`` features on the native grid (any floating dtype, any device).
        grids: ``[T]`` grids from :func:`allocate_grids`; frames with ``(0, 0)`` are skipped.
        method:
            ``"bilinear"``: bit-for-bit what ``F.interpolate(mode="bilinear", align_corners=False)``
            gives frame by frame; returns ``[h, w, C]`` per frame.
            ``"adaptive_pool"``: adaptive average pooling to ``(h, w)``; returns ``[h, w, C]``.
            ``"linspace"``: ``h·w`` tokens picked at evenly spaced positions of the row-major
            token sequence (``linspace(0, H·W-1, h·w)`` truncated); returns ``[h·w, C]``.
            ``"merge"``: bipartite soft-matching token merging (size-weighted averages) down to
            ``h·w`` tokens, order of first appearance kept; returns ``[h·w, C]``. Cannot grow a
            frame: grids above ``H·W`` tokens raise :class:`~quota.errors.BudgetError`.
        num_workers: at most this many CPU threads run ``bilinear`` calls at once (default:
            ``torch.get_num_threads()``; 1 runs them on the calling thread). PyTorch runs a
            single-frame interpolation on one core; frames are spread over threads.

    Returns:
        One tensor per kept frame, in frame order, on the device and dtype of ``features``.
    """
    if not isinstance(features, torch.Tensor) or features.dim() != 4:
        shape = tuple(features.shape) if hasattr(features, "shape") else type(features).__name__
        raise BudgetError(f"features must be a tensor [T, H, W, C], got {shape}")
    if len(grids) != features.shape[0]:
        raise BudgetError(f"{len(grids)} grids for {features.shape[0]} frames of features")
    if method not in RESIZE_METHODS:
        raise ConfigError(f"method={method!r} is not one of {', '.join(RESIZE_METHODS)}")
    kept = [(i, (int(h), int(w))) for i, (h, w) in enumerate(grids) if int(h) * int(w) > 0]
    if method == "bilinear":
        return _resize_bilinear(features, kept, num_workers)
    if method == "adaptive_pool":
        nchw = features.permute(0, 3, 1, 2)
        return [F.adaptive_avg_pool2d(nchw[i : i + 1], (h, w))[0].permute(1, 2, 0) for i, (h, w) in kept]
    tokens = features.reshape(features.shape[0], -1, features.shape[-1])
    if method == "linspace":
        return [tokens[i, linspace_positions(tokens.shape[1], h * w, tokens.device)] for i, (h, w) in kept]
    return [merge_tokens(tokens[i], h * w) for i, (h, w) in kept]


def _equal_grid_runs(kept: list[tuple[int, Grid]]) -> list[tuple[int, int, Grid]]:
    """Split kept frames into runs of consecutive frame positions that share one grid.

    Returns ``(start, stop, grid)`` triples: frames ``start..stop-1`` all get ``grid``. A run is a
    plain slice of the features (a view), so resizing it as one batch copies nothing.
    """
    runs: list[tuple[int, int, Grid]] = []
    for i, grid in kept:
        if runs and runs[-1][1] == i and runs[-1][2] == grid:
            runs[-1] = (runs[-1][0], i + 1, grid)
        else:
            runs.append((i, i + 1, grid))
    return runs


_POOL: ThreadPoolExecutor | None = None


def _thread_pool() -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1), thread_name_prefix="quota-resize")
    return _POOL


def _resize_bilinear(features: torch.Tensor, kept: list[tuple[int, Grid]], num_workers: int | None) -> list[torch.Tensor]:
    """Bilinear resizing, bit-identical to one ``F.interpolate`` call per frame.

    Each output element of PyTorch's bilinear kernel depends only on its own frame, so batching
    frames or running calls on several threads changes no bit. Runs of neighbouring frames with
    the same grid go in one call (the kernel spreads a batch over cores); the calls themselves
    are spread over threads, since a single-frame call runs on one core.
    """
    nchw = features.permute(0, 3, 1, 2)  # a channels-last view: no copy

    def run(job: tuple[int, int, Grid]) -> list[torch.Tensor]:
        start, stop, grid = job
        out = F.interpolate(nchw[start:stop], size=grid, mode="bilinear", align_corners=False)
        return list(out.permute(0, 2, 3, 1).unbind(0))

    jobs = _equal_grid_runs(kept)
    workers = num_workers if num_workers is not None else torch.get_num_threads()
    workers = min(max(1, int(workers)), len(jobs))
    if features.device.type != "cpu" or workers <= 1:
        return [frame for job in jobs for frame in run(job)]

    # ``workers`` pool tasks, each running every workers-th job in turn: at most ``workers`` threads work.
    def run_share(first: int) -> list[tuple[int, list[torch.Tensor]]]:
        return [(k, run(jobs[k])) for k in range(first, len(jobs), workers)]

    done = dict(pair for share in _thread_pool().map(run_share, range(workers)) for pair in share)
    return [frame for k in range(len(jobs)) for frame in done[k]]


def linspace_positions(total: int, count: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """``count`` evenly spaced positions in ``[0, total)``: ``linspace(0, total-1, count)`` truncated."""
    if count == 1:
        return torch.zeros(1, dtype=torch.long, device=device)
    pos = np.linspace(0, total - 1, count).astype(np.int64)
    return torch.from_numpy(pos).to(device)


def merge_tokens(tokens: torch.Tensor, target: int) -> torch.Tensor:
    """Merge ``[N, C]`` tokens down to ``target`` by bipartite soft matching.

    Each round splits the current tokens into alternating sets A (even positions) and B (odd
    positions), matches every A token to its most similar B token (cosine similarity), and merges
    the ``r`` best-matched A tokens into their B partners as averages weighted by how many original
    tokens each already holds. Rounds repeat until ``target`` tokens remain. The survivors keep the
    order of their first original token.

    Returns:
        ``[target, C]`` in the dtype of ``tokens`` (computed in float32 or wider).

    Raises:
        BudgetError: ``target`` above ``N`` or below 1.
    """
    n, _ = tokens.shape
    if target > n or target < 1:
        raise BudgetError(
            f"token merging turns {n} tokens into fewer, not {target}; use cap=True (grids no larger "
            "than the native grid) with the merge method"
        )
    work_dtype = torch.promote_types(tokens.dtype, torch.float32)
    x = tokens.to(work_dtype)
    size = torch.ones(n, dtype=work_dtype, device=tokens.device)
    first = torch.arange(n, device=tokens.device)  # original position of each token's first member
    while x.shape[0] > target:
        a_idx = torch.arange(0, x.shape[0], 2, device=x.device)
        b_idx = torch.arange(1, x.shape[0], 2, device=x.device)
        r = min(x.shape[0] - target, a_idx.numel(), b_idx.numel())
        xa, xb = x[a_idx], x[b_idx]
        sim = F.normalize(xa, dim=-1) @ F.normalize(xb, dim=-1).T
        best_sim, best_b = sim.max(dim=-1)
        order = torch.argsort(best_sim, descending=True, stable=True)
        merged_a, kept_a = order[:r], order[r:]
        sa, sb = size[a_idx], size[b_idx]
        sum_b = (xb * sb[:, None]).index_add(0, best_b[merged_a], xa[merged_a] * sa[merged_a, None])
        size_b = sb.index_add(0, best_b[merged_a], sa[merged_a])
        xb_new = sum_b / size_b[:, None]
        first_b = first[b_idx].scatter_reduce(0, best_b[merged_a], first[a_idx][merged_a], reduce="amin")
        x = torch.cat([xa[kept_a], xb_new])
        size = torch.cat([sa[kept_a], size_b])
        first = torch.cat([first[a_idx][kept_a], first_b])
        resort = torch.argsort(first)
        x, size, first = x[resort], size[resort], first[resort]
    return x.to(tokens.dtype)


__all__ = [
    "frame_weights",
    "allocate_grids",
    "grid_for_tokens",
    "grid_for_tokens_aspect",
    "grid_for",
    "newline_count",
    "GRID_SHAPES",
    "resize_frames",
    "merge_tokens",
    "linspace_positions",
    "token_count",
    "PAPER_BUDGET",
    "LLAVA_NATIVE_GRID",
    "DROPPED",
]
