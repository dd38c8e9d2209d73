"""Base-model adapters on tiny real checkpoints: equivalence with the stock paths, token counts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from quota.assign import allocate_grids, frame_weights, resize_frames, token_count
from quota.errors import BudgetError, ModelNotFoundError, ProcessorNotFoundError, UnsupportedModelError
from quota.models import LlavaOnevisionAdapter, QwenVLAdapter, load_adapter
from quota.types import Frames


def _frames(t: int = 4, h: int = 84, w: int = 84, seed: int = 0) -> Frames:
    rng = np.random.default_rng(seed)
    return Frames.from_arrays(rng.integers(0, 256, (t, h, w, 3), dtype=np.uint8), fps=2.0)


@pytest.fixture(scope="module")
def llava(tiny_llava_ov):
    return load_adapter(str(tiny_llava_ov), device="cpu", dtype="float32")


@pytest.fixture(scope="module", params=["qwen2_vl", "qwen2_5_vl"])
def qwen(request, tiny_qwen2_vl, tiny_qwen2_5_vl):
    folder = tiny_qwen2_vl if request.param == "qwen2_vl" else tiny_qwen2_5_vl
    return load_adapter(str(folder), device="cpu", dtype="float32")


# ---------------------------------------------------------------- LLaVA-OneVision
def test_llava_adapter_is_picked_and_encodes_native_grid(llava):
    assert isinstance(llava, LlavaOnevisionAdapter)
    feats = llava.encode(_frames(t=3))
    assert feats.shape == (3, 6, 6, llava.model.config.text_config.hidden_size)
    assert llava.native_grid() == (6, 6) and llava.pooled_grid() == (3, 3)


def test_llava_uniform_plan_equals_stock_video_path(llava):
    """Uniform scores at T × pooled tokens: the same logits as the model's own video path."""
    frames = _frames(t=4, h=60, w=80)
    grids = allocate_grids(frame_weights([0.5] * 4), budget=4 * 9, native=llava.native_grid())
    assert grids == [(3, 3)] * 4
    ours = llava.build_inputs("What is shown?", resize_frames(llava.encode(frames), grids), grids)
    stock = llava.baseline_inputs(frames, "What is shown?")
    assert ours.visual_tokens == stock.visual_tokens == 4 * 9 + 1
    a, b = llava.logits(ours), llava.logits(stock)
    assert a.shape == b.shape
    torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


@pytest.mark.parametrize("newline", ["video", "row", "frame", "none"])
def test_llava_skewed_plan_has_exactly_the_planned_tokens(llava, newline):
    frames = _frames(t=5)
    grids = allocate_grids(frame_weights([0.9, 0.05, 0.0, 0.4, 0.7]), budget=60, native=(6, 6), cap=False)
    kept = [g for g in grids if g[0]]
    assert len(kept) < 5  # the plan dropped a frame
    feats = resize_frames(llava.encode(frames), grids)
    inputs = llava.build_inputs("Q?", feats, kept, newline=newline)
    ids = inputs.extra["input_ids"]
    assert int((ids == llava.video_token_id).sum()) == inputs.visual_tokens == token_count(grids, newline)
    assert llava.logits(inputs).shape[1] == ids.shape[1]


def test_llava_row_newlines_sit_after_each_row(llava):
    feats = [torch.randn(2, 3, llava.model.config.text_config.hidden_size)]
    seq = llava.visual_sequence(feats, [(2, 3)], "row")
    nl = llava.model.model.image_newline
    assert seq.shape[0] == 8
    assert torch.equal(seq[3], nl) and torch.equal(seq[7], nl)
    assert torch.equal(seq[:3], feats[0][0])


def test_llava_linspace_and_merge_features_fit_their_grids(llava):
    frames = _frames(t=3)
    grids = allocate_grids(frame_weights([1.0, 0.5, 0.2]), budget=40, native=(6, 6), cap=True)
    feats = llava.encode(frames)
    for method in ("adaptive_pool", "linspace", "merge"):
        resized = resize_frames(feats, grids, method)
        inputs = llava.build_inputs("Q?", resized, [g for g in grids if g[0]])
        assert inputs.visual_tokens == token_count(grids, "video")


def test_llava_mismatched_features_raise(llava):
    with pytest.raises(BudgetError):
        llava.build_inputs("Q?", [torch.zeros(4, 64)], [(3, 3)])
    with pytest.raises(BudgetError):
        llava.build_inputs("Q?", [], [])


