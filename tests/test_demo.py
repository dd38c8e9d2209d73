"""``quota demo`` without a browser: the session that runs the page's questions, the page's pieces of
HTML, and the subcommand's option checks. The page itself is tested in Chromium (test_demo_browser.py)."""

from __future__ import annotations

import html
import re
import threading
from pathlib import Path

import pytest

from quota.cli import build_parser, main
from quota.demo.app import answer_html, error_line, status_html, video_choices
from quota.demo.session import AnswerSoFar, STAGES, DemoResult, DemoSession, Stage, parse_budget, parse_options
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
    progress = [e.progress for e in events if isinstance(e, Stage)]
    assert progress == sorted(progress)
    result = events[-1]
    # the answer streamed: growing texts, the last of which is the answer
    so_far = [e.text for e in events if isinstance(e, AnswerSoFar)]
    assert all(b.startswith(a) for a, b in zip(so_far, so_far[1:]))
    assert (so_far[-1].strip() if so_far else "") == result.answer.text
    assert isinstance(result, DemoResult) and result.options == ["A. a grid", "B. a cat"]
    plan = result.plan
    assert len(plan.indices) == 6 and plan.tokens <= plan.budget == 30
    # the frames are the plan's sampled frames, not the baseline's
    assert result.frames is not None and list(result.frames.indices) == plan.indices
    assert result.baseline is not None and result.baseline.plan is None
    assert Plan.from_json(result.plan_path.read_text(encoding="utf-8")) == plan
    page = result.report_path.read_text(encoding="utf-8")
    shown = re.sub(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]", "", " ".join(result.answer.text.split()))  # no controls
    assert html.escape(shown or "(empty answer)") in page
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


def test_stop_ends_a_run_at_its_next_stage_and_frees_the_models(session, clip):
    from quota.demo.session import RunStopped

    run = session.stages(str(clip), "What is first?")
    assert isinstance(next(run), Stage)
    session.stop()
    with pytest.raises(RunStopped):
        list(run)
    assert session.run(str(clip), "And now?").answer is not None  # the next run is not held up


def test_warnings_of_a_damaged_video_come_with_the_result_under_the_users_name(session, tmp_path):
    from quota.testing.videos import truncate_file

    full = make_video(tmp_path / "full.mkv", n_frames=80, fps=10, size=(96, 72), gop=10)
    (tmp_path / "upload-1234abcd").mkdir()
    damaged = truncate_file(full, tmp_path / "upload-1234abcd" / "damaged.mkv", 0.5)
    result = session.run(str(damaged), "What is shown?", name="holiday.mkv")
    assert result.warnings and all(str(damaged) not in w for w in result.warnings)
    assert result.warnings[0].startswith("holiday.mkv: the file says the video lasts 8.00s")
    assert result.plan.video == "holiday.mkv"
    page = result.report_path.read_text(encoding="utf-8")
    assert "holiday.mkv: the file says the video lasts 8.00s" in page and str(damaged) not in page
    again = session.run(str(damaged), "Anything else?", name="holiday.mkv")  # the cached frames warn no more
    assert again.warnings == result.warnings


def test_the_budget_is_checked_per_request_as_the_command_line_does(session, clip, capsys):
    from quota.errors import BudgetError

    with pytest.raises(BudgetError) as info:
        session.run(str(clip), "q?", budget=3)  # below one token for each of the 6 frames
    capsys.readouterr()
    assert main(["plan", str(clip), "q?", "--scorer", "uniform", "--frames", "6", "--budget", "3"]) == 2
    assert error_line(info.value) == capsys.readouterr().err.strip()
    with pytest.raises(BudgetError, match="use at most"):
        session.run(str(clip), "q?", budget=10**7)
    with pytest.raises(ConfigError, match="labelled C"):
        session.run(str(clip), "q?", "C. x\nA. y")


def test_the_page_names_no_server_path(tmp_path, tiny_llava_ov):
    from quota.demo.app import public_text
    from quota.demo.session import public_model_name

    path = str(tmp_path / ("0f" * 16) / "clip.mp4")
    exc = VideoDecodeError(f"{path} cannot be opened as a video (Invalid data)", path)
    assert error_line(exc, {path: "clip.mp4"}) == "quota: error: clip.mp4 cannot be opened as a video (Invalid data)"
    assert public_text("a /x/y/z and /x/y", {"/x/y": "Y", "/x/y/z": "Z"}) == "a Z and Y"
    assert public_model_name(str(tiny_llava_ov)) == tiny_llava_ov.name
    assert public_model_name("llava-hf/LLaVA-Video-7B-Qwen2-hf") == "llava-hf/LLaVA-Video-7B-Qwen2-hf"


def test_the_list_offers_only_videos_inside_the_folder(tmp_path):
    folder, outside = tmp_path / "videos", tmp_path / "elsewhere"
    folder.mkdir()
    outside.mkdir()
    (outside / "other.mp4").write_bytes(b"x")
    (folder / "clip.mp4").write_bytes(b"x")
    (folder / ".hidden.mp4").write_bytes(b"x")
    (folder / "away.mp4").symlink_to(outside / "other.mp4")  # leads out of the folder
    (folder / "here.mp4").symlink_to(folder / "clip.mp4")
    (folder / "gone.mp4").symlink_to(folder / "missing.mp4")
    assert video_choices(folder) == ["clip.mp4", "here.mp4"]


def test_a_closed_page_leaves_no_files(tmp_path, monkeypatch):
    from quota.demo.app import Visitors

    cache = tmp_path / "gradio"
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(cache))
    upload = cache / "ab12" / "clip.mp4"
    upload.parent.mkdir(parents=True)
    upload.write_bytes(b"x")
    run = tmp_path / "runs" / "run-0001"
    run.mkdir(parents=True)
    (run / "plan.json").write_text("{}")
    (run / "report.html").write_text("<html>")
    visitors = Visitors(cache / "served", keep_runs=False)
    visitors.add("v1", upload)
    result = type("R", (), {"plan_path": run / "plan.json", "report_path": run / "report.html"})()
    plan, report = visitors.serve("v1", result)
    assert Path(plan).read_text() == "{}" and Path(plan).parent.parent == cache / "served"
    visitors.forget("v1")
    assert not upload.parent.exists() and not run.exists() and not Path(plan).parent.exists()
    visitors.forget("never-seen")  # nothing to do


def test_baseline_box_says_what_the_model_was_shown():
    frames = type("F", (), {"__len__": lambda self: 8})()
    shown = answer_html("baseline", Answer(text="B", choice="B", frames=frames), (13, 13))
    assert "8 frames, 1,352 visual tokens (13×13 each" in shown


def test_a_run_abandoned_by_the_page_lets_go_of_the_models(session, clip):
    from quota.demo.app import in_worker

    events = in_worker(lambda: session.stages(str(clip), "What is first?"))
    assert isinstance(next(events), Stage)
    kept = events  # the page's handler is cancelled: nobody asks for the next event, nobody closes it
    session.stop()
    assert session.run(str(clip), "And the next question?").answer is not None  # not held by the abandoned run
    del kept
