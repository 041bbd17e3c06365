"""Compose HyperPyYAML files: dataset defaults, then a variant, then overrides.

A recipe's ``dataset.yaml`` holds the dataset's facts;
``hparams/<variant>.yaml`` holds the model, ToMe and distillation settings
and knows nothing of a dataset. A variant may start with
``inherit: other.yaml`` (a path relative to itself) to change a few keys of
another variant. Top-level keys of later files replace earlier ones;
command-line overrides come last and must name existing keys.

:func:`run_settings` is what a run trains, key by key (its fingerprint,
:func:`fingerprint`, is kept with the checkpoints so a resumed run can prove
it continues the same training).
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple, Union

import ruamel.yaml
from hyperpyyaml import load_hyperpyyaml, resolve_references
from hyperpyyaml.core import recursive_update

PathLike = Union[str, Path]

#: Keys that do not change what a run trains, left out of
#: :func:`run_settings`: where files live, how the run executes (hardware
#: and speed) and what only the test sweep after training reads.
NOT_TRAINED = frozenset(
    {
        # where files live
        "data_folder",
        "audio_folder",
        "output_root",
        "output_folder",
        "save_folder",
        "train_log",
        "metrics_file",
        "project_root",
        # how the run executes
        "num_workers",
        "audio_cache_mb",
        "precision",
        "eval_precision",
        "distributed_backend",
        "find_unused_parameters",
        # read by the test sweep only
        "r_sweep",
        "bench_batch_size",
        "bench_repeats",
    }
)


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


def _plain(node: Any) -> Any:
    """A YAML node as JSON values; a tagged node as ``{tag: value}``."""
    tag = getattr(getattr(node, "tag", None), "value", None)
    if isinstance(node, Mapping):
        value: Any = {str(k): _plain(v) for k, v in node.items()}
    elif isinstance(node, (list, tuple)):
        value = [_plain(v) for v in node]
    elif isinstance(node, ruamel.yaml.comments.TaggedScalar):
        value = node.value
    elif node is None or isinstance(node, bool):
        value = node
    elif isinstance(node, (int, float, str)):  # ruamel's ScalarFloat, ...
        kinds = (int, float, str)
        value = next(kind(node) for kind in kinds if isinstance(node, kind))
    else:  # an object given on the command line
        value = repr(node)
    return {tag: value} if tag else value


def run_settings(
    *paths: PathLike,
    overrides: Optional[Dict[str, Any]] = None,
    exclude: Iterable[str] = NOT_TRAINED,
) -> Dict[str, str]:
    """What a run trains: each top-level key of the composed ``paths``,
    with ``overrides`` merged in as HyperPyYAML merges them, as canonical
    JSON text; the ``exclude`` keys (by default :data:`NOT_TRAINED`) are
    left out.

    References stay unresolved (``{"!ref": "<lr>"}``): a value built from
    an excluded key (``num_workers`` in the loader options) does not change
    with it, and one built from a kept key changes through that key's own
    entry.

    Example
    -------
    >>> import tempfile, os
    >>> f = os.path.join(tempfile.mkdtemp(), "a.yaml")
    >>> _ = open(f, "w").write(
    ...     "lr: 1.0e-4\\nnum_workers: 0\\nopts: {w: !ref <num_workers>}\\n"
    ... )
    >>> run_settings(f)
    {'lr': '0.0001', 'opts': '{"w": {"!ref": "<num_workers>"}}'}
    >>> run_settings(f, overrides={"lr": 0.0001, "num_workers": 4})["lr"]
    '0.0001'
    """
    doc = _yaml().load(compose_yaml(*paths)) or {}
    recursive_update(doc, dict(overrides or {}))
    skip = set(exclude)
    return {
        str(key): json.dumps(_plain(value), sort_keys=True)
        for key, value in doc.items()
        if key not in skip
    }


def fingerprint(settings: Mapping[str, str]) -> str:
    """SHA-256 of :func:`run_settings` (hex).

    Example
    -------
    >>> fingerprint({"lr": "0.0001"}) == fingerprint({"lr": "0.0001"})
    True
    >>> fingerprint({"lr": "0.0001"}) == fingerprint({"lr": "0.001"})
    False
    """
    text = json.dumps(dict(settings), sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def changed_settings(
    old: Mapping[str, str], new: Mapping[str, str]
) -> List[str]:
    """Keys whose settings differ (or exist on one side only), sorted.

    Example
    -------
    >>> changed_settings({"lr": "1", "depth": "2"}, {"lr": "1", "depth": "3"})
    ['depth']
    """
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
