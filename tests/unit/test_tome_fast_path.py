"""The eager fast path of token merging equals the exportable one, bit for
bit: a stable sort instead of ``_split_top``, in-place masking, cached
index constants and row ``index_add_`` (see ``fastast_sb/tome/merge.py``).
"""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from fastast_sb.models.ast import AST
from fastast_sb.models.layers import DropPath, dropped
from fastast_sb.tome import merge as merge_module
from fastast_sb.tome.indices import split_sorted, split_top
from fastast_sb.tome.merge import (
    bipartite_soft_matching,
    merge_source,
    merge_wavg,
)

PROTECTION = list(itertools.product([True, False], repeat=2))


def _scores(batch: int, k: int, seed: int) -> torch.Tensor:
    """Scores with many ties and a -inf, like a masked CLS row."""
    g = torch.Generator().manual_seed(seed)
    scores = torch.randint(0, 4, (batch, k), generator=g).float() / 4
    scores[:, 0] = -torch.inf
    return scores


@pytest.mark.parametrize("k", [2, 5, 16, 55])
def test_sorted_split_equals_split_top(k):
    for seed, r in itertools.product(range(3), range(k)):
        scores = _scores(3, k, seed)
        for a, b in zip(split_sorted(scores, r), split_top(scores, r)):
            assert torch.equal(a, b), (k, r)


def _outputs(metric, x, size, r, class_token, distill_token):
    merge, unmerge = bipartite_soft_matching(
        metric, r, class_token, distill_token
    )
    y, y_size = merge_wavg(merge, x, size)
    y1, y1_size = merge_wavg(merge, x)
    source = merge_source(merge, x)
    return [y, y_size, y1, y1_size, merge(x), source, unmerge(y)]


@pytest.mark.parametrize("class_token,distill_token", PROTECTION)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_eager_path_equals_exportable_path(
    monkeypatch, class_token, distill_token, dtype
):
    for n, r in [(9, 3), (20, 1), (31, 7), (64, 30), (110, 4)]:
        g = torch.Generator().manual_seed(n + r)
        metric = torch.randn(3, n, 6, generator=g, dtype=dtype)
        metric[:, 4] = metric[:, 2]  # tied scores
        x = torch.randn(3, n, 5, generator=g, dtype=dtype)
        size = torch.randint(1, 4, (3, n, 1), generator=g).to(dtype)
        fast = _outputs(metric, x, size, r, class_token, distill_token)
        monkeypatch.setattr(merge_module, "tracing", lambda: True)
        slow = _outputs(metric, x, size, r, class_token, distill_token)
        monkeypatch.undo()
        for i, (a, b) in enumerate(zip(fast, slow)):
            assert torch.equal(a, b), (n, r, i)


def test_cached_indices_also_serve_autograd_after_inference_mode():
    """Index constants first built under inference mode still work for a
    backward pass (they are never inference tensors)."""
    model = AST(input_tdim=128, preset="tiny", depth=2, r=8)
    x = torch.randn(1, 128, 128)
    with torch.inference_mode():
        model.eval()(x)
    model.train()(x).sum().backward()
    assert model.blocks[0].attn.qkv.weight.grad is not None


def test_dropped_skips_identity_modules_only():
    x = torch.ones(4, 3)
    assert dropped(nn.Dropout(0.5).eval(), x) is x
    assert dropped(nn.Dropout(0.0).train(), x) is x
    assert dropped(DropPath(0.0).train(), x) is x
    torch.manual_seed(0)
    assert not torch.equal(dropped(nn.Dropout(0.5).train(), x), x)
    assert not torch.equal(dropped(DropPath(0.5).train(), x), x)


class _CountOps(TorchDispatchMode):
    """Counts the aten calls made inside the ``with`` block."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.calls += 1
        return func(*args, **(kwargs or {}))


def _merge_calls(metric, x, size) -> int:
    with torch.inference_mode(), _CountOps() as count:
        merge, _ = bipartite_soft_matching(metric, 8)
        merge_wavg(merge, x, size)
    return count.calls


def test_eager_merge_issues_few_ops(monkeypatch):
    """A small model at batch 1 pays for every op, not for its size: the
    eager merge (matching + weighted average) keeps to a small op budget,
    under half the exportable path's."""
    metric, x = torch.randn(1, 110, 64), torch.randn(1, 110, 192)
    size = torch.full((1, 110, 1), 2.0)
    _merge_calls(metric, x, size)  # index constants cached
    eager = _merge_calls(metric, x, size)
    monkeypatch.setattr(merge_module, "tracing", lambda: True)
    exportable = _merge_calls(metric, x, size)
    assert eager <= 50, eager
    assert 2 * eager <= exportable, (eager, exportable)