def test_llava_generation_paths_run(llava):
    frames = _frames(t=2)
    grids = [(3, 3), (2, 2)]
    feats = resize_frames(llava.encode(frames), grids)
    assert isinstance(llava.generate("Q?", feats, grids, max_new_tokens=3), str)
    assert isinstance(llava.generate_baseline(frames, "Q?", max_new_tokens=3), str)
    assert isinstance(llava.generate_text("Name two fruits.", max_new_tokens=3), str)


# ---------------------------------------------------------------- Qwen2-VL / Qwen2.5-VL
def test_qwen_native_grid_is_the_merged_patch_grid(qwen):
    assert isinstance(qwen, QwenVLAdapter)
    frames = _frames(t=3, h=84, w=112)
    assert qwen.native_grid(frames) == (3, 4)
    assert qwen.encode(frames).shape == (3, 3, 4, qwen.model.config.text_config.hidden_size)


def test_qwen_uniform_native_plan_equals_stock_image_path(qwen):
    frames = _frames(t=3, h=84, w=84)
    grids = allocate_grids(frame_weights([1.0] * 3), budget=27, native=qwen.native_grid(frames))
    assert grids == [(3, 3)] * 3
    labels = [f"{t:.2f}s" for t in frames.timestamps]
    ours = qwen.build_inputs("Q?", resize_frames(qwen.encode(frames), grids), grids, frame_labels=labels)
    stock = qwen.image_inputs(frames, "Q?", frame_labels=labels)
    assert torch.equal(ours.kwargs["input_ids"], stock.kwargs["input_ids"])
    torch.testing.assert_close(qwen.logits(ours), qwen.logits(stock), rtol=0, atol=1e-5)


def test_qwen_grids_of_different_sizes_get_their_own_positions(qwen):
    frames = _frames(t=4)
    grids = [(3, 3), (0, 0), (4, 3), (1, 1)]
    kept = [g for g in grids if g[0]]
    inputs = qwen.build_inputs("Q?", resize_frames(qwen.encode(frames), grids), kept,
                               frame_labels=["a", "b", "c"])
    ids = inputs.kwargs["input_ids"]
    assert int((ids == qwen.image_token_id).sum()) == inputs.visual_tokens == token_count(grids)
    thw = inputs.kwargs["image_grid_thw"].tolist()
    assert thw == [[1, 6, 6], [1, 8, 6], [1, 2, 2]]
    pos, _ = qwen.model.model.get_rope_index(
        ids, mm_token_type_ids=inputs.kwargs["mm_token_type_ids"], image_grid_thw=inputs.kwargs["image_grid_thw"],
        attention_mask=inputs.kwargs["attention_mask"],
    )
    # the 4x3 frame's tokens span 4 distinct heights and 3 widths
    second = (ids[0] == qwen.image_token_id).nonzero().flatten()[9:21]
    assert len(set(pos[1, 0, second].tolist())) == 4 and len(set(pos[2, 0, second].tolist())) == 3
    out = qwen.generate("Q?", resize_frames(qwen.encode(frames), grids), kept, max_new_tokens=3)
    assert isinstance(out, str)


def test_qwen_rejects_newline_policies(qwen):
    with pytest.raises(BudgetError):
        qwen.build_inputs("Q?", [torch.zeros(1, 1, 64)], [(1, 1)], newline="row")


def test_qwen_baseline_video_path_runs(qwen):
    frames = _frames(t=4)
    inputs = qwen.baseline_inputs(frames, "Q?")
    assert "pixel_values_videos" in inputs.kwargs and inputs.visual_tokens == 2 * 9  # 4 frames in pairs
    assert isinstance(qwen.generate_baseline(frames, "Q?", max_new_tokens=2), str)


# ---------------------------------------------------------------- loading errors
def test_unknown_local_folder_raises(tmp_path):
    with pytest.raises(ModelNotFoundError):
        load_adapter(str(tmp_path / "nowhere"))


def test_unknown_hub_id_raises_offline():
    with pytest.raises(ModelNotFoundError):
        load_adapter("no-such-org/no-such-model-xyz")


def test_folder_without_processor_raises(tmp_path, tiny_llava_ov):
    import shutil

    folder = tmp_path / "weights-only"
    folder.mkdir()
    for name in ("config.json", "model.safetensors", "generation_config.json"):
        shutil.copy(tiny_llava_ov / name, folder / name)
    with pytest.raises(ProcessorNotFoundError):
        load_adapter(str(folder))


def test_unsupported_family_raises(tmp_path):
    import json

    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(UnsupportedModelError):
        load_adapter(str(tmp_path))
