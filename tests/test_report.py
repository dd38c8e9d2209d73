"""quota.report: a Plan drawn as a PNG picture and as a self-contained HTML page."""

from __future__ import annotations

import base64
import html
import io
import re
import warnings

import matplotlib
import matplotlib.text
import numpy as np
import pytest
from PIL import Image

from quota.assign import allocate_grids, frame_weights
from quota.errors import ConfigError, FramesError
from quota import report
from quota.report import (RunInfo, font_families, frame_positions, render_html, render_png, save_report,
                          score_limits, top_frames)
from quota.testing.videos import frame_pattern
from quota.types import Clue, Frames, Plan

HOSTILE = "<script>alert('pwned')</script> & \"quotes\" $x^2$ costs $5 {braces} \\frac"


def _plan(n: int = 24, budget: int = 300, duration: float = 120.0, seed: int = 0, **kw) -> Plan:
    rng = np.random.default_rng(seed)
    times = (np.arange(n) + 0.5) * duration / n
    scores = np.clip(0.05 + 0.9 * np.exp(-((times - duration / 3) / (duration / 12)) ** 2)
                     + rng.uniform(0, 0.05, n), 0, 1)
    weights = frame_weights(scores)
    grids = [tuple(int(x) for x in g) for g in allocate_grids(weights, budget=budget, native=(14, 14))]
    args = dict(indices=list(range(0, 10 * n, 10)), timestamps=times, scores=scores, weights=weights,
                grids=grids, budget=budget, native=(14, 14), duration=duration,
                clue=Clue(("red ball", "dog"), "The question is about a ball and a dog.", "entity", "q"),
                video="/videos/park.mp4", question="Where does the dog take the red ball?")
    args.update(kw)
    return Plan(**args)


def _frames(plan: Plan, size=(64, 48)) -> Frames:
    pixels = np.stack([frame_pattern(i % 1000, *size) for i in range(len(plan.indices))])
    return Frames(pixels=pixels, indices=plan.indices, timestamps=plan.timestamps, duration=plan.duration, fps=10)


def _png(data: bytes) -> Image.Image:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


def _data_images(text: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)]


def test_png_with_and_without_thumbnails(tmp_path):
    plan = _plan()
    frames = _frames(plan)
    path = tmp_path / "sub" / "plan.png"
    data = render_png(plan, frames, path)
    assert path.read_bytes() == data
    img = _png(data)
    assert img.format == "PNG" and 1000 <= img.width <= 1600 and 500 <= img.height <= 1400
    plain = _png(render_png(plan))
    assert plain.width == img.width and plain.height < img.height  # the thumbnail row adds height
    # some of the picture is the frames' own colours: the red top-left marker of the test pattern
    rgb = np.asarray(img.convert("RGB")).reshape(-1, 3).astype(int)
    assert ((rgb[:, 0] > 200) & (rgb[:, 1] < 40) & (rgb[:, 2] < 40)).sum() > 200
    rgb_plain = np.asarray(plain.convert("RGB")).reshape(-1, 3).astype(int)
    assert ((rgb_plain[:, 0] > 200) & (rgb_plain[:, 1] < 40) & (rgb_plain[:, 2] < 40)).sum() == 0


def test_html_is_self_contained_and_escaped(tmp_path):
    clue = Clue(("<b>bold</b>", "a & b"), "<img src=x onerror=alert(1)>", "entity", HOSTILE)
    plan = _plan(question=HOSTILE, clue=clue,
                 video="/v/<evil>.mp4", timings={"<i>s</i>": 1.0})
    frames = _frames(plan)
    path = tmp_path / "plan.html"
    text = render_html(plan, frames, path)
    assert path.read_text(encoding="utf-8") == text
    assert text.startswith("<!DOCTYPE html>")
    # nothing hostile survives unescaped; the escaped form is there
    for raw in ("<script>", "<b>bold</b>", "<img src=x", "<evil>", "<i>s</i>"):
        assert raw not in text
    assert html.escape(HOSTILE, quote=True) in text
    assert "&lt;b&gt;bold&lt;/b&gt;" in text and "a &amp; b" in text
    # no external resources: every src/href is a data URI
    assert not re.search(r'(src|href)="(?!data:)', text)
    images = _data_images(text)
    assert len(images) >= 2  # the chart plus thumbnails
    for data in images:
        _png(data)
    # one table row per sampled frame, dropped frames marked
    assert text.count("<tr") == len(plan.indices) + 2  # header + rows + footer
    assert text.count('class="dropped"') == len(plan.indices) - len(plan.keep)
    assert f"<th>{plan.tokens:,}</th>" in text
    # the picture draws the same text literally (no math parsing of "$", no error)
    _png(render_png(plan, frames))


