"""FastAST's Table 1 as markdown and CSV: one writer for every layout.

A layout is a list of :class:`Column`. The r sweep after training
(:data:`fastast_sb.sweep.SWEEP`) and ``python -m fastast_sb.benchmark`` share
these writers.

Reference: S. R. Behera et al., "FastAST: Accelerating Audio Spectrogram
Transformer via Token Merging and Cross-Model Knowledge Distillation",
Interspeech 2024.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Callable, Dict, NamedTuple, Optional, Sequence, Union

Row = Dict[str, Any]
PathLike = Union[str, Path]


class Column(NamedTuple):
    """One table column: markdown ``title`` (``{metric}`` filled in; None:
    CSV only), CSV and row ``key``, markdown ``cell(row)`` and CSV
    ``value(row)`` (``row[key]`` by default; lists are space-joined).
    """

    title: Optional[str]
    key: str
    cell: Callable[[Row], str] = str
    value: Optional[Callable[[Row], Any]] = None


def column(
    title: str, key: str, spec: str = "", suffix: str = "", scale: float = 1.0
) -> Column:
    """Cell ``str(row[key])``, or ``scale * row[key]`` formatted by spec.

    Example
    -------
    >>> column("FLOP ratio", "flop_ratio", ".2f", "x").cell({"flop_ratio": 2})
    '2.00x'
    """
    if not spec:
        return Column(title, key, lambda row: str(row[key]))
    return Column(
        title, key, lambda row: f"{scale * float(row[key]):{spec}}{suffix}"
    )


def format_markdown(
    rows: Sequence[Row],
    columns: Sequence[Column],
    metric: str = "acc",
    header: Sequence[str] = (),
    footer: Sequence[str] = (),
) -> str:
    """The table in markdown, with optional lines before and after it.

    Example
    -------
    >>> cols = [column("r", "r"), column("{metric} (%)", "m", ".2f", "", 100)]
    >>> print(format_markdown([{"r": "0", "m": 0.5}], cols, "mAP"))
    | r | mAP (%) |
    |---|---|
    | 0 | 50.00 |
    """
    shown = [c for c in columns if c.title is not None]
    titles = [c.title.format(metric=metric) for c in shown]
    lines = list(header)
    lines.append("| " + " | ".join(titles) + " |")
    lines.append("|" + "---|" * len(shown))
    for row in rows:
        lines.append("| " + " | ".join(c.cell(row) for c in shown) + " |")
    lines.extend(footer)
    return "\n".join(lines)


def write_csv(
    rows: Sequence[Row], columns: Sequence[Column], path: PathLike
) -> Path:
    """Write the rows to ``path`` (lists space-joined, missing keys empty).

    Example
    -------
    >>> import tempfile, os
    >>> f = os.path.join(tempfile.mkdtemp(), "b.csv")
    >>> cols = [column("r", "r"), Column(None, "r_per_block"), Column("x", "x")]
    >>> _ = write_csv([{"r": "8", "r_per_block": [8, 8]}], cols, f)
    >>> open(f).read().splitlines()
    ['r,r_per_block,x', '8,8 8,']
    """
    path = Path(path)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow([c.key for c in columns])
        for row in rows:
            values = [
                c.value(row) if c.value else row.get(c.key, "") for c in columns
            ]
            writer.writerow(
                " ".join(map(str, v)) if isinstance(v, (list, tuple)) else v
                for v in values
            )
    return path


def write_table(
    rows: Sequence[Row],
    columns: Sequence[Column],
    folder: PathLike,
    stem: str,
    metric: str = "acc",
    header: Sequence[str] = (),
    footer: Sequence[str] = (),
) -> Dict[str, Path]:
    """Write ``{stem}.md`` and ``{stem}.csv`` into ``folder``.

    Example
    -------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> paths = write_table([{"r": "0"}], [column("r", "r")], folder, "t")
    >>> paths["md"].read_text().splitlines()
    ['| r |', '|---|', '| 0 |']
    """
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    text = format_markdown(rows, columns, metric, header, footer)
    (out / f"{stem}.md").write_text(text + "\n", encoding="utf-8")
    write_csv(rows, columns, out / f"{stem}.csv")
    return {k: out / f"{stem}.{k}" for k in ("md", "csv")}
