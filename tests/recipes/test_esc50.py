"""ESC-50 recipe: the real script on real audio, kill/resume, bad input."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, shared_data

RECIPE = ROOT / "recipes" / "ESC50"
sys.path.insert(0, str(RECIPE))

from demo_data import make_demo_esc50  # noqa: E402
from prepare import DataError, prepare_esc50  # noqa: E402


def _train_cmd(*args: str) -> list:
    return [sys.executable, str(RECIPE / "train.py"), *args]


def _read_csv(path: Path) -> list:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory) -> Path:
    return make_demo_esc50(str(tmp_path_factory.mktemp("demo") / "data"))


def test_recipe_runs_on_real_esc10(tmp_path):
    data = shared_data("esc10")
    out = tmp_path / "run"
    proc = subprocess.run(
        _train_cmd(
            str(ROOT / "hparams" / "tome.yaml"),
            f"--data_folder={data}",
            f"--output_root={out}",
            "--n_classes=10",
            "--fold=4",
            "--depth=2",
            "--batch_size=4",
            "--r_sweep=[0, 16]",
            "--bench_repeats=1",
            "--debug",
        ),
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = out / "tome" / "fold4" / "seed1234"
    for name in (
        "hyperparams.yaml",
        "train.csv",
        "test.csv",
        "save/label_encoder.txt",
        "epoch_metrics.csv",
        "r_sweep.md",
        "r_sweep.csv",
    ):
        assert (run_dir / name).is_file(), name
    train_rows = _read_csv(run_dir / "train.csv")
    assert {int(r["fold"]) for r in train_rows} == {1, 2, 3}
    assert {r["fold"] for r in _read_csv(run_dir / "test.csv")} == {"4"}
    rows = _read_csv(run_dir / "r_sweep.csv")
    assert [r["r"] for r in rows] == ["0", "16"]
    for row in rows:
        assert 0.0 <= float(row["metric"]) <= 1.0
        assert float(row["samples_per_s"]) > 0
    assert float(rows[0]["speedup"]) == 1.0
    assert float(rows[1]["flop_ratio"]) > 1.0
    assert int(rows[1]["final_tokens"]) == 602 - 2 * 16
    table = (run_dir / "r_sweep.md").read_text().splitlines()
    assert table[0].startswith("| r | acc (%)")
    assert len(table) == 2 + len(rows)


def _demo_args(data: Path, out: Path) -> list:
    return [
        str(ROOT / "hparams" / "tome.yaml"),
        f"--data_folder={data}",
        f"--output_root={out}",
        "--n_classes=5",
        "--fold=5",
        "--target_length=208",
        "--depth=1",
        "--number_of_epochs=3",
        "--batch_size=8",
        "--r_sweep=[0, 8]",
        "--bench_repeats=1",
    ]


def _final(out: Path) -> tuple:
    run_dir = out / "tome" / "fold5" / "seed1234"
    epochs = _read_csv(run_dir / "epoch_metrics.csv")
    assert "train_teacher_conf" not in epochs[0]  # no teacher, no column
    sweep = _read_csv(run_dir / "r_sweep.csv")
    return epochs, sweep


# Weight averaging over the last two epochs: the killed run's copies of
# epochs 2-3 are written after the resume, and must give the same average.
AVERAGE = ["--test_checkpoint=average", "--average_epochs=2"]


def test_kill_and_resume_matches_uninterrupted_run(tmp_path, demo_data):
    straight = tmp_path / "straight"
    subprocess.run(
        _train_cmd(*_demo_args(demo_data, straight), *AVERAGE),
        check=True,
        capture_output=True,
        cwd=tmp_path,
        timeout=600,
    )
    resumed = tmp_path / "resumed"
    metrics = resumed / "tome" / "fold5" / "seed1234" / "epoch_metrics.csv"
    proc = subprocess.Popen(
        _train_cmd(*_demo_args(demo_data, resumed), *AVERAGE),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=tmp_path,
    )
    deadline = time.time() + 300
    while not (metrics.is_file() and len(_read_csv(metrics)) >= 1):
        assert proc.poll() is None, "run ended before it could be killed"
        assert time.time() < deadline, "no epoch finished in time"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert len(_read_csv(metrics)) < 3, "killed too late to test resuming"
    subprocess.run(
        _train_cmd(*_demo_args(demo_data, resumed), *AVERAGE),
        check=True,
        capture_output=True,
        cwd=tmp_path,
        timeout=600,
    )
    epochs_a, sweep_a = _final(straight)
    epochs_b, sweep_b = _final(resumed)
    assert [r["epoch"] for r in epochs_b] == ["1", "2", "3"]
    assert [r["epoch"] for r in epochs_a] == ["1", "2", "3"]
    for a, b in zip(epochs_a, epochs_b):
        assert abs(float(a["valid_loss"]) - float(b["valid_loss"])) < 1e-6
        assert abs(float(a["train_loss"]) - float(b["train_loss"])) < 1e-6
    for a, b in zip(sweep_a, sweep_b):
        assert abs(float(a["metric"]) - float(b["metric"])) < 1e-6


def test_empty_data_folder_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="ESC-50 not found at .*meta/esc50.csv"):
        prepare_esc50(str(tmp_path), str(tmp_path / "out"))


def _small_copy(demo_data: Path, dst: Path) -> Path:
    (dst / "audio").mkdir(parents=True)
    (dst / "meta").mkdir()
    rows = _read_csv(demo_data / "meta" / "esc50.csv")
    keep = rows[:30]
    for row in keep:
        src = demo_data / "audio" / row["filename"]
        (dst / "audio" / row["filename"]).write_bytes(src.read_bytes())
    with open(dst / "meta" / "esc50.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(keep)
    return dst


def test_corrupt_and_missing_files_listed_in_one_error(tmp_path, demo_data):
    data = _small_copy(demo_data, tmp_path / "esc")
    rows = _read_csv(data / "meta" / "esc50.csv")
    (data / "audio" / rows[0]["filename"]).write_bytes(b"not audio at all")
    (data / "audio" / rows[1]["filename"]).unlink()
    with pytest.raises(DataError) as err:
        prepare_esc50(str(data), str(tmp_path / "out"), test_fold=2)
    msg = str(err.value)
    assert "2 of 30 clips" in msg
    assert f"unreadable: {data / 'audio' / rows[0]['filename']}" in msg
    assert f"missing: {data / 'audio' / rows[1]['filename']}" in msg


def test_unknown_class_is_a_clear_error(tmp_path, demo_data):
    data = _small_copy(demo_data, tmp_path / "esc")
    meta = data / "meta" / "esc50.csv"
    text = meta.read_text().replace(",siren,", ",spaceship,", 1)
    meta.write_text(text)
    with pytest.raises(DataError, match="unknown class 'spaceship'"):
        prepare_esc50(str(data), str(tmp_path / "out"), test_fold=2)


def test_class_count_mismatch_names_the_fix(tmp_path, demo_data):
    proc = subprocess.run(
        _train_cmd(
            str(ROOT / "hparams" / "tome.yaml"),
            f"--data_folder={demo_data}",
            f"--output_root={tmp_path}",
            "--depth=1",
        ),
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 1
    assert "the data has 5 classes but n_classes=50" in proc.stderr
    assert "--n_classes=5" in proc.stderr


def test_cross_validation_aggregates_folds_the_ast_way(tmp_path, demo_data):
    import cross_validate

    args = [a for a in _demo_args(demo_data, tmp_path) if "fold=" not in a]
    args = [a.replace("epochs=3", "epochs=2") for a in args]
    assert cross_validate.main([*args, "--folds=4,5"]) == 0
    summary = (tmp_path / "tome" / "cv_summary.md").read_text()
    per_fold = {
        k: cross_validate.read_epoch_metrics(
            tmp_path / "tome" / f"fold{k}" / "seed1234" / "epoch_metrics.csv"
        )
        for k in (4, 5)
    }
    means = {e: (per_fold[4][e] + per_fold[5][e]) / 2 for e in (1, 2)}
    best = max(means, key=means.get)
    assert f"mean accuracy {100 * means[best]:.2f} % at epoch {best}" in summary
    assert "| 0 |" in summary and "| 8 |" in summary


def test_download_offline_says_where_to_put_the_data(tmp_path, monkeypatch):
    from prepare import download_esc50

    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr("urllib.request.urlretrieve", offline)
    target = tmp_path / "ESC-50"
    with pytest.raises(DataError, match="could not download .*Offline") as err:
        download_esc50(str(target))
    assert f"{target}/meta/esc50.csv" in str(err.value)
