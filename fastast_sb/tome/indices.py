"""Index arithmetic of bipartite soft matching (ToMe; Bolya et al.,
"Token Merging: Your ViT But Faster", ICLR 2023): which A tokens merge, in
which order, and the flattened rows every merged token reads.

Two equal ways to pick the r best edges: :func:`split_top` (``topk``,
comparisons, ``cumsum`` and ``scatter`` only, so traced and exported
graphs keep the matching) and :func:`split_sorted` (one stable sort: fewer
ops, for eager runs, where a small model pays for every op). Likewise
:func:`cached_layout` keeps the index constants of each shape that
:func:`layout` builds, off the exported paths.
"""

from __future__ import annotations

import functools
from typing import NamedTuple, Tuple

import torch


def split_top(
    scores: torch.Tensor, r: int
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Indices [B, r] of the r highest of [B, K] ``scores`` (no NaN,
    ``0 <= r <= K``) and [B, K - r] of the rest, each in ascending order.

    A stable descending ``argsort`` (ties: the lower index first) from
    exportable ops only; tie order never depends on the ``topk`` kernel.

    Example
    -------
    >>> split_top(torch.tensor([[0.1, 0.9, 0.5, 0.9]]), 2)
    (tensor([[1, 3]]), tensor([[0, 2]]))
    >>> split_top(torch.tensor([[0.5, 0.9, 0.5, 0.5]]), 2)
    (tensor([[0, 1]]), tensor([[2, 3]]))
    """
    k = scores.shape[-1]
    idx = torch.arange(k, device=scores.device)
    if r <= 0:
        return idx[:0].expand(*scores.shape[:-1], 0), idx.expand_as(scores)
    kth = scores.topk(r, dim=-1).values[..., -1:]  # [B, 1] r-th largest
    above = scores > kth  # [B, K]
    tied = scores == kth  # [B, K]
    room = r - above.sum(dim=-1, keepdim=True)  # tied slots left, >= 1
    top = above | (tied & (tied.long().cumsum(dim=-1) <= room))  # [B, K]
    n_top = top.long().cumsum(dim=-1) - top.long()  # top indices before i
    pos = torch.where(top, n_top, r + idx - n_top)  # top first, then rest
    order = torch.zeros_like(n_top).scatter(-1, pos, idx.expand_as(pos))
    return order[..., :r], order[..., r:]


def tracing() -> bool:
    """True while tracing, exporting or compiling: keep to exportable ops."""
    return (
        torch.jit.is_tracing()
        or torch.jit.is_scripting()
        or torch.compiler.is_compiling()
        or torch.compiler.is_exporting()
    )


def split_sorted(
    scores: torch.Tensor, r: int
) -> Tuple[torch.Tensor, torch.Tensor]:
    """:func:`split_top` by a stable sort: the same indices, fewer ops.

    Example
    -------
    >>> split_sorted(torch.tensor([[0.5, 0.9, 0.5, 0.5]]), 2)
    (tensor([[0, 1]]), tensor([[2, 3]]))
    """
    order = scores.argsort(dim=-1, descending=True, stable=True)  # [B, K]
    top, rest = order.split([r, scores.shape[-1] - r], dim=-1)
    return top.sort(dim=-1).values, rest.sort(dim=-1).values


class Layout(NamedTuple):
    """Index constants of one matching shape (see :func:`layout`)."""

    prefix: torch.Tensor  # [B, protected] input rows of CLS, DIST
    odd: torch.Tensor  # [B, Nb - lead_b] input rows of the other B tokens
    offset: torch.Tensor  # [B, 1] first input row of each example
    offset_b: torch.Tensor  # [B, 1] offset + 1: the rows of B tokens
    slot_offset: torch.Tensor  # [B, 1] first output row, + Na - r
    ones: torch.Tensor  # [B * r, 1] unit sizes of the sources


@functools.lru_cache(maxsize=512)
def cached_layout(
    batch: int,
    n: int,
    r: int,
    lead_a: int,
    lead_b: int,
    device: torch.device,
    dtype: torch.dtype,
) -> Layout:
    """:func:`layout`, built once per shape (never inference tensors, so
    autograd may use them too; read only).

    Example
    -------
    >>> cpu = torch.device("cpu")
    >>> cached_layout(1, 9, 2, 1, 1, cpu, torch.float32).odd.tolist()
    [[3, 5, 7]]
    """
    with torch.inference_mode(False), torch.no_grad():
        return layout(batch, n, r, lead_a, lead_b, device, dtype)


def layout(
    batch: int,
    n: int,
    r: int,
    lead_a: int,
    lead_b: int,
    device: torch.device,
    dtype: torch.dtype,
) -> Layout:
    """The index tensors of a matching that depend on shapes only: B
    examples of n tokens, r merged, ``lead_a`` / ``lead_b`` protected
    (CLS / DIST); ``dtype`` of the unit sizes.

    Example
    -------
    >>> lay = layout(2, 5, 1, 1, 1, torch.device("cpu"), torch.float32)
    >>> lay.prefix.tolist(), lay.odd.tolist(), lay.slot_offset.tolist()
    ([[0, 1], [5, 6]], [[3], [8]], [[2], [6]])
    """
    kw = {"device": device, "dtype": torch.long}
    offset = torch.arange(batch, **kw)[:, None] * n  # [B, 1]
    prefix = torch.tensor([0] * lead_a + [1] * lead_b, **kw) + offset
    odd = 2 * torch.arange(lead_b, n // 2, **kw) + 1 + offset  # [B, *]
    out_offset = torch.arange(batch, **kw)[:, None] * (n - r)  # [B, 1]
    slot_offset = out_offset + (n + 1) // 2 - r  # [B, 1]
    ones = torch.ones(batch * r, 1, device=device, dtype=dtype)
    return Layout(prefix, odd, offset, offset + 1, slot_offset, ones)
