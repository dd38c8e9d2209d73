"""A :class:`~quota.types.Plan` drawn for people.

Three views of one plan:

* the relevance score of every sampled frame over time (dropped frames drawn hollow);
* the tokens each frame got (bars; a dropped frame is a grey cross at 0);
* thumbnails of the frames with the most tokens, each with its time, grid and score, and the token grid
  drawn over the picture (only when the decoded :class:`~quota.types.Frames` are given).

:func:`render_png` makes one PNG picture of all three (matplotlib, Agg backend, no window and no global
pyplot state). :func:`render_html` makes one self-contained HTML file: the question, the answer and how
it was made (:class:`RunInfo`: options, models, preset, seconds per stage), the clue, the chart as an
inlined PNG, a strip of thumbnails, and a table of every frame. Every piece of text that comes from the
user or a model (question, objects, answer, reasoning, paths) is escaped. :func:`save_report` picks the
format from the file suffix. :func:`render_charts` and :func:`frame_strip_html` are the pieces the demo
page (:mod:`quota.demo`) shows.

Text in any script renders: the charts take each glyph from the first installed family of
:data:`FONT_FALLBACK` that has it (CJK questions no longer draw as boxes when a CJK font is installed).

Times are in seconds; "tokens" are visual feature tokens (``h * w`` per frame, no newline tokens).
"""

from __future__ import annotations

import base64
import html
import io
import logging
import os
import re
import textwrap
import warnings
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .errors import ConfigError, FramesError
from .types import Frames, Plan

#: Thumbnails shown in the PNG (the frames with the most tokens).
PNG_THUMBNAILS = 8
#: Thumbnails shown in the HTML strip.
HTML_THUMBNAILS = 16
#: Longest side of a thumbnail in the HTML strip, in pixels.
HTML_THUMB_SIDE = 192

_SCORE_COLOR = "#d95f02"
_TOKEN_COLOR = "#1b6ca8"
_DROP_COLOR = "#9a9a9a"
_TOP_COLOR = "#e7298a"

#: Font families for the charts, in order; matplotlib takes each glyph from the first that has it, so
#: Latin text keeps matplotlib's default and CJK text (questions, objects, answers) comes from a CJK font.
#: Families that are not installed are left out (:func:`font_families`). Debian: ``fonts-wqy-zenhei``
#: or ``fonts-noto-cjk``; emoji and symbols come last from Symbola (``fonts-symbola``, outlines matplotlib can
#: draw; colour-bitmap emoji fonts it cannot).
FONT_FALLBACK: tuple[str, ...] = (
    "DejaVu Sans",
    "Noto Sans CJK JP",
    "Noto Sans CJK SC",
    "Source Han Sans",
    "WenQuanYi Zen Hei",
    "WenQuanYi Micro Hei",
    "Droid Sans Fallback",
    "Noto Sans",
    "Symbola",
)
#: Font files of the families above, registered with matplotlib when its font cache predates them.
_FONT_FILES = ("wqy-zenhei.ttc", "wqy-microhei.ttc", "NotoSansCJK-Regular.ttc", "DroidSansFallbackFull.ttf",
               "Symbola_hint.ttf", "Symbola.ttf")

__all__ = ["render_png", "render_html", "save_report", "top_frames", "frame_positions", "frame_strip_html",
           "render_charts", "timings_text", "score_limits", "font_families", "RunInfo", "FONT_FALLBACK"]


@dataclass(frozen=True)
class RunInfo:
    """What a report tells besides the plan: the answer and how it was made (every field optional).

    Attributes:
        answer: the model's answer text; ``None`` when no answer was asked for (``quota plan``).
        choice: the option letter read from the answer.
        options: the multiple-choice options the question was asked with.
        base: the base model (id or folder).
        scorer: the frame scorer (id, folder, ``base`` or ``uniform``).
        preset: the preset name the settings started from.
        timings: seconds per stage (``decode``, ``decouple``, ``score``, ``encode``, ``generate``, ``total``).
        warnings: what reading the video said (a file cut short, frames that could not be decoded), one line each.
    """

    answer: str | None = None
    choice: str | None = None
    options: tuple[str, ...] = ()
    base: str | None = None
    scorer: str | None = None
    preset: str | None = None
    timings: Mapping[str, float] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()


