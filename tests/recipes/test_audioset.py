"""AudioSet recipe on a fixture in AudioSet's own format (CSVs + clips).

The fixture has the three standard CSVs (``#`` header lines, quoted label
lists), clips named by YouTube id in several formats and one clip missing
from each list; mAP is checked against scikit-learn computed here.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from sklearn.metrics import average_precision_score

from fastast_sb.samplers import LabelBalancedSampler
from tests.conftest import ROOT, load_recipe_module, shared_data

RECIPE = ROOT / "recipes" / "AudioSet"
sys.path.insert(0, str(RECIPE))

from prepare_audioset import (  # noqa: E402
    DataError,
    download_lists,
    prepare_audioset,
)

SR = 16000
#: The fixture's label file: (mid, display name), in index order.
LABELS = [
    ("/m/tone", "Tone, sine"),
    ("/m/noise", "Noise"),
    ("/m/click", "Click"),
    ("/m/never", "Never present"),
]


def _load_train():
    return load_recipe_module("audioset_train", RECIPE / "train.py")


def _clip(rng: np.random.Generator, mids: list, seconds: float = 1.0):
    t = np.arange(int(SR * seconds)) / SR
    wav = 0.005 * rng.standard_normal(t.size)
    if "/m/tone" in mids:
        wav += 0.3 * np.sin(2 * np.pi * rng.uniform(300, 900) * t)
    if "/m/noise" in mids:
        wav += 0.2 * rng.standard_normal(t.size)
    if "/m/click" in mids:
        wav[:: int(SR * 0.1)] += 0.9
    return np.clip(wav, -1, 1).astype("float32")


def _write_segments(path: Path, rows: list) -> None:
    lines = [
        "# Segments csv created for a test",
        f"# num_ytids={len(rows)}, num_segs={len(rows)}",
        "# YTID, start_seconds, end_seconds, positive_labels",
    ]
    for ytid, mids in rows:
        lines.append(f'{ytid}, 30.000, 40.000, "{",".join(mids)}"')
    path.write_text("\n".join(lines) + "\n")


def make_fixture(root: Path, labels=LABELS, clip_labels=None) -> Path:
    """AudioSet-format data: lists, label file, clips; one missing each."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    with open(root / "class_labels_indices.csv", "w", newline="") as f:
        writer = csv.writer(f, quoting=csv.QUOTE_MINIMAL)
        writer.writerow(["index", "mid", "display_name"])
        for i, (mid, name) in enumerate(labels):
            writer.writerow([i, mid, name])
    combos = clip_labels or [
        ["/m/tone"],
        ["/m/noise"],
        ["/m/click"],
        ["/m/tone", "/m/noise"],
        ["/m/noise", "/m/click"],
    ]
    splits = {"balanced_train": 12, "eval": 7}
    for split, n in splits.items():
        folder = root / "audio" / split
        folder.mkdir(parents=True)
        rows = []
        for k in range(n):
            ytid = f"-{split[:2]}{k:02d}_x"
            mids = combos[k % len(combos)]
            rows.append((ytid, mids))
            if k == n - 1:
                continue  # listed, never downloaded
            wav = _clip(rng, mids)
            if k == 1:  # other formats and the Y-prefixed naming
                sf.write(str(folder / f"{ytid}.flac"), wav, SR)
            elif k == 2:
                sf.write(str(folder / f"Y{ytid}.wav"), wav, 22050)
            else:
                sf.write(str(folder / f"{ytid}.wav"), wav, SR)
        name = (
            "eval_segments.csv" if split == "eval" else f"{split}_segments.csv"
        )
        _write_segments(root / name, rows)
    return root


@pytest.fixture(scope="module")
def fixture(tmp_path_factory) -> Path:
    return make_fixture(tmp_path_factory.mktemp("as") / "audioset")


def _files(folder: Path) -> set:
    return {p for p in folder.rglob("*")}


