"""Merge schedules: how many tokens each block merges.

Accepted specifications (``r`` below):

- ``int``: the same r in every block (ToMe's constant schedule).
- ``(r, inflect)`` tuple, or ``{"r": r, "inflect": inflect}``: a linear ramp
  with the same total as constant r (ToMe): ``lo = int(r * (1 - inflect))``,
  ``hi = 2 r - lo``, block i merges ``int(lo + (hi - lo) * i / (L - 1))``.
  ``inflect = -1`` is the decreasing schedule (2r down to 0).
- a list of ints: r per block, padded with zeros to the depth.
- ``{"ratio": p}``: merge a fraction ``p`` (0 <= p <= 0.5) of the current
  patch tokens in every block, so long clips merge proportionally more.
- ``{"flops": f}``: the front-loaded schedule whose analytic encoder FLOPs
  are closest to the fraction ``f`` of the unmerged model's for this input
  length (a constant r everywhere, plus one more in the first k blocks).

Ratio and FLOP-budget schedules depend on the number of tokens, so they are
resolved per input length by :func:`parse_r`.

References: Bolya et al., "Token Merging: Your ViT But Faster", ICLR 2023.
"""

from __future__ import annotations

import functools
import logging
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from fastast_sb.tome.flops import clip_schedule, encoder_flops, token_counts
from fastast_sb.tome.merge import max_merge

logger = logging.getLogger(__name__)

RSpec = Union[int, Tuple[int, float], Sequence[int], Dict[str, Any], None]

_DICT_KEYS = ({"r"}, {"r", "inflect"}, {"ratio"}, {"flops"})


def _check_int(value: Any, what: str) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, got {value!r}")
    if value < 0:
        raise ValueError(f"{what} must be >= 0, got {value}")
    return value


def _check_float(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what} must be a number, got {value!r}")
    return float(value)


def _ramp(num_layers: int, r: int, inflect: Any) -> List[int]:
    inflect = _check_float(inflect, "r inflect")
    if not -1.0 <= inflect <= 1.0:
        raise ValueError(f"r inflect must be in [-1, 1], got {inflect}")
    lo = int(r * (1 - inflect))
    hi = 2 * r - lo
    if num_layers == 1:
        return [r]
    return [
        int(lo + (hi - lo) * i / (num_layers - 1)) for i in range(num_layers)
    ]


def _ratio(
    num_layers: int, ratio: Any, num_tokens: int, protected: int
) -> List[int]:
    ratio = _check_float(ratio, "merge ratio")
    if not 0.0 <= ratio <= 0.5:
        raise ValueError(f"merge ratio must be in [0, 0.5], got {ratio}")
    schedule, n = [], num_tokens
    for _ in range(num_layers):
        r = min(int(ratio * (n - protected)), max_merge(n, protected))
        schedule.append(r)
        n -= r
    return schedule


def _flop_budget(
    num_layers: int,
    budget: Any,
    num_tokens: int,
    embed_dim: int,
    mlp_ratio: float,
    protected: int,
) -> List[int]:
    budget = _check_float(budget, "FLOP budget")
    if not 0.0 < budget <= 1.0:
        raise ValueError(f"FLOP budget must be in (0, 1], got {budget}")
    full = encoder_flops(num_tokens, [0] * num_layers, embed_dim, mlp_ratio)
    max_r = max_merge(num_tokens, protected)

    def schedule(level: int) -> List[int]:
        base, extra = divmod(level, num_layers)
        return [base + 1] * extra + [base] * (num_layers - extra)

    def ratio(level: int) -> float:
        flops = encoder_flops(
            num_tokens, schedule(level), embed_dim, mlp_ratio, protected
        )
        return flops / full

    # FLOPs fall monotonically with the level: bisect for the budget.
    lo, hi = 0, max_r * num_layers
    while lo < hi:
        mid = (lo + hi) // 2
        if ratio(mid) > budget:
            lo = mid + 1
        else:
            hi = mid
    best = min(
        (lvl for lvl in (lo - 1, lo) if lvl >= 0),
        key=lambda lvl: abs(ratio(lvl) - budget),
    )
    # Already what each block can merge: resolving it logs no clipping.
    return clip_schedule(num_tokens, schedule(best), protected)