# ---------------------------------------------------------------------------------------------------------
# Fonts
# ---------------------------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def font_families() -> tuple[str, ...]:
    """The families of :data:`FONT_FALLBACK` that matplotlib can use here, in order (at least one).

    A CJK font installed after matplotlib built its font cache is added to it first (by file name).
    """
    from matplotlib import font_manager

    known = {f.name for f in font_manager.fontManager.ttflist}
    if not all(name in known for name in ("Symbola",)) or not any(name in known for name in FONT_FALLBACK[1:-1]):
        try:
            paths = font_manager.findSystemFonts()
        except Exception:  # no font directories or fc-list trouble: keep what matplotlib has
            paths = []
        for path in paths:
            if os.path.basename(path) in _FONT_FILES:
                try:
                    font_manager.fontManager.addfont(path)
                except Exception:  # an unreadable font file: skip it
                    continue
        known = {f.name for f in font_manager.fontManager.ttflist}
    found = tuple(name for name in FONT_FALLBACK if name in known)
    return found or ("sans-serif",)


# ---------------------------------------------------------------------------------------------------------
# Pure helpers
# ---------------------------------------------------------------------------------------------------------


def _tokens(plan: Plan) -> list[int]:
    return [h * w for h, w in plan.grids]


def top_frames(plan: Plan, k: int) -> list[int]:
    """Positions (into ``plan``'s sampled frames) of the ``k`` kept frames with the most tokens.

    Ties go to the higher score, then the earlier frame. The result is in time order (position order),
    which reads better in a strip than rank order. Dropped frames are never chosen.
    """
    tokens = _tokens(plan)
    kept = [i for i, t in enumerate(tokens) if t > 0]
    ranked = sorted(kept, key=lambda i: (-tokens[i], -plan.scores[i], i))
    return sorted(ranked[: max(int(k), 0)])


def frame_positions(plan: Plan, frames: Frames | None) -> dict[int, int]:
    """Map plan position -> row of ``frames.pixels`` holding that frame.

    ``frames`` are normally the sampled frames in plan order (row ``i`` is plan position ``i``); any
    other :class:`Frames` is matched by file frame number, and plan frames it lacks get no thumbnail.

    Raises:
        FramesError: if ``frames`` is not a :class:`Frames`.
    """
    if frames is None:
        return {}
    if not isinstance(frames, Frames):
        raise FramesError(f"frames must be a quota.types.Frames, got {type(frames).__name__}")
    file_idx = [int(i) for i in frames.indices]
    if file_idx == list(plan.indices):
        return {i: i for i in range(len(plan.indices))}
    row_of = {f: r for r, f in enumerate(file_idx)}
    return {p: row_of[f] for p, f in enumerate(plan.indices) if f in row_of}


def _fmt_time(seconds: float) -> str:
    """``75.5`` -> ``1:15.5``; under a minute ``12.50s``."""
    if seconds < 60:
        return f"{seconds:.2f}s"
    minutes, sec = divmod(seconds, 60.0)
    if minutes < 60:
        return f"{int(minutes)}:{sec:04.1f}"
    hours, minutes = divmod(int(minutes), 60)
    return f"{hours}:{minutes:02d}:{sec:04.1f}"


def _objects_text(plan: Plan, info: RunInfo | None = None) -> str:
    clue = plan.clue
    if info is not None and info.scorer == "uniform":
        return "uniform scorer: no frame scored; every frame the same score and grid"
    if clue is None or clue.mode == "none":
        return "no query decoupling: frames scored against the question itself"
    if clue.objects is None:
        return "no specific objects: frames scored on whether they suffice to answer"
    label = "events" if clue.mode == "event" else "objects"
    return f"{label} looked for: " + ", ".join(clue.objects)


def _stats_text(plan: Plan) -> str:
    n = len(plan.indices)
    kept = len(plan.keep)
    used = plan.tokens
    share = f" ({100.0 * used / plan.budget:.1f}%)" if plan.budget > 0 else ""
    return (
        f"{kept} of {n} sampled frames kept · {used:,} of {plan.budget:,} tokens{share} · "
        f"native grid {plan.native[0]}×{plan.native[1]} · resize {plan.method} · video {_fmt_time(plan.duration)}"
    )


