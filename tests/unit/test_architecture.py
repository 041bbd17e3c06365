"""The package's layers run one way: read from the import graph.

Every ``import fastast_sb...`` counts, at module level or inside a function.
Rules (docs/architecture.md draws them):

- no import cycles between modules;
- each layer imports only from itself and the layers below it
  (``LAYERS``, lowest first);
- the training core never loads a command-line module, not even through a
  package ``__init__``.
"""

from __future__ import annotations

import ast
import shutil
from pathlib import Path
from typing import Dict, List, Set

import pytest

from tests.conftest import ROOT

PACKAGE = "fastast_sb"

#: Lowest first; a module belongs to the first layer whose prefix it has.
LAYERS: List[List[str]] = [
    [
        "fastast_sb.checkpoint",
        "fastast_sb.audio",
        "fastast_sb.labels",
        "fastast_sb.precision",
    ],
    ["fastast_sb.tome"],
    ["fastast_sb.models"],
    [
        "fastast_sb.features",
        "fastast_sb.augment",
        "fastast_sb.losses",
        "fastast_sb.distill",
        "fastast_sb.metrics",
        "fastast_sb.samplers",
        "fastast_sb.schedulers",
        "fastast_sb.dataio",
        "fastast_sb.clips",
        "fastast_sb.teachers",
        "fastast_sb.tables",
        "fastast_sb.timing",
    ],
    [
        "fastast_sb.averaging",
        "fastast_sb.teacher_cache",
        "fastast_sb.brain",
        "fastast_sb.sweep",
        "fastast_sb.config",
        "fastast_sb.runner",
        "fastast_sb.resume",
    ],
    [
        "fastast_sb.inference",
        "fastast_sb.benchmark",
        "fastast_sb.visualize",
        "fastast_sb.upstream",
        "fastast_sb.experiments",
        "fastast_sb.walltimes",
        "fastast_sb.paper_tables",
    ],
]
TRAINING_CORE = ["fastast_sb.brain", "fastast_sb.runner", "fastast_sb.sweep"]


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def import_graph(root: Path) -> Dict[str, Set[str]]:
    """Module -> the package modules it imports (anywhere in its code)."""
    files = sorted((root / PACKAGE).rglob("*.py"))
    modules = {module_name(f, root) for f in files}
    graph: Dict[str, Set[str]] = {}
    for file in files:
        name = module_name(file, root)
        edges: Set[str] = set()
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
            targets: List[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                base = node.module
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            for target in targets:
                if target in modules and target != name:
                    edges.add(target)
        graph[name] = edges
    return graph


def layer_of(module: str) -> int:
    for level, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return level
    raise AssertionError(f"{module} is in no layer: add it to LAYERS")


def cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    found: List[List[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def loaded_by(module: str, graph: Dict[str, Set[str]]) -> Set[str]:
    """Every module that importing ``module`` executes (package inits too)."""
    seen: Set[str] = set()
    todo = [module]
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        todo.extend(graph.get(m, ()))
        parts = m.split(".")
        todo.extend(".".join(parts[:i]) for i in range(2, len(parts)))
    return seen


def violations(root: Path) -> List[str]:
    graph = import_graph(root)
    found = [f"cycle: {' <-> '.join(c)}" for c in cycles(graph)]
    for module, targets in sorted(graph.items()):
        for target in sorted(targets):
            if layer_of(target) > layer_of(module):
                found.append(f"upward import: {module} -> {target}")
    for core in TRAINING_CORE:
        for m in sorted(loaded_by(core, graph)):
            if m.rsplit(".", 1)[-1] in ("cli", "__main__"):
                found.append(f"training core loads a CLI: {core} -> {m}")
    return found


def test_layers_run_one_way():
    assert violations(ROOT) == []


def test_every_module_has_a_layer():
    for module in import_graph(ROOT):
        if module != PACKAGE:
            layer_of(module)


@pytest.mark.parametrize(
    "file, line, expected",
    [
        (
            "tome/merge.py",
            "from fastast_sb.models.ast import AST",
            "upward import: fastast_sb.tome.merge -> fastast_sb.models.ast",
        ),
        (
            "models/layers.py",
            "from fastast_sb.models import ast",
            "cycle: fastast_sb.models.ast <-> ",
        ),
        (
            "sweep.py",
            "def f():\n    from fastast_sb.inference import cli",
            "training core loads a CLI: fastast_sb.sweep -> "
            "fastast_sb.inference.cli",
        ),
    ],
)
def test_the_check_fails_on_a_bad_import(tmp_path, file, line, expected):
    shutil.copytree(ROOT / PACKAGE, tmp_path / PACKAGE)
    target = tmp_path / PACKAGE / file
    target.write_text(
        target.read_text(encoding="utf-8") + "\n\n" + line + "\n",
        encoding="utf-8",
    )
    found = violations(tmp_path)
    assert any(expected in v for v in found), found
