"""Weight averaging over the last epochs (fastast_sb.averaging)."""

from __future__ import annotations

import pytest
import torch

from fastast_sb.averaging import (
    EpochAverager,
    average_state_dicts,
    save_average,
)


def _modules(value: float) -> torch.nn.ModuleDict:
    mods = torch.nn.ModuleDict(
        {"model": torch.nn.Linear(3, 2), "empty": torch.nn.Identity()}
    )
    for p in mods.parameters():
        p.data.fill_(value)
    return mods


def test_only_the_window_is_kept_and_averaged(tmp_path):
    avg = EpochAverager(tmp_path, last_n=3, limit=5)
    for epoch in range(1, 6):
        assert avg.save(_modules(float(epoch)), epoch) == (epoch >= 3)
    assert avg.epochs() == [3, 4, 5]
    out = avg.average()
    assert list(out) == ["model"]  # modules without weights are skipped
    assert torch.equal(out["model"]["weight"], torch.full((2, 3), 4.0))
    folder = save_average(out, tmp_path / "save")
    loaded = torch.load(folder / "model.ckpt", weights_only=True)
    assert torch.equal(loaded["bias"], torch.full((2,), 4.0))


def test_a_repeated_epoch_overwrites_its_copy(tmp_path):
    avg = EpochAverager(tmp_path, last_n=2, limit=2)
    avg.save(_modules(1.0), 1)
    avg.save(_modules(7.0), 2)
    avg.save(_modules(3.0), 2)  # resumed run repeats epoch 2
    assert avg.average()["model"]["weight"][0, 0].item() == 2.0
    assert not list(tmp_path.glob("*.tmp"))


def test_window_longer_than_the_run(tmp_path):
    avg = EpochAverager(tmp_path, last_n=10, limit=2)
    assert avg.first == 1
    avg.save(_modules(1.0), 1)
    avg.save(_modules(2.0), 2)
    assert avg.average()["model"]["weight"][0, 0].item() == 1.5


def test_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="average_epochs=0"):
        EpochAverager(tmp_path, last_n=0, limit=3)
    with pytest.raises(FileNotFoundError, match="epochs 2-3"):
        EpochAverager(tmp_path / "none", last_n=2, limit=3).average()
    with pytest.raises(ValueError, match="at least one"):
        average_state_dicts([])
    a = {"w": torch.zeros(2)}
    with pytest.raises(ValueError, match="keys"):
        average_state_dicts([a, {"v": torch.zeros(2)}])
    with pytest.raises(ValueError, match=r"w: shape \(3,\)"):
        average_state_dicts([{"w": torch.zeros(3)}, a])


def test_average_keeps_dtype_and_integer_buffers():
    a = {"w": torch.tensor([1.0], dtype=torch.float16), "n": torch.tensor(1)}
    b = {"w": torch.tensor([2.0], dtype=torch.float16), "n": torch.tensor(5)}
    out = average_state_dicts([a, b])
    assert out["w"].dtype == torch.float16 and out["w"].item() == 1.5
    assert out["n"].item() == 5
