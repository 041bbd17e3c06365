"""A small synthetic demonstration set in ESC-50 layout.

This is not ESC-50: it is generated audio (16 kHz, 2 s clips) whose five
classes borrow ESC-50 category names for sounds that resemble them, so that
the real recipe runs unchanged, offline, in minutes. Real results need the
real ESC-50 (see README.md).

    python recipes/ESC50/demo_data.py OUT_FOLDER
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import soundfile as sf
from prepare import ESC50_CLASSES

SR = 16000
#: The fold the demo tests on (and validates on, as AST does).
TEST_FOLD = 5
HEADER = "filename fold target category esc10 src_file take".split()


def _clock_tick(rng: np.random.Generator, n: int) -> np.ndarray:
    out = 0.01 * rng.standard_normal(n)
    period = int(SR * rng.uniform(0.2, 0.35))
    click = np.exp(-np.arange(200) / 20.0) * rng.uniform(0.5, 0.9)
    for start in range(int(rng.integers(0, period)), n - 200, period):
        out[start : start + 200] += click * np.sin(
            2 * np.pi * 3000 * np.arange(200) / SR
        )
    return out


def _siren(rng: np.random.Generator, n: int) -> np.ndarray:
    t = np.arange(n) / SR
    rate = rng.uniform(0.5, 1.5)
    freq = 900 + 400 * np.sin(2 * np.pi * rate * t + rng.uniform(0, 6))
    phase = 2 * np.pi * np.cumsum(freq) / SR
    return 0.4 * np.sin(phase) + 0.01 * rng.standard_normal(n)


def _rain(rng: np.random.Generator, n: int) -> np.ndarray:
    noise = rng.standard_normal(n)
    kernel = np.ones(int(rng.integers(2, 5))) / 4
    return 0.2 * np.convolve(noise, kernel, mode="same")


def _church_bells(rng: np.random.Generator, n: int) -> np.ndarray:
    t = np.arange(n) / SR
    base = rng.uniform(300, 500)
    out = np.zeros(n)
    for start in np.arange(rng.uniform(0, 0.3), t[-1], rng.uniform(0.6, 0.9)):
        env = np.where(t >= start, np.exp(-(t - start) * 3.0), 0.0)
        for k, amp in ((1, 0.5), (2.4, 0.3), (3.1, 0.2)):
            out += env * amp * np.sin(2 * np.pi * base * k * t)
    return 0.5 * out / max(1.0, np.abs(out).max())


def _helicopter(rng: np.random.Generator, n: int) -> np.ndarray:
    t = np.arange(n) / SR
    noise = np.convolve(rng.standard_normal(n), np.ones(40) / 40, "same")
    blade = 0.5 + 0.5 * np.sign(np.sin(2 * np.pi * rng.uniform(12, 20) * t))
    return 0.8 * noise * blade + 0.05 * np.sin(2 * np.pi * 80 * t)


GENERATORS: Dict[str, Callable[[np.random.Generator, int], np.ndarray]] = {
    "clock_tick": _clock_tick,
    "siren": _siren,
    "rain": _rain,
    "church_bells": _church_bells,
    "helicopter": _helicopter,
}


def make_demo_esc50(
    folder: str,
    clips_per_class_per_fold: int = 4,
    seconds: float = 2.0,
    test_clips_per_class: Optional[int] = None,
    distractor: float = 0.0,
) -> Path:
    """Write ``audio/*.wav`` and ``meta/esc50.csv`` (5 folds, 5 classes).

    ``folder`` is created; ``clips_per_class_per_fold`` clips of
    ``seconds`` each per class and fold (``test_clips_per_class`` in fold
    5, the demo's test fold, if given). ``distractor`` > 0 adds to each
    clip a sound of another class at up to that relative level, which makes
    the task harder. Returns the folder.

    Example
    -------
    >>> import tempfile
    >>> root = make_demo_esc50(tempfile.mkdtemp(), 1, 0.1, 2, 0.5)
    >>> len(_read_rows(root)), len(list((root / "audio").glob("*.wav")))
    (30, 30)
    """
    root = Path(folder)
    if (root / "meta" / "esc50.csv").is_file():
        return root
    (root / "audio").mkdir(parents=True, exist_ok=True)
    (root / "meta").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    n = int(SR * seconds)
    counts = {f: clips_per_class_per_fold for f in range(1, 6)}
    if test_clips_per_class is not None:
        counts[TEST_FOLD] = test_clips_per_class
    # Clip ids stay fold * 1000 + target * 10 + k while k fits one digit.
    width = 10 if max(counts.values()) <= 10 else 1000
    rows = []
    for fold in range(1, 6):
        for category, make in GENERATORS.items():
            target = ESC50_CLASSES.index(category)
            for k in range(counts[fold]):
                clip_id = (fold * 100 + target) * width + k
                name = f"{fold}-{clip_id}-A-{target}.wav"
                wav = make(rng, n) * rng.uniform(0.5, 1.0)
                if distractor > 0:
                    other = rng.choice([g for g in GENERATORS if g != category])
                    level = distractor * rng.uniform(0.3, 1.0)
                    wav = wav + level * GENERATORS[other](rng, n)
                wav = np.clip(wav, -1, 1).astype("float32")
                sf.write(str(root / "audio" / name), wav, SR)
                rows.append([name, fold, target, category, False, clip_id, "A"])
    _write_rows(root, rows)
    return root


def subset_esc50(
    src: Path,
    folder: str,
    first: int,
    count: int,
    label_noise: float = 0.0,
    seed: int = 0,
) -> Path:
    """A view of the demo set ``src`` in ``folder``: of each class in each
    training fold the clips ``first`` to ``first + count - 1`` (in file
    order), the whole test fold; ``audio/`` links to ``src``'s.

    Two disjoint views give a teacher and a student their own training
    clips and the same test clips. ``label_noise`` in [0, 1) gives that
    share of the view's training clips (rounded; chosen with ``seed``) the
    label of another class of the set, as weakly labelled data has; the
    test fold keeps its true labels.

    Example
    -------
    >>> import tempfile
    >>> src = make_demo_esc50(tempfile.mkdtemp(), 3, 0.1)
    >>> view = subset_esc50(src, tempfile.mkdtemp() + "/v", 1, 2)
    >>> [r["filename"] for r in _read_rows(view)][:3]
    ['1-1381-A-38.wav', '1-1382-A-38.wav', '1-1421-A-42.wav']
    >>> len(_read_rows(view))
    55
    """
    if not 0.0 <= label_noise < 1.0:
        raise ValueError(f"label_noise must be in [0, 1), got {label_noise}")
    root = Path(folder)
    seen: Dict[Tuple[str, str], int] = {}
    rows = []
    for row in _read_rows(Path(src)):
        key = (row["fold"], row["target"])
        k = seen[key] = seen.get(key, -1) + 1
        if int(row["fold"]) == TEST_FOLD or first <= k < first + count:
            rows.append([row[c] for c in HEADER])
    _flip_labels(rows, label_noise, np.random.default_rng(seed))
    (root / "meta").mkdir(parents=True, exist_ok=True)
    if not (root / "audio").exists():
        (root / "audio").symlink_to(Path(src, "audio").resolve())
    _write_rows(root, rows)
    return root


def _flip_labels(
    rows: List[List[object]], share: float, rng: np.random.Generator
) -> None:
    """Give ``share`` of the training rows another class's label, in place.

    Example
    -------
    >>> rows = [["a.wav", 1, 38, "clock_tick"], ["b.wav", 1, 42, "siren"]]
    >>> _flip_labels(rows, 0.5, np.random.default_rng(0))
    >>> sorted(r[3] for r in rows)
    ['siren', 'siren']
    """
    classes = sorted({str(r[3]) for r in rows})
    train = [r for r in rows if int(r[1]) != TEST_FOLD]
    for i in rng.permutation(len(train))[: round(share * len(train))]:
        row = train[i]
        other = [c for c in classes if c != row[3]]
        row[3] = other[int(rng.integers(len(other)))]
        row[2] = ESC50_CLASSES.index(row[3])


def _read_rows(root: Path) -> List[Dict[str, str]]:
    with open(root / "meta" / "esc50.csv", newline="") as f:
        return list(csv.DictReader(f))


def _write_rows(root: Path, rows: List[List[object]]) -> None:
    with open(root / "meta" / "esc50.csv", "w", newline="") as f:
        csv.writer(f).writerows([HEADER, *rows])


if __name__ == "__main__":
    print(make_demo_esc50(sys.argv[1]))