def _freeze(r: RSpec) -> Any:
    if isinstance(r, dict):
        return ("dict", tuple(sorted(r.items())))
    if isinstance(r, tuple):
        return ("tuple", r)
    if isinstance(r, list):
        return ("list", tuple(r))
    return ("scalar", r)


def _thaw(frozen: Any) -> RSpec:
    kind, value = frozen
    if kind == "dict":
        return dict(value)
    if kind == "list":
        return list(value)
    return value


def validate_r(r: RSpec, num_layers: Optional[int] = None) -> None:
    """Raise a clear error if ``r`` is not a schedule specification.

    Arguments
    ---------
    r : int, tuple, list, dict or None
        The specification (see the module docstring).
    num_layers : int, optional
        Depth of the model it is for; without it a list may have any length.

    Example
    -------
    >>> validate_r({"flops": 0.5})
    >>> validate_r([4] * 12, num_layers=12)
    >>> validate_r("fast")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    TypeError: r must be an int, (r, inflect), a list of ints or a dict ...
    """
    if num_layers is None:
        num_layers = max(len(r), 1) if isinstance(r, list) else 4
    parse_r(num_layers, r, num_tokens=100, embed_dim=8)


def parse_r(
    num_layers: int,
    r: RSpec,
    num_tokens: Optional[int] = None,
    embed_dim: Optional[int] = None,
    mlp_ratio: float = 4.0,
    protected: int = 2,
) -> List[int]:
    """Resolve a schedule specification into one requested r per block.

    Arguments
    ---------
    num_layers : int
        Number of transformer blocks.
    r : int, tuple, list, dict or None
        The specification (see the module docstring); ``None`` means 0.
    num_tokens : int, optional
        Tokens entering the first block; needed by ``ratio`` and ``flops``.
    embed_dim : int, optional
        Model width; needed by ``flops``.
    mlp_ratio : float
        MLP expansion; used by ``flops``.
    protected : int
        Prefix tokens that never merge.

    Returns
    -------
    list of int
        ``num_layers`` values, not yet clipped to what each block can merge
        (see :func:`fastast_sb.tome.flops.clip_schedule`).

    Example
    -------
    >>> parse_r(4, 2)
    [2, 2, 2, 2]
    >>> parse_r(4, (2, -1.0))
    [4, 2, 1, 0]
    >>> parse_r(4, [3, 1])
    [3, 1, 0, 0]
    >>> parse_r(3, {"ratio": 0.25}, num_tokens=102)
    [25, 18, 14]
    """
    num_layers = _check_int(num_layers, "num_layers")
    if r is None:
        return [0] * num_layers
    if isinstance(r, (dict, tuple, list)):
        return list(
            _parse_cached(
                num_layers,
                _freeze(r),
                num_tokens,
                embed_dim,
                mlp_ratio,
                protected,
            )
        )
    if isinstance(r, bool) or not isinstance(r, (int, float)):
        raise TypeError(
            "r must be an int, (r, inflect), a list of ints or a dict with one "
            f"of 'r', 'r'+'inflect', 'ratio', 'flops'; got {r!r}"
        )
    return [_check_int(r, "r")] * num_layers