def _thumbnail(pixels: np.ndarray, grid: tuple[int, int], max_side: int | None) -> Any:
    """A PIL image of one frame (uint8 ``[H, W, 3]``), scaled so its longest side is at most ``max_side``,
    with the frame's ``(h, w)`` token grid drawn over it as thin light lines."""
    from PIL import Image, ImageDraw

    img = Image.fromarray(np.ascontiguousarray(pixels[..., :3]).astype(np.uint8), mode="RGB")
    if max_side is not None and max(img.size) > max_side:
        scale = max_side / max(img.size)
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.BILINEAR)
    gh, gw = grid
    # Lines only where cells stay at least 3 pixels apart; denser grids would hide the picture.
    if gh > 1 and gw > 1 and img.width / gw >= 3 and img.height / gh >= 3:
        over = Image.new("RGBA", img.size, (0, 0, 0, 0))
        draw = ImageDraw.Draw(over)
        for r in range(1, gh):
            y = round(r * img.height / gh)
            draw.line([(0, y), (img.width, y)], fill=(255, 255, 255, 60), width=1)
        for c in range(1, gw):
            x = round(c * img.width / gw)
            draw.line([(x, 0), (x, img.height)], fill=(255, 255, 255, 60), width=1)
        img = Image.alpha_composite(img.convert("RGBA"), over).convert("RGB")
    return img


def _fmt_score(score: float) -> str:
    """A relevance score as every view of the report prints it (three decimals)."""
    return f"{score:.3f}"


def _answer_text(info: RunInfo) -> str:
    """``A: (B) the text`` for an answer; a note when none was asked for."""
    if info.answer is None:
        return "A: no answer was asked for (token plan only)"
    text = " ".join(info.answer.split()) or "(empty answer)"
    if info.choice and not text.startswith(info.choice):
        text = f"({info.choice}) {text}"
    return "A: " + text


def _models_text(info: RunInfo) -> str:
    parts = [f"{label} {value}" for label, value in
             (("base", info.base), ("scorer", info.scorer), ("preset", info.preset)) if value]
    return " · ".join(parts)


def timings_text(timings: Mapping[str, float]) -> str:
    """``decode 0.12 s · score 1.50 s · total 1.62 s`` (stages in the order they ran, total last)."""
    stages = [(k, v) for k, v in timings.items() if k != "total"]
    if "total" in timings:
        stages.append(("total", timings["total"]))
    return " · ".join(f"{k} {float(v):.2f} s" for k, v in stages)


def _stage_timings(plan: Plan, info: RunInfo | None) -> Mapping[str, float]:
    """The seconds per stage to print: the run's (answering included) when known, else the plan's own."""
    if info is not None and info.timings:
        return info.timings
    return plan.timings


def _wrap(text: str, width: int, max_lines: int) -> str:
    lines = textwrap.wrap(" ".join(str(text).split()), width=width) or [""]
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = lines[-1][: max(width - 1, 1)].rstrip() + "…"
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------
# The figure
# ---------------------------------------------------------------------------------------------------------


def score_limits(scores: Any) -> tuple[float, float]:
    """The y range of the score panel: the whole ``[0, 1]`` scale when the scores spread over half of it or
    more, else a range fitted around them (10% margins), so small or close scores still show their shape.

    Args:
        scores: relevance scores in ``[0, 1]`` (any sequence; NaNs are ignored).

    Returns:
        ``(low, high)`` with ``low < high``.
    """
    values = np.asarray(scores, dtype=np.float64).reshape(-1)
    values = values[np.isfinite(values)]
    if not len(values):
        return (-0.04, 1.06)
    lo, hi = float(values.min()), float(values.max())
    span = hi - lo
    if span >= 0.5:
        return (min(lo, 0.0) - 0.04, max(hi, 1.0) + 0.06)
    pad = 0.1 * span if span > 0 else max(0.1 * abs(hi), 1e-3)
    return (lo - pad, hi + pad)


def _bar_width(times: np.ndarray, span: float) -> float:
    if len(times) > 1:
        gaps = np.diff(np.sort(times))
        gaps = gaps[gaps > 0]
        if len(gaps):
            return float(np.min(gaps)) * 0.7
    return max(span, 1.0) * 0.02


def _time_axis(ax: Any, t_max: float) -> None:
    """Label the x axis in seconds for short videos, ``m:ss`` past two minutes, ``h:mm:ss`` past an hour."""
    from matplotlib.ticker import FuncFormatter, MultipleLocator

    if t_max < 120:
        ax.set_xlabel("time in the video (s)")
        return
    # A round step (in seconds) that gives at most about 12 ticks.
    steps = [10, 15, 30, 60, 120, 300, 600, 900, 1200, 1800, 3600, 7200, 10800, 21600, 43200, 86400]
    step = next((s for s in steps if t_max / s <= 12), steps[-1])
    ax.xaxis.set_major_locator(MultipleLocator(step))
    if t_max < 3600:
        fmt = FuncFormatter(lambda x, _: f"{int(x // 60)}:{int(round(x % 60)):02d}" if x >= 0 else "")
        ax.set_xlabel("time in the video (m:ss)")
    else:
        fmt = FuncFormatter(lambda x, _: f"{int(x // 3600)}:{int(x % 3600 // 60):02d}:{int(round(x % 60)):02d}"
                            if x >= 0 else "")
        ax.set_xlabel("time in the video (h:mm:ss)")
    ax.xaxis.set_major_formatter(fmt)


