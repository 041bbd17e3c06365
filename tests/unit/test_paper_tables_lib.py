"""fastast_sb.paper_tables: Table 1 / Table 2 aggregated over fake runs."""

from __future__ import annotations

import csv
import json
import math
import statistics

import pytest

from fastast_sb.paper_tables import (
    TABLE1,
    Arm,
    sweep_curve,
    table1_rows,
    table2_rows,
    write_paper_tables,
)

HEAD = [
    "r",
    "samples_per_s",
    "speedup",
    "flop_ratio",
    "final_tokens",
    "metric_inf",
    "metric_train_inf",
]
#: Per fold: r -> (samples/s, speed-up, Inf-only acc, Train+Inf acc).
FOLDS = [
    {
        "0": (30.0, 1.0, 0.80, 0.75),
        "16": (36.0, 1.2, 0.78, 0.75),
        "flops:0.5": (45.0, 1.5, 0.70, 0.74),
    },
    {
        "0": (32.0, 1.0, 0.70, 0.65),
        "16": (40.0, 1.25, 0.66, 0.65),
        "flops:0.5": (50.0, 1.56, 0.58, 0.66),
    },
    {
        "0": (28.0, 1.0, 0.75, 0.70),
        "16": (33.0, 1.18, 0.75, 0.71),
        "flops:0.5": (41.0, 1.46, 0.66, 0.69),
    },
]


def _bench_csvs(tmp_path, folds=FOLDS) -> list:
    paths = []
    for i, fold in enumerate(folds):
        path = tmp_path / f"fold{i}" / "benchmark.csv"
        path.parent.mkdir()
        with open(path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(HEAD)
            for r, (sps, up, inf, tinf) in fold.items():
                writer.writerow([r, sps, up, 1.0, 100, inf, tinf])
        paths.append(path)
    return paths


def _metrics(tmp_path, name: str, rows: list) -> str:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps({"metric": "acc", "r_sweep": rows}))
    return str(path)


def test_table1_means_stds_drops_and_speeds_over_folds(tmp_path):
    rows = table1_rows(_bench_csvs(tmp_path))
    assert [row["r"] for row in rows] == ["0", "16", "flops:0.5"]
    for row in rows:
        r = row["r"]
        for group, col in (("inf", 2), ("train_inf", 3)):
            accs = [fold[r][col] for fold in FOLDS]
            ref = statistics.mean(fold["0"][col] for fold in FOLDS)
            assert row[f"{group}_acc_mean"] == pytest.approx(
                statistics.mean(accs)
            )
            assert row[f"{group}_acc_std"] == pytest.approx(
                statistics.stdev(accs)
            )
            assert row[f"{group}_drop"] == pytest.approx(
                ref - statistics.mean(accs)
            )
            assert row[f"{group}_sps"] == pytest.approx(
                statistics.mean(fold[r][0] for fold in FOLDS)
            )
        assert row["n_runs"] == 3
    assert rows[0]["inf_drop"] == 0.0 and rows[2]["inf_drop"] > 0.05


def test_table1_markdown_has_both_column_groups_side_by_side(tmp_path):
    rows = table1_rows(_bench_csvs(tmp_path))
    paths = write_paper_tables(tmp_path / "out", rows, [], {}, ["note 1"])
    lines = paths["table1_md"].read_text().splitlines()
    assert lines[0] == (
        "| r | Inf-only Accuracy (%) | Inf-only Drop (pts) | Inf-only S/s | "
        "Train+Inf Accuracy (%) | Train+Inf Drop (pts) | Train+Inf S/s |"
    )
    mean = 100 * statistics.mean(f["flops:0.5"][2] for f in FOLDS)
    std = 100 * statistics.stdev(f["flops:0.5"][2] for f in FOLDS)
    assert lines[4].startswith(f"| flops:0.5 | {mean:.2f} ± {std:.2f} |")
    assert lines[-1] == "note 1"
    with open(paths["table1_csv"], newline="") as f:
        table = list(csv.DictReader(f))
    assert [c.key for c in TABLE1][:3] == ["r", "inf_acc_mean", "inf_acc_std"]
    assert float(table[1]["train_inf_acc_std"]) == pytest.approx(
        statistics.stdev(f["16"][3] for f in FOLDS)
    )


def test_table1_refuses_runs_with_other_schedules(tmp_path):
    other = [dict(FOLDS[0]), {"0": FOLDS[1]["0"], "8": FOLDS[1]["16"]}]
    with pytest.raises(ValueError, match=r"has schedules \['0', '8'\]"):
        table1_rows(_bench_csvs(tmp_path, other))


def test_table2_teacher_and_student_at_r0_and_the_training_schedule(
    tmp_path,
):
    def run(name, a0, a1, up):
        return _metrics(
            tmp_path,
            name,
            [
                {"r": "0", "metric": a0, "speedup": 1.0, "samples_per_s": 10},
                {
                    "r": "flops:0.5",
                    "metric": a1,
                    "speedup": up,
                    "samples_per_s": 10 * up,
                },
            ],
        )

    students = [run("s1", 0.7, 0.65, 1.5), run("s2", 0.8, 0.8, 1.7)]
    teachers = [
        _metrics(tmp_path, f"t{i}", [{"r": "n/a", "metric": m}])
        for i, m in enumerate((0.95, 0.99))
    ]
    plain = [
        _metrics(tmp_path, "a", [{"r": "0", "metric": 0.6, "speedup": 1.0}])
    ]
    arms = [
        Arm("tome_kd", students, "flops:0.5", "CNN", teachers),
        Arm("ast", plain, "flops:0.5"),
    ]
    kd, ast = table2_rows(arms)
    assert kd["teacher_acc_mean"] == pytest.approx(0.97)
    assert kd["teacher_acc_std"] == pytest.approx(
        statistics.stdev([0.95, 0.99])
    )
    assert kd["acc_r0_mean"] == pytest.approx(0.75)
    assert kd["acc_train_mean"] == pytest.approx(0.725)
    assert kd["speedup"] == pytest.approx(1.6) and kd["n_runs"] == 2
    # No teacher, no row at the schedule: NaN, shown as "-".
    assert math.isnan(ast["teacher_acc_mean"])
    assert math.isnan(ast["acc_train_mean"])
    paths = write_paper_tables(tmp_path / "o", [], [kd, ast], {})
    md = paths["table2_md"].read_text().splitlines()
    assert md[2].startswith("| tome_kd | CNN | 97.00 ± 2.83 | 75.00 ± 7.07 |")
    assert md[3] == "| ast | - | - | 60.00 ± 0.00 | - | - | 1 |"


def test_sweep_curve_and_png(tmp_path):
    runs = [
        _metrics(
            tmp_path,
            f"s{i}",
            [
                {"r": "0", "metric": 0.5 + i / 10, "samples_per_s": 10.0 + i},
                {"r": "8", "metric": 0.4, "samples_per_s": 20.0},
            ],
        )
        for i in range(2)
    ]
    curve = sweep_curve(runs)
    assert curve == [
        ("0", pytest.approx(10.5), pytest.approx(0.55)),
        ("8", 20.0, 0.4),
    ]
    paths = write_paper_tables(tmp_path / "o", [], [], {"tome": curve})
    assert paths["png"].read_bytes()[:4] == b"\x89PNG"
