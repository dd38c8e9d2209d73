"""Accuracy of a run, overall and per reporting field, the way each benchmark reports it.

Errors count as wrong answers (a crashed question is not a free pass) and are also counted apart,
so a run with many errors is visible as such. Pure functions of the stored rows.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from .store import Result, RunStore, open_run

MAX_FIELD_VALUES = 64
_DURATION_ORDER = {"short": 0, "medium": 1, "long": 2}


@dataclass
class Tally:
    """Counts for one slice of questions.

    Attributes:
        correct: right answers.
        total: questions counted, errors included.
        errors: questions that failed with an error (counted as wrong).
        unparsed: answered questions where no option letter could be read (counted as wrong).
    """

    correct: int = 0
    total: int = 0
    errors: int = 0
    unparsed: int = 0

    @property
    def accuracy(self) -> float | None:
        """Percent right (0-100), ``None`` for an empty slice."""
        return None if self.total == 0 else 100.0 * self.correct / self.total

    def add(self, correct: bool, error: bool = False, unparsed: bool = False) -> None:
        self.total += 1
        self.correct += int(bool(correct) and not error)
        self.errors += int(error)
        self.unparsed += int(unparsed and not error)

    def to_dict(self) -> dict[str, Any]:
        return {"correct": self.correct, "total": self.total, "errors": self.errors,
                "unparsed": self.unparsed, "accuracy": self.accuracy}


@dataclass
class Metrics:
    """The scores of one run.

    Attributes:
        name: the run's label in reports.
        benchmark: the benchmark's registry name, if known.
        headline: the benchmark's own headline score in percent (see ``headline_rule``).
        headline_rule: how ``headline`` is made.
        overall: every question counted once.
        fields: the reporting fields, in report order.
        by_field: ``field -> value -> Tally`` over questions.
        group_field: the field that ties questions into all-must-be-right units, if any.
        grouped: the units' tally (a unit is right when all its questions are).
        grouped_by_field: ``field -> value -> Tally`` over units.
        meta: free information (fingerprint, run folder).
    """

    name: str
    benchmark: str | None
    headline: float | None
    headline_rule: str
    overall: Tally
    fields: list[str]
    by_field: dict[str, dict[str, Tally]]
    group_field: str | None = None
    grouped: Tally | None = None
    grouped_by_field: dict[str, dict[str, Tally]] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "benchmark": self.benchmark,
            "headline": self.headline,
            "headline_rule": self.headline_rule,
            "overall": self.overall.to_dict(),
            "fields": list(self.fields),
            "by_field": {f: {v: t.to_dict() for v, t in vals.items()} for f, vals in self.by_field.items()},
            "group_field": self.group_field,
            "grouped": None if self.grouped is None else self.grouped.to_dict(),
            "grouped_by_field": {
                f: {v: t.to_dict() for v, t in vals.items()} for f, vals in self.grouped_by_field.items()
            },
            "meta": self.meta,
        }


def value_order(values: Iterable[str]) -> list[str]:
    """Field values in reading order: short/medium/long, numbers by size, the rest alphabetically."""
    values = list(dict.fromkeys(values))

    def key(v: str) -> tuple[int, float, str]:
        if v.lower() in _DURATION_ORDER:
            return (0, _DURATION_ORDER[v.lower()], v)
        if re.fullmatch(r"-?\d+(\.\d+)?", v):
            return (1, float(v), v)
        return (2, 0.0, v.lower())

    return sorted(values, key=key)


def _row(r: Result | Mapping[str, Any]) -> tuple[bool, bool, bool, dict[str, str]]:
    """(correct, error, unparsed, fields) of a stored result or a dict with the same keys."""
    get = (lambda k, d=None: r.get(k, d)) if isinstance(r, Mapping) else (lambda k, d=None: getattr(r, k, d))
    error = get("error") is not None
    correct = bool(get("correct")) and not error
    unparsed = not error and get("choice") in (None, "")
    fields = {str(k): str(v) for k, v in (get("fields") or {}).items()}
    return correct, error, unparsed, fields


def compute_metrics(
    results: Iterable[Result | Mapping[str, Any]],
    *,
    name: str = "",
    benchmark: str | None = None,
    fields: Sequence[str] | None = None,
    macro_field: str | None = None,
    group_field: str | None = None,
    meta: Mapping[str, Any] | None = None,
) -> Metrics:
    """Accuracy overall and per field value.

    Args:
        results: stored rows (:class:`Result` or dicts with ``correct``, ``error``, ``choice``,
            ``fields``).
        name: the run's label.
        benchmark: registry name; supplies ``fields``, ``macro_field`` and ``group_field``
            defaults from :data:`quota.eval.benchmarks.BENCHMARKS`.
        fields: fields to report by (default: the benchmark's, or every field with at most
            64 distinct values).
        macro_field: headline = mean of the per-value accuracies of this field.
        group_field: questions sharing this field's value count as one unit, right when all are.
    """
    spec = None
    if benchmark is not None:
        from .benchmarks import get_spec

        spec = get_spec(benchmark)
    if spec is not None:
        fields = spec.fields if fields is None else fields
        macro_field = spec.macro_field if macro_field is None else macro_field
        group_field = spec.group_field if group_field is None else group_field
    rows = [_row(r) for r in results]
    if fields is None:
        seen: dict[str, set[str]] = {}
        for _, _, _, f in rows:
            for k, v in f.items():
                seen.setdefault(k, set()).add(v)
        fields = [k for k in sorted(seen) if k != group_field and len(seen[k]) <= MAX_FIELD_VALUES]
    fields = list(fields)

    overall = Tally()
    by_field: dict[str, dict[str, Tally]] = {f: {} for f in fields}
    for correct, error, unparsed, f in rows:
        overall.add(correct, error, unparsed)
        for name_ in fields:
            if name_ in f:
                by_field[name_].setdefault(f[name_], Tally()).add(correct, error, unparsed)
    by_field = {f: {v: vals[v] for v in value_order(vals)} for f, vals in by_field.items()}

    grouped = None
    grouped_by_field: dict[str, dict[str, Tally]] = {}
    if group_field:
        units: dict[str, list[tuple[bool, bool, bool, dict[str, str]]]] = {}
        for row in rows:
            units.setdefault(row[3].get(group_field, f"#{len(units)}"), []).append(row)
        grouped = Tally()
        grouped_by_field = {f: {} for f in fields}
        for members in units.values():
            ok = all(m[0] for m in members)
            err = any(m[1] for m in members)
            unp = any(m[2] for m in members)
            grouped.add(ok, err, unp)
            for name_ in fields:
                if name_ in members[0][3]:
                    grouped_by_field[name_].setdefault(members[0][3][name_], Tally()).add(ok, err, unp)
        grouped_by_field = {f: {v: vals[v] for v in value_order(vals)} for f, vals in grouped_by_field.items()}

    base = grouped if grouped is not None else overall
    base_by_field = grouped_by_field if grouped is not None else by_field
    if macro_field and base_by_field.get(macro_field):
        accs = [t.accuracy for t in base_by_field[macro_field].values() if t.accuracy is not None]
        headline = sum(accs) / len(accs) if accs else None
        rule = f"mean over {macro_field} of " + ("all-right-unit accuracy" if grouped is not None else "accuracy")
    else:
        headline = base.accuracy
        rule = "accuracy over all questions"
        if grouped is not None:
            rule = "accuracy over units (all questions of a unit right)"
    if spec is not None:
        rule = spec.headline
    return Metrics(
        name=name or (spec.title if spec else "run"),
        benchmark=None if spec is None else spec.name,
        headline=headline,
        headline_rule=rule,
        overall=overall,
        fields=fields,
        by_field=by_field,
        group_field=group_field,
        grouped=grouped,
        grouped_by_field=grouped_by_field,
        meta=dict(meta or {}),
    )


def run_label(fingerprint: Mapping[str, Any], run_dir: str | os.PathLike[str]) -> str:
    """A short label for a run: its fingerprint's ``name``/``label``/``mode``, else the folder name."""
    for key in ("name", "label", "mode"):
        value = fingerprint.get(key)
        if isinstance(value, str) and value:
            return value
    return os.path.basename(os.path.normpath(str(run_dir))) or str(run_dir)


def metrics_from_store(
    store: RunStore | str | os.PathLike[str],
    *,
    name: str | None = None,
    benchmark: str | None = None,
    **kwargs: Any,
) -> Metrics:
    """:func:`compute_metrics` of a run folder (or an open store). The benchmark is taken from the
    store's fingerprint (key ``benchmark``) unless given."""
    own = not isinstance(store, RunStore)
    st = open_run(store) if own else store
    try:
        fp = dict(st.fingerprint)
        bench = benchmark if benchmark is not None else fp.get("benchmark")
        if bench is not None:
            from ..errors import BenchmarkError
            from .benchmarks import get_spec

            try:
                bench = get_spec(str(bench)).name
            except BenchmarkError:
                bench = None
        return compute_metrics(
            st.results(), name=name or run_label(fp, st.run_dir), benchmark=bench,
            meta={"run_dir": str(st.run_dir), "fingerprint": fp}, **kwargs,
        )
    finally:
        if own:
            st.close()


__all__ = ["Tally", "Metrics", "compute_metrics", "metrics_from_store", "run_label", "value_order"]