def _legend(ax: Any) -> None:
    """The axes' legend in one row above its top right corner (next to the panel title, over no data)."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(handles, labels, loc="lower right", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False,
                  ncol=len(handles), borderaxespad=0.2, handlelength=1.5)


@dataclass(frozen=True)
class _Series:
    """The plan's per-frame numbers as arrays, shared by the panels of the figure."""

    times: np.ndarray  # [T] seconds
    scores: np.ndarray  # [T] in [0, 1]
    tokens: np.ndarray  # [T] visual tokens
    kept: np.ndarray  # [T] bool
    t_max: float  # seconds, at least 1
    width: float  # bar width in seconds

    @classmethod
    def of(cls, plan: Plan) -> "_Series":
        times = np.asarray(plan.timestamps, dtype=np.float64)
        tokens = np.asarray(_tokens(plan), dtype=np.float64)
        t_max = max(plan.duration, float(times.max()) if len(times) else 0.0, 1.0)
        return cls(times, np.asarray(plan.scores, dtype=np.float64), tokens, tokens > 0, t_max,
                   _bar_width(times, t_max))


def _header_lines(plan: Plan, info: RunInfo | None) -> list[tuple[str, dict[str, Any]]]:
    """The header's text lines, each with its matplotlib text style."""
    question = plan.question or (plan.clue.question if plan.clue else "") or "(no question)"
    lines: list[tuple[str, dict[str, Any]]] = [
        (_wrap("Q: " + question, 120, 2), {"fontsize": 12, "fontweight": "bold"}),
    ]
    if info is not None:
        lines.append((_wrap(_answer_text(info), 130, 2), {"fontsize": 11, "color": "#0b3d6b"}))
    lines.append((_wrap(_objects_text(plan, info), 150, 1), {"fontsize": 10, "color": "#333333"}))
    lines.append((_stats_text(plan), {"fontsize": 9.5, "color": "#555555"}))
    run = " · ".join(t for t in (_models_text(info) if info else "", timings_text(_stage_timings(plan, info))) if t)
    if run:
        lines.append((_wrap(run, 170, 1), {"fontsize": 9, "color": "#555555"}))
    return lines


def _line_height(text: str, style: dict[str, Any]) -> float:
    """Inches a header line takes: 1.55 × its font size per wrapped line."""
    return (text.count("\n") + 1) * style["fontsize"] * 1.55 / 72


def _draw_header(fig: Any, cell: Any, lines: list[tuple[str, dict[str, Any]]], height: float) -> None:
    """The header text, top to bottom. parse_math=False: a "$" in a question is text, not math."""
    head = fig.add_subplot(cell)
    head.axis("off")
    y = 1.0
    for text, style in lines:
        head.text(0.0, y, text, va="top", ha="left", parse_math=False, transform=head.transAxes, **style)
        y -= _line_height(text, style) / height


def _style_panel(ax: Any, series: _Series, top: list[int], *, label_top: bool) -> None:
    """Light y grid, no top/right spines, and a faint vertical line at each thumbnail's time."""
    ax.grid(True, axis="y", color="#e5e5e5", linewidth=0.8)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    for k, p in enumerate(top):
        ax.axvline(series.times[p], color=_TOP_COLOR, alpha=0.3, linewidth=1.0, zorder=0,
                   label="thumbnail below" if k == 0 and label_top else None)


def _draw_scores(ax: Any, s: _Series) -> None:
    """Relevance over time: a line through every frame, kept frames filled, dropped ones hollow."""
    if len(s.times):
        order = np.argsort(s.times, kind="stable")
        ax.plot(s.times[order], s.scores[order], color=_SCORE_COLOR, linewidth=1.2, zorder=2)
        if s.kept.any():
            ax.scatter(s.times[s.kept], s.scores[s.kept], s=16, color=_SCORE_COLOR, zorder=3, clip_on=False,
                       label="kept frame")
        if (~s.kept).any():
            ax.scatter(s.times[~s.kept], s.scores[~s.kept], s=18, facecolors="white", edgecolors=_DROP_COLOR,
                       linewidths=1.0, zorder=3, clip_on=False, label="dropped frame")
        _legend(ax)
    else:
        ax.text(0.5, 0.5, "the plan holds no frames", ha="center", va="center", transform=ax.transAxes)
    ax.set_ylim(*score_limits(s.scores))
    ax.set_ylabel("relevance score")
    ax.set_title("Relevance of each sampled frame to the question", loc="left", fontsize=10)
    ax.tick_params(labelbottom=False)


