"""``quota demo`` without a browser: the session that runs the page's questions, the page's pieces of
HTML, and the subcommand's option checks. The page itself is tested in Chromium (test_demo_browser.py)."""

from __future__ import annotations

import html
import threading
from pathlib import Path

import pytest

from quota.cli import build_parser, main
from quota.demo.app import answer_html, error_line, status_html, video_choices
from quota.demo.session import STAGES, DemoResult, DemoSession, Stage, parse_budget, parse_options
from quota.errors import ConfigError, VideoDecodeError
from quota.testing.videos import make_video
from quota.types import Answer, Plan


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_video(tmp_path_factory.mktemp("demo") / "clip.mp4", n_frames=30, fps=10, size=(96, 72))


@pytest.fixture(scope="module")
def session(tiny_llava_ov, tmp_path_factory) -> DemoSession:
    from quota.pipeline import QuoTA

    qa = QuoTA.from_pretrained(base=str(tiny_llava_ov), scorer="uniform", device="cpu", quiet=True, base_frames=6,
                               budget=30, max_new_tokens=4)
    return DemoSession(qa, tmp_path_factory.mktemp("runs"), base=str(tiny_llava_ov), preset="paper")


def test_a_run_goes_through_the_stages_and_writes_plan_and_report(session, clip):
    events = list(session.stages(str(clip), "What is shown?", "A. a grid\nB. a cat\n\n", baseline=True))
    stages = [e.name for e in events if isinstance(e, Stage)]
    assert stages == [name for name, _ in STAGES]
    assert [e.progress for e in events if isinstance(e, Stage)] == sorted(e.progress for e in events[:-1])
    result = events[-1]
    assert isinstance(result, DemoResult) and result.options == ["A. a grid", "B. a cat"]
    plan = result.plan
    assert len(plan.indices) == 6 and plan.tokens <= plan.budget == 30
    # the frames are the plan's sampled frames, not the baseline's
    assert result.frames is not None and list(result.frames.indices) == plan.indices
    assert result.baseline is not None and result.baseline.plan is None
    assert Plan.from_json(result.plan_path.read_text(encoding="utf-8")) == plan
    page = result.report_path.read_text(encoding="utf-8")
    assert html.escape(" ".join(result.answer.text.split()) or "(empty answer)") in page
    assert "<li>A. a grid</li>" in page or '<li class="chosen">A. a grid</li>' in page
    for stage in ("decode", "decouple", "score", "encode", "generate", "total"):
        assert result.answer.timings[stage] >= 0.0
    assert result.settings["budget"] == 30 and result.settings["scorer"] == "uniform"


def test_a_second_question_reuses_the_frames_and_a_budget_change_keeps_them(session, clip):
    first = session.run(str(clip), "What is shown?")
    second = session.run(str(clip), "Which corner is red?")
    assert second.frames is first.frames  # decoded once
    assert "encode" in second.answer.reused  # the visual features too
    other = session.run(str(clip), "Which corner is red?", budget=60)
    assert other.plan.budget == 60 and other.frames is first.frames
    assert session.qa.config.budget == 30  # the loaded settings are not changed
    assert session.run(str(clip), "What is shown?", budget="").plan.budget == 30


def test_bad_input_gives_the_command_lines_message_and_the_session_still_answers(session, clip, tmp_path, capsys):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(bytes(range(256)) * 8)
    cases = [
        (VideoDecodeError, dict(video=str(broken), question="q?"), ["plan", str(broken), "q?"]),
        (ConfigError, dict(video=str(clip), question="  "), ["plan", str(clip), "  "]),
        (ConfigError, dict(video=str(clip), question="q?", budget=0), ["plan", str(clip), "q?", "--budget", "0"]),
    ]
    for error, kwargs, argv in cases:
        with pytest.raises(error) as info:
            session.run(**kwargs)
        capsys.readouterr()
        assert main([*argv, "--scorer", "uniform"]) == 2
        assert error_line(info.value) == capsys.readouterr().err.strip()
    with pytest.raises(ConfigError, match="no video"):
        session.run(None, "q?")
    with pytest.raises(ConfigError, match="integer"):
        session.run(str(clip), "q?", budget=12.5)
    assert session.run(str(clip), "still there?").answer.plan is not None


def test_page_pieces():
    assert parse_options("A. x\n\n  B.   y  \n") == ["A. x", "B. y"] and parse_options(None) == []
    assert parse_budget(None) is None and parse_budget(" ") is None and parse_budget(64.0) == 64
    with pytest.raises(ConfigError):
        parse_budget("many")
    # every text is escaped; the chosen letter is marked
    shown = answer_html("QuoTA", Answer(text="<b>B</b> & more", choice="B"))
    assert "&lt;b&gt;B&lt;/b&gt; &amp; more" in shown and 'data-choice="B"' in shown and "<b>" not in shown
    assert "not asked for" in answer_html("baseline", None)
    assert status_html("<x>", "error", 3) == '<p class="quota-error" data-request="3">&lt;x&gt;</p>'
    assert error_line(RuntimeError("boom\nbang")) == "quota: error: internal error (RuntimeError): boom bang"


def test_video_choices_lists_only_videos(tmp_path):
    for name in ("b.mp4", "a.MKV", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub.mp4").mkdir()
    assert video_choices(tmp_path) == ["a.MKV", "b.mp4"]
    assert video_choices(None) == []


def test_demo_command_options(capsys, tmp_path):
    args = build_parser().parse_args(["demo", "--scorer", "uniform"])
    assert (args.host, args.port, args.share) == ("127.0.0.1", 7860, False)  # local, no public link
    assert main(["demo", "--port", "0", "--scorer", "uniform"]) == 2
    assert "--port 0" in capsys.readouterr().err
    assert main(["demo", "--videos", str(tmp_path / "nope"), "--scorer", "uniform"]) == 2
    assert "not a folder" in capsys.readouterr().err


def test_runs_take_turns(session, clip):
    first = session.stages(str(clip), "What is first?")
    assert isinstance(next(first), Stage)  # the first run holds the models from its first stage on
    done = threading.Event()
    second = threading.Thread(target=lambda: (session.run(str(clip), "What is second?"), done.set()))
    second.start()
    try:
        assert not done.wait(1.0)  # the second run waits for the first
        assert isinstance(list(first)[-1], DemoResult)
        assert done.wait(60)
    finally:
        second.join(60)
