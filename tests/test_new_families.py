"""What the newer base families add beyond the adapter contract (tests/test_adapter_contract.py): their own frame
time texts, Qwen3-VL's deepstack features travelling with resized frames, and ``quota ask`` on each family's tiny
checkpoint in QuoTA and baseline mode."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from quota.assign import resize_frames
from quota.cli import main
from quota.errors import BudgetError
from quota.models import load_adapter
from quota.testing.videos import make_video
from quota.types import Frames, Plan

#: Tiny checkpoints of the families added after Qwen2.5-VL.
NEW_FAMILIES = ["tiny_qwen3_vl", "tiny_smolvlm", "tiny_internvl", "tiny_glm4v"]
_LOADED: dict[str, object] = {}


def _adapter(request: pytest.FixtureRequest, fixture: str):
    if fixture not in _LOADED:
        _LOADED[fixture] = load_adapter(str(request.getfixturevalue(fixture)), device="cpu", dtype="float32")
    return _LOADED[fixture]


def _frames(t: int = 4, seed: int = 0) -> Frames:
    rng = np.random.default_rng(seed)
    return Frames.from_arrays(rng.integers(0, 256, (t, 84, 84, 3), dtype=np.uint8), fps=2.0)


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    return make_video(tmp_path_factory.mktemp("families") / "clip.mp4", n_frames=30, fps=10, size=(96, 72))


# ---------------------------------------------------------------------------------------------------------
# The tiny checkpoints
# ---------------------------------------------------------------------------------------------------------

#: fixture -> (model class, processor class) of the real family.
CLASSES = {"tiny_qwen3_vl": ("Qwen3VLForConditionalGeneration", "Qwen3VLProcessor"),
           "tiny_smolvlm": ("SmolVLMForConditionalGeneration", "SmolVLMProcessor"),
           "tiny_internvl": ("InternVLForConditionalGeneration", "InternVLProcessor"),
           "tiny_glm4v": ("Glm4vForConditionalGeneration", "Glm4vProcessor")}


@pytest.mark.parametrize("fixture", NEW_FAMILIES)
def test_tiny_checkpoint_is_the_real_family_at_toy_size(request, fixture):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    folder = request.getfixturevalue(fixture)
    processor, model = AutoProcessor.from_pretrained(folder), AutoModelForImageTextToText.from_pretrained(folder)
    assert (type(model).__name__, type(processor).__name__) == CLASSES[fixture]
    assert processor.video_processor is not None and (folder / "chat_template.jinja").is_file()
    assert sum(p.numel() for p in model.parameters()) < 2_000_000
    tokenizer = processor.tokenizer
    assert model.config.text_config.vocab_size == len(tokenizer)
    assert model.config.image_token_id == tokenizer.convert_tokens_to_ids(processor.image_token)
    for text in ("A", "B", " A", "Yes", "No"):  # the scorer reads these from one position
        assert len(tokenizer.encode(text, add_special_tokens=False)) == 1


# ---------------------------------------------------------------------------------------------------------
# Qwen3-VL
# ---------------------------------------------------------------------------------------------------------


def test_qwen3_vl_frames_carry_their_deepstack_levels_through_resizing(request):
    adapter = _adapter(request, "tiny_qwen3_vl")
    frames = _frames(3)
    feats = adapter.encode(frames)
    hidden = adapter.model.config.text_config.hidden_size
    assert adapter.levels == 2 and feats.shape == (3, 3, 3, hidden * 3)
    # the stacked levels are the model's own deepstack features of each frame as an image
    enc = adapter._process(frames.pixels[:1])
    own = adapter.model.model.get_image_features(enc["pixel_values"], enc["image_grid_thw"])
    torch.testing.assert_close(feats[0].reshape(9, -1)[:, hidden:2 * hidden], own.deepstack_features[0][0],
                               rtol=0, atol=1e-6)
    # a smaller grid: each level resized alone equals that level of the stacked resize
    grids = [(2, 2), (0, 0), (1, 3)]
    stacked = resize_frames(feats, grids)
    alone = resize_frames(feats[..., hidden:2 * hidden].contiguous(), grids)
    torch.testing.assert_close(stacked[1][..., hidden:2 * hidden], alone[1], rtol=0, atol=0)
    inputs = adapter.build_inputs("Q?", stacked, [(2, 2), (1, 3)])
    levels = inputs.kwargs["mm_encoder_outputs"]["image"].deepstack_features
    assert inputs.visual_tokens == 7 and [tuple(x.shape[0] for x in level) for level in levels] == [(4, 3), (4, 3)]
    # the deepstack levels change the answer: the same main features without them give other logits
    without = adapter.build_inputs("Q?", [s.clone() for s in stacked], [(2, 2), (1, 3)])
    without.kwargs["mm_encoder_outputs"]["image"].deepstack_features = [
        tuple(torch.zeros_like(x) for x in level) for level in levels]
    assert not torch.allclose(adapter.logits(inputs), adapter.logits(without), atol=1e-4)
    with pytest.raises(BudgetError, match="deepstack"):
        adapter.build_inputs("Q?", [s[..., :hidden] for s in stacked], [(2, 2), (1, 3)])


def test_qwen3_vl_time_texts_follow_its_video_path(request):
    adapter = _adapter(request, "tiny_qwen3_vl")
    assert adapter.frame_label(12.34) == "<12.3 seconds>"
    frames = _frames(4)  # 2 frames per second: times 0.0, 0.5, 1.0, 1.5
    baseline = adapter.baseline_inputs(frames, "Q?")
    # the video path: one time text per temporal pair, the pair's mean time
    assert "<0.2 seconds>" in adapter.tokenizer.decode(baseline.kwargs["input_ids"][0])
    assert "<1.2 seconds>" in adapter.tokenizer.decode(baseline.kwargs["input_ids"][0])
    ours = adapter.build_inputs("Q?", list(adapter.encode(frames)), [(3, 3)] * 4,
                                frame_labels=[adapter.frame_label(t) for t in frames.timestamps])
    assert "<1.5 seconds><|vision_start|>" in ours.prompt


# ---------------------------------------------------------------------------------------------------------
# The command line on every new family
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fixture", NEW_FAMILIES)
@pytest.mark.parametrize("mode", ["quota", "baseline"])
def test_quota_ask_runs_on_the_family(request, capsys, tmp_path, monkeypatch, video, fixture, mode):
    from quota.models.loading import model_type_of
    from quota.scoring import LVLM_FAMILIES

    folder = request.getfixturevalue(fixture)
    monkeypatch.chdir(tmp_path)
    scorer = "base" if model_type_of(str(folder)) in LVLM_FAMILIES else "uniform"  # the base scores where it can
    argv = ["ask", str(video), "What colour is the ball?", "--options", "A. red", "B. blue",
            "--base", str(folder), "--scorer", scorer, "--frames", "6", "--budget", "24",
            "--set", "max_new_tokens=3", "--set", "decouple_max_new_tokens=8", "--device", "cpu", "--json", "--quiet"]
    if mode == "baseline":
        argv += ["--baseline", "--set", "baseline_frames=4"]
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 0, err
    data = json.loads(out)
    assert isinstance(data["text"], str)
    if mode == "quota":
        plan = Plan.from_dict(data["plan"])
        assert plan.tokens <= plan.budget == 24 and len(plan.indices) == 6
        assert "score" in data["timings"] and "generate" in data["timings"]
    else:
        assert data["plan"] is None