def _draw_tokens(ax: Any, s: _Series, native_grid: tuple[int, int]) -> None:
    """Tokens per frame as bars, dropped frames as grey crosses at 0, the native grid as a dashed line
    when the bars come near it; also sets the shared time axis."""
    top_tokens = float(s.tokens.max()) if len(s.tokens) else 0.0
    if len(s.times):
        if s.kept.any():
            ax.bar(s.times[s.kept], s.tokens[s.kept], width=s.width, color=_TOKEN_COLOR, zorder=2, label="tokens")
        else:
            ax.text(0.5, 0.55, "no frame was given any token (is the budget too small?)", ha="center",
                    va="center", color="#666666", transform=ax.transAxes)
        if (~s.kept).any():
            ax.scatter(s.times[~s.kept], np.zeros(int((~s.kept).sum())), marker="x", s=18, color=_DROP_COLOR,
                       linewidths=1.0, zorder=3, clip_on=False, label="dropped (0 tokens)")
        native = native_grid[0] * native_grid[1]
        if native > 0 and s.kept.any() and top_tokens >= 0.5 * native:
            ax.axhline(native, color="#444444", linestyle="--", linewidth=0.9, zorder=1,
                       label=f"native grid {native_grid[0]}×{native_grid[1]} = {native}")
            top_tokens = max(top_tokens, native)
        _legend(ax)
    ax.set_ylim(0, max(top_tokens * 1.08, 1.0))
    ax.set_ylabel("visual tokens")
    _time_axis(ax, s.t_max)
    ax.set_title("Tokens given to each frame", loc="left", fontsize=10)
    xlim = (-0.02 * s.t_max, s.t_max * 1.02)
    if len(s.times):  # room for the half bars at both ends
        xlim = (min(xlim[0], float(s.times.min()) - 0.6 * s.width), max(xlim[1], float(s.times.max()) + 0.6 * s.width))
    ax.set_xlim(*xlim)


def _draw_thumbnails(fig: Any, cell: Any, plan: Plan, frames: Frames, rows: dict[int, int], top: list[int]) -> None:
    """One picture per position in ``top``, captioned with its time, grid and score."""
    sub = cell.subgridspec(1, max(len(top), 4), wspace=0.08)
    for k, p in enumerate(top):
        ax = fig.add_subplot(sub[0, k])
        ax.imshow(np.asarray(_thumbnail(frames.pixels[rows[p]], plan.grids[p], 320)))
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_edgecolor(_TOP_COLOR)
        h, w = plan.grids[p]
        ax.set_title(f"{_fmt_time(plan.timestamps[p])} · {h}×{w}\nscore {_fmt_score(plan.scores[p])}",
                     fontsize=8.5, parse_math=False)


