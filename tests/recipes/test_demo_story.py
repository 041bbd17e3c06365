"""``make demo`` tells its story: a sweep to the most each block can merge,
stable timing, an honest distillation sentence, a plot, no spurious
warnings (issue 14.10)."""

from __future__ import annotations

import doctest
import logging
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "recipes" / "ESC50"))

import demo  # noqa: E402
import demo_data  # noqa: E402
import demo_report  # noqa: E402

from fastast_sb.models.ast import AST  # noqa: E402

#: Messages the demo must not print (spurious or a sign of a bad sweep).
FORBIDDEN = (
    "Traceback",
    "torchvision is not available",
    "Saving an empty state_dict",
    "clipped to",
    "not reachable",
)


@pytest.mark.parametrize("module", [demo, demo_data, demo_report])
def test_demo_modules_doctests_pass(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0


def test_sweep_reaches_the_per_block_maximum_without_warnings(caplog):
    model = AST(input_tdim=128, preset="tiny", depth=8)
    schedules = demo.sweep_schedules(model)
    assert schedules[0] == "0"
    r_max = int(schedules[2])
    assert model.schedule(r_max) == [r_max] * 8
    assert model.schedule(r_max + 1) != [r_max + 1] * 8  # one more clips
    assert schedules[3:] == ["flops:0.5", "flops:0.3", "flops:0.2"]
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        for r in schedules:
            model.schedule(r)
    assert not caplog.records, [rec.getMessage() for rec in caplog.records]


def test_sweep_leaves_out_budgets_a_shallow_model_cannot_reach(caplog):
    model = AST(input_tdim=128, preset="tiny", depth=4)
    schedules = demo.sweep_schedules(model)
    assert "flops:0.2" not in schedules and "flops:0.5" in schedules
    with caplog.at_level(logging.WARNING):
        for r in schedules:
            model.schedule(r)
    assert not caplog.records


def test_stable_speedups_reports_rounds_and_errors():
    model = AST(input_tdim=128, preset="tiny", depth=2)
    out = demo.stable_speedups(
        model, ["0", "flops:0.5"], 1, min_rounds=3, max_seconds=0.0
    )
    assert out["rounds"] == 3
    assert out["speedup"][0] == 1.0 and out["error"][0] == 0.0
    assert out["speedup"][1] > 0 and out["error"][1] >= 0


def test_distillation_that_loses_is_said_to_lose_and_why():
    worse_teacher = demo_report.distillation_sentence(
        0.5, [0.8, 0.7], [0.6, 0.5], 0.01, 160
    )
    assert worse_teacher.startswith("Distillation does not help")
    assert "no better than the student" in worse_teacher
    better_teacher = demo_report.distillation_sentence(
        0.95, [0.8, 0.7], [0.75, 0.6], 0.01, 160
    )
    assert "does not help" in better_teacher and "160" in better_teacher
    close = demo_report.distillation_sentence(
        0.82, [0.8, 0.7], [0.79, 0.69], 0.01, 160
    )
    assert "hardly better" in close and "2 test clips" in close
    even = demo_report.distillation_sentence(
        0.95, [0.8, 0.7], [0.8, 0.7], 0.01, 160
    )
    assert even.startswith("Distillation makes no difference")


def test_merging_sentence_names_where_accuracy_drops():
    text = demo_report.merging_sentence(
        ["0", "8", "16", "flops:0.2"],
        [0.90, 0.90, 0.89, 0.70],
        [1.0, 1.3, 1.8, 3.0],
        0.01,
    )
    assert "up to 16 (1.80x faster)" in text
    assert "at flops:0.2 (3.00x) it drops by 20.0 points" in text


def test_subset_views_are_disjoint_and_share_the_test_fold(tmp_path):
    pool = demo_data.make_demo_esc50(str(tmp_path / "pool"), 3, 0.1, 2)
    a = demo_data._read_rows(
        demo_data.subset_esc50(pool, str(tmp_path / "a"), 0, 2)
    )
    b = demo_data._read_rows(
        demo_data.subset_esc50(pool, str(tmp_path / "b"), 2, 1)
    )

    def train(rows):
        return {r["filename"] for r in rows if r["fold"] != "5"}

    def test(rows):
        return {r["filename"] for r in rows if r["fold"] == "5"}

    assert len(train(a)) == 40 and len(train(b)) == 20
    assert not train(a) & train(b)
    assert test(a) == test(b) and len(test(a)) == 10


@pytest.mark.slow
def test_quick_demo_prints_the_story_and_the_plot(tmp_path):
    out = tmp_path / "demo"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "recipes/ESC50/demo.py"), "--quick"]
        + [f"--output_folder={out}"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=900,
    )
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text[-3000:]
    for bad in FORBIDDEN:
        assert bad not in text, f"{bad!r} printed:\n{text[-3000:]}"
    assert "| schedule | tokens out | FLOP ratio | speed-up" in proc.stdout
    for r in ("| 0 |", "| 16 |", "| flops:0.2 |"):
        assert r in proc.stdout
    assert "interleaved rounds" in proc.stdout
    assert "Merging " in proc.stdout and "Distillation " in proc.stdout
    png = out / "tradeoff.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 10_000
    assert (out / "demo_summary.md").read_text().count("| flops:") == 3
