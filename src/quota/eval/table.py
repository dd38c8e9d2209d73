"""Several runs side by side (e.g. the base model with and without QuoTA): a terminal table,
a Markdown table, and a PNG bar chart.

Every function takes :class:`quota.eval.metrics.Metrics` (one per run, same benchmark) and is pure
apart from writing the picture::

    runs = [metrics_from_store("runs/vmme-base"), metrics_from_store("runs/vmme-quota")]
    print(format_table(runs))
    plot_comparison(runs, "vmme.png")
"""

from __future__ import annotations

import io

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..outputs import write_atomic
from ..errors import QuotaError
from .metrics import Metrics, Tally


@dataclass
class Row:
    """One table row: a label and one cell per run (``None`` where a run has no such slice)."""

    label: str
    cells: list[Tally | None]
    kind: str = "acc"  # "acc", "score", "errors", "unparsed", "missing", "text", "section"
    scores: list[float | None] | None = None  # for kind == "score"
    texts: list[str] | None = None  # for kind == "text": the cells as written


def comparison_rows(runs: Sequence[Metrics], *, fields: Sequence[str] | None = None) -> list[Row]:
    """The rows of the side-by-side table: headline, overall, error counts, then every value of
    every field (the union over runs)."""
    if not runs:
        raise QuotaError("no runs to compare")
    rows: list[Row] = []
    first = runs[0]
    rows.append(Row(f"score ({first.headline_rule})", [None] * len(runs), "score", [m.headline for m in runs]))
    rows.append(Row("all questions", [m.overall for m in runs]))
    if any(m.grouped is not None for m in runs):
        rows.append(Row("all-right units", [m.grouped for m in runs]))
        if any(m.units_left_out for m in runs):
            rows.append(Row("units left out (not all tries answered yet)", [None] * len(runs), "text",
                            texts=[str(m.units_left_out) for m in runs]))
    rows.append(Row("errors", [m.overall for m in runs], "errors"))
    rows.append(Row("no letter found", [m.overall for m in runs], "unparsed"))
    rows.append(Row("missing videos (counted wrong)", [m.overall for m in runs], "missing"))
    if any(m.run for m in runs):
        rows.append(Row("asked / to ask", [None] * len(runs), "text", texts=[_progress(m) for m in runs]))
        rows.append(Row("skipped annotation rows", [None] * len(runs), "text",
                        texts=[str(m.run.get("skipped_rows", "-")) if m.run else "-" for m in runs]))
    names = list(fields) if fields is not None else list(dict.fromkeys(f for m in runs for f in m.fields))
    for name in names:
        values = list(dict.fromkeys(v for m in runs for v in m.by_field.get(name, {})))
        if not values:
            continue
        rows.append(Row(name, [None] * len(runs), "section"))
        for value in values:
            rows.append(Row(f"  {value}", [m.by_field.get(name, {}).get(value) for m in runs]))
        if any(m.grouped_by_field.get(name) for m in runs):
            rows.append(Row(f"{name} (all-right units)", [None] * len(runs), "section"))
            for value in values:
                rows.append(Row(f"  {value}", [m.grouped_by_field.get(name, {}).get(value) for m in runs]))
    return rows


def _progress(m: Metrics) -> str:
    """``asked/to ask``: questions of a run that were asked (answered or failed) out of those it can ask
    (its video found), marked when questions are still to be answered. Missing videos have their own row."""
    if not m.run:
        return "-"
    askable = m.run.get("total", 0) - m.run.get("missing", 0)
    asked = askable - m.run.get("pending", 0)
    return f"{asked}/{askable}" + ("" if m.complete else " incomplete")


def annotation_hash(m: Metrics) -> str | None:
    """The SHA-256 of the annotations a run was made from (``quota eval``'s fingerprint), if recorded."""
    fp = m.meta.get("fingerprint") or {}
    return fp.get("annotations_sha256") or None


