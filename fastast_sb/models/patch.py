"""``apply_tome``: switch token merging on (or off) for any AST, also one
trained without merging ("Inf" in FastAST's Table 1): merging adds no
parameters."""

from __future__ import annotations

import logging
from typing import Any, List

from torch import nn

from fastast_sb.models.ast import AST
from fastast_sb.tome.schedule import parse_schedule

logger = logging.getLogger(__name__)


def find_asts(model: nn.Module) -> List[AST]:
    """Every :class:`AST` inside ``model`` (itself included).

    Example
    -------
    >>> m = nn.Sequential(AST(input_tdim=128, preset="tiny", depth=1))
    >>> len(find_asts(m))
    1
    """
    return [m for m in model.modules() if isinstance(m, AST)]


def apply_tome(
    model: nn.Module,
    r: Any,
    prop_attn: bool = True,
    trace_source: bool = False,
) -> nn.Module:
    """Set the merge schedule of every AST in ``model``, in place.

    Arguments
    ---------
    model : nn.Module
        An :class:`AST` or a module containing one or more.
    r : Schedule, int, str or list
        Merge schedule (:func:`fastast_sb.tome.schedule.parse_schedule`);
        0 disables.
    prop_attn, trace_source : bool
        Proportional attention; track source maps in ``forward_tokens``.

    Returns
    -------
    nn.Module
        The same model (idempotent: applying twice equals applying once).

    Example
    -------
    >>> m = apply_tome(AST(input_tdim=128, preset="tiny", depth=2), r=8)
    >>> m.schedule()
    [8, 8]
    """
    schedule = parse_schedule(r)
    asts = find_asts(model)
    if not asts:
        raise TypeError(
            f"apply_tome needs an AST or a module containing one; got "
            f"{type(model).__name__}"
        )
    for ast in asts:  # every check passes before anything changes
        schedule.check_depth(ast.depth)
    for ast in asts:
        ast.r = schedule
        ast.prop_attn = bool(prop_attn)
        ast.trace_source = bool(trace_source)
        logger.info(
            "ToMe r=%s on AST (%d tokens): schedule %s",
            schedule,
            ast.num_tokens,
            ast.schedule(),
        )
    return model
