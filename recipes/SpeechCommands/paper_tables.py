#!/usr/bin/env python3
"""FastAST's Table 1 and Table 2 on Speech Commands, one resumable command.

    python recipes/SpeechCommands/paper_tables.py --data_folder=PATH \\
        --n_classes=12 --seeds=1234 --jobs=2 \\
        --output_root=results/SpeechCommands_paper [--arms=...] \\
        [--dry_run] [--key=value ...]

The arms, options and outputs of ``recipes/ESC50/paper_tables.py``
(:mod:`paper_plan`, :mod:`paper_report`) on the one official split
(``validation_list.txt`` / ``testing_list.txt``; runs in ``fold<n_classes>``).
The CNN teacher is the EfficientAT MobileNetV3 with a new last layer for the
task's classes (hparams/teacher_mobilenet_head.yaml, no class map),
fine-tuned first; the student defaults are the README's 12-class student
(:data:`STUDENT`).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

RECIPE_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(RECIPE_DIR.parent / "ESC50"))

import paper_report  # noqa: E402
from paper_plan import Recipe  # noqa: E402

#: The README's 12-class student (4 x 192, overlapping patches, 30 epochs).
STUDENT = (
    "--depth=4 --fstride=10 --tstride=10 --target_length=100 "
    "--batch_size=32 --lr=5e-4 --warmup_steps=100 --number_of_epochs=30 "
    "--lr_decay_start=20 --lr_decay_factor=0.85 --multilabel=False "
    "--mixup_prob=0.0 --freqm=0 --timem=0 --feature_augment=null "
    "--time_shift=0.1 --test_checkpoint=average --average_epochs=3"
)


def one_split(own: Dict[str, str]) -> Dict[str, List[str]]:
    """The official split, named as the recipe names it (``fold12``).

    Example
    -------
    >>> one_split({"n_classes": "12"})
    {'fold12': []}
    """
    return {f"fold{own['n_classes']}": []}


SPEECH_COMMANDS = Recipe(
    title="Speech Commands v0.02",
    train=RECIPE_DIR / "train.py",
    dataset_yaml=RECIPE_DIR / "dataset.yaml",
    splits=one_split,
    cnn_teacher="teacher_mobilenet_head.yaml",
    # 30 epochs, time shift 0.1 s, mixup 0.3: 89.1 % on validation_list
    # (92.22 % test); 20 epochs with the shift, no mixup: 87.2 % (92.78 %);
    # the README's 12 epochs without either: 89.44 % test.
    cnn_teacher_args=(
        "--batch_size=32 --lr=5e-4 --number_of_epochs=30 --lr_decay_start=15 "
        "--multilabel=False --mixup_prob=0.3 --feature_augment=null "
        "--time_shift=0.1"
    ),
    cnn_teacher_extra=lambda own: [],
    cnn_student_extra=lambda own: [],
    passt_teacher_args=(
        "--depth=4 --target_length=100 --s_patchout_t=3 --batch_size=32 "
        "--lr=5e-4 --warmup_steps=100 --number_of_epochs=30 "
        "--lr_decay_start=20 --lr_decay_factor=0.85 --multilabel=False "
        "--mixup_prob=0.0 --freqm=0 --timem=0 --feature_augment=null "
        "--time_shift=0.1"
    ),
    student=STUDENT,
    options={"output_root": "results/SpeechCommands_paper"},
    minutes={"teacher_cnn": 15.0},  # 12 epochs took 5 min 43 s
    notes=(
        "τ = 3 (tome_kd_cnn_tuned) was chosen on ESC-10 (fold 4, seed "
        "1234; recipes/ESC50/README.md), not on Speech Commands.",
    ),
)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command line: 0, or 1 with one line of error text."""
    return paper_report.main(argv, SPEECH_COMMANDS)


if __name__ == "__main__":
    sys.exit(main())
