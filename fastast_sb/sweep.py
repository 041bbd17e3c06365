"""The r sweep of FastAST's Table 1: accuracy and speed per merge schedule.

After training, each schedule is applied at inference only and evaluated on
the test set; throughput is timed round-robin in the same run.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Sequence

from fastast_sb.models.ast import AST
from fastast_sb.tables import column, write_table
from fastast_sb.timing import interleaved_throughput
from fastast_sb.tome.flops import token_counts
from fastast_sb.tome.schedule import Schedule, parse_schedule

#: The r sweep after training (``r_sweep.md`` / ``r_sweep.csv``).
SWEEP = [
    column("r", "r"),
    column("{metric} (%)", "metric", ".2f", "", 100.0),
    column("drop (pts)", "drop", ".2f", "", 100.0),
    column("samples/s", "samples_per_s", ".1f"),
    column("speed-up", "speedup", ".2f", "x"),
    column("FLOP ratio", "flop_ratio", ".2f", "x"),
    column("tokens out", "final_tokens"),
]


def r_sweep(
    model: AST,
    evaluate: Callable[[Schedule], float],
    r_values: Sequence[Any],
    batch_size: int = 8,
    repeats: int = 3,
) -> List[Dict[str, object]]:
    """One row (the columns of :data:`SWEEP`) per schedule of the trained
    ``model``: ``evaluate(r)`` returns the test metric with merging ``r``,
    the first schedule (normally 0) is the reference for drop and speed-up.

    Example
    -------
    >>> m = AST(input_tdim=128, preset="tiny", depth=1)
    >>> rows = r_sweep(m, lambda r: 0.5, [0, 8], batch_size=1, repeats=1)
    >>> [(row["r"], row["drop"], row["final_tokens"]) for row in rows]
    [('0', 0.0, 146), ('8', 0.0, 138)]
    """
    speeds = interleaved_throughput(
        model, r_values, batch_size=batch_size, repeats=repeats
    )
    rows: List[Dict[str, object]] = []
    for r, sps in zip(r_values, speeds):
        metric = float(evaluate(r))
        ref = float(rows[0]["metric"]) if rows else metric
        counts = token_counts(model.num_tokens, model.schedule(r))
        rows.append(
            {
                "r": str(parse_schedule(r)),
                "metric": metric,
                "samples_per_s": sps,
                "flop_ratio": model.flops(0) / model.flops(r),
                "final_tokens": counts[-1],
                "drop": ref - metric,
                "speedup": float(sps) / float(speeds[0]),
            }
        )
    return rows


def write_tables(
    rows: Sequence[Dict[str, object]], folder: str, metric: str = "acc"
) -> Dict[str, str]:
    """Write ``r_sweep.md`` and ``r_sweep.csv`` into ``folder``.

    Example
    -------
    >>> import tempfile
    >>> row = {"r": "0", "metric": 0.5, "drop": 0.0, "samples_per_s": 10.0,
    ...        "speedup": 1.0, "flop_ratio": 1.0, "final_tokens": 146}
    >>> sorted(write_tables([row], tempfile.mkdtemp()))
    ['csv', 'markdown']
    """
    paths = write_table(rows, SWEEP, folder, "r_sweep", metric)
    return {"markdown": str(paths["md"]), "csv": str(paths["csv"])}
