"""Compose HyperPyYAML files: dataset defaults, then a variant, then overrides.

A recipe's ``dataset.yaml`` holds the dataset's facts;
``hparams/<variant>.yaml`` holds the model, ToMe and distillation settings
and knows nothing of a dataset. A variant may start with
``inherit: other.yaml`` (a path relative to itself) to change a few keys of
another variant. Top-level keys of later files replace earlier ones;
command-line overrides come last and must name existing keys.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import ruamel.yaml
from hyperpyyaml import load_hyperpyyaml, resolve_references

PathLike = Union[str, Path]


def _yaml() -> ruamel.yaml.YAML:
    yaml = ruamel.yaml.YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 4096
    return yaml


def _load_chain(path: Path, seen: Tuple[Path, ...] = ()) -> List[Any]:
    path = path.resolve()
    if path in seen:
        chain = " -> ".join(str(p) for p in seen + (path,))
        raise ValueError(f"hparams inherit cycle: {chain}")
    if not path.is_file():
        raise FileNotFoundError(f"hparams file not found: {path}")
    with open(path, encoding="utf-8") as f:
        doc = _yaml().load(f) or {}
    parent = doc.pop("inherit", None)
    if parent is None:
        return [doc]
    return _load_chain(path.parent / str(parent), seen + (path,)) + [doc]


def compose_yaml(*paths: PathLike) -> str:
    """Merge YAML files (each with its ``inherit`` chain) into one text.

    Example
    -------
    >>> import tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> _ = open(os.path.join(d, "a.yaml"), "w").write("x: 1\\ny: !ref <x>\\n")
    >>> _ = open(os.path.join(d, "b.yaml"), "w").write("x: 2\\n")
    >>> a, b = os.path.join(d, "a.yaml"), os.path.join(d, "b.yaml")
    >>> print(compose_yaml(a, b))
    x: 2
    y: !ref <x>
    <BLANKLINE>
    """
    docs = [doc for path in paths for doc in _load_chain(Path(path))]
    merged = docs[0] if docs else {}
    for doc in docs[1:]:
        for key, value in doc.items():
            merged[key] = value
    out = io.StringIO()
    _yaml().dump(merged, out)
    return out.getvalue()


def load_hparams(
    *paths: PathLike, overrides: Optional[Dict[str, Any]] = None
) -> Tuple[Dict[str, Any], str]:
    """Compose ``paths``; return the objects HyperPyYAML loads from them and
    the composed YAML with overrides and references applied (to save next to
    the run's outputs).

    A declared ``project_root`` gets the folder holding ``recipes/`` (the
    first path is ``recipes/<Dataset>/...``), so recipe data files resolve
    from any working directory.

    Example
    -------
    >>> import tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> f = os.path.join(d, "a.yaml")
    >>> _ = open(f, "w").write("x: 1\\ny: !ref <x> + 1\\n")
    >>> load_hparams(f, overrides={"x": 5})[0]["y"]
    6
    """
    text = compose_yaml(*paths)
    overrides = dict(overrides or {})
    if paths and re.search(r"^project_root:", text, re.M):
        # recipes/<Dataset>/dataset.yaml -> the folder holding recipes/
        overrides.setdefault(
            "project_root", str(Path(paths[0]).resolve().parents[2])
        )
    hparams = load_hyperpyyaml(text, overrides)
    return hparams, resolve_references(text, overrides).getvalue()
