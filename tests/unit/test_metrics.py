"""Metrics against scikit-learn, skipped classes, DDP gathering (gloo)."""

from __future__ import annotations

import math
import os
import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from scipy.stats import norm
from sklearn.metrics import average_precision_score, roc_auc_score

from fastast_sb.metrics import (
    ScoreCollector,
    accuracy,
    average_precision,
    d_prime,
    mean_over_processes,
    roc_auc,
    tagging_metrics,
)
from fastast_sb.samplers import EvalShardSampler


def _data(n: int = 60, c: int = 6, seed: int = 0):
    rng = np.random.default_rng(seed)
    # Rounded scores: plenty of ties, which sklearn groups by threshold.
    scores = np.round(rng.normal(size=(n, c)), 1)
    targets = (rng.random((n, c)) < 0.3).astype("float32")
    targets[:, 4] = 0.0  # no positive: skipped by mAP and mAUC
    targets[:, 5] = 1.0  # no negative: has AP, skipped by mAUC
    return torch.tensor(scores), torch.tensor(targets)


def test_average_precision_equals_sklearn_with_ties():
    scores, targets = _data()
    ours = average_precision(scores, targets)
    for c in range(scores.shape[1]):
        if c == 4:
            assert ours[c] is None
            continue
        ref = average_precision_score(targets[:, c], scores[:, c])
        assert ours[c] == pytest.approx(ref, abs=1e-12)


def test_roc_auc_equals_sklearn_with_ties():
    scores, targets = _data(seed=1)
    ours = roc_auc(scores, targets)
    assert ours[4] is None and ours[5] is None
    for c in range(4):
        ref = roc_auc_score(targets[:, c], scores[:, c])
        assert ours[c] == pytest.approx(ref, abs=1e-12)


def test_tagging_metrics_skip_and_count_classes():
    scores, targets = _data(seed=2)
    m = tagging_metrics(scores, targets)
    aps = [
        average_precision_score(targets[:, c], scores[:, c])
        for c in (0, 1, 2, 3, 5)
    ]
    aucs = [roc_auc_score(targets[:, c], scores[:, c]) for c in range(4)]
    assert m["mAP"] == pytest.approx(np.mean(aps), abs=1e-12)
    assert m["mAUC"] == pytest.approx(np.mean(aucs), abs=1e-12)
    assert m["dprime"] == pytest.approx(
        math.sqrt(2) * norm.ppf(np.mean(aucs)), abs=1e-9
    )
    assert (m["ap_skipped"], m["auc_skipped"]) == (1, 2)
    none = tagging_metrics(scores[:, 4:5], targets[:, 4:5])
    assert math.isnan(none["mAP"]) and none["ap_skipped"] == 1


def test_d_prime_and_input_errors():
    assert d_prime(1.0) == math.inf
    with pytest.raises(ValueError, match="AUC must be in"):
        d_prime(1.5)
    with pytest.raises(ValueError, match=r"\(3, 2\) and \(3, 1\)"):
        average_precision(torch.zeros(3, 2), torch.zeros(3, 1))
    with pytest.raises(ValueError, match="2 ids for a batch of 1"):
        ScoreCollector().append(
            torch.zeros(1, 2), torch.zeros(1, 2), ["a", "b"]
        )


def test_collector_summary():
    scores, targets = _data(seed=3)
    col = ScoreCollector()
    for k in range(0, 60, 16):
        col.append(scores[k : k + 16], targets[k : k + 16])
    out = col.summary(multilabel=True)
    assert out["acc"] == accuracy(scores, targets)
    assert out["mAP"] == tagging_metrics(scores, targets)["mAP"]
    assert set(col.summary()) == {"acc"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, queue) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        scores, targets = _data(n=25, seed=4)
        ids = [f"clip{i}" for i in range(25)]
        results = {}
        # 1. Disjoint shards of unequal size (13 + 12): the whole set.
        col = ScoreCollector()
        for i in EvalShardSampler(range(25)):
            col.append(scores[i : i + 1], targets[i : i + 1], ids[i : i + 1])
        results["sharded"] = col.gather().summary(multilabel=True)
        results["n_sharded"] = len(col.gather())
        # 2. Every process saw everything: duplicates dropped by id.
        full = ScoreCollector()
        full.append(scores, targets, ids)
        results["n_full"] = len(full.gather())
        # 3. One process has nothing (an evaluation set smaller than world).
        empty = ScoreCollector()
        if rank == 0:
            empty.append(scores[:3], targets[:3], ids[:3])
        results["n_empty"] = len(empty.gather())
        # 4. Weighted mean of a per-process loss.
        results["loss"] = mean_over_processes(float(rank), 13 - rank)
        queue.put((rank, results))
    finally:
        dist.destroy_process_group()


def test_gather_across_two_gloo_processes():
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    port = _free_port()
    procs = [
        ctx.Process(target=_worker, args=(r, 2, port, queue)) for r in (0, 1)
    ]
    for p in procs:
        p.start()
    results = dict(queue.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    scores, targets = _data(n=25, seed=4)
    single = ScoreCollector()
    single.append(scores, targets)
    expected = single.summary(multilabel=True)
    for rank in (0, 1):
        got = results[rank]
        assert got["n_sharded"] == 25
        assert got["n_full"] == 25
        assert got["n_empty"] == 3
        for key, value in expected.items():
            assert got["sharded"][key] == pytest.approx(value, abs=1e-12), key
        assert got["loss"] == pytest.approx((0 * 13 + 1 * 12) / 25)
