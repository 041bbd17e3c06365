"""recipes/ESC50/paper_tables.py: the plan, resumption, the estimate and one
tiny end-to-end run on synthetic audio."""

from __future__ import annotations

import csv
import json
import shlex
import sys

import pytest

from tests.conftest import ROOT, one_line_refusal

RECIPE = ROOT / "recipes" / "ESC50"
sys.path.insert(0, str(RECIPE))

import paper_plan  # noqa: E402
import paper_tables  # noqa: E402
from demo_data import make_demo_esc50  # noqa: E402

ESC = paper_tables.ESC


def _plan(tmp_path, *extra: str, teacher=True):
    ckpt = tmp_path / "mn04.pt"
    ckpt.write_bytes(b"")  # only its existence is checked when planning
    args = [
        "--data_folder=DATA",
        "--n_classes=10",
        "--folds=1,2,3,4",
        f"--output_root={tmp_path / 'out'}",
        f"--teacher_init={ckpt}",
        *extra,
    ]
    return paper_plan.build_plan(args, ESC)


def _value(job, key: str):
    found = [str(a) for a in job.args if str(a).startswith(f"--{key}=")]
    return [a.split("=", 1)[1] for a in found]


def test_plan_has_every_arm_on_every_fold_and_a_teacher_per_fold(tmp_path):
    plan = _plan(tmp_path)
    by_name = {job.name: job for job in plan.jobs}
    arms = ["ast", "tome", "tome_kd_cnn", "tome_kd_cnn_tuned"]
    expected = []
    for k in (1, 2, 3, 4):
        expected.append(f"teacher_cnn_fold{k}")
        expected += [f"{arm}_fold{k}_seed1234" for arm in arms]
        expected.append(f"table1_fold{k}_seed1234")
    assert [job.name for job in plan.jobs] == expected
    outs = [
        _value(j, "output_folder")[0]
        for j in plan.jobs
        if "--fold" in " ".join(map(str, j.args))
    ]
    assert len(set(outs)) == len(outs)  # every run its own folder
    for k in (1, 2, 3, 4):
        teacher = by_name[f"teacher_cnn_fold{k}"]
        assert str(teacher.args[2]).endswith("hparams/teacher_mobilenet.yaml")
        assert _value(teacher, "fold") == [str(k)]
        assert _value(teacher, "teacher_init") == [str(tmp_path / "mn04.pt")]
        assert _value(teacher, "teacher_class_map") == ["esc10"]
        for arm, yaml, tau in (
            ("ast", "ast.yaml", None),
            ("tome", "tome.yaml", None),
            ("tome_kd_cnn", "tome_kd.yaml", "1"),
            ("tome_kd_cnn_tuned", "tome_kd.yaml", "3"),
        ):
            job = by_name[f"{arm}_fold{k}_seed1234"]
            assert str(job.args[2]).endswith(f"hparams/{yaml}")
            assert _value(job, "fold") == [str(k)]
            assert _value(job, "seed") == ["1234"]
            assert _value(job, "depth") == ["6"]  # the README's student
            # trained patiently in bf16, the same in every arm
            assert _value(job, "number_of_epochs") == ["300"]
            assert _value(job, "precision") == ["bf16"]
            assert _value(job, "test_checkpoint") == ["average"]
            assert _value(job, "average_epochs") == ["10"]
            assert _value(job, "kd_tau") == ([tau] if tau else [])
            assert _value(job, "kd_lambda") == (["0.1"] if tau else [])
            tome_r = [] if arm == "ast" else ["flops:0.5"]
            assert _value(job, "tome_r") == tome_r
            sweep = _value(job, "r_sweep")[0]
            assert sweep.startswith("[0, flops:0.5, 8, 16,")  # --debug keeps 2
            if tau:
                assert job.after == (f"teacher_cnn_fold{k}",)
                late = _value(job, "teacher_checkpoint")[0]
                assert f"teacher_cnn/fold{k}/seed1234/save/CKPT+" in late
                assert _value(job, "teacher_class_map") == ["esc10"]
            else:
                assert job.after == ()
        bench = by_name[f"table1_fold{k}_seed1234"]
        assert bench.exclusive
        assert bench.after == (
            f"ast_fold{k}_seed1234",
            f"tome_fold{k}_seed1234",
        )
        text = bench.preview()
        assert "-m fastast_sb.benchmark --checkpoint" in text
        assert f"runs/ast/fold{k}/seed1234 --train-inf-checkpoint" in text