def same_annotations(runs: Sequence[Metrics]) -> bool:
    """Whether no two runs record different annotation files (a corrected answer changes the score)."""
    hashes = {h for h in (annotation_hash(m) for m in runs) if h}
    return len(hashes) <= 1


def same_questions(runs: Sequence[Metrics]) -> bool:
    """Whether every run counted the same questions of the same annotations (a delta means something)."""
    return (all(m.ids == runs[0].ids for m in runs[1:]) and all(m.complete for m in runs)
            and same_annotations(runs))


def notes(runs: Sequence[Metrics]) -> list[str]:
    """Lines under the table: incomplete runs, and why there is no delta."""
    out = []
    for m in runs:
        if not m.complete:
            r = m.run
            out.append(f"{m.name} is incomplete: {r.get('total', 0) - r.get('pending', 0)} of {r.get('total', 0)} "
                       f"questions counted ({r.get('pending', 0)} not answered yet; {r.get('errors', 0)} failed, "
                       f"{r.get('missing', 0)} with missing videos)")
        if m.units_left_out:
            out.append(f"{m.name}: {m.units_left_out} units left out of the unit scores: not all of their "
                       "questions are answered yet")
    if len(runs) >= 2 and not same_annotations(runs):
        hashes = " vs ".join((annotation_hash(m) or "?")[:12] for m in runs)
        out.append(f"no delta: the runs were made from different annotation files (sha256 {hashes}); "
                   "their answers are scored against different keys")
    elif len(runs) >= 2 and not same_questions(runs):
        sizes = " vs ".join(str(len(m.ids)) for m in runs)
        out.append(f"no delta: the runs did not count the same questions ({sizes} questions)")
    return out


def _value(row: Row, i: int) -> float | None:
    if row.kind == "score":
        return None if row.scores is None else row.scores[i]
    tally = row.cells[i]
    if tally is None:
        return None
    if row.kind == "errors":
        return float(tally.errors)
    if row.kind == "unparsed":
        return float(tally.unparsed)
    if row.kind == "missing":
        return float(tally.missing)
    return tally.accuracy


def _cell(row: Row, i: int, digits: int, counts: bool) -> str:
    if row.kind == "section":
        return ""
    if row.kind == "text":
        return (row.texts or [""] * (i + 1))[i]
    value = _value(row, i)
    if value is None:
        return "-"
    if row.kind in ("errors", "unparsed", "missing"):
        return str(int(value))
    text = f"{value:.{digits}f}"
    tally = row.cells[i]
    if counts and tally is not None and row.kind == "acc":
        text += f" ({tally.correct}/{tally.total})"
    return text


def _delta(row: Row, digits: int) -> str:
    if row.kind in ("section", "text"):
        return ""
    a, b = _value(row, 0), _value(row, -1)
    if a is None or b is None:
        return "-"
    if row.kind in ("errors", "unparsed", "missing"):
        return f"{int(b - a):+d}"
    return f"{b - a:+.{digits}f}"


def table_cells(
    runs: Sequence[Metrics], *, digits: int = 1, counts: bool = True, fields: Sequence[str] | None = None
) -> tuple[list[str], list[list[str]]]:
    """Header and body cells of the comparison (a delta column, last minus first, for 2+ runs that
    counted the same questions; an incomplete run's name is marked ``*``)."""
    rows = comparison_rows(runs, fields=fields)
    header = [runs[0].benchmark or "benchmark"] + [m.name + ("" if m.complete else " *") for m in runs]
    delta = len(runs) >= 2 and same_questions(runs)
    if delta:
        header.append("delta" if len(runs) == 2 else f"delta {runs[-1].name} - {runs[0].name}")
    body = []
    for row in rows:
        line = [row.label] + [_cell(row, i, digits, counts) for i in range(len(runs))]
        if delta:
            line.append(_delta(row, digits))
        body.append(line)
    return header, body


