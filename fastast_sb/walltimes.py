"""Wall times of experiment jobs, and how long the rest will take.

:class:`WallTimes` keeps each finished job's wall time, kind and command in
a JSON file across invocations; :func:`estimate` turns them (or default
minutes per kind, until a kind has finished runs) into the expected wall
time of the jobs left. Jobs are :class:`fastast_sb.experiments.Job` (any
object with ``name``, ``kind``, ``exclusive``, ``finished`` and
``settings()`` will do).
"""

from __future__ import annotations

import datetime
import json
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Sequence, Union

PathLike = Union[str, Path]


def now() -> str:
    """The local time, to the second (ISO 8601).

    Example
    -------
    >>> len(now())
    19
    """
    return datetime.datetime.now().isoformat(timespec="seconds")


class WallTimes:
    """Wall time of every finished job, in a JSON file (kept across runs).

    Example
    -------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "w.json")
    >>> walls = WallTimes(path)
    >>> walls.record("s1", "student", 600.0, resumed=False)
    >>> WallTimes(path).minutes("student"), WallTimes(path).minutes("x")
    ([10.0], [])
    """

    def __init__(self, path: PathLike) -> None:
        self.path = Path(path)
        self.entries: Dict[str, Dict[str, object]] = {}
        if self.path.is_file():
            self.entries = json.loads(self.path.read_text(encoding="utf-8"))

    def record(
        self,
        name: str,
        kind: str,
        seconds: float,
        resumed: bool,
        command: str = "",
    ) -> None:
        """Store one job's wall time (``resumed``: this invocation only)
        and its ``command`` (the job's ``settings()``)."""
        self.entries[name] = {
            "kind": kind,
            "wall_s": round(float(seconds), 1),
            "resumed": bool(resumed),
            "finished": now(),
            "command": command,
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(self.entries, indent=2, sort_keys=True)
        self.path.write_text(text + "\n", encoding="utf-8")

    def changed(self, jobs: Sequence[Any]) -> List[str]:
        """Finished jobs recorded with another command than they have now.

        Example
        -------
        >>> import tempfile, os
        >>> from fastast_sb.experiments import Job
        >>> walls = WallTimes(os.path.join(tempfile.mkdtemp(), "w.json"))
        >>> done = Path(walls.path)  # any existing file
        >>> walls.record("a", "x", 1.0, False, "--lr=1")
        >>> walls.changed([Job("a", ["python", "--lr=2"], done)])
        ['a']
        """
        return [
            job.name
            for job in jobs
            if job.finished
            and self.entries.get(job.name, {}).get("command", "")
            not in ("", job.settings())
        ]

    def minutes(self, kind: str) -> List[float]:
        """Minutes of the jobs of ``kind`` that ran start to end."""
        return [
            float(e["wall_s"]) / 60
            for e in self.entries.values()
            if e["kind"] == kind and not e["resumed"]
        ]


@dataclass
class Estimate:
    """Minutes per job by kind (and whether measured), the job count and
    minutes of work by kind, and the expected wall minutes."""

    per_job: Dict[str, float]
    measured: Dict[str, bool]
    count: Dict[str, int]
    wall_minutes: float

    def lines(self) -> List[str]:
        """Human-readable: one line per kind, then the total."""
        out = [
            f"  {n} x {kind} at ~{self.per_job[kind]:.1f} min "
            f"({'measured' if self.measured[kind] else 'default'})"
            for kind, n in self.count.items()
        ]
        total = sum(self.count.values())
        out.append(f"  {total} runs to do: ~{duration(self.wall_minutes)} wall")
        return out


def estimate(
    jobs: Sequence[Any],
    walls: WallTimes,
    defaults: Mapping[str, float],
    n_jobs: int = 1,
) -> Estimate:
    """Time the unfinished ``jobs`` will take: per kind the mean minutes of
    the finished ones of that kind (:class:`WallTimes`), else
    ``defaults[kind]``; wall time = the work of the others shared by
    ``n_jobs`` at once (at least the longest job), plus the exclusive jobs
    one after another (waits for dependencies ignored).

    Example
    -------
    >>> import tempfile, os
    >>> walls = WallTimes(os.path.join(tempfile.mkdtemp(), "w.json"))
    >>> from fastast_sb.experiments import Job
    >>> todo = [Job(f"s{i}", [], Path("none"), "student") for i in range(4)]
    >>> todo.append(Job("b", [], Path("none"), "bench", exclusive=True))
    >>> est = estimate(todo, walls, {"student": 20, "bench": 2}, n_jobs=2)
    >>> est.wall_minutes, est.count
    (42.0, {'student': 4, 'bench': 1})
    """
    if n_jobs < 1:
        raise ValueError(f"n_jobs={n_jobs}: expected at least 1")
    todo = [j for j in jobs if not j.finished]
    per_job: Dict[str, float] = {}
    measured: Dict[str, bool] = {}
    count: Dict[str, int] = {}
    shared = alone = 0.0
    for job in todo:
        if job.kind not in per_job:
            seen = walls.minutes(job.kind)
            if not seen and job.kind not in defaults:
                raise ValueError(
                    f"no default minutes for job kind {job.kind!r}; "
                    f"expected one of {sorted(defaults)}"
                )
            measured[job.kind] = bool(seen)
            per_job[job.kind] = (
                statistics.mean(seen) if seen else float(defaults[job.kind])
            )
        count[job.kind] = count.get(job.kind, 0) + 1
        if job.exclusive:
            alone += per_job[job.kind]
        else:
            shared += per_job[job.kind]
    shared_jobs = [per_job[j.kind] for j in todo if not j.exclusive]
    wall = max(shared / n_jobs, max(shared_jobs, default=0.0)) + alone
    return Estimate(per_job, measured, count, wall)


def duration(minutes: float) -> str:
    """``42 min`` or ``3 h 05 min``.

    Example
    -------
    >>> duration(42.2), duration(185)
    ('42 min', '3 h 05 min')
    """
    if minutes < 60:
        return f"{minutes:.0f} min"
    hours, rest = divmod(round(minutes), 60)
    return f"{hours} h {rest:02d} min"
