"""No dead YAML keys: every top-level key of every composed recipe
configuration (``recipes/<Dataset>/dataset.yaml`` + ``hparams/<variant>.yaml``)
is read by something.

SpeechBrain's ``tests/utils/check_yaml.py`` asks the same of a recipe's YAML
and its ``train.py``; here the Brain lives in the library, so a key counts as
read when

- the composed YAML itself refers to it (``!ref <key>``, ``<key[...]>``),
- code in ``fastast_sb/`` or ``recipes/`` reads it from hparams
  (``hparams["key"]``, ``hparams.key``, ``self.hparams.key``,
  ``hparams.get("key")``, ``getattr(self.hparams, "key")``, or
  ``hparams[k]`` with ``k`` looping over literal names),
- SpeechBrain's Brain reads it as a run option (``precision``,
  ``max_grad_norm``, ...), or
- its value is an ``!apply:`` call (run once, at load, for its effect).
"""

from __future__ import annotations

import ast
import io
import re
from pathlib import Path
from typing import Dict, Iterator, List, Set

import pytest
import ruamel.yaml
from speechbrain.utils.run_opts import RunOptions

from fastast_sb.config import compose_yaml
from tests.conftest import ROOT

DATASETS = sorted(ROOT.glob("recipes/*/dataset.yaml"))
VARIANTS = sorted(ROOT.glob("hparams/*.yaml"))
REF = re.compile(r"<([A-Za-z_]\w*)")


def _is_hparams(node: ast.AST) -> bool:
    """``hparams`` or ``<anything>.hparams``."""
    if isinstance(node, ast.Name):
        return node.id == "hparams"
    return isinstance(node, ast.Attribute) and node.attr == "hparams"


def _literal_names(node: ast.AST, consts: Dict[str, List[str]]) -> List[str]:
    """Strings of a literal tuple / list, or of a module constant naming one."""
    if isinstance(node, ast.Name):
        return consts.get(node.id, [])
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return [
            e.value
            for e in node.elts
            if isinstance(e, ast.Constant) and isinstance(e.value, str)
        ]
    return []


def _loops(tree: ast.AST, consts: Dict[str, List[str]]) -> Dict[str, Set[str]]:
    """Loop variable -> the literal names it runs over (for / comprehension)."""
    loops: Dict[str, Set[str]] = {}
    for node in ast.walk(tree):
        if isinstance(node, (ast.For, ast.comprehension)):
            if isinstance(node.target, ast.Name):
                names = _literal_names(node.iter, consts)
                loops.setdefault(node.target.id, set()).update(names)
    return loops


def keys_read_in(source: str) -> Set[str]:
    """The hparams keys a Python module reads.

    Example
    -------
    >>> sorted(keys_read_in(
    ...     "A = ('a', 'b')\\n"
    ...     "x = hparams['lr'] + self.hparams.seed + hparams.get('mix')\\n"
    ...     "y = {k: hparams[k] for k in A}\\n"
    ...     "z = getattr(self.hparams, 'opt', None)\\n"))
    ['a', 'b', 'lr', 'mix', 'opt', 'seed']
    """
    tree = ast.parse(source)
    consts = {
        t.id: _literal_names(node.value, {})
        for node in tree.body
        if isinstance(node, ast.Assign)
        for t in node.targets
        if isinstance(t, ast.Name)
    }
    loops = _loops(tree, consts)
    keys: Set[str] = set()

    def names(arg: ast.AST) -> Set[str]:
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            return {arg.value}
        if isinstance(arg, ast.Name):
            return loops.get(arg.id, set())
        return set()

    methods = {  # hparams.get(...) is a method, not a key
        id(node.func)
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "get"
    }
    for node in ast.walk(tree):
        if id(node) in methods:
            pass
        elif isinstance(node, ast.Subscript) and _is_hparams(node.value):
            keys |= names(node.slice)
        elif isinstance(node, ast.Attribute) and _is_hparams(node.value):
            keys.add(node.attr)
        if isinstance(node, ast.Call) and node.args:
            func = node.func
            if (
                isinstance(func, ast.Attribute)
                and func.attr == "get"
                and _is_hparams(func.value)
            ):
                keys |= names(node.args[0])
            elif (
                isinstance(func, ast.Name)
                and func.id in ("getattr", "hasattr")
                and len(node.args) > 1
                and _is_hparams(node.args[0])
            ):
                keys |= names(node.args[1])
    return keys


def code_reads() -> Set[str]:
    """Keys read by the library and the recipes."""
    files = list((ROOT / "fastast_sb").rglob("*.py"))
    files += list((ROOT / "recipes").rglob("*.py"))
    keys: Set[str] = set()
    for path in files:
        keys |= keys_read_in(path.read_text(encoding="utf-8"))
    return keys


def yaml_refs(text: str) -> Set[str]:
    """Keys a YAML text refers to with ``!ref`` (``<key>``, ``<key[i]>``).

    Example
    -------
    >>> sorted(yaml_refs("a: 1\\nb: !ref <a>/x<c[0]>\\nd: <e>\\n"))
    ['a', 'c']
    """
    refs: Set[str] = set()
    for line in text.splitlines():
        if "!ref" in line:
            refs |= set(REF.findall(line.split("!ref", 1)[1]))
    return refs


def top_level(text: str) -> Iterator[tuple]:
    """(key, value) of a YAML text's top-level mapping."""
    doc = ruamel.yaml.YAML(typ="rt").load(io.StringIO(text))
    yield from doc.items()


def dead_keys(dataset: Path, variant: Path, read: Set[str]) -> List[str]:
    """Top-level keys of the composition that nothing reads."""
    text = compose_yaml(dataset, variant)
    used = read | yaml_refs(text) | set(RunOptions().as_dict())
    dead = []
    for key, value in top_level(text):
        tag = getattr(getattr(value, "tag", None), "value", None) or ""
        if key not in used and not str(tag).startswith("!apply:"):
            dead.append(key)
    return dead


@pytest.fixture(scope="module")
def read() -> Set[str]:
    return code_reads()


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda p: p.stem)
@pytest.mark.parametrize("dataset", DATASETS, ids=lambda p: p.parent.name)
def test_every_key_is_read(dataset, variant, read):
    dead = dead_keys(dataset, variant, read)
    assert not dead, (
        f"{dataset.parent.name}/dataset.yaml + {variant.name}: nothing reads "
        f"{dead} (not !ref'd in the YAML, not read as hparams[...] in "
        "fastast_sb/ or recipes/, not a SpeechBrain run option)"
    )


def test_the_check_finds_a_dead_key(tmp_path, read):
    tome = ROOT / "hparams" / "tome.yaml"
    variant = tmp_path / "dead.yaml"
    variant.write_text(f"inherit: {tome}\nnobody_reads_me: 3\n")
    before = dead_keys(DATASETS[0], tome, read)
    assert dead_keys(DATASETS[0], variant, read) == before + ["nobody_reads_me"]