def test_html_without_frames_has_only_the_chart():
    plan = _plan()
    text = render_html(plan)
    assert len(_data_images(text)) == 1
    assert "Frames with the most tokens" not in text


def test_all_dropped_single_frame_and_empty_plans(tmp_path):
    dropped = Plan(indices=[0, 5, 10], timestamps=[0.0, 0.5, 1.0], scores=[0.0, 0.0, 0.0], weights=[1 / 3] * 3,
                   grids=[(0, 0)] * 3, budget=2, native=(14, 14), duration=1.2, question="q?")
    single = Plan(indices=[0], timestamps=[0.0], scores=[0.7], weights=[1.0], grids=[(14, 14)], budget=196,
                  native=(14, 14), duration=0.0, question="only one?")
    empty = Plan(indices=[], timestamps=[], scores=[], weights=[], grids=[], budget=10, native=(14, 14))
    for name, plan in [("dropped", dropped), ("single", single), ("empty", empty)]:
        frames = _frames(plan) if plan.indices else None
        png = save_report(plan, tmp_path / f"{name}.png", frames=frames)
        assert _png(png.read_bytes()).width >= 1000
        page = save_report(plan, tmp_path / f"{name}.html", frames=frames).read_text(encoding="utf-8")
        assert len(_data_images(page)) >= 1
    assert top_frames(dropped, 8) == []


def test_top_frames_and_frame_matching():
    plan = _plan()
    tokens = [h * w for h, w in plan.grids]
    top = top_frames(plan, 3)
    assert top == sorted(top) and len(top) == 3
    assert min(tokens[p] for p in top) >= max(t for i, t in enumerate(tokens) if i not in top)
    assert top_frames(plan, 0) == []
    frames = _frames(plan)
    assert frame_positions(plan, frames) == {i: i for i in range(len(plan.indices))}
    # frames covering only some of the plan, in another order: matched by frame number
    sub = frames.select([5, 2])
    assert frame_positions(plan, sub) == {2: 1, 5: 0}
    assert frame_positions(plan, None) == {}
    with pytest.raises(FramesError):
        frame_positions(plan, np.zeros((1, 4, 4, 3), np.uint8))


def test_save_report_rejects_unknown_suffix(tmp_path):
    with pytest.raises(ConfigError, match=r"\.png or \.html"):
        save_report(_plan(), tmp_path / "plan.pdf")


# ---------------------------------------------------------------------------------------------------------
# What the report says besides the plan; text shown once; scales; fonts
# ---------------------------------------------------------------------------------------------------------

CJK_QUESTION = "视频里的狗把红色的球带到哪里去了？"


def _info(**kw) -> RunInfo:
    args = dict(answer="B. The dog drops it by the <bench>.", choice="B", options=("A. lake", "B. bench", "C. car"),
                base="/models/tiny-llava", scorer="uniform", preset="paper",
                timings={"decode": 0.25, "decouple": 1.5, "score": 2.0, "generate": 3.25, "total": 7.0})
    args.update(kw)
    return RunInfo(**args)


def _figure_texts(fig) -> list[str]:
    return [t.get_text() for t in fig.findobj(matplotlib.text.Text)]


