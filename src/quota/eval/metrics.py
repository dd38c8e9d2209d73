"""Accuracy of a run, overall and per reporting field, the way each benchmark reports it.

Errors count as wrong answers (a crashed question is not a free pass) and are also counted apart,
so a run with many errors is visible as such. Questions whose video is missing count as wrong too (as
they do in lmms-eval, where the plug-in answers them with an empty string), and are counted apart: both
routes divide by the same number of questions. Pure functions of the stored rows.
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
        missing: questions whose video was not found (counted as wrong).
    """

    correct: int = 0
    total: int = 0
    errors: int = 0
    unparsed: int = 0
    missing: int = 0

    @property
    def accuracy(self) -> float | None:
        """Percent right (0-100), ``None`` for an empty slice."""
        return None if self.total == 0 else 100.0 * self.correct / self.total

    def add(self, correct: bool, error: bool = False, unparsed: bool = False, missing: bool = False) -> None:
        self.total += 1
        self.correct += int(bool(correct) and not error and not missing)
        self.missing += int(missing)
        self.errors += int(error and not missing)
        self.unparsed += int(unparsed and not error and not missing)

    def to_dict(self) -> dict[str, Any]:
        return {"correct": self.correct, "total": self.total, "errors": self.errors,
                "unparsed": self.unparsed, "missing": self.missing, "accuracy": self.accuracy}


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
        units_left_out: units with fewer than the benchmark's ``group_size`` questions counted (a run
            still going): left out of ``grouped``, ``grouped_by_field`` and so of the headline.
        meta: free information (fingerprint, run folder).
        ids: the questions counted (answered, failed or missing video), to tell whether two runs
            answered the same questions.
        run: how complete the run is (:func:`run_status`): ``total``, ``answered``, ``errors``,
            ``missing``, ``pending``, ``skipped_rows`` (and ``skipped``, the rows' messages); ``{}`` when
            unknown.
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
    units_left_out: int = 0
    meta: dict[str, Any] = field(default_factory=dict)
    ids: frozenset[str] = frozenset()
    run: dict[str, Any] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        """Every question of the run is counted (none left to answer); ``True`` when unknown."""
        return not self.run.get("pending")

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
            "units_left_out": self.units_left_out,
            "meta": self.meta,
            "run": self.run,
            "complete": self.complete,
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


Row = tuple[bool, bool, bool, dict[str, str], bool]


def _row(r: Result | Mapping[str, Any]) -> Row:
    """(correct, error, unparsed, fields, missing) of a stored result or a dict with the same keys
    (a dict with ``missing: true`` stands for a question whose video was not found)."""
    get = (lambda k, d=None: r.get(k, d)) if isinstance(r, Mapping) else (lambda k, d=None: getattr(r, k, d))
    missing = bool(get("missing", False))
    error = get("error") is not None and not missing
    correct = bool(get("correct")) and not error and not missing
    unparsed = not error and not missing and get("choice") in (None, "")
    fields = {str(k): str(v) for k, v in (get("fields") or {}).items()}
    return correct, error, unparsed, fields, missing


def _spec_defaults(
    benchmark: str | None, fields: Sequence[str] | None, macro_field: str | None, group_field: str | None
) -> tuple[Any, Sequence[str] | None, str | None, str | None]:
    """The benchmark's spec and the reporting settings, the spec filling what is not given."""
    if benchmark is None:
        return None, fields, macro_field, group_field
    from .benchmarks import get_spec

    spec = get_spec(benchmark)
    return (
        spec,
        spec.fields if fields is None else fields,
        spec.macro_field if macro_field is None else macro_field,
        spec.group_field if group_field is None else group_field,
    )


def seen_fields(rows: Sequence[Row], group_field: str | None) -> list[str]:
    """Every field of the rows with at most :data:`MAX_FIELD_VALUES` values (the group field excepted)."""
    seen: dict[str, set[str]] = {}
    for row in rows:
        for k, v in row[3].items():
            seen.setdefault(k, set()).add(v)
    return [k for k in sorted(seen) if k != group_field and len(seen[k]) <= MAX_FIELD_VALUES]


def _ordered(by_field: dict[str, dict[str, Tally]]) -> dict[str, dict[str, Tally]]:
    return {f: {v: vals[v] for v in value_order(vals)} for f, vals in by_field.items()}


def tally_rows(rows: Sequence[Row], fields: Sequence[str]) -> tuple[Tally, dict[str, dict[str, Tally]]]:
    """The overall tally and the tally per value of each field, every question counted once."""
    overall = Tally()
    by_field: dict[str, dict[str, Tally]] = {f: {} for f in fields}
    for correct, error, unparsed, f, missing in rows:
        overall.add(correct, error, unparsed, missing)
        for name in fields:
            if name in f:
                by_field[name].setdefault(f[name], Tally()).add(correct, error, unparsed, missing)
    return overall, _ordered(by_field)


def tally_units(
    rows: Sequence[Row], fields: Sequence[str], group_field: str, group_size: int | None = None
) -> tuple[Tally, dict[str, dict[str, Tally]], int]:
    """The same over units: questions sharing ``group_field``'s value count once, right when all are.

    With ``group_size``, a unit with fewer rows is not finished yet and is left out. Returns the tally,
    the tally per field value, and how many units were left out."""
    units: dict[str, list[Row]] = {}
    for row in rows:
        units.setdefault(row[3].get(group_field, f"#{len(units)}"), []).append(row)
    left_out = 0
    if group_size:
        finished = {k: v for k, v in units.items() if len(v) >= group_size}
        left_out, units = len(units) - len(finished), finished
    grouped = Tally()
    by_field: dict[str, dict[str, Tally]] = {f: {} for f in fields}
    for members in units.values():
        ok = all(m[0] for m in members)
        missing = any(m[4] for m in members)
        err = any(m[1] for m in members)
        unp = any(m[2] for m in members)
        grouped.add(ok, err, unp, missing)
        for name in fields:
            if name in members[0][3]:
                by_field[name].setdefault(members[0][3][name], Tally()).add(ok, err, unp, missing)
    return grouped, _ordered(by_field), left_out


def headline_score(
    base: Tally, base_by_field: dict[str, dict[str, Tally]], macro_field: str | None, grouped: bool
) -> tuple[float | None, str]:
    """The headline score and how it is made: the mean over ``macro_field``'s values when given, else
    the accuracy of ``base``."""
    if macro_field and base_by_field.get(macro_field):
        accs = [t.accuracy for t in base_by_field[macro_field].values() if t.accuracy is not None]
        rule = f"mean over {macro_field} of " + ("all-right-unit accuracy" if grouped else "accuracy")
        return (sum(accs) / len(accs) if accs else None), rule
    if grouped:
        return base.accuracy, "accuracy over units (all questions of a unit right)"
    return base.accuracy, "accuracy over all questions"


def compute_metrics(
    results: Iterable[Result | Mapping[str, Any]],
    *,
    name: str = "",
    benchmark: str | None = None,
    fields: Sequence[str] | None = None,
    macro_field: str | None = None,
    group_field: str | None = None,
    meta: Mapping[str, Any] | None = None,
    run: Mapping[str, Any] | None = None,
) -> Metrics:
    """Accuracy overall and per field value.

    Args:
        results: stored rows (:class:`Result` or dicts with ``correct``, ``error``, ``choice``,
            ``fields``; a dict with ``missing: true`` is a question whose video was not found).
        name: the run's label.
        benchmark: registry name; supplies ``fields``, ``macro_field`` and ``group_field``
            defaults from :data:`quota.eval.benchmarks.BENCHMARKS`.
        fields: fields to report by (default: the benchmark's, or every field with at most
            64 distinct values).
        macro_field: headline = mean of the per-value accuracies of this field.
        group_field: questions sharing this field's value count as one unit, right when all are.
        run: how complete the run is (see :attr:`Metrics.run`).
    """
    results = list(results)
    spec, fields, macro_field, group_field = _spec_defaults(benchmark, fields, macro_field, group_field)
    rows = [_row(r) for r in results]
    fields = list(fields) if fields is not None else seen_fields(rows, group_field)
    overall, by_field = tally_rows(rows, fields)
    size = getattr(spec, "group_size", None) if spec is not None and group_field == spec.group_field else None
    grouped, grouped_by_field, left_out = (None, {}, 0) if not group_field else tally_units(
        rows, fields, group_field, size)
    base, base_by_field = (grouped, grouped_by_field) if grouped is not None else (overall, by_field)
    headline, rule = headline_score(base, base_by_field, macro_field, grouped is not None)
    return Metrics(
        name=name or (spec.title if spec else "run"),
        benchmark=None if spec is None else spec.name,
        headline=headline,
        headline_rule=spec.headline if spec is not None else rule,
        overall=overall,
        fields=fields,
        by_field=by_field,
        group_field=group_field,
        grouped=grouped,
        grouped_by_field=grouped_by_field,
        units_left_out=left_out,
        meta=dict(meta or {}),
        ids=frozenset(_sample_id(r) for r in results),
        run=dict(run or {}),
    )


def _sample_id(r: Result | Mapping[str, Any]) -> str:
    return str(r.get("sample_id", r.get("id", "")) if isinstance(r, Mapping) else r.sample_id)


def missing_rows(store: RunStore) -> list[dict[str, Any]]:
    """The questions of the run whose video was missing (recorded by ``quota eval``), as metric rows."""
    return [{"sample_id": str(m.get("id")), "fields": m.get("fields") or {}, "missing": True}
            for m in store.get_meta("missing", []) or []]


def run_status(store: RunStore, results: Sequence[Result]) -> dict[str, Any]:
    """How complete a run is, from its store: the questions ``quota eval`` planned (meta ``plan``), those
    stored, failed and missing, and the annotation rows its loader skipped. ``{}`` for a store without
    a plan (written by :func:`quota.eval.run_benchmark` directly)."""
    plan = store.get_meta("plan")
    if not isinstance(plan, dict):
        return {}
    missing = store.get_meta("missing", []) or []
    stored = {r.sample_id for r in results}
    wanted = [str(i) for i in plan.get("ids", [])]
    skipped = [str(s) for s in store.get_meta("skipped", []) or []]
    return {
        "total": len(wanted) + len(missing),
        "answered": sum(1 for r in results if not r.is_error),
        "errors": sum(1 for r in results if r.is_error),
        "missing": len(missing),
        "missing_videos": len({str(m.get("video", m.get("id"))) for m in missing}),
        "pending": sum(1 for i in wanted if i not in stored),
        "skipped_rows": len(skipped),
        "skipped": skipped,
        "limit": plan.get("limit"),
    }


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
        results = st.results()
        stored = {r.sample_id for r in results}
        extra = [m for m in missing_rows(st) if m["sample_id"] not in stored]
        return compute_metrics(
            [*results, *extra], name=name or run_label(fp, st.run_dir), benchmark=bench,
            meta={"run_dir": str(st.run_dir), "fingerprint": fp, "settings": st.get_meta("settings")},
            run=run_status(st, results), **kwargs,
        )
    finally:
        if own:
            st.close()


__all__ = [
    "Tally",
    "Metrics",
    "compute_metrics",
    "metrics_from_store",
    "run_label",
    "run_status",
    "value_order",
    "tally_rows",
    "tally_units",
    "headline_score",
]
