"""fastast_sb.experiments and .walltimes: resumable jobs, N at a time,
wall times, the estimate."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from fastast_sb.experiments import ExperimentError, Job, Late, run_jobs
from fastast_sb.walltimes import WallTimes, estimate

DEFAULTS = {"x": 5.0, "bench": 1.0}


def _job(tmp: Path, name: str, code: str = "", **kwargs) -> Job:
    """A job that runs ``code``, then writes start/end times and the
    thread count into ``<name>.json`` (its done file)."""
    done = tmp / f"{name}.json"
    script = (
        "import json, os, sys, time\n"
        "start = time.time()\n"
        f"{code}\n"
        "json.dump({'start': start, 'end': time.time(), "
        "'threads': os.environ.get('OMP_NUM_THREADS'), 'argv': sys.argv[1:]},"
        f" open({str(done)!r}, 'w'))\n"
    )
    extra = kwargs.pop("extra", [])
    return Job(name, [sys.executable, "-c", script, *extra], done, **kwargs)


def _times(tmp: Path, name: str) -> dict:
    return json.loads((tmp / f"{name}.json").read_text())


def test_dependencies_run_first_and_finished_jobs_are_skipped(tmp_path):
    a = _job(tmp_path, "a", kind="x")
    check = f"assert os.path.exists({str(tmp_path / 'a.json')!r})"
    b = _job(tmp_path, "b", check, kind="x", after=("a",))
    walls = WallTimes(tmp_path / "walls.json")
    lines = []
    ran = run_jobs(
        [b, a], tmp_path / "logs", walls, DEFAULTS, 2, say=lines.append
    )
    assert sorted(ran) == ["a", "b"]
    assert _times(tmp_path, "a")["end"] <= _times(tmp_path, "b")["start"]
    assert _times(tmp_path, "b")["threads"] == "1"
    assert [line.split()[0] for line in lines] == ["[1/2]", "[2/2]"]
    assert "done in" in lines[0] and "left" in lines[0]
    recorded = json.loads((tmp_path / "walls.json").read_text())
    assert set(recorded) == {"a", "b"}
    assert recorded["a"]["kind"] == "x" and not recorded["a"]["resumed"]
    # A second invocation finds both done files: nothing runs.
    before = (tmp_path / "a.json").read_text()
    assert run_jobs([a, b], tmp_path / "logs", walls, DEFAULTS, 2) == {}
    assert (tmp_path / "a.json").read_text() == before


def test_jobs_overlap_up_to_n_and_an_exclusive_job_runs_alone(tmp_path):
    nap = "time.sleep(0.6)"
    jobs = [_job(tmp_path, f"s{i}", nap, kind="x") for i in range(3)]
    jobs.insert(1, _job(tmp_path, "t", nap, kind="bench", exclusive=True))
    walls = WallTimes(tmp_path / "walls.json")
    run_jobs(jobs, tmp_path / "logs", walls, DEFAULTS, 2, threads=3, say=len)
    spans = {j.name: _times(tmp_path, j.name) for j in jobs}
    assert {s["threads"] for s in spans.values()} == {"3"}

    def overlap(a: str, b: str) -> bool:
        x, y = spans[a], spans[b]
        return x["start"] < y["end"] and y["start"] < x["end"]

    pairs = [("s0", "s1"), ("s0", "s2"), ("s1", "s2")]
    assert any(overlap(a, b) for a, b in pairs)  # two at a time
    assert not any(
        overlap(a, b) and overlap(a, c) and overlap(b, c)
        for a, b, c in [("s0", "s1", "s2")]
    )  # never three
    assert not any(overlap("t", s) for s in ("s0", "s1", "s2"))


def test_a_failure_stops_its_dependants_only(tmp_path):
    bad = _job(tmp_path, "bad", "sys.exit(3)", kind="x")
    child = _job(tmp_path, "child", kind="x", after=("bad",))
    other = _job(tmp_path, "other", kind="x")
    walls = WallTimes(tmp_path / "walls.json")
    with pytest.raises(ExperimentError) as err:
        run_jobs(
            [bad, child, other], tmp_path / "logs", walls, DEFAULTS, say=len
        )
    text = str(err.value)
    assert "bad: failed (exit 3)" in text
    assert str(tmp_path / "logs" / "bad.log") in text
    assert "child: not started: bad failed" in text
    assert other.finished and not child.finished
    assert set(json.loads((tmp_path / "walls.json").read_text())) == {"other"}


def test_a_job_without_its_done_file_failed(tmp_path):
    job = Job("quiet", [sys.executable, "-c", "pass"], tmp_path / "none.txt")
    walls = WallTimes(tmp_path / "walls.json")
    with pytest.raises(ExperimentError, match="quiet: failed"):
        run_jobs([job], tmp_path / "logs", walls, {"run": 1}, say=len)


def test_late_arguments_resolve_when_the_job_starts(tmp_path):
    a = _job(tmp_path, "a", kind="x")
    late = Late("<a's start>", lambda: str(_times(tmp_path, "a")["start"]))
    b = _job(tmp_path, "b", kind="x", after=("a",), extra=[late])
    assert b.preview().endswith("'<a'\"'\"'s start>'")
    walls = WallTimes(tmp_path / "walls.json")
    run_jobs([a, b], tmp_path / "logs", walls, DEFAULTS, say=len)
    assert _times(tmp_path, "b")["argv"] == [
        str(_times(tmp_path, "a")["start"])
    ]


def test_a_resumed_job_is_recorded_as_such(tmp_path):
    (tmp_path / "save").mkdir()
    job = _job(tmp_path, "r", kind="x", started=tmp_path / "save")
    walls = WallTimes(tmp_path / "walls.json")
    lines = []
    run_jobs([job], tmp_path / "logs", walls, DEFAULTS, say=lines.append)
    assert "(resumed)" in lines[0]
    assert WallTimes(tmp_path / "walls.json").minutes("x") == []


def test_bad_job_lists_are_refused(tmp_path):
    a = _job(tmp_path, "a")
    walls = WallTimes(tmp_path / "walls.json")
    with pytest.raises(ValueError, match="job name 'a' twice"):
        run_jobs([a, a], tmp_path, walls, DEFAULTS)
    orphan = _job(tmp_path, "o", after=("ghost",))
    with pytest.raises(ValueError, match=r"waits for \['ghost'\]"):
        run_jobs([orphan], tmp_path, walls, DEFAULTS)


def test_estimate_uses_measured_minutes_then_defaults(tmp_path):
    walls = WallTimes(tmp_path / "walls.json")
    todo = [_job(tmp_path, f"s{i}", kind="x") for i in range(4)]
    todo.append(_job(tmp_path, "t", kind="bench", exclusive=True))
    est = estimate(todo, walls, DEFAULTS, n_jobs=2)
    assert est.per_job == {"x": 5.0, "bench": 1.0}
    assert est.measured == {"x": False, "bench": False}
    assert est.wall_minutes == pytest.approx(4 * 5.0 / 2 + 1.0)
    walls.record("old1", "x", 120.0, resumed=False)
    walls.record("old2", "x", 240.0, resumed=False)
    walls.record("old3", "x", 6.0, resumed=True)  # partial: not counted
    est = estimate(todo, walls, DEFAULTS, n_jobs=4)
    assert est.per_job["x"] == pytest.approx(3.0) and est.measured["x"]
    assert est.wall_minutes == pytest.approx(4 * 3.0 / 4 + 1.0)
    assert "4 x x at ~3.0 min (measured)" in "\n".join(est.lines())
    # One job left cannot share: at least its own minutes.
    assert estimate(todo[:1], walls, DEFAULTS, 4).wall_minutes == 3.0
    # Finished jobs cost nothing.
    (tmp_path / "s0.json").write_text("{}")
    assert estimate(todo, walls, DEFAULTS, 4).count == {"x": 3, "bench": 1}
    with pytest.raises(ValueError, match="no default minutes for job kind"):
        estimate([_job(tmp_path, "z", kind="new")], walls, DEFAULTS)


def test_wall_times_survive_reloading(tmp_path):
    path = tmp_path / "w.json"
    WallTimes(path).record("a", "x", 61.04, resumed=False)
    entry = WallTimes(path).entries["a"]
    assert entry["wall_s"] == 61.0 and entry["kind"] == "x"
    assert time.strptime(entry["finished"], "%Y-%m-%dT%H:%M:%S")