def _figure(plan: Plan, frames: Frames | None, thumbnails: int, *, header: bool = True,
            info: RunInfo | None = None) -> Any:
    """The matplotlib Figure (Agg canvas attached) for ``plan``: an optional header, the score and token
    panels, and (with ``frames``) a row of the ``thumbnails`` frames with the most tokens."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = frame_positions(plan, frames)
    top = [p for p in top_frames(plan, thumbnails) if p in rows] if thumbnails > 0 else []
    lines = _header_lines(plan, info) if header else []
    head_h = sum(_line_height(text, style) for text, style in lines) + 0.05 if lines else 0.0
    thumb_h = 0.0
    if top:
        cols = max(len(top), 4)
        aspect = frames.pixels.shape[1] / frames.pixels.shape[2]
        thumb_h = min(11.0 / cols * aspect + 0.5, 3.2)
    # Rows: header, scores, tokens, then (with thumbnails) a spacer for the time axis label and the strip.
    heights = ([head_h] if lines else []) + [2.1, 2.1] + ([0.05, thumb_h] if top else [])
    bottom = 0.15 if top else 0.5  # inches below the last row (room for the time axis label)
    above = 0.12 if lines else 0.4  # inches above the first row (without a header: the panel's title)
    total = sum(heights) + 0.58 + above + bottom  # inches: panels, the gaps between them and the margins
    fig = Figure(figsize=(12, total), dpi=100)
    FigureCanvasAgg(fig)
    gs = fig.add_gridspec(len(heights), 1, height_ratios=heights, hspace=0.45,
                          left=0.065, right=0.985, top=1 - above / total, bottom=bottom / total)
    first = 0
    if lines:
        _draw_header(fig, gs[0], lines, head_h)
        first = 1
    series = _Series.of(plan)
    ax_s = fig.add_subplot(gs[first])
    ax_t = fig.add_subplot(gs[first + 1], sharex=ax_s)
    _style_panel(ax_s, series, top, label_top=True)
    _style_panel(ax_t, series, top, label_top=False)
    _draw_scores(ax_s, series)
    _draw_tokens(ax_t, series, plan.native)
    if top:
        _draw_thumbnails(fig, gs[first + 3], plan, frames, rows, top)
    return fig


def _figure_png(plan: Plan, frames: Frames | None, thumbnails: int, *, header: bool = True,
                info: RunInfo | None = None) -> bytes:
    import matplotlib

    font_log = logging.getLogger("matplotlib.font_manager")
    level = font_log.level
    font_log.setLevel(logging.ERROR)  # a fallback font without a bold face is no news worth a line
    try:
        with warnings.catch_warnings(), matplotlib.rc_context({"font.family": list(font_families())}):
            # A glyph no installed font has (no CJK font here) draws as a box; no need to warn per glyph.
            warnings.filterwarnings("ignore", message=r".*[Gg]lyph.*missing.*")
            fig = _figure(plan, frames, thumbnails, header=header, info=info)
            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=100, facecolor="white")
    finally:
        font_log.setLevel(level)
    return buf.getvalue()


def _check_plan(plan: Plan) -> None:
    if not isinstance(plan, Plan):
        raise ConfigError(f"expected a quota.types.Plan to draw, got {type(plan).__name__}")


def _write(path: str | os.PathLike, data: bytes) -> Path:
    from .outputs import write_atomic

    return write_atomic(path, data)


def render_png(plan: Plan, frames: Frames | None = None, path: str | os.PathLike | None = None, *,
               thumbnails: int = PNG_THUMBNAILS, info: RunInfo | None = None) -> bytes:
    """Draw ``plan`` as one PNG picture (about 1200 pixels wide).

    Args:
        plan: the plan to draw.
        frames: decoded frames (uint8 ``[T, H, W, 3]``) aligned with ``plan.indices`` (or any frames,
            matched by frame number); default: the plan's own :attr:`~quota.types.Plan.frames`. Without
            frames the picture has no thumbnails.
        path: where to write the PNG; ``None`` only returns the bytes.
        thumbnails: most thumbnails to show (the frames with the most tokens).
        info: the answer, models, preset and timings to print in the header (optional).

    Returns:
        the PNG file's bytes.
    """
    _check_plan(plan)
    data = _figure_png(plan, frames if frames is not None else plan.frames, thumbnails, info=info)
    if path is not None:
        _write(path, data)
    return data


def render_charts(plan: Plan) -> bytes:
    """Only the score and token panels of ``plan`` as a PNG (no header, no thumbnails), for pages that
    show the question and the numbers as text of their own."""
    _check_plan(plan)
    return _figure_png(plan, None, 0, header=False)


# ---------------------------------------------------------------------------------------------------------
# HTML
# ---------------------------------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Noto Sans CJK JP","WenQuanYi Zen Hei",sans-serif;
margin:24px auto;max-width:1240px;color:#222;padding:0 16px}
h1{font-size:1.3em;margin:0 0 4px}
.q{font-size:1.15em;font-weight:600;margin:12px 0 6px;white-space:pre-wrap}
.a{font-size:1.1em;margin:6px 0;white-space:pre-wrap;color:#0b3d6b}
.options li.chosen{font-weight:600}
.meta{color:#555;font-size:.92em;margin:2px 0}
.objects span{display:inline-block;background:#eef3fa;border:1px solid #c9d7ea;border-radius:10px;
padding:1px 9px;margin:2px 4px 2px 0}
img.chart{width:100%;height:auto;border:1px solid #e3e3e3;margin:12px 0}
.strip{display:flex;flex-wrap:wrap;gap:10px;margin:8px 0 16px}
.strip figure{margin:0;text-align:center;font-size:.82em;color:#333}
.strip img{display:block;border:2px solid #e7298a;border-radius:3px;image-rendering:auto}
table{border-collapse:collapse;font-size:.88em;font-variant-numeric:tabular-nums}
th,td{padding:3px 10px;border-bottom:1px solid #eee;text-align:right}
th{background:#f6f6f6;position:sticky;top:0}
tr.dropped td{color:#aaa}
tr.top td{background:#fdf0f6}
details{margin:8px 0}
pre{white-space:pre-wrap;background:#f8f8f8;padding:8px;border-radius:4px}
.q,.a,.meta,code,pre,li{overflow-wrap:anywhere}
.table{overflow-x:auto;max-width:100%}
ul.warnings{color:#8a4b00;background:#fff6e5;border:1px solid #f0d19a;border-radius:4px;padding:6px 6px 6px 26px}
@media (max-width:600px){body{margin:12px auto;padding:0 8px}th,td{padding:2px 5px}}
"""


