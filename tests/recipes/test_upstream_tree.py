"""The PR-ready tree (``python -m fastast_sb.upstream OUT``) passes
SpeechBrain's own checks: its recipe-test harness on every row and its
consistency tests (``tests/consistency/test_recipe.py``, ``test_yaml.py``).

The tree goes into a temporary folder laid out like a SpeechBrain checkout:
upstream's ``tests/utils``, ``tests/consistency`` and ``tests/samples/ESC50``
beside it (links to ../shared/speechbrain-upstream), and the teacher the
rows download already in place (offline, as ``download_file`` keeps an
existing file).
"""

from __future__ import annotations

import csv
import subprocess
import sys

import pytest
import ruamel.yaml

from fastast_sb.config import compose_yaml
from fastast_sb.upstream import TEACHER_FILE, folded_text, main, write_tree
from tests.conftest import ROOT, SHARED_DATA
from tests.upstream_checks import need_upstream, run_consistency, run_harness

UPSTREAM_LINKS = ("tests/utils", "tests/consistency", "tests/samples/ESC50")


@pytest.fixture(scope="module")
def checkout(tmp_path_factory):
    upstream = need_upstream("data/teachers")
    root = tmp_path_factory.mktemp("speechbrain")
    write_tree(root, ROOT)
    for rel in UPSTREAM_LINKS:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).symlink_to(upstream / rel)
    teacher = root / TEACHER_FILE
    teacher.parent.mkdir(parents=True)
    teacher.symlink_to(SHARED_DATA / "teachers" / teacher.name)
    return root


def test_tree_has_every_recipe_part(checkout):
    for up in ("ESC50", "Google-speech-commands", "AudioSet"):
        folder = checkout / "recipes" / up / "FastAST"
        for name in ("train.py", "README.md", "extra_requirements.txt"):
            assert (folder / name).is_file(), (up, name)
        assert "fastast_sb" in (folder / "extra_requirements.txt").read_text()
        readme = (folder / "README.md").read_text()
        assert (
            "| Hyperparams file | Accuracy | Training time | HuggingFace link "
            "| Model link | GPUs |" in readme
        )
        assert "EncoderClassifier.from_hparams" in readme
        with open(checkout / "tests" / "recipes" / f"{up}.csv") as f:
            rows = list(csv.DictReader(f))
        hparams = sorted((folder / "hparams").glob("*.yaml"))
        assert {r["Hparam_file"] for r in rows} == {
            str(p.relative_to(checkout)) for p in hparams
        }
        for path in hparams:  # the dataset's settings are folded in
            text = path.read_text()
            assert "inherit:" not in text and "data_folder:" in text
            assert ruamel.yaml.YAML(typ="rt").load(text)["variant"]


def test_tree_passes_upstream_yamllint(checkout):
    config = need_upstream() / ".yamllint.yaml"
    proc = subprocess.run(
        [sys.executable, "-m", "yamllint", "--strict", "-c", str(config)]
        + ["recipes", "tests/samples/FastAST"],
        cwd=checkout,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout


def test_upstream_consistency_checks_pass(checkout):
    proc = run_consistency(checkout)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "4 passed" in proc.stdout or "5 passed" in proc.stdout, proc.stdout


def test_upstream_harness_passes_on_the_tree(checkout, tmp_path):
    csvs = sorted((checkout / "tests" / "recipes").glob("*.csv"))
    failures = run_harness(checkout, csvs, tmp_path)
    assert not failures, "\n".join(failures)


def test_cli_refuses_a_folder_in_use(tmp_path):
    (tmp_path / "x").write_text("")
    proc = subprocess.run(
        [sys.executable, "-m", "fastast_sb.upstream", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1
    assert proc.stdout.strip() == f"error: {tmp_path} is not empty"
    assert main([str(tmp_path / "new")]) == 0


@pytest.mark.parametrize("variant", ["tome_kd.yaml", "teacher_passt.yaml"])
def test_folded_hparams_hold_the_composed_settings(variant):
    """Folding reorders keys, never changes one (but the class-map path)."""
    dataset = ROOT / "recipes" / "ESC50" / "dataset.yaml"
    path = ROOT / "hparams" / variant
    ours = compose_yaml(dataset, path)
    folded = folded_text("ESC50", dataset, path, "ESC50")
    rt = ruamel.yaml.YAML(typ="rt")
    a, b = rt.load(ours), rt.load(folded)
    assert list(a) != list(b) and sorted(a) == sorted(b)
    for key in a:
        if key != "teacher_class_maps":
            assert str(a[key]) == str(b[key]), key