def test_html_holds_answer_options_models_and_timings():
    plan = _plan()
    text = render_html(plan, _frames(plan), info=_info())
    assert "A: B. The dog drops it by the &lt;bench&gt;." in text  # the text starts with the letter already
    assert "A: (C) by the car" in render_html(plan, info=_info(answer="by the car", choice="C"))
    assert '<li class="chosen">B. bench</li>' in text and "<li>A. lake</li>" in text
    assert "base /models/tiny-llava · scorer uniform · preset paper" in text
    assert "decode 0.25 s · decouple 1.50 s · score 2.00 s · generate 3.25 s · total 7.00 s" in text
    # a plan-only report says so; a report without info says nothing about an answer
    assert "no answer was asked for" in render_html(plan, info=_info(answer=None, choice=None, options=()))
    assert "no answer was asked for" not in render_html(plan)


def test_question_and_stats_appear_once_in_the_page():
    plan = _plan(question="Where does the zebra go?")
    text = render_html(plan, _frames(plan), info=_info())
    body = text.split("</head>", 1)[1]
    assert body.count("Where does the zebra go?") == 1
    assert body.count("sampled frames kept") == 1
    # the page's chart carries no header of its own; the PNG keeps it
    assert not any("zebra" in t for t in _figure_texts(report._figure(plan, None, 0, header=False)))
    png_texts = _figure_texts(report._figure(plan, None, 0, info=_info()))
    assert any("zebra" in t for t in png_texts) and any("total 7.00 s" in t for t in png_texts)
    assert any(t.startswith("A: B. The dog") for t in png_texts)


def test_scores_have_one_precision_everywhere():
    plan = _plan()
    text = render_html(plan, _frames(plan))
    captions = re.findall(r"score (\d+\.\d+)</figcaption>", text)
    cells = re.findall(r"<td>(\d\.\d+)</td><td>0\.\d{4}</td>", text)
    assert captions and len(cells) == len(plan.indices)
    assert {len(c.split(".")[1]) for c in captions + cells} == {3}
    assert set(captions) <= set(cells)


def test_score_axis_fits_small_scores():
    assert score_limits([0.1, 0.9]) == pytest.approx((-0.04, 1.06))  # spread: the whole scale
    lo, hi = score_limits([0.001, 0.004, 0.002])
    assert lo < 0.001 and hi > 0.004 and hi - lo < 0.01  # fitted: the shape is visible
    lo, hi = score_limits([0.5, 0.5])
    assert lo < 0.5 < hi
    assert score_limits([]) == pytest.approx((-0.04, 1.06))
    small = _plan(scores=np.linspace(0.001, 0.004, 24))
    fig = report._figure(small, None, 0)
    score_ax = next(ax for ax in fig.axes if ax.get_ylabel() == "relevance score")
    bottom, top = score_ax.get_ylim()
    assert top - bottom < 0.01


def _glyph_warnings(families: list[str], plan: Plan) -> list[str]:
    with matplotlib.rc_context({"font.family": families}), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fig = report._figure(plan, None, 0, info=_info(answer="狗把球带到了长椅旁边。"))
        fig.canvas.draw()
    return [str(w.message) for w in caught if "missing" in str(w.message).lower()]


def test_cjk_text_is_drawn_with_a_font_that_has_its_glyphs():
    families = list(font_families())
    if not set(families) - {"DejaVu Sans", "Noto Sans", "sans-serif"}:
        pytest.skip("no CJK font installed here (Debian: fonts-wqy-zenhei or fonts-noto-cjk; .ci/run installs one)")
    from matplotlib import font_manager
    from matplotlib.ft2font import FT2Font

    def covered(char: str) -> bool:
        for family in families:
            path = font_manager.findfont(font_manager.FontProperties(family=family), fallback_to_default=False)
            if FT2Font(path).get_char_index(ord(char)):
                return True
        return False

    assert all(covered(c) for c in CJK_QUESTION if not c.isspace())
    plan = _plan(question=CJK_QUESTION, clue=Clue(("狗", "红色的球"), "", "entity", CJK_QUESTION))
    assert _glyph_warnings(families, plan) == []
    # control: with the default font alone the same text has missing glyphs (boxes)
    assert _glyph_warnings(["DejaVu Sans"], plan)
    _png(render_png(plan, _frames(plan), info=_info()))
