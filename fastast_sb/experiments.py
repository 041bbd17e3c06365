"""Resumable experiments: many recipe commands, N at a time.

A :class:`Job` is one command (a recipe's ``train.py``, a benchmark) with
the file whose existence marks it finished, the jobs it waits for and a
``kind`` for the time estimate. :func:`run_jobs` starts what is missing,
``jobs`` at a time, each with ``OMP_NUM_THREADS`` threads and its own log;
a job marked ``exclusive`` (a timing) runs alone. An interrupted job
resumes through its own checkpoints when started again: nothing here
knows what a job computes. Wall times go to a JSON file
(:class:`~fastast_sb.walltimes.WallTimes`), which
:func:`~fastast_sb.walltimes.estimate` reads to say how long the rest will
take. Dataset-neutral: the recipes' experiment scripts build the jobs.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import (
    IO,
    Callable,
    Dict,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    Union,
)

from fastast_sb.walltimes import WallTimes, duration, estimate, now

PathLike = Union[str, Path]


class ExperimentError(RuntimeError):
    """Jobs that failed (or could not start): one line per job, its log."""


@dataclass(frozen=True)
class Late:
    """A command argument known only when the job starts (a checkpoint
    another job writes): ``str()`` gives ``placeholder`` (plans, dry runs),
    :meth:`resolve` the real text.

    Example
    -------
    >>> arg = Late("--ckpt=<teacher>", lambda: "--ckpt=t.ckpt")
    >>> str(arg), arg.resolve()
    ('--ckpt=<teacher>', '--ckpt=t.ckpt')
    """

    placeholder: str
    resolver: Callable[[], str] = field(compare=False)

    def __str__(self) -> str:
        return self.placeholder

    def resolve(self) -> str:
        """The argument's text, computed now."""
        return self.resolver()


Arg = Union[str, Late]


@dataclass
class Job:
    """One command of an experiment.

    Arguments
    ---------
    name : str
        Unique; names the log (``<log_dir>/<name>.log``) and the wall time.
    args : list of str or Late
        The command line (``sys.executable`` first, normally).
    done : Path
        The file that exists once the job has finished.
    kind : str
        What the estimate averages over (``student``, ``teacher``, ...).
    after : list of str
        Names of the jobs that must finish first.
    exclusive : bool
        Run alone (no other job at the same time): for timings.
    started : Path, optional
        A path that exists once the job has made progress (a checkpoint
        folder): its wall time then counts as a resumed one.
    needs : Path, optional
        A path that must also exist for the job to count as finished (the
        checkpoints a waiting job reads; set by :func:`keep_inputs`).
    aliases : list of (str, str)
        ``(prefix, name)`` pairs :meth:`settings` writes as ``name``: where
        the checkout and the output folder lie does not change the command.

    Example
    -------
    >>> job = Job("a", ["echo", Late("<x>", lambda: "x")], Path("none"))
    >>> job.preview(), job.command(), job.finished
    ("echo '<x>'", ['echo', 'x'], False)
    """

    name: str
    args: Sequence[Arg]
    done: Path
    kind: str = "run"
    after: Sequence[str] = ()
    exclusive: bool = False
    started: Optional[Path] = None
    needs: Optional[Path] = None
    aliases: Sequence[Tuple[str, str]] = ()

    @property
    def finished(self) -> bool:
        """Whether ``done`` exists (and ``needs``, where set)."""
        if not Path(self.done).is_file():
            return False
        return self.needs is None or Path(self.needs).exists()

    @property
    def resumed(self) -> bool:
        """Whether an earlier invocation got somewhere (``started``)."""
        return self.started is not None and Path(self.started).exists()

    def command(self) -> List[str]:
        """The command with every :class:`Late` argument resolved."""
        return [a.resolve() if isinstance(a, Late) else a for a in self.args]

    def preview(self) -> str:
        """The command as shell text, placeholders unresolved."""
        return shlex.join(str(a) for a in self.args)

    def settings(self) -> str:
        """:meth:`preview` without the program (``args[0]``, which may be
        another path to the same interpreter), ``aliases`` applied.

        Example
        -------
        >>> Job("a", ["py", "/repo/x.py", "--out=/o/r"], Path("d"),
        ...     aliases=[("/o", "<out>"), ("/repo", "<repo>")]).settings()
        "'<repo>/x.py' '--out=<out>/r'"
        """
        return shlex.join(self._alias(str(a)) for a in self.args[1:])

    def _alias(self, text: str) -> str:
        for prefix, name in self.aliases:
            text = text.replace(prefix, name)
        return text


def keep_inputs(jobs: Sequence[Job]) -> None:
    """Let a job count as finished only with the checkpoints a job still to
    run reads from it.

    A run's results (its ``done`` file) may be kept without its checkpoints
    (its ``started`` folder): a results folder under version control keeps
    the figures, not the weights. A job that waits for it and has not
    finished reads those checkpoints (a student its teacher's, a benchmark
    its models'), so the earlier job ``needs`` its ``started`` path and
    runs again where it is gone (the same figures, for a seed and thread
    count). Applied until nothing changes, as a rerun may need its own
    inputs again.

    Example
    -------
    >>> import tempfile
    >>> tmp = Path(tempfile.mkdtemp())
    >>> (tmp / "t.done").touch()  # the teacher's results, no checkpoints
    >>> teacher = Job("t", ["x"], tmp / "t.done", started=tmp / "t_save")
    >>> student = Job("s", ["x"], tmp / "s.done", after=["t"])
    >>> teacher.finished, keep_inputs([teacher, student]), teacher.finished
    (True, None, False)
    """
    by_name = _check(jobs)
    changed = True
    while changed:
        changed = False
        for job in jobs:
            if job.finished:
                continue
            for name in job.after:
                dep = by_name[name]
                if dep.needs is None and dep.started is not None:
                    dep.needs = dep.started
                    changed = True