#: Control characters (C0 but tab and newline, DEL, C1): they have no place in a page.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _e(value: Any) -> str:
    """``value`` as HTML text: escaped, control characters removed."""
    return html.escape(_CONTROL.sub("", str(value)), quote=True)


def _data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")


def _thumb_uri(pixels: np.ndarray, grid: tuple[int, int], side: int = HTML_THUMB_SIDE) -> str:
    img = _thumbnail(pixels, grid, side)
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return _data_uri(buf.getvalue(), "image/png")


def frame_strip_html(plan: Plan, frames: Frames | None, positions: Sequence[int] | None = None, *,
                     side: int = HTML_THUMB_SIDE) -> str:
    """A ``<div class="strip">`` of frame pictures, each captioned with its time, grid, tokens and score.

    Args:
        plan: the plan the frames belong to.
        frames: the decoded frames (see :func:`render_png`); without them the strip is empty.
        positions: plan positions to show, in this order; ``None``: every kept frame in time order.
        side: longest side of a picture in pixels.

    Returns:
        the HTML (one ``<figure class="frame" data-position=...>`` per shown frame); frames that
        ``frames`` lacks are left out.
    """
    rows = frame_positions(plan, frames)
    chosen = plan.keep if positions is None else [int(p) for p in positions]
    out = ['<div class="strip">']
    for p in chosen:
        if p not in rows:
            continue
        h, w = plan.grids[p]
        uri = _thumb_uri(frames.pixels[rows[p]], plan.grids[p], side)  # type: ignore[union-attr]
        caption = (f"{_fmt_time(plan.timestamps[p])} · {h}×{w} = {h * w} tokens · "
                   f"score {_fmt_score(plan.scores[p])}")
        out.append(f'<figure class="frame" data-position="{p}"><img src="{uri}" alt="frame {plan.indices[p]}">'
                   f"<figcaption>{_e(caption)}</figcaption></figure>")
    out.append("</div>")
    return "".join(out)


def _html_head(question: str) -> list[str]:
    return [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>quota plan: {_e(_wrap(question, 80, 1))}</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>QuoTA token plan</h1>",
    ]


def _html_answer(info: RunInfo | None) -> list[str]:
    """The answer, the options (the chosen one marked), the models, the preset and the timings."""
    if info is None:
        return []
    out = [f'<p class="a">{_e(_answer_text(info))}</p>']
    if info.options:
        from .choices import option_letters, option_lines

        items = []
        for letter, line in zip(option_letters(len(info.options)), option_lines(info.options)):
            chosen = ' class="chosen"' if letter == info.choice else ""
            items.append(f"<li{chosen}>{_e(line)}</li>")
        out.append(f'<ul class="options">{"".join(items)}</ul>')
    if _models_text(info):
        out.append(f'<p class="meta">{_e(_models_text(info))}</p>')
    if info.warnings:
        items = "".join(f"<li>{_e(line)}</li>" for line in info.warnings)
        out.append(f'<ul class="warnings" title="what reading the video said">{items}</ul>')
    return out


def _html_clue(plan: Plan, info: RunInfo | None = None) -> list[str]:
    """The objects as chips (or why there are none), the plan's numbers, the seconds per stage and the
    model's reasoning."""
    clue = plan.clue
    out = []
    if clue is not None and clue.mode != "none" and clue.objects:
        label = "Events" if clue.mode == "event" else "Objects"
        chips = "".join(f"<span>{_e(o)}</span>" for o in clue.objects)
        out.append(f'<p class="objects">{label} looked for: {chips}</p>')
    else:
        out.append(f'<p class="meta">{_e(_objects_text(plan, info))}</p>')
    out.append(f'<p class="meta">{_e(_stats_text(plan))}</p>')
    timings = _stage_timings(plan, info)
    if timings:
        out.append(f'<p class="meta">time per stage: {_e(timings_text(timings))}</p>')
    if clue is not None and clue.reasoning:
        out.append(f"<details><summary>Model reasoning (query decoupling)</summary><pre>{_e(clue.reasoning)}</pre>"
                   "</details>")
    return out


