"""Bipartite soft matching against an independent, loop-based reference.

The reference follows the rule in ``fastast_sb/tome/merge.py``: A = even
positions, B = odd positions; CLS (index 0) is never a source and DIST
(index 1) never a destination when protected; each A token picks its most
similar B token (cosine); the r best edges merge (ties: lower A index
first), by size-weighted average with sizes adding up. The output is the
protected prefix (CLS, then DIST), then the unmerged A tokens in order, then
the B tokens in order.
"""

from __future__ import annotations

import itertools
import math
from typing import Dict, List, Tuple

import pytest
import torch

from fastast_sb.tome.merge import (
    _split_top,
    bipartite_soft_matching,
    max_merge,
    merge_source,
    merge_wavg,
)

PROTECTION = list(itertools.product([True, False], repeat=2))


def reference_merge(
    metric: torch.Tensor,
    x: torch.Tensor,
    size: torch.Tensor,
    source: torch.Tensor,
    r: int,
    class_token: bool,
    distill_token: bool,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One example: metric [N, C], x [N, D], size [N], source [N, M]."""
    n = metric.shape[0]
    protected = int(class_token) + int(distill_token)
    r = min(r, max((n - protected) // 2, 0))
    set_a = list(range(0, n, 2))
    set_b = list(range(1, n, 2))

    def cosine(i: int, j: int) -> float:
        u, v = metric[i].tolist(), metric[j].tolist()
        dot = sum(p * q for p, q in zip(u, v))
        nu = math.sqrt(sum(p * p for p in u))
        nv = math.sqrt(sum(q * q for q in v))
        return dot / (nu * nv)

    edges: List[Tuple[float, int, int]] = []
    for a in set_a:
        best, best_b = -math.inf, None
        for b in set_b:
            if distill_token and b == 1:
                continue
            score = -math.inf if (class_token and a == 0) else cosine(a, b)
            if best_b is None or score > best:
                best, best_b = score, b
        edges.append((best, a, best_b))
    # Python's sort is stable: equal scores keep the lower A index first.
    edges.sort(key=lambda e: -e[0])
    into: Dict[int, int] = {a: b for _, a, b in edges[:r]}

    prefix = ([0] if class_token else []) + ([1] if distill_token else [])
    order = prefix
    order += [a for a in set_a if a not in into and a not in prefix]
    order += [b for b in set_b if b not in prefix]

    xs, sizes, sources = [], [], []
    for t in order:
        members = [t] + [a for a, b in into.items() if b == t]
        w = sum(float(size[m]) for m in members)
        xs.append(sum(size[m] * x[m] for m in members) / w)
        sizes.append(w)
        sources.append(sum(source[m] for m in members))
    return (
        torch.stack(xs),
        torch.tensor(sizes, dtype=x.dtype),
        torch.stack(sources),
    )


def _random_inputs(batch: int, n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    metric = torch.randn(batch, n, 6, generator=g, dtype=torch.float64)
    x = torch.randn(batch, n, 5, generator=g, dtype=torch.float64)
    return metric, x


@pytest.mark.parametrize("class_token,distill_token", PROTECTION)
@pytest.mark.parametrize("n", [9, 12, 15, 20])
def test_matches_loop_reference(n, class_token, distill_token):
    protected = int(class_token) + int(distill_token)
    limit = (n - protected) // 2
    for r in [1, 3, limit, limit + 1, 100]:
        metric, x = _random_inputs(3, n, seed=n * 100 + r)
        merge, _ = bipartite_soft_matching(
            metric, r, class_token, distill_token
        )
        y, size = merge_wavg(merge, x)
        source = merge_source(merge, x)
        assert y.shape[1] == n - min(r, limit)
        for i in range(x.shape[0]):
            ry, rsize, rsource = reference_merge(
                metric[i],
                x[i],
                torch.ones(n, dtype=x.dtype),
                torch.eye(n, dtype=x.dtype),
                r,
                class_token,
                distill_token,
            )
            torch.testing.assert_close(y[i], ry, rtol=0, atol=1e-10)
            torch.testing.assert_close(size[i, :, 0], rsize, rtol=0, atol=0)
            torch.testing.assert_close(source[i], rsource, rtol=0, atol=0)


@pytest.mark.parametrize("class_token,distill_token", PROTECTION)
def test_two_steps_with_sizes_match_reference(class_token, distill_token):
    """A second merge weights by the sizes and extends the source map."""
    n = 19
    metric, x = _random_inputs(2, n, seed=7)
    merge, _ = bipartite_soft_matching(metric, 4, class_token, distill_token)
    y, size = merge_wavg(merge, x)
    source = merge_source(merge, x)
    g = torch.Generator().manual_seed(8)
    metric2 = torch.randn(2, y.shape[1], 6, generator=g, dtype=torch.float64)
    merge2, _ = bipartite_soft_matching(metric2, 3, class_token, distill_token)
    source2 = merge_source(merge2, y, source)
    y2, size2 = merge_wavg(merge2, y, size)
    for i in range(2):
        ry, rsize, rsource = reference_merge(
            metric[i],
            x[i],
            torch.ones(n, dtype=x.dtype),
            torch.eye(n, dtype=x.dtype),
            4,
            class_token,
            distill_token,
        )
        ry2, rsize2, rsource2 = reference_merge(
            metric2[i], ry, rsize, rsource, 3, class_token, distill_token
        )
        torch.testing.assert_close(y2[i], ry2, rtol=0, atol=1e-10)
        torch.testing.assert_close(size2[i, :, 0], rsize2, rtol=0, atol=1e-12)
        torch.testing.assert_close(source2[i], rsource2, rtol=0, atol=0)
        assert float(size2[i].sum()) == n


@pytest.mark.parametrize("class_token,distill_token", PROTECTION)
def test_prefix_tokens_stay_in_place(class_token, distill_token):
    metric, x = _random_inputs(4, 16, seed=3)
    merge, _ = bipartite_soft_matching(metric, 7, class_token, distill_token)
    source = merge_source(merge, x)
    prefix = [i for i, p in enumerate((class_token, distill_token)) if p]
    for row, col in enumerate(prefix):
        expected = torch.zeros(4, 16, dtype=source.dtype)
        expected[:, col] = 1
        assert torch.equal(source[:, row], expected)


@pytest.mark.parametrize("class_token,distill_token", PROTECTION)
def test_unmerge_inverts_merge(class_token, distill_token):
    """unmerge(merge(x)) copies each merged token back to its inputs."""
    metric, x = _random_inputs(3, 17, seed=5)
    merge, unmerge = bipartite_soft_matching(
        metric, 5, class_token, distill_token
    )
    y, size = merge_wavg(merge, x)
    source = merge_source(merge, x)  # [B, N_out, N_in]
    back = unmerge(y)
    assert back.shape == x.shape
    torch.testing.assert_close(back, source.transpose(1, 2) @ y)
    # Merging the unmerged tokens again gives the same merged tokens.
    torch.testing.assert_close(merge(back) / merge(torch.ones_like(x)), y)
    # Tokens that merged with nothing come back exactly.
    alone = (source.transpose(1, 2) @ size)[..., 0] == 1  # [B, N_in]
    assert alone.any()
    torch.testing.assert_close(back[alone], x[alone], rtol=0, atol=1e-12)


def test_r_zero_and_clipping_are_identity_or_bounded():
    metric, x = _random_inputs(2, 10, seed=1)
    merge, unmerge = bipartite_soft_matching(metric, 0)
    assert merge(x) is x and unmerge(x) is x
    merge, _ = bipartite_soft_matching(metric, 1000)
    assert merge(x).shape[1] == 10 - max_merge(10)


def test_dist_only_destination_means_no_merge():
    """With 3 tokens and DIST protected, the only B token is DIST."""
    metric, x = _random_inputs(1, 3, seed=2)
    merge, _ = bipartite_soft_matching(metric, 1, False, True)
    assert merge(x).shape[1] == 3


def test_no_gradient_through_matching():
    metric = torch.randn(2, 12, 4, requires_grad=True)
    x = torch.randn(2, 12, 4, requires_grad=True)
    merge, _ = bipartite_soft_matching(metric, 4)
    y, _ = merge_wavg(merge, x)
    y.sum().backward()
    assert metric.grad is None
    assert x.grad is not None


def test_split_top_is_a_stable_descending_sort():
    g = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 4, (5, 11), generator=g).float()  # many ties
    scores[:, 0] = -torch.inf
    order = torch.argsort(scores, dim=-1, descending=True, stable=True)
    for r in range(12):
        top, rest = _split_top(scores, r)
        assert torch.equal(top, order[:, :r].sort(dim=-1).values)
        assert torch.equal(rest, order[:, r:].sort(dim=-1).values)