def test_table1_schedules_go_to_the_model_s_largest_r_and_low_budgets(
    tmp_path,
):
    plan = _plan(tmp_path)
    # 6 blocks, 258 tokens: r = 36 is the largest every block merges.
    assert plan.schedules == [
        "0",
        "8",
        "16",
        "24",
        "32",
        "36",
        "flops:0.5",
        "flops:0.35",
        "flops:0.2",
        "flops:0.1",
    ]
    # Another student: the plan follows its size.
    plan = _plan(tmp_path, "--depth=4", "--fstride=10", "--tstride=10")
    n = 2 + 12 * 50
    top = max(r for r in range(300) if n - 3 * r >= 2 * r + 2)
    assert plan.schedules[-5] == str(top)
    job = next(j for j in plan.jobs if j.name == "tome_fold1_seed1234")
    assert _value(job, "depth") == ["4"] and _value(job, "fstride") == ["10"]


def test_arms_seeds_and_options_select_the_runs(tmp_path):
    plan = _plan(
        tmp_path,
        "--arms=tome,tome_kd_passt",
        "--seeds=1,2",
        "--folds=3",
        "--kd_tau=2",
        "--train_schedule=16",
    )
    names = [job.name for job in plan.jobs]
    assert names == [
        "teacher_passt_fold3",
        "tome_fold3_seed1",
        "tome_kd_passt_fold3_seed1",
        "tome_fold3_seed2",
        "tome_kd_passt_fold3_seed2",
    ]  # no ast arm: no Table 1 run
    passt = plan.jobs[2]
    assert str(passt.args[2]).endswith("hparams/tome_kd_passt.yaml")
    assert _value(passt, "kd_tau") == ["2"] and _value(passt, "tome_r") == [
        "16"
    ]
    assert _value(passt, "teacher_class_map") == []
    assert str(plan.jobs[0].args[2]).endswith("hparams/teacher_passt.yaml")


@pytest.mark.parametrize(
    "arg, expected",
    [
        ("--tome_r=8", "--tome_r: set by this script; use --train_schedule"),
        ("--arms=tome,kd", "--arms=tome,kd: expected some of ast, tome"),
        ("--folds=a", "--folds=a: expected comma-separated fold numbers"),
        ("--debug", "--debug: set by this script; use --number_of_epochs=1"),
        ("--jobs=0", "--jobs=0: expected a number >= 1"),
        ("--teacher_init=/no/file.pt", "--teacher_init=/no/file.pt: no such"),
    ],
)
def test_user_mistakes_end_in_one_line(tmp_path, capsys, arg, expected):
    args = [
        "--data_folder=D",
        "--n_classes=10",
        "--dry_run",
        f"--output_root={tmp_path}",
        arg,
    ]
    err = one_line_refusal(paper_tables.main, capsys, args)
    assert expected in err


