"""Colour conversion of decoded frames (``decode_colors``): by default the pixels of decord's
``VideoReader.get_batch``, the decoder of the paper's reference code, on BT.709-tagged and untagged
H.264; ``bt601`` keeps quota's earlier conversion, which ignores the tags."""

from __future__ import annotations

import warnings

import av
import numpy as np
import pytest

from quota import QuoTA
from quota.config import DECODE_COLORS, QuotaConfig, get_config
from quota.errors import ConfigError
from quota.scoring import UniformScorer
from quota.testing import videos as tv
from quota.video import DecodeStats, clear_cache, load_frames

#: make_video's colour option -> (pixel format, AVColorSpace, AVColorRange) the decoder reports.
KINDS = {
    "bt709": ("yuv420p", 1, 1),  # BT.709 matrix, primaries and transfer; limited (tv) range: HD camera files
    None: ("yuv420p", 2, 0),  # no tags at all
    "bt709-full": ("yuvj420p", 1, 2),  # BT.709, full (pc) range
}
PICKS = [0, 3, 4]  # a seek, then the next frame (B-frames in between)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("colors")
    return {kind: tv.make_video(root / f"{kind or 'untagged'}.mp4", n_frames=6, fps=10, size=(1280, 720),
                                gop=3, bframes=2, color=kind)
            for kind in KINDS}


@pytest.fixture(autouse=True)
def _fresh_index_cache():
    clear_cache()
    yield
    clear_cache()


def _decord_batch(path, indices, **size):
    decord = pytest.importorskip("decord")
    return decord.VideoReader(str(path), ctx=decord.cpu(0), **size).get_batch(list(indices)).asnumpy()


@pytest.mark.parametrize("kind", list(KINDS))
def test_made_files_carry_the_tags(videos, kind):
    with av.open(str(videos[kind])) as container:
        frame = next(container.decode(video=0))
    assert (frame.format.name, int(frame.colorspace), int(frame.color_range)) == KINDS[kind]


@pytest.mark.parametrize("kind", list(KINDS))
def test_default_colors_equal_decord_get_batch(videos, kind):
    frames = load_frames(videos[kind], indices=PICKS)
    assert frames.pixels.shape == (3, 720, 1280, 3)
    expected = _decord_batch(videos[kind], PICKS)
    assert np.array_equal(frames.pixels, expected)


@pytest.mark.parametrize("kind", ["bt709", "bt709-full"])
def test_default_colors_follow_the_tags_and_bt601_ignores_them(videos, kind):
    default = load_frames(videos[kind], indices=PICKS)
    old = load_frames(videos[kind], indices=PICKS, colors="bt601")
    assert tv.frame_numbers(default.pixels) == tv.frame_numbers(old.pixels) == PICKS
    # The pictures were stored as BT.709: read so, the coloured corner cells come back within a few levels;
    # read as BT.601 they are off by about 23 levels.
    assert max(tv.marker_error(p) for p in default.pixels) < 6
    assert max(tv.marker_error(p) for p in old.pixels) > 15
    assert np.abs(default.pixels.astype(int) - old.pixels).max() > 15


def test_untagged_files_convert_the_same_either_way(videos):
    default = load_frames(videos[None], indices=PICKS)
    assert np.array_equal(default.pixels, load_frames(videos[None], indices=PICKS, colors="bt601").pixels)


def test_scaled_frames_keep_the_colour_matrix(videos):
    """Scaled while decoding: the colours are still decord's (BT.709 here), the scaling is ours (area)."""
    default = load_frames(videos["bt709"], indices=PICKS, max_side=320)
    old = load_frames(videos["bt709"], indices=PICKS, max_side=320, colors="bt601")
    assert default.pixels.shape == (3, 180, 320, 3)
    assert max(tv.marker_error(p) for p in default.pixels) < 6 < 15 < max(tv.marker_error(p) for p in old.pixels)


def test_decord_backend_only_for_decord_colors(videos):
    path = videos["bt709"]
    stats = DecodeStats()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        old = load_frames(path, indices=PICKS, backend="decord", colors="bt601", stats=stats)
    assert stats.backend != "decord"  # read with PyAV, the tags ignored as asked
    assert any("bt601" in str(w.message) for w in caught)
    assert np.array_equal(old.pixels, load_frames(path, indices=PICKS, colors="bt601").pixels)
    pytest.importorskip("decord")
    stats = DecodeStats()
    same = load_frames(path, indices=PICKS, backend="decord", stats=stats)
    assert stats.backend == "decord"
    assert np.array_equal(same.pixels, load_frames(path, indices=PICKS).pixels)


def test_the_setting_reaches_the_pipeline(videos):
    assert QuotaConfig().decode_colors == "decord" and DECODE_COLORS == ("decord", "bt601")
    assert get_config("paper").decode_options()["colors"] == "decord"
    path = videos["bt709"]
    for colors in DECODE_COLORS:
        config = get_config("paper", decode_colors=colors, base_frames=3)
        got = QuoTA(None, UniformScorer(), config, quiet=True).load_video(path)
        want = load_frames(path, colors=colors, **config.decode_limits(), **config.sampling)
        assert np.array_equal(got.pixels, want.pixels)


@pytest.mark.parametrize("part", [False, True], ids=["whole video", "part of a video"])
def test_quota_eval_reads_with_the_setting(videos, part):
    from quota.eval.benchmarks import Sample
    from quota.eval.pipeline_answer import PipelineAnswer

    path = str(videos["bt709"])
    start, end = (0.0, 0.4) if part else (None, None)
    sample = Sample(id="q", video=path, question="q?", options=["a", "b"], answer="A", start=start, end=end)
    pixels = {}
    for colors in DECODE_COLORS:
        qa = QuoTA(None, UniformScorer(), get_config("paper", decode_colors=colors, base_frames=3), quiet=True)
        pixels[colors] = PipelineAnswer(qa)._read(sample).pixels
    assert np.abs(pixels["decord"].astype(int) - pixels["bt601"].astype(int)).max() > 15


def test_unknown_colors_are_config_errors(videos):
    with pytest.raises(ConfigError, match="colour"):
        load_frames(videos[None], n=2, colors="bt2020")
    with pytest.raises(ConfigError, match="decode_colors"):
        QuotaConfig(decode_colors="tagged")
