"""Shared test fixtures: where the real data lives, seeded RNG."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


def shared_data(*parts: str) -> Path:
    """Path under ../shared/data, skipping the test with a reason if absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(
            f"real data not found at {path} (it lives beside the repository "
            "in ../shared/data; CI always has it)"
        )
    return path


def one_line_refusal(main, capsys, args: list) -> str:
    """A recipe's ``main(args)`` exits 1 with one line on stderr; returns it."""
    code = main(args)
    err = capsys.readouterr().err.strip()
    assert code == 1, err
    assert len(err.splitlines()) == 1, err
    return err


def tiny_model_folder(
    folder: Path,
    labels: list,
    tdim: int = 128,
    r: int = 0,
    norm: tuple = (-4.27, 4.57),
    **kwargs,
) -> Path:
    """A seeded random model folder: 1-block tiny AST on ``tdim`` frames."""
    from fastast_sb.features import GlobalNorm, KaldiFbank
    from fastast_sb.inference import write_model_folder
    from fastast_sb.models.ast import AST, ASTHead

    torch.manual_seed(0)
    return write_model_folder(
        folder,
        AST(input_tdim=tdim, preset="tiny", depth=1, r=r),
        ASTHead(192, len(labels)),
        labels,
        KaldiFbank(target_length=tdim),
        GlobalNorm(*norm),
        **kwargs,
    )


def load_recipe_module(name: str, path: Path) -> ModuleType:
    """Import a recipe script under its own module name.

    Every recipe has a ``train.py``; loading each under a distinct name keeps
    them apart in ``sys.modules``. The script's folder goes on ``sys.path``
    first, for its sibling imports (``prepare``, ...).
    """
    sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
