"""Per-window timelines of tagged clips: CSV, JSON and a PNG of labels.

A :class:`~fastast_sb.inference.windows.TagResult` holds the scores of
every window; :func:`timeline_rows` lists them with their start and end
(seconds) and top labels, :func:`write_timeline` writes the rows of many
files as CSV or JSON (by the file name's ending) and :func:`plot_timeline`
draws the best classes' scores over time.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Dict, List, Sequence, Union

import torch

from fastast_sb.inference.windows import TagResult, top_k

PathLike = Union[str, Path]

#: Timeline formats, by file name ending.
TIMELINE_SUFFIXES = (".csv", ".json")


def check_timeline_path(path: PathLike) -> Path:
    """``path`` if it ends in ``.csv`` or ``.json`` (``ValueError`` else).

    Example
    -------
    >>> check_timeline_path("out/t.CSV").name
    't.CSV'
    >>> check_timeline_path("t.txt")
    Traceback (most recent call last):
    ...
    ValueError: timeline file t.txt must end in .csv or .json
    """
    path = Path(path)
    if path.suffix.lower() not in TIMELINE_SUFFIXES:
        raise ValueError(
            f"timeline file {path} must end in {' or '.join(TIMELINE_SUFFIXES)}"
        )
    return path


def timeline_rows(
    file: str, result: TagResult, top: int = 3
) -> List[Dict[str, Any]]:
    """One row per window: ``file``, ``window`` (index), ``start_s``,
    ``end_s`` and ``top``, its ``top`` best (label, score) pairs.

    Example
    -------
    >>> r = TagResult(torch.tensor([0.5, 0.5]), ["a", "b"], 2, 3.0,
    ...               torch.tensor([[0.9, 0.1], [0.2, 0.8]]),
    ...               [(0.0, 2.0), (1.0, 3.0)])
    >>> [(row["start_s"], row["top"][0][0]) for row in timeline_rows("x", r)]
    [(0.0, 'a'), (1.0, 'b')]
    """
    if len(result.spans) != result.window_scores.shape[0]:
        raise ValueError(
            f"{len(result.spans)} window spans for "
            f"{result.window_scores.shape[0]} windows of scores"
        )
    return [
        {
            "file": file,
            "window": i,
            "start_s": round(start, 4),
            "end_s": round(end, 4),
            "top": top_k(scores, result.labels, top),
        }
        for i, ((start, end), scores) in enumerate(
            zip(result.spans, result.window_scores)
        )
    ]


def write_timeline(
    path: PathLike, rows: Sequence[Dict[str, Any]], top: int
) -> Path:
    """Write :func:`timeline_rows` rows to ``path``: CSV (``file, window,
    start_s, end_s, label_1, score_1, ...``) or JSON (a list of rows).

    Example
    -------
    >>> import os, tempfile
    >>> f = os.path.join(tempfile.mkdtemp(), "t.csv")
    >>> row = {"file": "a.wav", "window": 0, "start_s": 0.0, "end_s": 1.0,
    ...        "top": [("dog", 0.75)]}
    >>> print(open(write_timeline(f, [row], 1)).read().strip())
    file,window,start_s,end_s,label_1,score_1
    a.wav,0,0.0,1.0,dog,0.75
    """
    path = check_timeline_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".json":
        plain = [
            {
                **row,
                "top": [
                    {"label": label, "score": round(score, 6)}
                    for label, score in row["top"]
                ],
            }
            for row in rows
        ]
        path.write_text(json.dumps(plain, indent=1) + "\n", encoding="utf-8")
        return path
    header = ["file", "window", "start_s", "end_s"] + [
        f"{kind}_{i}" for i in range(1, top + 1) for kind in ("label", "score")
    ]
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for row in rows:
            pairs = [v for label, s in row["top"] for v in (label, round(s, 6))]
            pairs += [""] * (2 * top - len(pairs))
            base = [row["file"], row["window"], row["start_s"], row["end_s"]]
            writer.writerow(base + pairs)
    return path


def plot_timeline(
    path: PathLike, result: TagResult, title: str = "", classes: int = 8
) -> Path:
    """A PNG of the scores over time of the ``classes`` classes that score
    highest in any window (best on top); each window is drawn around its
    centre.

    Example
    -------
    >>> import os, tempfile
    >>> r = TagResult(torch.tensor([0.5, 0.5]), ["a", "b"], 2, 3.0,
    ...               torch.tensor([[0.9, 0.1], [0.2, 0.8]]),
    ...               [(0.0, 2.0), (1.0, 3.0)])
    >>> f = plot_timeline(os.path.join(tempfile.mkdtemp(), "t.png"), r)
    >>> f.read_bytes()[:4]
    b'\\x89PNG'
    """
    from matplotlib.figure import Figure

    scores = result.window_scores.float()  # [W, C]
    if scores.shape[0] != len(result.spans) or not result.spans:
        raise ValueError("a timeline plot needs the span of every window")
    best = scores.max(dim=0).values
    chosen = torch.argsort(best, descending=True)[: min(classes, len(best))]
    centres = torch.tensor([(a + b) / 2 for a, b in result.spans])
    edges = torch.cat(
        [
            torch.zeros(1),
            (centres[1:] + centres[:-1]) / 2,
            torch.tensor([result.duration]),
        ]
    )
    fig = Figure(figsize=(10, 1.2 + 0.35 * len(chosen)), layout="tight")
    ax = fig.subplots()
    image = ax.pcolormesh(
        edges.numpy(),
        range(len(chosen) + 1),
        scores[:, chosen].T.numpy(),
        vmin=0.0,
        vmax=1.0,
        cmap="viridis",
    )
    ax.set_yticks([i + 0.5 for i in range(len(chosen))])
    ax.set_yticklabels([result.labels[int(c)] for c in chosen])
    ax.invert_yaxis()
    ax.set_xlabel("time (s)")
    ax.set_title(title or "scores per window")
    fig.colorbar(image, ax=ax, label="score", pad=0.01)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path
