"""A module without state (a class map) is not checkpointed: SpeechBrain
would log "Saving an empty state_dict" for it at every epoch."""

from __future__ import annotations

import logging

import torch
from speechbrain.utils.checkpoints import Checkpointer

from fastast_sb.resume import drop_stateless_recoverables


class NoState(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def test_stateless_module_is_not_saved_and_nothing_warns(tmp_path, caplog):
    linear, empty = torch.nn.Linear(2, 2), NoState()
    ckpt = Checkpointer(
        tmp_path, recoverables={"embedding_model": linear, "classifier": empty}
    )
    dropped = drop_stateless_recoverables(ckpt)
    assert dropped == ["classifier"]
    with caplog.at_level(logging.DEBUG):
        saved = ckpt.save_checkpoint()
    assert "empty state_dict" not in caplog.text
    assert (saved.path / "embedding_model.ckpt").exists()
    assert not (saved.path / "classifier.ckpt").exists()
    # the stateful module still resumes
    before = linear.weight.detach().clone()
    with torch.no_grad():
        linear.weight.zero_()
    ckpt.recover_if_possible()
    assert torch.equal(linear.weight, before)


def test_stateful_modules_and_counters_are_kept(tmp_path):
    from speechbrain.utils.epoch_loop import EpochCounter

    recoverables = {"model": torch.nn.Linear(1, 1), "counter": EpochCounter(3)}
    ckpt = Checkpointer(tmp_path, recoverables=dict(recoverables))
    assert drop_stateless_recoverables(ckpt) == []
    assert set(ckpt.recoverables) == {"model", "counter"}