def test_dry_run_prints_the_commands_and_skips_finished_runs(tmp_path, capsys):
    args = ["--arms=ast,tome", "--folds=1,2", "--dry_run"]
    plan = _plan(tmp_path, *args)
    out = tmp_path / "out"
    done = out / "runs" / "ast" / "fold1" / "seed1234" / "test_metrics.json"
    done.parent.mkdir(parents=True)
    done.write_text("{}")  # a finished run, with its checkpoints
    (done.parent / "save").mkdir()
    walls = {
        "x": {
            "kind": "student",
            "wall_s": 600.0,
            "resumed": False,
            "finished": "2026-01-01T00:00:00",
        }
    }
    (out / "wall_times.json").write_text(json.dumps(walls))
    argv = [
        "--data_folder=DATA",
        "--n_classes=10",
        f"--output_root={out}",
        "--jobs=2",
        *args,
    ]
    assert paper_tables.main(argv) == 0
    text = capsys.readouterr().out
    assert "6 runs planned, 1 finished" in text
    assert "[done] ast_fold1_seed1234" in text
    assert "[todo] tome_fold1_seed1234" in text
    for job in plan.jobs:  # the exact commands
        assert job.preview() in text
    # 3 students at the measured 10 min on 2 jobs, 2 timings at the default.
    assert "3 x student at ~10.0 min (measured)" in text
    assert "2 x table1 at ~3.0 min (default)" in text
    assert "5 runs to do: ~21 min wall" in text
    assert not (out / "runs" / "tome").exists()  # nothing ran
    assert [j.finished for j in plan.jobs][:2] == [True, False]


def test_the_teacher_checkpoint_is_the_one_its_run_tested(tmp_path):
    import torch
    from speechbrain.utils.checkpoints import Checkpointer

    run = tmp_path / "teacher"
    saver = Checkpointer(
        run / "save", {"embedding_model": torch.nn.Linear(1, 1)}
    )
    first = saver.save_checkpoint(meta={"epoch": 1, "acc": 0.9})
    last = saver.save_checkpoint(meta={"epoch": 2, "acc": 0.5})
    (run / "hyperparams.yaml").write_text("test_checkpoint: last\n")
    path = paper_plan.teacher_checkpoint(run)
    assert path == str(last.path / "embedding_model.ckpt")
    (run / "hyperparams.yaml").write_text("test_checkpoint: best\n")
    assert paper_plan.teacher_checkpoint(run).startswith(str(first.path))