@functools.lru_cache(maxsize=256)
def _parse_cached(
    num_layers: int,
    frozen: Any,
    num_tokens: Optional[int],
    embed_dim: Optional[int],
    mlp_ratio: float,
    protected: int,
) -> Tuple[int, ...]:
    r = _thaw(frozen)
    if isinstance(r, tuple):
        if len(r) != 2:
            raise ValueError(f"r tuple must be (r, inflect), got {r!r}")
        return tuple(_ramp(num_layers, _check_int(r[0], "r"), r[1]))
    if isinstance(r, list):
        if len(r) > num_layers:
            raise ValueError(
                f"r schedule {r} has {len(r)} entries, model has {num_layers} "
                "blocks"
            )
        values = [_check_int(v, f"r[{i}]") for i, v in enumerate(r)]
        return tuple(values + [0] * (num_layers - len(values)))
    keys = set(r)
    if keys not in _DICT_KEYS:
        raise ValueError(
            f"r dict must have keys 'r' (+ 'inflect'), 'ratio' or 'flops'; "
            f"got {sorted(keys)}"
        )
    if "r" in keys:
        inflect = r.get("inflect", 0.0)
        return tuple(_ramp(num_layers, _check_int(r["r"], "r"), inflect))
    if num_tokens is None:
        raise ValueError(
            f"r={r!r} depends on the input length: pass num_tokens"
        )
    if "ratio" in keys:
        return tuple(_ratio(num_layers, r["ratio"], num_tokens, protected))
    if embed_dim is None:
        raise ValueError(f"r={r!r} needs the model width: pass embed_dim")
    return tuple(
        _flop_budget(
            num_layers,
            r["flops"],
            num_tokens,
            embed_dim,
            mlp_ratio,
            protected,
        )
    )


@functools.lru_cache(maxsize=256)
def _clipped_cached(
    requested: Tuple[int, ...], num_tokens: int, protected: int
) -> Tuple[int, ...]:
    counts = token_counts(num_tokens, requested, protected)
    clipped = tuple(a - b for a, b in zip(counts[:-1], counts[1:]))
    if clipped != requested:
        logger.warning(
            "r schedule %s clipped to %s for %d input tokens (a block can "
            "merge at most (n - %d) // 2 of its n tokens)",
            list(requested),
            list(clipped),
            num_tokens,
            protected,
        )
    return clipped


def resolve_schedule(
    num_layers: int,
    r: RSpec,
    num_tokens: int,
    embed_dim: int,
    mlp_ratio: float = 4.0,
    protected: int = 2,
) -> List[int]:
    """The r each block merges for this input, clipped (and logged if so).

    Example
    -------
    >>> resolve_schedule(3, 8, num_tokens=12, embed_dim=8)
    [5, 2, 1]
    """
    requested = parse_r(
        num_layers, r, num_tokens, embed_dim, mlp_ratio, protected
    )
    return list(_clipped_cached(tuple(requested), num_tokens, protected))


def merge_schedule(
    r: RSpec, flops: Optional[float] = None, inflect: Optional[float] = None
) -> RSpec:
    """The schedule a config's keys describe (``tome_r``, ``tome_flops``,
    ``tome_inflect``): a FLOP budget when given, else ``r`` (as a ramp when
    ``inflect`` is given).

    HyperPyYAML cannot override a scalar with a mapping or keep a tuple
    through a reference, so these forms get keys of their own.

    Arguments
    ---------
    r : int, tuple, list or dict
        Merge schedule (see the module docstring).
    flops : float, optional
        Fraction of the unmerged encoder's FLOPs to keep.
    inflect : float, optional
        Ramp shape for an int ``r`` (-1: decreasing, 2r down to 0).

    Returns
    -------
    RSpec
        The schedule for :class:`~fastast_sb.models.ast.AST`.

    Example
    -------
    >>> merge_schedule(16), merge_schedule(16, 0.5), merge_schedule(8, None, -1)
    (16, {'flops': 0.5}, {'r': 8, 'inflect': -1.0})
    """
    if flops is not None:
        return {"flops": float(flops)}
    if inflect is not None:
        return {"r": _check_int(r, "r"), "inflect": float(inflect)}
    return r


def describe(r: RSpec) -> str:
    """A short, file-name-safe label for a schedule.

    Example
    -------
    >>> describe({"flops": 0.5}), describe(16), describe((8, -1.0))
    ('flops0.5', '16', '8_-1.0')
    """
    if isinstance(r, dict):
        return "_".join(f"{k}{v}" for k, v in sorted(r.items()))
    if isinstance(r, (tuple, list)):
        return "_".join(str(v) for v in r)
    return str(0 if r is None else r)


__all__ = [
    "RSpec",
    "describe",
    "merge_schedule",
    "parse_r",
    "resolve_schedule",
    "validate_r",
]
