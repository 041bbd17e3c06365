"""The eager CPU path of token merging (indices in NumPy, see
``fastast_sb/tome/host.py``) equals the torch paths bit for bit: under
inference mode, ``no_grad``, autograd (same gradients) and bf16 autocast,
with ties, odd token counts and every protection setting.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from fastast_sb.models.ast import AST
from fastast_sb.tome import merge as merge_module
from fastast_sb.tome.host import host_layout, host_rows, host_scores
from fastast_sb.tome.merge import (
    bipartite_soft_matching,
    merge_source,
    merge_wavg,
)

PROTECTION = list(itertools.product([True, False], repeat=2))
SHAPES = [(1, 9, 3), (3, 20, 1), (2, 31, 7), (4, 64, 30), (1, 110, 8)]
SHAPES += [(2, 110, 54), (1, 258, 16), (2, 51, 24)]


def _no_host(monkeypatch) -> None:
    """Force the torch eager path (cached layouts, in-place masks)."""
    monkeypatch.setattr(merge_module, "host_rows", lambda *args: None)


def _inputs(b, n, seed, dtype, ties):
    g = torch.Generator().manual_seed(seed)
    if ties:  # small integer keys: many equal scores, never a zero key
        metric = torch.randint(-2, 3, (b, n, 6), generator=g).to(dtype)
        metric[..., 0] = 1
    else:
        metric = torch.randn(b, n, 6, generator=g).to(dtype)
    x = torch.randn(b, n, 5, generator=g).to(dtype)
    size = torch.randint(1, 4, (b, n, 1), generator=g).to(dtype)
    return metric, x, size


def _outputs(metric, x, size, r, class_token, distill_token):
    merge, unmerge = bipartite_soft_matching(
        metric, r, class_token, distill_token
    )
    y, y_size = merge_wavg(merge, x, size)
    y1, y1_size = merge_wavg(merge, x)
    source = merge_source(merge, x)
    return [y, y_size, y1, y1_size, merge(x), source, unmerge(y)]


def _assert_equal(fast, slow, label):
    for i, (a, b) in enumerate(zip(fast, slow)):
        assert a.dtype == b.dtype and torch.equal(a, b), (label, i)


@pytest.mark.parametrize("class_token,distill_token", PROTECTION)
@pytest.mark.parametrize(
    "dtype", [torch.float32, torch.float64, torch.bfloat16]
)
def test_host_path_equals_the_torch_paths(
    monkeypatch, class_token, distill_token, dtype
):
    for (b, n, r), ties in itertools.product(SHAPES, [True, False]):
        metric, x, size = _inputs(b, n, n + r, dtype, ties)
        fast = _outputs(metric, x, size, r, class_token, distill_token)
        _no_host(monkeypatch)
        eager = _outputs(metric, x, size, r, class_token, distill_token)
        monkeypatch.setattr(merge_module, "tracing", lambda: True)
        exportable = _outputs(metric, x, size, r, class_token, distill_token)
        monkeypatch.undo()
        _assert_equal(fast, eager, (b, n, r, ties, "eager"))
        _assert_equal(fast, exportable, (b, n, r, ties, "exportable"))


def test_host_scores_are_the_torch_expression():
    for dtype, (b, n) in itertools.product(
        [torch.float32, torch.float64, torch.bfloat16],
        [(1, 110), (8, 110), (1, 602), (3, 31)],
    ):
        metric = torch.randn(b, n, 64).to(dtype)
        unit = metric / metric.norm(dim=-1, keepdim=True)
        expected = unit[:, ::2, :] @ unit[:, 1::2, :].transpose(-1, -2)
        assert torch.equal(host_scores(metric), expected), (dtype, b, n)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            metric = metric.float()
            unit = metric / metric.norm(dim=-1, keepdim=True)
            expected = unit[:, ::2, :] @ unit[:, 1::2, :].transpose(-1, -2)
            got = host_scores(metric)
        assert got.dtype == expected.dtype and torch.equal(got, expected)


def test_a_nan_score_falls_back_to_the_torch_path(monkeypatch):
    metric, x, size = _inputs(2, 20, 0, torch.float32, ties=False)
    metric[1, 6] = 0.0  # a zero key: NaN cosine scores
    assert host_rows(host_scores(metric), 4, 1, 1, 20) is None
    fast = _outputs(metric, x, size, 4, True, True)
    _no_host(monkeypatch)
    _assert_equal(fast, _outputs(metric, x, size, 4, True, True), "nan")


def test_host_layout_is_cached_per_shape_and_read_only():
    lay = host_layout(2, 20, 4, 1, 1)
    assert host_layout(2, 20, 4, 1, 1) is lay
    for other in [(1, 20, 4, 1, 1), (2, 22, 4, 1, 1), (2, 20, 5, 1, 1)]:
        assert host_layout(*other) is not lay
    assert host_layout(2, 20, 4, 0, 1).prefix.shape == (2, 1)
    assert host_layout(2, 20, 4, 1, 0).odd.shape == (2, 10)
    with pytest.raises(ValueError):
        lay.bump[0, 0] = 7


def _model_and_features():
    torch.manual_seed(0)
    model = AST(input_tdim=100, preset="tiny", depth=3)
    return model, torch.randn(3, 100, 128)


@pytest.mark.parametrize("spec", [8, "flops:0.5"])
@pytest.mark.parametrize("mode", ["inference", "no_grad", "autocast"])
def test_model_outputs_equal_the_torch_path(monkeypatch, spec, mode):
    model, feats = _model_and_features()
    model.eval()

    def run():
        if mode == "inference":
            with torch.inference_mode():
                return model(feats, r=spec)
        if mode == "no_grad":
            with torch.no_grad():
                return model(feats, r=spec)
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            return model(feats, r=spec)

    fast = run()
    _no_host(monkeypatch)
    slow = run()
    assert fast.dtype == slow.dtype and torch.equal(fast, slow)


def test_training_gradients_equal_the_torch_path(monkeypatch):
    model, feats = _model_and_features()
    model.train()

    def grads():
        model.zero_grad()
        torch.manual_seed(1)
        out = model(feats, r=12)
        out.square().sum().backward()
        return [p.grad.clone() for p in model.parameters()], out.detach()

    fast_grads, fast = grads()
    _no_host(monkeypatch)
    slow_grads, slow = grads()
    assert torch.equal(fast, slow)
    for a, b in zip(fast_grads, slow_grads):
        assert torch.equal(a, b)


def test_host_rows_match_a_direct_description():
    """Sources: the r best A tokens (ties: lower index), ascending; each
    goes to its best B token; output [CLS, DIST, unmerged A, B]."""
    g = torch.Generator().manual_seed(3)
    scores = torch.randint(0, 3, (2, 6, 5), generator=g).float()
    expected_scores = scores.clone()
    base, src, dst, slot = host_rows(scores, 3, 1, 1, 11)
    for e in range(2):
        s = expected_scores[e].numpy().copy()
        s[:, 0] = -np.inf
        best, best_b = s.max(axis=1), s.argmax(axis=1)
        best[0] = -np.inf
        order = sorted(range(6), key=lambda i: (-best[i], i))
        top, rest = sorted(order[:3]), sorted(order[3:])[1:]
        rows = [0, 1] + [2 * i for i in rest] + [2 * j + 1 for j in range(1, 5)]
        assert (base.reshape(2, -1)[e] - 11 * e).tolist() == rows
        assert (src.reshape(2, -1)[e] - 11 * e).tolist() == [2 * i for i in top]
        assert (dst.reshape(2, -1)[e] - 11 * e).tolist() == [
            2 * best_b[i] + 1 for i in top
        ]
        assert (slot.reshape(2, -1)[e] - 8 * e).tolist() == [
            len(rest) + 2 + best_b[i] - 1 for i in top
        ]


class _CountOps(torch.utils._python_dispatch.TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.calls += 1
        return func(*args, **(kwargs or {}))


def test_host_matching_issues_fewer_torch_ops(monkeypatch):
    metric = torch.randn(1, 110, 64)

    def calls():
        bipartite_soft_matching(metric, 8)  # constants cached
        with torch.inference_mode(), _CountOps() as count:
            bipartite_soft_matching(metric, 8)
        return count.calls

    host = calls()
    _no_host(monkeypatch)
    torch_eager = calls()
    assert 2 * host <= torch_eager, (host, torch_eager)
