"""quota eval reads each video once per run, the next one while the models work (issue 21), and gives up
on a read that never returns (issue 18, row 5)."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest

import quota.video
from quota import QuoTA
from quota.errors import ConfigError
from quota.eval.benchmarks import Sample
from quota.eval.pipeline_answer import PipelineAnswer, VideoReadTimeoutError
from quota.eval.runner import run_benchmark
from quota.eval.store import RunStore
from quota.testing.videos import make_video

SMALL = dict(base_frames=8, budget=40, max_new_tokens=3, decouple_max_new_tokens=12, scorer_batch_size=4)


@pytest.fixture(scope="module")
def qa(tiny_llava_ov, tiny_qwen2_vl):
    return QuoTA.from_pretrained(str(tiny_llava_ov), scorer=str(tiny_qwen2_vl), device="cpu", quiet=True, **SMALL)


@pytest.fixture(scope="module")
def eight_videos(tmp_path_factory):
    """Eight videos with two to three questions each (21 questions)."""
    root = tmp_path_factory.mktemp("ahead")
    samples = []
    for v in range(8):
        path = make_video(root / f"v{v}.mp4", n_frames=20 + 2 * v, fps=10, size=(64, 48))
        for q in range(2 + v % 2 + (v == 0)):
            samples.append(Sample(id=f"{v}-{q}", video=str(path), question=f"What is shown {q}?",
                                  options=["x", "y"], answer="A", benchmark="videomme"))
    return samples


@pytest.fixture
def decoder_calls(monkeypatch):
    """Counts every call of the frame decoder (``quota.video.load_frames``), by video path, in any thread."""
    calls: Counter[str] = Counter()
    real = quota.video.load_frames

    def counting(path, *args, **kwargs):
        calls[str(path)] += 1
        return real(path, *args, **kwargs)

    monkeypatch.setattr(quota.video, "load_frames", counting)
    return calls


def test_each_video_is_decoded_once_with_read_ahead(tmp_path, qa, eight_videos, decoder_calls):
    assert len(eight_videos) == 21
    outcomes = {}
    for prefetch in (False, True):
        decoder_calls.clear()
        fn = PipelineAnswer(qa, prefetch=prefetch)
        store = RunStore(tmp_path / f"run{prefetch}", {"benchmark": "videomme"})
        summary = run_benchmark(eight_videos, fn, store, quiet=True)
        assert (summary.answered, summary.errors) == (21, 0)
        # 8 videos, 21 questions: one decode per video, counted at the decoder itself
        assert sorted(decoder_calls.values()) == [1] * 8, decoder_calls
        assert fn.stats.decodes == 8 and set(fn.reads.values()) == {1}
        outcomes[prefetch] = {r.sample_id: (r.prediction, r.choice, r.plan) for r in store.results()}
        store.close()
    assert outcomes[True] == outcomes[False]  # the same frames, so the same plans and answers


def test_the_next_video_is_read_while_the_current_one_is_answered(qa, eight_videos, decoder_calls):
    fn = PipelineAnswer(qa, prefetch=True)
    first, other = eight_videos[0], next(s for s in eight_videos if s.video != eight_videos[0].video)
    fn.prefetch(other)
    fn(first)  # answering the first video; the second one is read meanwhile
    deadline = time.monotonic() + 30
    while decoder_calls[other.video] == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert decoder_calls[other.video] == 1 and fn._ahead is not None and fn._ahead.future.done()
    timings = fn(other)[3]
    assert decoder_calls[other.video] == 1  # taken from the read ahead, not decoded again
    assert timings["decode"] < 0.5
    fn.close()
    assert fn._ahead is None and fn._frames is None  # nothing held after the run


def _hang_on(monkeypatch, name: str) -> threading.Event:
    """Make reading the video called ``name`` block until the returned event is set (a dead mount)."""
    release = threading.Event()
    real = quota.video.load_frames

    def maybe_hang(path, *args, **kwargs):
        if str(path).endswith(name):
            release.wait()
        return real(path, *args, **kwargs)

    monkeypatch.setattr(quota.video, "load_frames", maybe_hang)
    return release


def test_a_read_that_never_returns_is_an_error_row_and_the_run_goes_on(tmp_path, qa, eight_videos, monkeypatch):
    release = _hang_on(monkeypatch, "v1.mp4")
    samples = [s for s in eight_videos if s.video.endswith(("v0.mp4", "v1.mp4", "v2.mp4"))]
    fn = PipelineAnswer(qa, prefetch=True, read_timeout_s=1.5)
    store = RunStore(tmp_path / "run", {"benchmark": "videomme"})
    start = time.monotonic()
    summary = run_benchmark(samples, fn, store, quiet=True)
    took = time.monotonic() - start
    release.set()
    rows = {r.sample_id: r for r in store.results()}
    hung = [i for i in rows if i.startswith("1-")]
    assert len(hung) == 3 and all("VideoReadTimeoutError" in rows[i].error for i in hung)
    assert all(rows[i].error is None for i in rows if not i.startswith("1-"))
    assert (summary.answered, summary.errors) == (len(samples) - 3, 3)
    assert took < 60  # one timeout for the video's three questions, not three
    store.close()
    with pytest.raises(ConfigError):
        PipelineAnswer(qa, read_timeout_s=0)


def test_timeout_error_is_typed(qa, eight_videos, monkeypatch):
    release = _hang_on(monkeypatch, "v0.mp4")
    fn = PipelineAnswer(qa, read_timeout_s=0.3)
    with pytest.raises(VideoReadTimeoutError, match="--read-timeout") as info:
        fn(eight_videos[0])
    assert isinstance(info.value, TimeoutError)
    release.set()
