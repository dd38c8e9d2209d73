"""The adapter contract, run over every base-model family (transformers' habit: one suite, a line per model).

For each tiny checkpoint and each conversation: uniform scores at the family's own grid give exactly the inputs of
the model's own path (same visual positions, logits within float rounding); a skewed plan puts exactly the planned
feature and newline tokens into the language model; the baseline holds T frames at the stock grid plus the
checkpoint's own newline layout. A new family is covered by one line in ADAPTER_FIXTURES.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from quota.assign import allocate_grids, frame_weights, newline_count, resize_frames
from quota.models import ADAPTERS, load_adapter
from quota.types import Frames

#: One tiny checkpoint per family (and per newline layout of the LLaVA family).
ADAPTER_FIXTURES = ["tiny_llava_ov", "tiny_llava_video", "tiny_qwen2_vl", "tiny_qwen2_5_vl"]
_LOADED: dict[str, object] = {}


@pytest.fixture(params=ADAPTER_FIXTURES)
def adapter(request):
    if request.param not in _LOADED:
        folder = request.getfixturevalue(request.param)
        _LOADED[request.param] = load_adapter(str(folder), device="cpu", dtype="float32")
    return _LOADED[request.param]


def _frames(t: int = 3, h: int = 84, w: int = 84, seed: int = 0) -> Frames:
    rng = np.random.default_rng(seed)
    return Frames.from_arrays(rng.integers(0, 256, (t, h, w, 3), dtype=np.uint8), fps=2.0)


def test_every_model_type_of_the_adapter_table_has_a_fixture(request):
    """A family added to ``quota.models.ADAPTERS`` without a line in ADAPTER_FIXTURES fails here."""
    from quota.models.loading import model_type_of

    covered = {model_type_of(str(request.getfixturevalue(name))) for name in ADAPTER_FIXTURES}
    assert set(ADAPTERS) <= covered


@pytest.mark.parametrize("chat", ["paper", "model"])
def test_uniform_plan_at_the_stock_grid_is_the_stock_path(adapter, chat):
    frames = _frames()
    grid = adapter.stock_grid(frames)
    n = grid[0] * grid[1]
    grids = allocate_grids(frame_weights([0.5] * len(frames)), budget=len(frames) * n,
                           native=adapter.native_grid(frames), shape=adapter.resolve_grid_shape("auto"))
    assert grids == [grid] * len(frames)
    labels = [f"{t:.2f}s" for t in frames.timestamps]
    conversation = adapter.resolve_chat(chat)
    ours = adapter.build_inputs("What is shown?", resize_frames(adapter.encode(frames), grids), grids,
                                newline=adapter.stock_newline, frame_labels=labels, chat=conversation)
    stock = adapter.stock_inputs(frames, "What is shown?", frame_labels=labels, chat=conversation)
    assert ours.visual_tokens == stock.visual_tokens == len(frames) * n + newline_count(grids, adapter.stock_newline)
    a, b = adapter.logits(ours), adapter.logits(stock)
    assert a.shape == b.shape
    torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


def test_a_skewed_plan_puts_exactly_the_planned_tokens_into_the_model(adapter):
    frames = _frames(t=5)
    native = adapter.native_grid(frames)
    grids = allocate_grids(frame_weights([0.9, 0.05, 0.0, 0.4, 0.7]), budget=native[0] * native[1] * 2,
                           native=native, shape=adapter.resolve_grid_shape("auto"))
    kept = [g for g in grids if g[0]]
    assert 0 < len(kept) < 5 and len(set(kept)) > 1  # a frame dropped, grids of different sizes
    newline = adapter.resolve_newline("auto")
    inputs = adapter.build_inputs("Q?", resize_frames(adapter.encode(frames), grids), kept, newline=newline)
    assert inputs.visual_tokens == sum(h * w for h, w in kept) + newline_count(kept, newline)
    assert adapter.logits(inputs).shape[1] >= inputs.visual_tokens


def test_the_baseline_holds_every_frame_at_the_stock_grid_with_the_checkpoints_newlines(adapter):
    """T frames at the stock grid (Qwen's video path merges pairs of frames: T/2 steps), newlines as trained."""
    frames = _frames(t=4)
    grid = adapter.stock_grid(frames)
    newline = adapter.resolve_newline("auto")
    steps = -(-4 // adapter.baseline_temporal_patch)
    assert adapter.baseline_temporal_patch == (2 if adapter.family.startswith("qwen") else 1)
    inputs = adapter.baseline_inputs(frames, "Q?")
    assert inputs.visual_tokens == steps * grid[0] * grid[1] + newline_count([grid] * steps, newline)
