"""recipes/SpeechCommands/paper_tables.py: the ESC-50 plan on one split."""

from __future__ import annotations

from tests.conftest import ROOT, load_recipe_module

SC = ROOT / "recipes" / "SpeechCommands"
sc_tables = load_recipe_module("sc_paper_tables", SC / "paper_tables.py")

import paper_plan  # noqa: E402  (on sys.path through the module above)


def test_one_split_the_head_teacher_and_the_readme_student(tmp_path, capsys):
    ckpt = tmp_path / "mn04.pt"
    ckpt.write_bytes(b"")
    args = [
        "--data_folder=SC",
        "--n_classes=12",
        f"--output_root={tmp_path / 'out'}",
        f"--teacher_init={ckpt}",
    ]
    plan = paper_plan.build_plan(args, sc_tables.SPEECH_COMMANDS)
    assert [job.name for job in plan.jobs] == [
        "teacher_cnn_fold12",
        "ast_fold12_seed1234",
        "tome_fold12_seed1234",
        "tome_kd_cnn_fold12_seed1234",
        "tome_kd_cnn_tuned_fold12_seed1234",
        "table1_fold12_seed1234",
    ]
    teacher, *students = plan.jobs[:5]
    assert teacher.args[1] == str(SC / "train.py")
    assert teacher.args[2].endswith("hparams/teacher_mobilenet_head.yaml")
    for job in plan.jobs[:5]:
        text = job.preview()
        assert "--fold=" not in text  # one official split
        assert "teacher_class_map" not in text  # the head has the classes
    for job in students:
        assert "--depth=4 --fstride=10 --tstride=10 --target_length=100" in (
            job.preview()
        )
    # 4 blocks of 110 tokens: r = 21 is the largest every block merges.
    assert plan.schedules[:4] == ["0", "8", "16", "21"]
    assert sc_tables.main([*args, "--dry_run"]) == 0
    out = capsys.readouterr().out
    assert "1 x teacher_cnn at ~15.0 min (default)" in out
    # the teacher chosen on validation_list: 30 epochs, shift, mixup 0.3
    for option in (
        "--number_of_epochs=30",
        "--time_shift=0.1",
        "--mixup_prob=0.3",
    ):
        assert option in teacher.preview()
