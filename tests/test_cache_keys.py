"""The pipeline's caches miss whenever what they hold would differ: each key is made from the settings that declare
the stage they feed (``QuotaConfig`` field metadata), plus the video's identity, the question and its options, and
the scorer's identity. Every setting of a cached stage is changed here on its own and must miss."""

from __future__ import annotations

import pytest

from quota import QuoTA
from quota.config import STAGES, field_names, settings_for
from quota.testing.videos import make_video

from test_config_path import CHANGES, FAST

QUESTION = "Where is the ball?"


@pytest.fixture(scope="module")
def qa(tiny_qwen2_vl):
    return QuoTA.from_pretrained(str(tiny_qwen2_vl), scorer="base", device="cpu", quiet=True, **FAST)


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return make_video(tmp_path_factory.mktemp("keys") / "clip.mp4", n_frames=30, fps=10, size=(64, 48))


def test_every_setting_declares_the_stages_it_feeds():
    declared = {name for stage in STAGES for name in settings_for(stage)}
    assert declared == set(field_names())


@pytest.mark.parametrize("stage, name", [(stage, name) for stage in ("frames", "decouple", "score")
                                         for name in settings_for(stage) if name != "scorer"])
def test_changing_a_setting_misses_the_cache_of_its_stage(qa, video, stage, name):
    qa.plan(video, QUESTION, ["A. red", "B. blue"])
    again = qa.plan(video, QUESTION, ["A. red", "B. blue"])
    assert {"decode", "decouple", "score"} <= set(again.reused)
    other = qa.with_config(**{name: CHANGES[name]}).plan(video, QUESTION, ["A. red", "B. blue"])
    missed = {"frames": "decode", "decouple": "decouple", "score": "score"}[stage]
    assert missed not in other.reused


def test_other_options_miss_the_clue_and_the_scores(qa, video):
    calls: list[str] = []
    real = qa.decoupler.generate_text

    def counting(prompt, **kwargs):
        calls.append(prompt)
        return real(prompt, **kwargs)

    qa.decoupler.generate_text = counting
    try:
        qa.plan(video, QUESTION, ["A. red", "B. blue"])
        qa.plan(video, QUESTION, ["A. red", "B. blue"])
        assert len(calls) <= 1  # cached (or cached by an earlier test)
        n = len(calls)
        other = qa.plan(video, QUESTION, ["A. red", "B. green"])
    finally:
        qa.decoupler.generate_text = real
    assert len(calls) == n + 1 and "green" in calls[-1] and "decouple" not in other.reused
    assert "score" not in other.reused  # the paper's no-object frame question quotes the options


def test_other_video_bytes_miss_every_stage(qa, tmp_path):
    path = make_video(tmp_path / "v.mp4", n_frames=30, fps=10, size=(64, 48))
    first = qa.plan(path, QUESTION)
    assert "decode" in qa.plan(path, QUESTION).reused
    make_video(path, n_frames=20, fps=10, size=(64, 48))  # the same path, other content
    second = qa.plan(path, QUESTION)
    assert "decode" not in second.reused and "score" not in second.reused
    assert second.frames.indices.tolist() != first.frames.indices.tolist()