def _check(jobs: Sequence[Job]) -> Dict[str, Job]:
    by_name: Dict[str, Job] = {}
    for job in jobs:
        if job.name in by_name:
            raise ValueError(f"job name {job.name!r} twice; expected unique")
        by_name[job.name] = job
    for job in jobs:
        unknown = [a for a in job.after if a not in by_name]
        if unknown:
            raise ValueError(
                f"job {job.name!r} waits for {unknown}, which are not jobs"
            )
    return by_name


@dataclass
class _Running:
    job: Job
    proc: subprocess.Popen
    log: IO[str]
    start: float
    resumed: bool


def _start(job: Job, log_path: Path, env: Dict[str, str]) -> _Running:
    """Start ``job``, its output appended to ``log_path`` (tries kept)."""
    resumed = job.resumed
    log = open(log_path, "a", encoding="utf-8")
    log.write(f"=== {now()}: {job.preview()}\n")
    log.flush()
    try:
        proc = subprocess.Popen(
            job.command(), stdout=log, stderr=subprocess.STDOUT, env=env
        )
    except Exception:
        log.close()
        raise
    return _Running(job, proc, log, time.perf_counter(), resumed)


def run_jobs(
    jobs: Sequence[Job],
    log_dir: PathLike,
    walls: WallTimes,
    defaults: Mapping[str, float],
    n_jobs: int = 1,
    threads: int = 1,
    say: Callable[[str], None] = print,
    poll_s: float = 0.2,
) -> Dict[str, float]:
    """Run every unfinished job (its ``after`` jobs first), ``n_jobs`` at
    a time, each with ``OMP_NUM_THREADS=threads`` and its output appended to
    ``<log_dir>/<name>.log``; ``say`` gets a line per finished job with the
    time left (:func:`estimate`). A job that fails (or ends without its
    ``done`` file) stops its dependants, not the others; then an
    :class:`ExperimentError` names them. Returns this invocation's wall
    seconds per job run.

    Example
    -------
    >>> import sys, tempfile
    >>> tmp = Path(tempfile.mkdtemp())
    >>> make = f"open({str(tmp / 'a.txt')!r}, 'w').write('1')"
    >>> a = Job("a", [sys.executable, "-c", make], tmp / "a.txt", "x")
    >>> walls = WallTimes(tmp / "w.json")
    >>> sorted(run_jobs([a], tmp / "logs", walls, {"x": 1}, say=len))
    ['a']
    >>> run_jobs([a], tmp / "logs", walls, {"x": 1}, say=len)  # done: skip
    {}
    """
    by_name = _check(jobs)
    log_dir = Path(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    waiting = [j for j in jobs if not j.finished]
    total, ended = len(waiting), 0
    running: Dict[str, _Running] = {}
    failed: Dict[str, str] = {}
    walls_now: Dict[str, float] = {}

    def ready(job: Job) -> bool:
        return all(by_name[a].finished for a in job.after)

    def blocked(job: Job) -> Optional[str]:
        return next((a for a in job.after if a in failed), None)

    while waiting or running:
        for job in list(waiting):
            cause = blocked(job)
            if cause is not None:
                waiting.remove(job)
                failed[job.name] = f"not started: {cause} failed"
                continue
            alone = any(r.job.exclusive for r in running.values())
            if job.exclusive and running:
                alone = True
            if alone or not ready(job) or len(running) >= n_jobs:
                continue
            waiting.remove(job)
            log = log_dir / f"{job.name}.log"
            try:
                running[job.name] = _start(job, log, env)
            except Exception as err:  # a Late argument that cannot resolve
                failed[job.name] = f"could not start ({err}); see {log}"
        for name, run in list(running.items()):
            if run.proc.poll() is None:
                continue
            run.log.close()
            del running[name]
            seconds, ended = time.perf_counter() - run.start, ended + 1
            log = log_dir / f"{name}.log"
            code = run.proc.returncode
            if code != 0 or not run.job.finished:
                why = f"exit {code}" if code else f"no {run.job.done}"
                failed[name] = f"failed ({why}); see {log}"
                say(f"[{ended}/{total}] {name}: FAILED ({why}); see {log}")
                continue
            walls.record(
                name, run.job.kind, seconds, run.resumed, run.job.settings()
            )
            walls_now[name] = seconds
            left = [r.job for r in running.values()] + waiting
            rest = estimate(left, walls, defaults, n_jobs).wall_minutes
            again = " (resumed)" if run.resumed else ""
            say(
                f"[{ended}/{total}] {name}: done in {seconds / 60:.1f} min"
                f"{again}; ~{duration(rest)} left"
            )
        if running:
            time.sleep(poll_s)
        elif waiting and not any(ready(j) for j in waiting):
            for job in waiting:  # waits for a job that never ran to the end
                failed[job.name] = "not started: a job it waits for is missing"
            waiting = []
    if failed:
        raise ExperimentError(
            "; ".join(f"{name}: {why}" for name, why in failed.items())
        )
    return walls_now