def _csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_end_to_end_on_tiny_synthetic_audio(tmp_path, capsys):
    data = make_demo_esc50(str(tmp_path / "data"), 1, 0.64)  # 25 clips
    tiny = "--depth=1 --batch_size=8 --number_of_epochs=1 --target_length=64"
    argv = [
        f"--data_folder={data}",
        "--n_classes=5",
        "--folds=5",
        "--jobs=2",
        "--arms=ast,tome,tome_kd_passt",
        "--table1_r=0 4 flops:0.5",
        "--bench_repeats=1",
        f"--passt_teacher_args={tiny} --s_patchout_t=1",
        *shlex.split(tiny),
    ]
    out = tmp_path / "out"
    assert paper_tables.main([*argv, f"--output_root={out}"]) == 0
    text = capsys.readouterr().out
    assert "5 runs planned, 0 finished" in text
    assert "[5/5]" in text and "done in" in text
    table1 = _csv(out / "table1.csv")
    assert [row["r"] for row in table1] == ["0", "4", "flops:0.5"]
    bench = _csv(out / "table1_runs" / "fold5_seed1234" / "benchmark.csv")
    for row, b in zip(table1, bench):
        assert float(row["inf_acc_mean"]) == float(b["metric_inf"])
        assert float(row["train_inf_acc_mean"]) == float(b["metric_train_inf"])
        assert float(row["inf_sps"]) == float(b["samples_per_s"])
    table2 = {row["arm"]: row for row in _csv(out / "table2.csv")}
    assert list(table2) == ["ast", "tome", "tome_kd_passt"]
    teacher = out / "runs" / "teacher_passt" / "fold5" / "seed1234"
    metrics = json.loads((teacher / "test_metrics.json").read_text())
    assert (
        float(table2["tome_kd_passt"]["teacher_acc_mean"])
        == (metrics["r_sweep"][0]["metric"])
    )
    kd_run = out / "runs" / "tome_kd_passt" / "fold5" / "seed1234"
    hp = (kd_run / "hyperparams.yaml").read_text()
    assert f"{teacher}/save/CKPT+" in hp.split("teacher_checkpoint:")[1]
    walls = json.loads((out / "wall_times.json").read_text())
    assert len(walls) == 5 and all(w["wall_s"] > 0 for w in walls.values())
    assert (out / "accuracy_vs_throughput.png").read_bytes()[:4] == b"\x89PNG"
    # Rerun: nothing left to do, same tables.
    before = (out / "table2.md").read_text()
    assert paper_tables.main([*argv, f"--output_root={out}"]) == 0
    text = capsys.readouterr().out
    assert "5 runs planned, 5 finished" in text and "[1/" not in text
    assert (out / "table2.md").read_text() == before
    # Other settings over finished runs: refused in one line, nothing runs.
    assert paper_tables.main([*argv, "--lr=1e-3", f"--output_root={out}"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "were made with other commands (ast_fold5_seed1234," in err
    assert (out / "table2.md").read_text() == before
    # Same seed and thread count: the same figure in another output root.
    again = tmp_path / "again"
    argv_tome = [a for a in argv if not a.startswith("--arms=")]
    assert (
        paper_tables.main([*argv_tome, "--arms=tome", f"--output_root={again}"])
        == 0
    )
    first = _csv(out / "table2.csv")[1]
    second = _csv(again / "table2.csv")[0]
    assert second["acc_r0_mean"] == first["acc_r0_mean"]
    assert second["acc_train_mean"] == first["acc_train_mean"]


def test_results_kept_without_checkpoints_rerun_only_where_read(tmp_path):
    # A results folder kept in git has test_metrics.json but no save/. A
    # finished student whose benchmark (Table 1) is still to run must run
    # again (the benchmark reads its checkpoints); one whose readers have
    # all finished stays finished.
    out = tmp_path / "out"
    args = ["--arms=ast,tome", "--folds=1,2", f"--output_root={out}"]
    for fold in (1, 2):
        for arm in ("ast", "tome"):
            run = out / "runs" / arm / f"fold{fold}" / "seed1234"
            run.mkdir(parents=True)
            (run / "test_metrics.json").write_text("{}")
    bench = out / "table1_runs" / "fold2_seed1234" / "benchmark.csv"
    bench.parent.mkdir(parents=True)
    bench.write_text("r\n")
    by_name = {j.name: j for j in _plan(tmp_path, *args).jobs}
    assert not by_name["ast_fold1_seed1234"].finished  # read by table1_fold1
    assert not by_name["tome_fold1_seed1234"].finished
    assert by_name["ast_fold2_seed1234"].finished  # its table is done
    assert by_name["table1_fold2_seed1234"].finished
    (out / "runs" / "ast" / "fold1" / "seed1234" / "save").mkdir()
    by_name = {j.name: j for j in _plan(tmp_path, *args).jobs}
    assert by_name["ast_fold1_seed1234"].finished


def test_commands_do_not_depend_on_where_the_checkout_lies(tmp_path):
    out = tmp_path / "out"
    job = _plan(tmp_path, "--arms=ast", "--folds=1", f"--output_root={out}")
    text = job.jobs[0].settings()
    assert str(out) not in text and str(paper_plan.ROOT) not in text
    assert "<repo>/hparams/ast.yaml" in text
    assert "'--output_folder=<output_root>/runs/ast/fold1/seed1234'" in text


def test_report_only_writes_the_tables_and_runs_nothing(tmp_path, capsys):
    out = tmp_path / "out"
    argv = [
        "--data_folder=DATA",
        "--n_classes=10",
        f"--output_root={out}",
        "--arms=ast,tome",
        "--folds=1",
        "--report_only",
    ]
    assert paper_tables.main(argv) == 0
    assert "3 runs planned, 0 finished" in capsys.readouterr().out
    assert (out / "table1.md").is_file() and (out / "table2.csv").is_file()
    assert not (out / "runs").exists()  # nothing ran
