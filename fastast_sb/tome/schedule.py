"""Merge schedules: how many tokens each block merges.

One immutable type, :class:`Schedule`, and one parser,
:func:`parse_schedule`, for YAML (``tome_r``, ``r_sweep``), command lines
and Python. The text form (``str(schedule)`` gives it back):

- ``16``: the same r in every block (ToMe's constant schedule);
- ``32,32,16``: r per block, padded with zeros to the depth (a YAML list
  ``[32, 32, 16]`` is the same);
- ``ramp:16:-1``: a linear ramp with the total of constant r (ToMe):
  ``lo = int(r * (1 - inflect))``, ``hi = 2 r - lo``, block i merges
  ``int(lo + (hi - lo) * i / (L - 1))``; inflect -1 decreases from 2r to 0;
- ``flops:0.5``: the front-loaded schedule (a constant r, one more in the
  first k blocks) whose encoder FLOPs are nearest that fraction of the
  unmerged model's;
- ``ratio:0.1``: merge that fraction (at most 0.5) of the current patch
  tokens in every block.

The last two depend on the input length; :meth:`Schedule.resolve` gives the
r each block merges for a given number of tokens.

References: Bolya et al., "Token Merging: Your ViT But Faster", ICLR 2023.
"""

from __future__ import annotations

import argparse
import functools
import logging
from dataclasses import dataclass
from typing import Any, List, Tuple

from fastast_sb.tome.flops import clip_schedule, encoder_flops
from fastast_sb.tome.merge import max_merge

logger = logging.getLogger(__name__)

FORMS = (
    "an int r (16), r per block (32,32,16 or a list), ramp:R:INFLECT, "
    "flops:BUDGET or ratio:FRACTION"
)
KINDS = ("constant", "blocks", "ramp", "flops", "ratio")
#: The float field each kind checks: (field, what, lo, hi, open at lo).
_RANGES = {
    "ramp": ("inflect", "r inflect", -1, 1, False),
    "flops": ("fraction", "FLOP budget", 0, 1, True),
    "ratio": ("fraction", "merge ratio", 0, 0.5, False),
}
#: A FLOP budget missed by more than this fraction of itself is logged.
BUDGET_TOLERANCE = 0.05


def _int(value: Any, what: str) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, got {value!r}")
    if value < 0:
        raise ValueError(f"{what} must be >= 0, got {value}")
    return value


def _number(value: Any, what: str, lo: float, hi: float, open_lo: bool):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what} must be a number, got {value!r}")
    value = float(value)
    if not (lo < value if open_lo else lo <= value) or value > hi:
        left = "(" if open_lo else "["
        raise ValueError(
            f"{what} must be in {left}{lo:g}, {hi:g}], got {value}"
        )
    return value


@dataclass(frozen=True)
class Schedule:
    """A merge schedule (see the module docstring for the kinds).

    Arguments
    ---------
    kind : str
        One of ``constant``, ``blocks``, ``ramp``, ``flops``, ``ratio``.
    r : int
        Tokens per block (``constant``, ``ramp``).
    blocks : tuple of int
        r per block (``blocks``).
    inflect : float
        Ramp shape in [-1, 1] (``ramp``).
    fraction : float
        FLOP budget in (0, 1] (``flops``) or merge ratio in [0, 0.5]
        (``ratio``).

    Example
    -------
    >>> s = Schedule("ramp", r=8, inflect=-1)
    >>> str(s), s.resolve(4, num_tokens=146, embed_dim=192)
    ('ramp:8:-1', [16, 10, 5, 0])
    """

    kind: str = "constant"
    r: int = 0
    blocks: Tuple[int, ...] = ()
    inflect: float = 0.0
    fraction: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(
                f"schedule kind {self.kind!r} is not one of {KINDS}"
            )
        put = functools.partial(object.__setattr__, self)
        put("r", _int(self.r, "r"))
        put(
            "blocks",
            tuple(_int(v, f"r[{i}]") for i, v in enumerate(self.blocks)),
        )
        if self.kind in _RANGES:
            field, *limits = _RANGES[self.kind]
            put(field, _number(getattr(self, field), *limits))

    def __str__(self) -> str:
        if self.kind == "blocks":
            return ",".join(map(str, self.blocks)) or "0"
        if self.kind == "ramp":
            return f"ramp:{self.r}:{self.inflect:g}"
        if self.kind in ("flops", "ratio"):
            return f"{self.kind}:{self.fraction:g}"
        return str(self.r)

    def check_depth(self, num_layers: int) -> None:
        """Raise if a per-block schedule is longer than the model is deep."""
        if self.kind == "blocks" and len(self.blocks) > num_layers:
            raise ValueError(
                f"r schedule {list(self.blocks)} has {len(self.blocks)} "
                f"entries, model has {num_layers} blocks"
            )

    def requested(
        self,
        num_layers: int,
        num_tokens: int,
        embed_dim: int,
        mlp_ratio: float = 4.0,
        protected: int = 2,
    ) -> List[int]:
        """The r asked of each block, before clipping to what each block
        can merge.

        Example
        -------
        >>> parse_schedule("ratio:0.25").requested(3, 102, 8)
        [25, 18, 14]
        """
        depth = _int(num_layers, "num_layers")
        return list(
            _requested(self, depth, num_tokens, embed_dim, mlp_ratio, protected)
        )

    def resolve(
        self,
        num_layers: int,
        num_tokens: int,
        embed_dim: int,
        mlp_ratio: float = 4.0,
        protected: int = 2,
    ) -> List[int]:
        """The r each block merges for this input (clipping is logged).

        Example
        -------
        >>> parse_schedule(8).resolve(3, num_tokens=12, embed_dim=8)
        [5, 2, 1]
        """
        asked = self.requested(
            num_layers, num_tokens, embed_dim, mlp_ratio, protected
        )
        return list(_clipped(tuple(asked), num_tokens, protected))


