"""The MobileNetV3 teacher under bf16 autocast, as it runs in bf16 training.

A student trained with ``--precision=bf16`` runs its frozen teacher inside
the same autocast context. Until 2026-12-04 the teacher's resampling,
pre-emphasis and mel projection then ran in bf16 too; now they run in
float32 and only the network computes in bf16. This script measures, on
real clips, how far the teacher's features and predictions move from fp32
in both cases (``legacy``: the old bf16 front end, re-created here from
the same operations), with the AudioSet weights (top-1 over the 527
labels) or a fine-tuned checkpoint (``--checkpoint``, with the ESC-10
class map: accuracy on the clips' labels too).

Usage::

    OMP_NUM_THREADS=1 python scripts/teacher_precision.py \\
        --data_folder ../shared/data/esc10 --fold 1
    python scripts/teacher_precision.py --data_folder ../shared/data/esc10 \\
        --fold 1 --checkpoint RUN/save/CKPT+.../embedding_model.ckpt
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path
from typing import Callable, List, Optional, Tuple

import torch
import torch.nn.functional as F
import torchaudio

from fastast_sb.audio import load_audio
from fastast_sb.teachers.frozen import FrozenTeacher

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
SAMPLES = 80000  # 5 s at 16 kHz


def legacy_features(teacher: FrozenTeacher, wavs: torch.Tensor) -> torch.Tensor:
    """The front end as it ran before the fix: the ambient autocast applies
    to the resampling and pre-emphasis convolutions and the mel product."""
    net = teacher.model
    wavs = torchaudio.functional.resample(wavs, net.sample_rate, 32000)
    kernel = torch.tensor([[[-0.97, 1.0]]])
    x = F.conv1d(wavs.float().unsqueeze(1), kernel).squeeze(1)
    front = net.frontend
    spec = torch.stft(x, 1024, 320, 800, front.window, return_complex=True)
    power = spec.real.square() + spec.imag.square()
    mel = torch.log(front.mel_banks @ power + 1e-5)
    return ((mel + 4.5) / 5.0).transpose(1, 2)


def clips(folder: Path, fold: int) -> Tuple[torch.Tensor, List[str]]:
    """The fold's ESC-10 clips as [N, 5 s] at 16 kHz, and their classes."""
    meta = next((folder / "meta").glob("*.csv"))
    rows = [
        r
        for r in csv.DictReader(meta.open())
        if r.get("esc10", "True") == "True" and int(r["fold"]) == fold
    ]
    if not rows:
        raise SystemExit(f"error: no clips of fold {fold} in {meta}")
    wavs = []
    for row in rows:
        wav = load_audio(folder / "audio" / row["filename"])[:SAMPLES]
        wavs.append(F.pad(wav, (0, SAMPLES - len(wav))))
    return torch.stack(wavs), [r["category"] for r in rows]


def logits_of(
    teacher: FrozenTeacher,
    wavs: torch.Tensor,
    bf16: bool,
    features: Optional[Callable] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """(front-end features, task logits) in batches of 8."""
    feats, logits = [], []
    for batch in wavs.split(8):
        with torch.no_grad(), torch.autocast("cpu", torch.bfloat16, bf16):
            f = (features or teacher.model.features)(batch)
            z = teacher.model.model(f)
            if teacher.class_map is not None:
                z = teacher.class_map(z)
        feats.append(f.float())
        logits.append(z.float())
    return torch.cat(feats), torch.cat(logits)


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python scripts/teacher_precision.py")
    p.add_argument("--data_folder", type=Path, default=SHARED / "esc10")
    p.add_argument("--fold", type=int, default=1)
    p.add_argument(
        "--checkpoint",
        help="fine-tuned teacher (embedding_model.ckpt of a teacher run); "
        "default: the AudioSet weights",
    )
    args = p.parse_args(argv)
    options = dict(sample_rate=16000)
    if args.checkpoint:
        options.update(
            checkpoint=args.checkpoint,
            n_classes=10,
            class_map="esc10",
            labels_csv=str(SHARED / "teachers" / "class_labels_indices.csv"),
            class_maps={"esc10": ROOT / "recipes/ESC50/esc10_class_map.yaml"},
        )
    else:
        options.update(checkpoint=SHARED / "teachers" / "mn04_as_mAP_432.pt")
    teacher = FrozenTeacher.mobilenet(**options)
    wavs, labels = clips(args.data_folder, args.fold)
    ref_f, ref_z = logits_of(teacher, wavs, bf16=False)
    print(
        f"{len(wavs)} clips of fold {args.fold}; features range "
        f"{ref_f.min():.2f} .. {ref_f.max():.2f}"
    )
    print(
        "| front end | max abs feature change | top-1 agreement with fp32 "
        "| mean abs logit change | accuracy |"
    )
    print("|---|---|---|---|---|")
    names = None
    if args.checkpoint:
        names = [n.strip() for n in teacher.class_map.target_labels]
    for name, bf16, feats in [
        ("fp32", False, None),
        ("bf16 autocast, fp32 front end (now)", True, None),
        (
            "bf16 autocast, bf16 front end (legacy)",
            True,
            lambda b: legacy_features(teacher, b),
        ),
    ]:
        f, z = logits_of(teacher, wavs, bf16, feats)
        agree = (z.argmax(1) == ref_z.argmax(1)).float().mean() * 100
        acc = "-"
        if names is not None:
            y = torch.tensor([names.index(c) for c in labels])
            acc = f"{(z.argmax(1) == y).float().mean() * 100:.2f} %"
        print(
            f"| {name} | {(f - ref_f).abs().max():.3f} | {agree:.2f} % "
            f"| {(z - ref_z).abs().mean():.4f} | {acc} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
