"""Shared test fixtures: where the real data lives, seeded RNG."""

from __future__ import annotations

from pathlib import Path

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


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