def parse_schedule(value: Any) -> Schedule:
    """The one parser of merge schedules: text, int, list or Schedule.

    Example
    -------
    >>> [str(parse_schedule(v)) for v in (16, "flops:0.5", [4, 2], "8,4")]
    ['16', 'flops:0.5', '4,2', '8,4']
    >>> parse_schedule("fast")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: merge schedule 'fast' is not ...
    """
    if isinstance(value, Schedule):
        return value
    if value is None:
        return Schedule()
    if isinstance(value, list):
        return Schedule("blocks", blocks=tuple(value))
    if isinstance(value, str):
        return _parse_text(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(
            f"merge schedule {value!r} ({type(value).__name__}) is not {FORMS}"
        )
    return Schedule(r=_int(value, "r"))


def _parse_text(text: str) -> Schedule:
    raw = text
    text = text.strip().replace(" ", "")
    kind, _, rest = text.partition(":")
    try:
        if kind in ("flops", "ratio") and rest:
            return Schedule(kind, fraction=float(rest))
        if kind == "ramp" and rest.count(":") == 1:
            r, inflect = rest.split(":")
            return Schedule("ramp", r=int(r), inflect=float(inflect))
        if not rest:
            values = [int(v) for v in text.strip("[]").split(",") if v]
            if not values:
                raise ValueError("empty")
            if len(values) == 1 and "," not in text and "[" not in text:
                return Schedule(r=values[0])
            return Schedule("blocks", blocks=tuple(values))
    except ValueError as err:
        if "must be" in str(err):  # a value out of range: say which
            raise ValueError(f"merge schedule {raw!r}: {err}") from None
    raise ValueError(f"merge schedule {raw!r} is not {FORMS}")


def _ramp(num_layers: int, r: int, inflect: float) -> Tuple[int, ...]:
    if num_layers == 1:
        return (r,)
    lo = int(r * (1 - inflect))
    hi = 2 * r - lo
    return tuple(
        int(lo + (hi - lo) * i / (num_layers - 1)) for i in range(num_layers)
    )


def _ratio(
    num_layers: int, ratio: float, num_tokens: int, protected: int
) -> Tuple[int, ...]:
    schedule, n = [], num_tokens
    for _ in range(num_layers):
        r = min(int(ratio * (n - protected)), max_merge(n, protected))
        schedule.append(r)
        n -= r
    return tuple(schedule)


def _flop_budget(
    num_layers: int,
    budget: float,
    num_tokens: int,
    embed_dim: int,
    mlp_ratio: float,
    protected: int,
) -> Tuple[int, ...]:
    full = encoder_flops(num_tokens, [0] * num_layers, embed_dim, mlp_ratio)

    def schedule(level: int) -> List[int]:
        base, extra = divmod(level, num_layers)
        return [base + 1] * extra + [base] * (num_layers - extra)

    def ratio(level: int) -> float:
        flops = encoder_flops(
            num_tokens, schedule(level), embed_dim, mlp_ratio, protected
        )
        return flops / full

    # FLOPs fall monotonically with the level: bisect for the budget.
    lo, hi = 0, max_merge(num_tokens, protected) * num_layers
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
    reached = ratio(best)
    if abs(reached - budget) > BUDGET_TOLERANCE * budget:
        logger.warning(
            "FLOP budget %g not reachable for %d blocks and %d tokens: the "
            "nearest schedule %s keeps %.2f of the encoder FLOPs (a block "
            "merges at most half its tokens, after its attention; the patch "
            "embedding is not counted)",
            budget,
            num_layers,
            num_tokens,
            schedule(best),
            reached,
        )
    # Already what each block can merge: resolving it logs no clipping.
    return tuple(clip_schedule(num_tokens, schedule(best), protected))


@functools.lru_cache(maxsize=256)
def _requested(
    schedule: Schedule,
    depth: int,
    num_tokens: int,
    embed_dim: int,
    mlp_ratio: float,
    protected: int,
) -> Tuple[int, ...]:
    schedule.check_depth(depth)
    if schedule.kind == "constant":
        return (schedule.r,) * depth
    if schedule.kind == "blocks":
        return schedule.blocks + (0,) * (depth - len(schedule.blocks))
    if schedule.kind == "ramp":
        return _ramp(depth, schedule.r, schedule.inflect)
    if schedule.kind == "ratio":
        return _ratio(depth, schedule.fraction, num_tokens, protected)
    return _flop_budget(
        depth, schedule.fraction, num_tokens, embed_dim, mlp_ratio, protected
    )


@functools.lru_cache(maxsize=256)
def _clipped(
    requested: Tuple[int, ...], num_tokens: int, protected: int
) -> Tuple[int, ...]:
    clipped = tuple(clip_schedule(num_tokens, requested, protected))
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


def schedule_arg(text: str) -> Schedule:
    """:func:`parse_schedule` as an ``argparse`` type (the same text).

    Example
    -------
    >>> str(schedule_arg("flops:0.5"))
    'flops:0.5'
    """
    try:
        return parse_schedule(text)
    except (TypeError, ValueError) as err:
        raise argparse.ArgumentTypeError(str(err)) from None


__all__ = ["FORMS", "Schedule", "parse_schedule", "schedule_arg"]
