"""SpeechBrain's own recipe-test harness on our ``tests/recipes/*.csv`` rows.

Every row runs ``python <Script_file> <Hparam_file> <test_debug_flags>
--device=cpu --debug --debug_persistently`` through upstream's unchanged
``run_recipe_tests`` and checks upstream's standard output files. The rows
run on upstream's five ESC-50 sample clips, ../shared/data and the
AudioSet-format lists in tests/samples/AudioSet, with a one-block model.
"""

from __future__ import annotations

import csv
from pathlib import Path

from tests.conftest import ROOT
from tests.upstream_checks import ROWS, need_upstream, run_harness

#: Upstream's standard files of every recipe's output folder.
STANDARD = [
    "train_log.txt",
    "log.txt",
    "env.log",
    "hyperparams.yaml",
    "save/label_encoder.txt",
]
COLUMNS = [
    "Task",
    "Dataset",
    "Script_file",
    "Hparam_file",
    "Data_prep_file",
    "Readme_file",
    "Result_url",
    "HF_repo",
    "test_debug_flags",
    "test_debug_checks",
    "performance",
]


def _rows() -> list:
    out = []
    for path in sorted(ROWS.glob("*.csv")):
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f, skipinitialspace=True)
            assert reader.fieldnames == COLUMNS, path.name
            out += [dict(row, csv=path.stem) for row in reader]
    return out


def test_rows_cover_every_variant_and_recipe_with_standard_checks():
    rows = _rows()
    hparams = {r["Hparam_file"] for r in rows}
    assert hparams == {
        str(p.relative_to(ROOT)) for p in (ROOT / "hparams").glob("*.yaml")
    }
    scripts = {r["Script_file"] for r in rows}
    assert scripts == {
        str(p.relative_to(ROOT)) for p in ROOT.glob("recipes/*/train.py")
    }
    for row in rows:
        assert row["Dataset"] == row["csv"]
        assert row["Script_file"] == f"recipes/{row['csv']}/train.py"
        assert row["test_debug_flags"].strip(), row["Hparam_file"]
        for field in ("Script_file", "Hparam_file", "Data_prep_file"):
            assert (ROOT / row[field]).is_file(), row[field]
        checks = row["test_debug_checks"]
        for name in STANDARD + ["train.py"]:
            assert name in checks, (row["csv"], row["Hparam_file"], name)


def test_upstream_harness_passes_on_every_row(tmp_path):
    need_upstream("data")
    failures = run_harness(ROOT, sorted(ROWS.glob("*.csv")), tmp_path)
    assert not failures, "\n".join(failures)


def test_harness_fails_when_a_row_fails(tmp_path):
    """The harness check is honest: a row whose recipe exits non-zero, or
    whose output lacks a listed file, fails the test."""
    need_upstream()
    good = next(r for r in _rows() if r["Hparam_file"] == "hparams/ast.yaml")
    bad = tmp_path / "rows"
    bad.mkdir()
    broken = dict(good, test_debug_checks="file_exists=[no_such_file.txt]")
    broken.pop("csv")
    path = Path(bad / f"{good['csv']}.csv")
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, COLUMNS)
        writer.writeheader()
        writer.writerow(broken)
    failures = run_harness(ROOT, [path], tmp_path / "work")
    assert len(failures) == 1 and "no_such_file.txt" in failures[0]
