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


# ---------------------------------------------------------------- LLaVA-Video: one newline per grid row
@pytest.fixture(scope="module")
def llava_video(tiny_llava_video):
    return load_adapter(str(tiny_llava_video), device="cpu", dtype="float32")


class _Cfg:
    def __init__(self, **fields):
        self.__dict__.update(fields)


@pytest.mark.parametrize(
    ("model_id", "fields", "policy"),
    [
        ("llava-hf/LLaVA-Video-7B-Qwen2-hf", {}, "row"),
        ("llava-hf/LLaVA-Video-72B-Qwen2-hf", {}, "row"),
        ("/models/my_llava_video_ckpt", {}, "row"),
        ("llava-hf/llava-onevision-qwen2-7b-ov-hf", {}, "video"),
        ("llava-hf/LLaVA-NeXT-Video-7B-hf", {}, "video"),  # another family's name does not count
        ("/data/llava-video-runs/llava-onevision-qwen2-7b-ov-hf", {}, "video"),  # only the folder's own name
        ("some/converted-model", {"mm_newline_position": "grid"}, "row"),
        ("llava-hf/LLaVA-Video-7B-Qwen2-hf", {"mm_newline_position": "one_token"}, "video"),  # config wins
    ],
)
def test_llava_video_is_recognised_by_config_field_then_name(model_id, fields, policy):
    from quota.models.llava_onevision import newline_rule

    got, reason = newline_rule(model_id, _Cfg(**fields))
    assert got == policy and reason


def test_llava_video_folder_in_the_hub_cache_is_recognised(tmp_path, tiny_llava_ov):
    from quota.models.llava_onevision import newline_rule

    snapshot = tmp_path / "models--llava-hf--LLaVA-Video-7B-Qwen2-hf" / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    assert newline_rule(str(snapshot), _Cfg())[0] == "row"
    link = tmp_path / "current"
    link.symlink_to(snapshot)
    assert newline_rule(str(link), _Cfg())[0] == "row"


def test_tiny_checkpoints_resolve_auto_by_family(llava, llava_video):
    assert llava.resolve_newline("auto") == "video" and llava.variant == "llava_onevision"
    assert llava_video.resolve_newline("auto") == "row" and llava_video.variant == "llava_video"
    assert llava_video.resolve_newline("video") == "video"  # newline= overrides the rule
    assert llava_video.native_grid() == (27, 27) and llava_video.pooled_grid() == (14, 14)


def test_llava_video_skewed_plan_puts_rows_plus_newlines_into_the_language_model(llava_video):
    frames = _frames(t=8, h=72, w=128, seed=3)
    weights = frame_weights([0.95, 0.1, 0.0, 0.6, 0.3, 0.85, 0.02, 0.5])
    grids = allocate_grids(weights, budget=8 * 196, native=llava_video.native_grid())
    kept = [g for g in grids if g[0]]
    assert len(kept) < 8 and len(set(kept)) > 3  # skewed: a frame dropped, grids of many sizes
    inputs = llava_video.build_inputs("What happens?", resize_frames(llava_video.encode(frames), grids), kept)
    ids = inputs.extra["input_ids"]
    expected = sum(h * (w + 1) for h, w in kept)
    assert int((ids == llava_video.video_token_id).sum()) == inputs.visual_tokens == expected
    assert expected == token_count(grids, "row")
    embeds = inputs.kwargs["inputs_embeds"]
    assert embeds.shape[1] == ids.shape[1]  # the language model reads exactly this sequence
    # the last position of every row is the learned newline embedding
    visual = embeds[0, (ids[0] == llava_video.video_token_id)]
    newline = llava_video.model.model.image_newline
    ends, at = [], 0
    for h, w in kept:
        ends += [at + r * (w + 1) + w for r in range(h)]
        at += h * (w + 1)
    assert all(torch.equal(visual[i], newline) for i in ends)
    assert sum(torch.equal(v, newline) for v in visual) == len(ends)
    assert llava_video.logits(inputs).shape[1] == ids.shape[1]


def test_llava_video_baseline_pools_like_the_stock_video_path(llava_video):
    """The baseline's 14x14 frames are exactly the Hugging Face video path's pooled features."""
    frames = _frames(t=3, h=90, w=160, seed=4)
    ours = llava_video.pooled_features(frames)
    pixels = llava_video.processor.video_processor(videos=[frames.pixels], return_tensors="pt")["pixel_values_videos"]
    cfg = llava_video.model.config
    with torch.inference_mode():
        stock = llava_video.model.model.get_video_features(
            pixels, vision_feature_layer=cfg.vision_feature_layer,
            vision_feature_select_strategy=cfg.vision_feature_select_strategy,
        ).pooler_output
    assert stock.shape[1] == 3 * 196 + 1  # the Hugging Face path: one newline after the video
    torch.testing.assert_close(ours.reshape(1, -1, ours.shape[-1]), stock[:, :-1], rtol=0, atol=1e-6)
    inputs = llava_video.baseline_inputs(frames, "Q?")
    assert inputs.visual_tokens == 3 * 14 * 15
    hf = llava_video.baseline_inputs(frames, "Q?", newline="video")  # override: the stock call
    assert "pixel_values_videos" in hf.kwargs and hf.visual_tokens == 3 * 196 + 1


def test_llava_video_baseline_holds_64_frames_of_14_rows_plus_newlines(llava_video):
    frames = _frames(t=64, h=54, w=96, seed=5)
    inputs = llava_video.baseline_inputs(frames, "What happens?")
    ids = inputs.extra["input_ids"]
    assert int((ids == llava_video.video_token_id).sum()) == inputs.visual_tokens == 64 * 14 * 15
    with torch.inference_mode():
        out = llava_video.model(**inputs.kwargs, logits_to_keep=1)
    assert out.logits.shape[:2] == (1, 1)


# ---------------------------------------------------------------- Qwen: grids keep the frame's aspect ratio
@pytest.mark.parametrize(
    ("size", "native"),
    [((90, 160), (3, 5)), ((84, 112), (3, 4)), ((160, 90), (5, 3))],
    ids=["16:9", "4:3", "portrait-9:16"],
)
def test_qwen_uniform_native_count_reproduces_the_image_path_for_any_aspect(qwen, size, native):
    """The tiny processors' pixel limits (56² to 112²) give these merged grids; the paper's near-square rule
    would turn 15 tokens into 4x3 and 12 into 4x3."""
    frames = _frames(t=3, h=size[0], w=size[1], seed=6)
    assert qwen.native_grid(frames) == native
    assert qwen.resolve_grid_shape("auto") == "aspect"
    budget = 3 * native[0] * native[1]
    grids = allocate_grids(frame_weights([0.4] * 3), budget=budget, native=native, shape="aspect")
    assert grids == [native] * 3 and token_count(grids) == budget  # the whole budget used
    square = allocate_grids(frame_weights([0.4] * 3), budget=budget, native=native)
    assert square != grids  # the paper's near-square rule cannot give these grids
    labels = [f"{t:.2f}s" for t in frames.timestamps]
    ours = qwen.build_inputs("Q?", resize_frames(qwen.encode(frames), grids), grids, frame_labels=labels)
    stock = qwen.image_inputs(frames, "Q?", frame_labels=labels)
    assert torch.equal(ours.kwargs["input_ids"], stock.kwargs["input_ids"])
    assert torch.equal(ours.kwargs["image_grid_thw"], stock.kwargs["image_grid_thw"])
    a, b = qwen.logits(ours), qwen.logits(stock)
    assert a.dtype == torch.float32 and torch.equal(a, b)
