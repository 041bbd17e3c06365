"""Run SpeechBrain's own checks (../shared/speechbrain-upstream) on a tree.

The files there are upstream's, unchanged; this module only calls them:

- :func:`run_harness`: ``tests/utils/recipe_tests.py:run_recipe_tests`` on
  ``tests/recipes/*.csv`` rows, one harness process per CSV (two at a time),
  from the tree's root so the rows' relative paths resolve.
- :func:`run_consistency`: upstream's ``tests/consistency/test_recipe.py``
  and ``test_yaml.py`` under pytest, in a folder laid out like an upstream
  checkout.

The harness starts ``python`` from ``PATH``: the interpreter running these
tests goes first, so the recipes find ``fastast_sb`` where it is installed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import pytest

from tests.conftest import ROOT

UPSTREAM = ROOT.parent / "shared" / "speechbrain-upstream"
ROWS = ROOT / "tests" / "recipes"

#: Loads upstream's harness by its path (our own ``tests`` package would
#: shadow upstream's ``tests.utils``) and runs it on one folder of rows.
_DRIVER = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location("recipe_tests", sys.argv[1])
harness = importlib.util.module_from_spec(spec)
spec.loader.exec_module(harness)
ok = harness.run_recipe_tests(
    recipe_folder=sys.argv[2],
    output_folder=sys.argv[3],
    run_opts="--device=cpu",
)
sys.exit(0 if ok else 1)
"""


def need_upstream(*shared: str) -> Path:
    """Upstream's checks folder; skip with a reason when it (or a named
    folder under ``../shared``) is absent."""
    for path in [UPSTREAM, *(ROOT.parent / "shared" / s for s in shared)]:
        if not path.exists():
            pytest.skip(
                f"{path} not found (SpeechBrain's checks and the shared data "
                "live beside the repository in ../shared; CI always has them)"
            )
    return UPSTREAM


def harness_env() -> Dict[str, str]:
    """Environment of the harness: this interpreter first on ``PATH``, one
    thread per process (two rows run at once)."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env["OMP_NUM_THREADS"] = "1"
    return env


def _one_csv(root: Path, csv_file: Path, work: Path) -> Tuple[bool, str]:
    """Upstream's harness on the rows of one CSV; (passed, failure text)."""
    rows = work / csv_file.stem / "rows"
    rows.mkdir(parents=True)
    shutil.copy(csv_file, rows)
    out = work / csv_file.stem / "out"
    script = str(UPSTREAM / "tests" / "utils" / "recipe_tests.py")
    proc = subprocess.run(
        [sys.executable, "-c", _DRIVER, script, str(rows), str(out)],
        cwd=root,
        env=harness_env(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    if proc.returncode == 0:
        return True, ""
    lines = [ln for ln in proc.stderr.splitlines() if "ERROR" in ln]
    for failed in sorted(out.glob("*")):
        err = failed / "stderr.txt"
        if not (failed / ".passed").exists() and err.is_file():
            tail = err.read_text(encoding="utf-8").strip().splitlines()[-3:]
            lines.append(f"{failed.name} stderr: " + " | ".join(tail))
    return False, f"{csv_file.name}:\n  " + "\n  ".join(lines or [proc.stderr])


def run_harness(
    root: Path, csv_files: Sequence[Path], work: Path, jobs: int = 2
) -> List[str]:
    """Run upstream's harness on every row of ``csv_files`` from ``root``;
    return one failure text per failing CSV (empty: all rows passed)."""
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        results = list(
            pool.map(lambda f: _one_csv(root, Path(f), work), csv_files)
        )
    return [text for ok, text in results if not ok]


def run_consistency(checkout: Path) -> subprocess.CompletedProcess:
    """Upstream's recipe / YAML consistency tests on ``checkout`` (which has
    upstream's ``tests/utils`` and ``tests/consistency``)."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(checkout),
            "tests/consistency/test_recipe.py",
            "tests/consistency/test_yaml.py",
        ],
        cwd=checkout,
        env=harness_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