def test_prepare_reports_and_skips_missing_clips(fixture, tmp_path):
    before = _files(fixture)
    out = prepare_audioset(str(fixture), str(tmp_path / "out"))
    assert _files(fixture) == before  # the data folder is only read
    assert out["counts"] == {
        "train": {"used": 11, "missing": 1},
        "eval": {"used": 6, "missing": 1},
    }
    missing = (tmp_path / "out" / "missing_eval.txt").read_text()
    assert missing == "-ev06_x\tmissing\n"
    with open(out["train"], newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows[3]["label"] == "/m/tone;/m/noise"
    assert rows[1]["wav"].endswith(".flac")
    assert Path(rows[2]["wav"]).name == "Y-ba02_x.wav"
    classes = Path(out["classes"]).read_text().split()
    assert classes == [mid for mid, _ in LABELS]
    assert Path(out["valid"]).read_text() == Path(out["test"]).read_text()


def test_prepare_errors_name_the_problem(fixture, tmp_path, monkeypatch):
    with pytest.raises(DataError, match="AudioSet lists not found in"):
        prepare_audioset(str(tmp_path), str(tmp_path / "o1"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="none of the 12 clips of .*balanced"):
        prepare_audioset(str(fixture), str(tmp_path / "o2"), tmp_path / "empty")

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr("urllib.request.urlretrieve", offline)
    with pytest.raises(DataError, match="could not download .*Offline"):
        download_lists(str(tmp_path / "lists"))
    bad = tmp_path / "bad"
    make_fixture(bad, labels=LABELS[:2])
    with pytest.raises(DataError, match=r"label ids not in .*'/m/click'"):
        prepare_audioset(str(bad), str(tmp_path / "o3"))


def _args(data: Path, out: Path, *extra: str) -> list:
    return [
        str(ROOT / "hparams" / "tome.yaml"),
        f"--data_folder={data}",
        f"--output_root={out}",
        "--n_classes=4",
        "--target_length=128",
        "--depth=1",
        "--number_of_epochs=1",
        "--batch_size=4",
        "--warmup_steps=2",
        "--tome_r=4",
        "--r_sweep=[0]",
        "--bench_repeats=1",
        *extra,
    ]


def test_recipe_trains_and_map_matches_sklearn(fixture, tmp_path):
    train = _load_train()
    result = train.run(_args(fixture, tmp_path))
    brain = result["brain"]
    run_dir = Path(result["output_folder"])
    assert run_dir == tmp_path / "tome" / "foldbalanced" / "seed1234"
    # The last evaluation: the 6 eval clips found (one is missing).
    logits, targets = brain.scores.stacked()
    assert logits.shape == (6, 4)
    y = targets.numpy()
    s = logits.numpy()
    present = [c for c in range(4) if y[:, c].sum() > 0]
    expected = np.mean(
        [average_precision_score(y[:, c], s[:, c]) for c in present]
    )
    metrics = brain.last_metrics
    assert metrics["mAP"] == pytest.approx(expected, abs=1e-9)
    assert metrics["ap_skipped"] == 1  # "Never present" has no positive
    assert result["rows"][0]["metric"] == pytest.approx(expected, abs=1e-9)
    table = (run_dir / "r_sweep.md").read_text()
    assert table.startswith("| r | mAP (%)")
    with open(run_dir / "epoch_metrics.csv", newline="") as f:
        epoch = list(csv.DictReader(f))[0]
    for key in ("valid_mAP", "valid_mAUC", "valid_dprime", "valid_acc"):
        assert key in epoch
    # The kept checkpoint is selected by mAP and records it.
    meta = next((run_dir / "save").glob("CKPT*/CKPT.yaml")).read_text()
    assert "mAP:" in meta


def test_balanced_sampler_option(fixture, tmp_path):
    train = _load_train()
    from fastast_sb.runner import load_run

    hparams, _ = load_run(
        _args(fixture, tmp_path, "--balanced_sampler=True"),
        train.DATASET_YAML,
    )
    train.build_datasets(hparams)
    opts = hparams["train_dataloader_opts"]
    assert isinstance(opts["sampler"], LabelBalancedSampler)
    assert opts["shuffle"] is False
    # Rarer labels weigh more: 4 clips have "click", 6 have "noise".
    labels = train.manifest_labels(Path(hparams["output_folder"]) / "train.csv")
    weights = opts["sampler"].weights
    assert len(weights) == len(labels) == 11
    assert labels[1] == ["/m/noise"] and labels[2] == ["/m/click"]
    assert weights[2] == pytest.approx(1 / 4)
    assert weights[1] == pytest.approx(1 / 6)
    torch.manual_seed(0)
    assert len(list(opts["sampler"])) == 11


def test_multilabel_distillation_with_real_teacher(tmp_path, monkeypatch):
    labels_csv = shared_data("teachers", "class_labels_indices.csv")
    ckpt = shared_data("teachers", "mn04_as_mAP_432.pt")
    with open(labels_csv, newline="") as f:
        real = [(r["mid"], r["display_name"]) for r in csv.DictReader(f)]
    mid = {name: m for m, name in real}
    data = make_fixture(
        tmp_path / "as527",
        labels=real,
        clip_labels=[
            [mid["Speech"]],
            [mid["Music"]],
            [mid["Speech"], mid["Music"]],
        ],
    )
    from fastast_sb.teachers.frozen import FrozenTeacher

    calls = []
    original = FrozenTeacher.forward

    def counting(self, wavs, lens=None, feats=None):
        out = original(self, wavs, lens, feats)
        calls.append(tuple(out.shape))
        return out

    monkeypatch.setattr(FrozenTeacher, "forward", counting)
    train = _load_train()
    result = train.run(
        [
            str(ROOT / "hparams" / "tome_kd.yaml"),
            f"--data_folder={data}",
            f"--output_root={tmp_path / 'run'}",
            f"--teacher_checkpoint={ckpt}",
            "--target_length=128",
            "--depth=1",
            "--batch_size=4",
            "--r_sweep=[0]",
            "--bench_repeats=1",
            "--debug",
        ]
    )
    assert calls and all(shape[1] == 527 for shape in calls)
    metrics = result["brain"].last_metrics
    assert np.isfinite(metrics["loss"])
    assert metrics["ap_skipped"] == 527 - 2  # only Speech and Music occur
    assert 0.0 <= metrics["mAP"] <= 1.0
