"""The import rules of docs/architecture.md, checked against every import statement in ``src/quota``.

Every module is parsed with :mod:`ast`; imports at module level and inside functions both count, relative
imports are resolved, and ``from pkg import name`` counts as importing ``pkg.name`` when that is a module.
Modules are grouped into *units* (a top-level module, or a top-level package with everything under it), and
the rules are stated over units, as in the doc. :data:`FLOORS` mirrors the doc's table (a test compares them),
and each rule is a function over an import graph, so the tests at the end can feed it a graph that breaks
the rule and see it reported.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import quota

ROOT = Path(quota.__file__).resolve().parent
REPO = ROOT.parent.parent

#: docs/architecture.md, "What may import what": each unit's floor. A unit imports only units on lower floors.
FLOORS: dict[str, int] = {
    "errors": 0,
    "config": 1, "pyliteral": 1, "testing": 1,
    "tokens": 2, "choices": 2, "outputs": 2, "checkpoint": 2, "runtime": 2,
    "types": 3, "reference": 3,
    "preflight": 4, "video": 4, "decouple": 4, "assign": 4, "report": 4,
    "models": 5,
    "scoring": 6,
    "pipeline": 7,
    "commands": 8,
    "cli": 9, "eval": 9,
    "demo": 10, "integrations": 10, "serve": 10,
}
#: Never torch or transformers, not even inside a function, nor through what they import.
LIGHT = ("errors", "config", "pyliteral", "tokens", "choices", "outputs", "types", "reference")
#: May import torch at module level; every other unit imports it inside functions only, or not at all.
TORCH_AT_IMPORT = ("assign", "models", "pipeline")
#: Never import torch at all.
NO_TORCH = LIGHT + ("checkpoint", "video", "decouple", "report", "commands", "cli", "demo")
#: The only units that import transformers (always inside a function).
TRANSFORMERS_USERS = ("models", "scoring", "testing", "checkpoint", "commands")
#: Units that reach the models only through the pipeline.
THROUGH_PIPELINE = ("commands", "cli", "eval", "demo", "integrations", "serve")
MODEL_UNITS = ("models", "scoring", "assign", "decouple")
#: ... except what a ``--scorer`` value names, read without loading anything.
SCORER_NAMES = "quota.scoring.registry"
#: Who may import a unit that is not for everyone (``()``: nobody in the package).
RESTRICTED: dict[str, tuple[str, ...]] = {
    "commands": ("cli", "eval", "demo", "serve"),
    "cli": (),
    "demo": (),
    "integrations": (),
    "serve": (),
    "testing": (),
}
#: The modules whose top level ``quota --help`` imports (cli.COMMANDS): nothing heavy below them.
PARSER_MODULES = ("quota.cli", "quota.eval.cli", "quota.demo", "quota.serve")
HEAVY = ("torch", "transformers")


@dataclass(frozen=True)
class Import:
    """One imported name: ``source`` module imports ``target`` (a module), at module level or in a function."""

    source: str
    target: str
    top: bool
    names: tuple[str, ...] = ()


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def collect_imports(root: Path = ROOT) -> tuple[set[str], list[Import]]:
    """Every module under ``root`` (a package folder) and every import statement in them."""
    files = {_module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    modules = set(files)
    found: list[Import] = []
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        tree = ast.parse(path.read_text(encoding="utf-8"))
        top_level = {id(node) for node in tree.body}
        top_level |= {id(n) for node in tree.body if isinstance(node, (ast.If, ast.Try)) for n in ast.walk(node)}
        for node in ast.walk(tree):
            top = id(node) in top_level
            if isinstance(node, ast.Import):
                found += [Import(name, alias.name, top) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    if sub in modules:
                        found.append(Import(name, sub, top, ()))
                    else:
                        found.append(Import(name, target, top, (alias.name,)))
    return modules, found


def unit(module: str) -> str:
    """``quota.eval.cli`` -> ``eval``; ``torch.nn`` -> ``torch``; ``quota`` -> ``quota``."""
    parts = module.split(".")
    if parts[0] != "quota":
        return parts[0]
    return parts[1] if len(parts) > 1 else "quota"


def _cross(imports: list[Import]) -> list[Import]:
    """Imports from one unit into another (the package root ``quota`` runs with any import and is left out)."""
    return [i for i in imports if unit(i.source) != unit(i.target) and unit(i.target) != "quota"
            and unit(i.source) != "quota"]


# ---------------------------------------------------------------------------------------------------------
# The rules: each returns the offending imports as lines (empty: the rule holds).
# ---------------------------------------------------------------------------------------------------------


def floors_rule(imports: list[Import], floors: dict[str, int] = FLOORS) -> list[str]:
    """A unit imports only units on lower floors (and its own modules)."""
    bad = []
    for i in _cross(imports):
        src, dst = unit(i.source), unit(i.target)
        if dst not in floors:
            continue  # a library
        if src not in floors or floors[dst] >= floors[src]:
            bad.append(f"{i.source} -> {i.target} (floor {floors.get(src)} -> {floors[dst]})")
    return bad


def reachable(imports: list[Import], start: str, *, top_only: bool) -> set[str]:
    """Modules ``start`` imports, directly or through others (only module-level imports with ``top_only``),
    counting the packages each import runs on the way (``quota.eval.cli`` runs ``quota.eval``)."""
    edges: dict[str, set[str]] = {}
    for i in imports:
        if i.top or not top_only:
            edges.setdefault(i.source, set()).add(i.target)
    seen, todo = set(), [start]
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        parts = module.split(".")
        todo += [".".join(parts[:k]) for k in range(1, len(parts))]  # a submodule runs its packages first
        todo += edges.get(module, ())
    return seen - {start}


def light_rule(imports: list[Import], light: tuple[str, ...] = LIGHT) -> list[str]:
    """Light units reach no torch or transformers through any import, at module level or in functions."""
    bad = []
    for module in sorted({i.source for i in imports if unit(i.source) in light}):
        heavy = sorted(m for m in reachable(imports, module, top_only=False) if unit(m) in HEAVY)
        if heavy:
            bad.append(f"{module} reaches {', '.join(heavy)}")
    return bad


def torch_rule(imports: list[Import]) -> list[str]:
    """torch at module level only in :data:`TORCH_AT_IMPORT`; never in :data:`NO_TORCH`."""
    bad = []
    for i in imports:
        if unit(i.target) != "torch":
            continue
        src = unit(i.source)
        if src in NO_TORCH or (i.top and src not in TORCH_AT_IMPORT):
            bad.append(f"{i.source} imports torch{' at module level' if i.top else ''}")
    return bad


def transformers_rule(imports: list[Import]) -> list[str]:
    """transformers only from :data:`TRANSFORMERS_USERS`, and only inside functions."""
    return [f"{i.source} imports {i.target}{' at module level' if i.top else ''}" for i in imports
            if unit(i.target) == "transformers" and (unit(i.source) not in TRANSFORMERS_USERS or i.top)]


def pipeline_rule(imports: list[Import]) -> list[str]:
    """The units of :data:`THROUGH_PIPELINE` never import the model code itself."""
    return [f"{i.source} -> {i.target}" for i in _cross(imports)
            if unit(i.source) in THROUGH_PIPELINE and unit(i.target) in MODEL_UNITS and i.target != SCORER_NAMES]


def restricted_rule(imports: list[Import]) -> list[str]:
    """Units of :data:`RESTRICTED` are imported only by the units listed for them."""
    return [f"{i.source} -> {i.target}" for i in _cross(imports)
            if unit(i.target) in RESTRICTED and unit(i.source) not in RESTRICTED[unit(i.target)]]


def private_rule(imports: list[Import]) -> list[str]:
    """A private name (a ``_module`` or a ``_name``) is used only inside its own unit."""
    bad = []
    for i in _cross(imports):
        parts = i.target.split(".")[1:] + list(i.names)
        if any(p.startswith("_") and not p.startswith("__") for p in parts):
            bad.append(f"{i.source} -> {i.target} {', '.join(i.names)}".strip())
    return bad


def parser_rule(imports: list[Import]) -> list[str]:
    """What ``quota --help`` imports (the top level of the COMMANDS modules) reaches nothing heavy."""
    bad = []
    for module in PARSER_MODULES:
        heavy = sorted(m for m in reachable(imports, module, top_only=True) if unit(m) in HEAVY)
        if heavy:
            bad.append(f"{module} reaches {', '.join(heavy)} at import")
    return bad


RULES = (floors_rule, light_rule, torch_rule, transformers_rule, pipeline_rule, restricted_rule, private_rule,
         parser_rule)


# ---------------------------------------------------------------------------------------------------------
# The code obeys them
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def graph() -> tuple[set[str], list[Import]]:
    return collect_imports()


def test_every_unit_has_a_floor(graph):
    modules, _ = graph
    assert {unit(m) for m in modules} - {"quota"} == set(FLOORS)


def test_the_collector_sees_function_level_and_relative_imports(graph):
    _, imports = graph
    assert Import("quota.types", "quota.tokens", True, ("newline_count",)) in imports
    assert Import("quota.pipeline", "quota.models", False, ("load_adapter",)) in imports  # inside a method
    assert any(i.source == "quota.demo.app" and i.target == "quota.commands" for i in imports)  # from .. import x


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.__name__)
def test_the_code_obeys_the_rule(graph, rule):
    _, imports = graph
    assert rule(imports) == []


def test_the_doc_states_the_same_floors():
    text = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\|\s*(\d+)\s*\|([^|]+)\|", text, flags=re.MULTILINE)
    assert rows, "docs/architecture.md has no floor table"
    doc = {name.strip(" `"): int(floor) for floor, names in rows for name in names.split(",") if name.strip()}
    assert doc == FLOORS


# ---------------------------------------------------------------------------------------------------------
# The rules can fail
# ---------------------------------------------------------------------------------------------------------

#: A made-up package that breaks every rule once: ``types`` reaches torch through ``assign``, the scorer
#: imports the pipeline, eval loads a model adapter and a private name, the parser module pulls torch in at
#: import, a light module imports transformers, and somebody imports the command line.
BROKEN = [
    Import("quota.types", "quota.assign", False, ("newline_count",)),
    Import("quota.assign", "torch", True),
    Import("quota.scoring.lvlm", "quota.pipeline", False, ("QuoTA",)),
    Import("quota.eval.cli", "quota.models.loading", False, ("_looks_local",)),
    Import("quota.eval.cli", "quota.pipeline", True, ("QuoTA",)),
    Import("quota.pipeline", "torch", True),
    Import("quota.config", "transformers", False, ("AutoConfig",)),
    Import("quota.report", "quota.cli", False, ("plan_json",)),
    Import("quota.video.load", "torch", True),
]


@pytest.mark.parametrize("rule, expected", [
    (floors_rule, ["quota.types -> quota.assign", "quota.scoring.lvlm -> quota.pipeline", "quota.report -> quota.cli"]),
    (light_rule, ["quota.config reaches transformers", "quota.types reaches torch"]),
    (torch_rule, ["quota.video.load imports torch at module level"]),
    (transformers_rule, ["quota.config imports transformers"]),
    (pipeline_rule, ["quota.eval.cli -> quota.models.loading"]),
    (restricted_rule, ["quota.report -> quota.cli"]),
    (private_rule, ["quota.eval.cli -> quota.models.loading _looks_local"]),
    (parser_rule, ["quota.eval.cli reaches torch at import"]),
], ids=lambda x: getattr(x, "__name__", "")[:20])
def test_each_rule_reports_a_graph_that_breaks_it(rule, expected):
    found = rule(BROKEN)
    for line in expected:
        assert any(f.startswith(line) for f in found), (line, found)
    assert len(found) == len(expected), found


def test_a_relative_import_of_a_private_module_is_resolved(tmp_path):
    pkg = tmp_path / "quota"
    (pkg / "eval").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "preflight.py").write_text("def f():\n    from .models.loading import _looks_local\n")
    (pkg / "eval" / "__init__.py").write_text("from .. import demo\n")
    (pkg / "demo.py").write_text("")
    (pkg / "models").mkdir()
    (pkg / "models" / "__init__.py").write_text("")
    (pkg / "models" / "loading.py").write_text("import torch\n")
    modules, imports = collect_imports(pkg)
    assert modules == {"quota", "quota.preflight", "quota.eval", "quota.demo", "quota.models", "quota.models.loading"}
    assert Import("quota.preflight", "quota.models.loading", False, ("_looks_local",)) in imports
    assert Import("quota.eval", "quota.demo", True, ()) in imports
    assert private_rule(imports) == ["quota.preflight -> quota.models.loading _looks_local"]
    assert restricted_rule(imports) == ["quota.eval -> quota.demo"]
    assert sorted(line.split(" (")[0] for line in floors_rule(imports)) == [
        "quota.eval -> quota.demo", "quota.preflight -> quota.models.loading"]


# ---------------------------------------------------------------------------------------------------------
# The same, as Python sees it
# ---------------------------------------------------------------------------------------------------------


def _loaded_after(code: str) -> set[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT.parent), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys\nprint(' '.join(sys.modules))"],
                         capture_output=True, text=True, env=env, check=True, timeout=120).stdout
    return set(out.split())


@pytest.mark.parametrize("code", [
    "import quota.types",
    "from quota.types import Plan\nPlan(indices=[0], timestamps=[0.0], scores=[1.0], weights=[1.0], grids=[(2, 2)], "
    "budget=4, native=(2, 2), method='bilinear', duration=1.0, newline='row').newline_tokens",
    "from quota.cli import build_parser\nbuild_parser()",
])
def test_light_imports_load_no_torch(code):
    loaded = _loaded_after(code)
    assert "quota" in loaded and not {"torch", "transformers"} & loaded


def test_ci_runs_the_readmes_full_suite_and_the_readme_names_the_quick_one():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    commands = [c.split("#")[0].strip() for c in re.findall(r"^python -m pytest.*$", readme, flags=re.MULTILINE)]
    assert 'python -m pytest -q -m "not slow"' in commands and "python -m pytest -q" in commands
    ci = [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines() if "pytest" in line
          and not line.lstrip().startswith(("#", "echo"))]
    assert ci == ["python -m pytest -q"]
    assert "slow:" in (REPO / "pyproject.toml").read_text()
