"""What ``demo.py`` prints and draws: the sweep table, the sentences that
read it (where merging starts to cost accuracy, whether distillation
helped and if not why not) and the accuracy-throughput plot.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any, Dict, Sequence


def combined_table(
    schedules: Sequence[str],
    plain: Sequence[Dict],
    kd: Sequence[Dict],
    timing: Dict[str, Any],
) -> str:
    """One markdown table: tokens, FLOPs, measured speed-up, accuracy
    without / with distillation, per schedule.

    Example
    -------
    >>> row = {"metric": 0.5, "flop_ratio": 1.0, "final_tokens": 146}
    >>> t = {"speedup": [1.0], "error": [0.0]}
    >>> print(combined_table(["0"], [row], [row], t).splitlines()[-1])
    | 0 | 146 | 1.00x | 1.00x ± 0.00 | 50.0 | 50.0 |
    """
    lines = [
        "| schedule | tokens out | FLOP ratio | speed-up (measured) "
        "| acc, no KD (%) | acc, KD (%) |",
        "|---|---|---|---|---|---|",
    ]
    for i, r in enumerate(schedules):
        a, b = plain[i], kd[i]
        lines.append(
            f"| {r} | {a['final_tokens']} | {a['flop_ratio']:.2f}x "
            f"| {timing['speedup'][i]:.2f}x ± {timing['error'][i]:.2f} "
            f"| {100 * a['metric']:.1f} | {100 * b['metric']:.1f} |"
        )
    return "\n".join(lines)


def merging_sentence(
    schedules: Sequence[str],
    acc: Sequence[float],
    speed: Sequence[float],
    clip: float,
) -> str:
    """Where merging starts to cost accuracy (more than two test clips).

    Example
    -------
    >>> s = merging_sentence(["0", "8", "16"], [0.9, 0.9, 0.5], [1, 2, 3], 0.01)
    >>> s.split("; ")[1]
    'at 16 (3.00x) it drops by 40.0 points (from 90.0 % to 50.0 %).'
    """
    worse = [i for i, a in enumerate(acc) if acc[0] - a > 2 * clip + 1e-9]
    if not worse:
        return (
            "Merging keeps accuracy within 2 clips of r = 0 over the whole "
            f"sweep ({100 * acc[0]:.1f} % at r = 0, {100 * acc[-1]:.1f} % "
            f"at {schedules[-1]}), up to {max(speed):.2f}x faster: this model "
            "on this task does not reach the point where merging costs "
            "accuracy."
        )
    first = worse[0]
    kept = [i for i in range(first) if i > 0]
    head = "Merging costs accuracy at once"
    if kept:
        best = max(kept, key=lambda i: speed[i])
        head = (
            "Merging keeps accuracy within 2 clips of r = 0 up to "
            f"{schedules[best]} ({speed[best]:.2f}x faster)"
        )
    drop = 100 * (acc[0] - acc[first])
    return (
        f"{head}; at {schedules[first]} ({speed[first]:.2f}x) it drops by "
        f"{drop:.1f} points (from {100 * acc[0]:.1f} % to "
        f"{100 * acc[first]:.1f} %)."
    )


def distillation_sentence(
    teacher: float,
    plain: Sequence[float],
    kd: Sequence[float],
    clip: float,
    clips: int,
) -> str:
    """Whether distillation helped on this run, and if not, why not.

    Example
    -------
    >>> distillation_sentence(0.95, [0.8, 0.7], [0.9, 0.8], 0.01, 40)[:31]
    'Distillation helps: +10.0 point'
    """
    gain = statistics.mean(kd) - statistics.mean(plain)
    if gain >= clip:
        return (
            f"Distillation helps: +{100 * gain:.1f} points on average over "
            f"the sweep (teacher {100 * teacher:.1f} %)."
        )
    what = "makes no difference" if gain > -clip else "does not help"
    if teacher <= plain[0]:
        why = (
            f"the teacher ({100 * teacher:.1f} %) is no better than the "
            f"student taught by the labels alone ({100 * plain[0]:.1f} %), "
            "so its soft labels add nothing"
        )
    elif teacher - plain[0] < 3 * clip - 1e-9:
        ahead = round((teacher - plain[0]) / clip)
        why = (
            f"the teacher is hardly better ({100 * teacher:.1f} % against "
            f"{100 * plain[0]:.1f} %, {ahead} test clips), so it has little "
            "to teach"
        )
    else:
        why = (
            f"the teacher is better ({100 * teacher:.1f} % against "
            f"{100 * plain[0]:.1f} %), but on {clips} training clips its "
            "soft labels did not carry that lead over to the student"
        )
    return (
        f"Distillation {what} here ({100 * gain:+.1f} points on average): "
        f"{why}. FastAST's gain comes from a teacher pretrained on AudioSet "
        "(README)."
    )


def plot_tradeoff(
    path: Path,
    schedules: Sequence[str],
    speed: Sequence[float],
    plain: Sequence[float],
    kd: Sequence[float],
    teacher: float,
) -> Path:
    """Accuracy against measured speed-up, without and with distillation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.plot(speed, [100 * a for a in plain], "o-", label="FastAST, no KD")
    ax.plot(speed, [100 * a for a in kd], "s-", label="FastAST, KD")
    ax.axhline(100 * teacher, ls="--", c="gray", label="teacher (PaSST)")
    for i, (x, y, r) in enumerate(zip(speed, kd, schedules)):
        shift = (4, 6) if i % 2 else (4, -12)  # neighbours on either side
        ax.annotate(r, (x, 100 * y), textcoords="offset points", xytext=shift)
    ax.set_xlabel("speed-up over r = 0 (measured)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Demo: accuracy against throughput")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