def format_table(
    runs: Sequence[Metrics], *, digits: int = 1, counts: bool = True, fields: Sequence[str] | None = None
) -> str:
    """A plain-text table for the terminal (accuracy in percent, with right/total counts)."""
    header, body = table_cells(runs, digits=digits, counts=counts, fields=fields)
    widths = [max(len(r[i]) for r in [header] + body) for i in range(len(header))]
    lines = ["  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths)))]
    lines.append("  ".join("-" * w for w in widths))
    for r in body:
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
    lines += [f"* {n}" if not n.startswith("no delta") else n for n in notes(runs)]
    return "\n".join(lines)


def to_markdown(
    runs: Sequence[Metrics], *, digits: int = 1, counts: bool = True, fields: Sequence[str] | None = None
) -> str:
    """The same table in GitHub Markdown (section rows in bold)."""
    header, body = table_cells(runs, digits=digits, counts=counts, fields=fields)

    def esc(text: str) -> str:
        return text.replace("|", "\\|")

    lines = [
        "| " + " | ".join(esc(h) for h in header) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|",
    ]
    for r in body:
        label = esc(r[0].strip())
        if all(c == "" for c in r[1:]):
            label = f"**{label}**"  # a section heading
        elif r[0].startswith("  "):
            label = "&nbsp;&nbsp;" + label
        lines.append("| " + " | ".join([label] + [esc(c) for c in r[1:]]) + " |")
    extra = notes(runs)
    if extra:
        lines.append("")
        lines += [f"- {n}" for n in extra]
    return "\n".join(lines)


def _title(m: Metrics) -> str:
    if m.benchmark:
        from .benchmarks import get_spec

        return f"{get_spec(m.benchmark).title}: {m.headline_rule}"
    return "accuracy"


def plot_comparison(
    runs: Sequence[Metrics],
    path: str | os.PathLike[str],
    *,
    fields: Sequence[str] | None = None,
    title: str | None = None,
    dpi: int = 120,
) -> Path:
    """A grouped bar chart (one bar per run) of the headline score and the accuracy per value of
    ``fields`` (default: the first reporting field), saved as PNG. Returns the path."""
    # a bare Figure on the Agg canvas: no pyplot state, works without a display
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not runs:
        raise QuotaError("no runs to plot")
    if fields is None:
        fields = runs[0].fields[:1]
    groups: list[str] = ["score"]
    values: list[list[float | None]] = [[m.headline for m in runs]]
    for name in fields:
        for value in dict.fromkeys(v for m in runs for v in m.by_field.get(name, {})):
            groups.append(value if len(fields) == 1 else f"{name}: {value}")
            values.append([(m.by_field.get(name, {}).get(value) or Tally()).accuracy for m in runs])
    n = len(runs)
    width = 0.8 / n
    fig = Figure(figsize=(max(6.0, 1.0 + 0.9 * len(groups) * max(1, n) / 2), 4.2))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for j, m in enumerate(runs):
        xs = [i - 0.4 + width * (j + 0.5) for i in range(len(groups))]
        ys = [v[j] if v[j] is not None else 0.0 for v in values]
        ax.bar(xs, ys, width, label=m.name)
        for x, y, v in zip(xs, ys, values):
            if v[j] is not None:
                ax.text(x, y + 0.5, f"{y:.1f}", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(groups, rotation=30 if len(groups) > 6 else 0, ha="right" if len(groups) > 6 else "center")
    ax.set_ylabel("accuracy (%)")
    top = max([v for vals in values for v in vals if v is not None] + [1.0])
    ax.set_ylim(0, min(108.0, top * 1.15 + 2))
    ax.set_title(title or _title(runs[0]))
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=dpi, format="png")
    return write_atomic(path, buffer.getvalue())


__all__ = ["Row", "comparison_rows", "table_cells", "format_table", "to_markdown", "plot_comparison",
           "same_questions", "notes"]