def _html_table(plan: Plan, top: set[int]) -> list[str]:
    """Every sampled frame: position, frame number, time, score, weight, grid and tokens."""
    tokens = _tokens(plan)
    out = ["<h2>Every sampled frame</h2>"]
    notes = []
    if top:
        notes.append(f"highlighted: the {len(top)} frames with the most tokens")
    if len(plan.keep) < len(plan.indices):
        notes.append("grey: dropped frames (no tokens)")
    if notes:
        out.append(f'<p class="meta">{_e("; ".join(notes).capitalize())}.</p>')
    out.append('<div class="table"><table><thead><tr><th>#</th><th>frame</th><th>time (s)</th><th>score</th>'
               "<th>weight</th><th>grid</th><th>tokens</th></tr></thead><tbody>")
    for p in range(len(plan.indices)):
        h, w = plan.grids[p]
        cls = "dropped" if tokens[p] == 0 else ("top" if p in top else "")
        cls_attr = f' class="{cls}"' if cls else ""
        out.append(
            f"<tr{cls_attr}><td>{p}</td><td>{plan.indices[p]}</td><td>{plan.timestamps[p]:.2f}</td>"
            f"<td>{_fmt_score(plan.scores[p])}</td><td>{plan.weights[p]:.4f}</td>"
            f"<td>{h}×{w}</td><td>{tokens[p]}</td></tr>"
        )
    out.append(f"</tbody><tfoot><tr><th colspan=\"6\">total (budget {plan.budget:,})</th>"
               f"<th>{plan.tokens:,}</th></tr></tfoot></table></div>")
    return out


def _html(plan: Plan, frames: Frames | None, thumbnails: int, info: RunInfo | None = None) -> str:
    rows = frame_positions(plan, frames)
    top_all = top_frames(plan, thumbnails) if thumbnails > 0 else []
    top = [p for p in top_all if p in rows]
    question = plan.question or (plan.clue.question if plan.clue else "")
    out = _html_head(question)
    if plan.video:
        out.append(f'<p class="meta">video: <code>{_e(plan.video)}</code> · {_e(_fmt_time(plan.duration))}</p>')
    out.append(f'<p class="q">Q: {_e(question or "(no question)")}</p>')
    out += _html_answer(info)
    out += _html_clue(plan, info)
    # The chart without its own header: the question and the numbers are above as text.
    chart = _data_uri(_figure_png(plan, None, 0, header=False), "image/png")
    out.append(f'<img class="chart" alt="relevance scores and tokens per frame" src="{chart}">')
    if top:
        out.append("<h2>Frames with the most tokens</h2>")
        out.append(frame_strip_html(plan, frames, top))
    out += _html_table(plan, set(top_all))
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def render_html(plan: Plan, frames: Frames | None = None, path: str | os.PathLike | None = None, *,
                thumbnails: int = HTML_THUMBNAILS, info: RunInfo | None = None) -> str:
    """``plan`` as one self-contained HTML page: every image is inlined as a base64 data URI.

    The page holds the question, the answer with the options, models, preset and timings (when ``info``
    is given), the clue's objects (and the model's reasoning, folded), the numbers of the plan, the
    score and token chart, a strip of the ``thumbnails`` frames with the most tokens (when ``frames`` are
    given), and a table of every sampled frame: position, frame number, time (s), score, weight, grid and
    tokens. All text is HTML-escaped.

    Args:
        plan: the plan to show.
        frames: decoded frames aligned with ``plan.indices`` (see :func:`render_png`); optional.
        path: where to write the page (UTF-8); ``None`` only returns it.
        thumbnails: most thumbnails in the strip.
        info: the answer and how it was made (:class:`RunInfo`); optional.

    Returns:
        the HTML text.
    """
    _check_plan(plan)
    text = _html(plan, frames if frames is not None else plan.frames, thumbnails, info)
    if path is not None:
        _write(path, text.encode("utf-8"))
    return text


def save_report(plan: Plan, path: str | os.PathLike, frames: Frames | None = None, *,
                info: RunInfo | None = None) -> Path:
    """Write a report of ``plan`` to ``path``: a PNG picture for ``.png``, an HTML page for ``.html``/``.htm``.

    Raises:
        ConfigError: for any other suffix.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".png":
        render_png(plan, frames, path, info=info)
    elif suffix in (".html", ".htm"):
        render_html(plan, frames, path, info=info)
    else:
        raise ConfigError(f"cannot tell the report format of {str(path)!r} from its suffix; use .png or .html")
    return path
