"""Bipartite soft matching and size-weighted token merging.

Our own implementation of token merging (ToMe; Bolya et al., "Token
Merging: Your ViT But Faster", ICLR 2023) for the AST token layout (CLS at
index 0, DIST at index 1), as in FastAST (Behera et al., "FastAST:
Accelerating Audio Spectrogram Transformer via Token Merging and
Cross-Model Knowledge Distillation", Interspeech 2024).

Every function is pure: token sizes and source maps are passed in and
returned, never stored. While tracing, exporting or compiling only ``topk``
values, comparisons, ``cumsum``, ``gather`` and ``scatter(_add)`` are used
(no sort, no ``.item()``), so the merged model exports (TorchScript,
``torch.export``, ONNX) for a fixed input length and schedule. Eager runs
compute the same numbers with fewer ops (a stable sort, in-place masks,
cached index constants, row ``index_add_``): a small model at batch 1 pays
a few microseconds for every op, which once cost more than merging saved.
On the CPU the index work after the cosine scores runs in NumPy, which
pays about one microsecond per call (:mod:`fastast_sb.tome.host`).

Tokens split into A (even positions) and B (odd positions). CLS, the first
A token, is never a merge source; DIST, the first B token, never a
destination. Each A token proposes an edge to its most similar B token
(cosine); the r best edges merge (ties: the lower A index first). The
output is ``[protected prefix (CLS, DIST), unmerged A, B]``, each part in
order, so CLS stays at index 0 and DIST at index 1.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Tuple

import torch

from fastast_sb.tome.host import host_rows, host_scores
from fastast_sb.tome.indices import (
    cached_layout,
    layout,
    split_sorted,
    split_top,
    tracing,
)

MergeFn = Callable[[torch.Tensor], torch.Tensor]
_split_top = split_top  # the exportable split, under its former name


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


def max_merge(num_tokens: int, protected: int = 2) -> int:
    """Largest r one matching step can merge: ``(N - protected) // 2``.

    Example
    -------
    >>> max_merge(146)
    72
    """
    return max((num_tokens - protected) // 2, 0)


class TokenMerge:
    """The merge step found by :func:`bipartite_soft_matching`.

    Every output token has one *base* token plus the merge sources sent to
    it. Calling the object sums each group; :meth:`weighted_average`
    averages it by size. Both copy the base rows with one row gather and
    touch only the ``r`` source rows otherwise (one ``index_add_`` of
    rows: cheaper than a scatter over every token). All indices are rows
    of the flattened [B * N, C] input and [B * (N - r), C] output.

    Arguments
    ---------
    base : torch.Tensor
        [B, N - r] input index of each output token's base token.
    src : torch.Tensor
        [B, r] input index of each merge source.
    slot : torch.Tensor
        [B, r] output index each source merges into.
    num_tokens : int
        N, tokens before merging.

    Example
    -------
    >>> m = TokenMerge(torch.tensor([[0, 2]]), torch.tensor([[1]]),
    ...                torch.tensor([[1]]), 3)
    >>> m(torch.tensor([[[1.0], [2.0], [4.0]]]))
    tensor([[[1.],
             [6.]]])
    """

    def __init__(
        self,
        base: torch.Tensor,
        src: torch.Tensor,
        slot: torch.Tensor,
        num_tokens: int,
    ) -> None:
        batch, num_out = base.shape
        arange = torch.arange(batch, device=base.device)[:, None]  # [B, 1]
        offset = arange * num_tokens  # [B, 1] first row of each example
        dst = base.gather(1, slot)  # [B, r] input index of each destination
        self._set_rows(
            num_tokens,
            base + offset,
            src + offset,
            dst + offset,
            slot + arange * num_out,
        )

    def _set_rows(
        self,
        num_tokens: int,
        base_rows: torch.Tensor,
        src_rows: torch.Tensor,
        dst_rows: torch.Tensor,
        slot_rows: torch.Tensor,
        unit: Optional[torch.Tensor] = None,
    ) -> None:
        """Keep the flattened rows ([B, K] each); ``unit``: [B * r, 1]
        ones of the sizes' dtype (made when needed if ``None``)."""
        self.num_tokens = num_tokens
        self.num_out = base_rows.shape[1]
        self.base_rows = base_rows.reshape(-1)  # [B * (N - r)]
        self.src_rows = src_rows.reshape(-1)  # [B * r]
        self.dst_rows = dst_rows.reshape(-1)  # [B * r]
        self.slot_rows = slot_rows.reshape(-1)  # [B * r] output rows
        self._unit = unit
        self._eager = not tracing()  # index_add_ (ONNX: scatter_add)

    @classmethod
    def _from_rows(cls, *args: Any) -> TokenMerge:
        merge = cls.__new__(cls)
        merge._set_rows(*args)
        return merge

    @classmethod
    def _from_host(cls, num_tokens: int, r: int, rows: Any) -> TokenMerge:
        """From the NumPy rows of :func:`host_rows` (eager CPU runs)."""
        merge = cls.__new__(cls)
        merge.num_tokens, merge.num_out = num_tokens, num_tokens - r
        base, src, dst, slot = map(torch.from_numpy, rows)
        merge.base_rows, merge.src_rows, merge.dst_rows = base, src, dst
        merge.slot_rows = slot
        merge._unit, merge._eager = None, True
        return merge

    def _add(self, out: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """out [B * (N - r), C] with ``rows`` [B * r, C] added at the slots,
        in source order, as [B, N - r, C]."""
        if rows.dtype != out.dtype:
            rows = rows.to(out.dtype)
        if self._eager:
            out = out.index_add_(0, self.slot_rows, rows)
        else:
            index = self.slot_rows[:, None].expand(-1, rows.shape[-1])
            out = out.scatter_add_(0, index, rows)
        return out.view(-1, self.num_out, out.shape[-1])

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Sum every group: [B, N, C] -> [B, N - r, C]."""
        flat = x.reshape(-1, x.shape[-1])  # [B * N, C]
        out = flat.index_select(0, self.base_rows)  # [B * (N - r), C]
        return self._add(out, flat.index_select(0, self.src_rows))

    def weighted_average(
        self, x: torch.Tensor, size: Optional[torch.Tensor] = None
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Size-weighted average of every group, and the summed sizes.

        A token that absorbs nothing is copied unchanged; a destination d
        becomes ``x_d + sum_j s_j (x_j - x_d) / S_d`` (``S_d``: the summed
        size), which is ``sum s x / sum s`` with arithmetic on the ``r``
        source rows only.

        Arguments
        ---------
        x : torch.Tensor
            [B, N, C] tokens.
        size : torch.Tensor, optional
            [B, N, 1] token sizes (ones if ``None``).

        Returns
        -------
        x : torch.Tensor
            [B, N - r, C] merged tokens.
        size : torch.Tensor
            [B, N - r, 1] their sizes.
        """
        flat = x.reshape(-1, x.shape[-1])  # [B * N, C]
        out = flat.index_select(0, self.base_rows)  # [B * (N - r), C]
        src = flat.index_select(0, self.src_rows)  # [B * r, C]
        dst = flat.index_select(0, self.dst_rows)  # [B * r, C]
        if size is None:  # all ones: S = 1 + sources, weight = 1 / S
            src_size = self._unit
            if src_size is None or src_size.dtype != x.dtype:
                src_size = x.new_ones(len(self.src_rows), 1)
            out_size = src_size.new_ones(len(self.base_rows), 1)
        else:
            size = size.reshape(-1, 1)  # [B * N, 1]
            out_size = size.index_select(0, self.base_rows)  # [B * (N-r), 1]
            src_size = size.index_select(0, self.src_rows)  # [B * r, 1]
        out_size = self._add(out_size, src_size)  # [B, N - r, 1]
        weight = src_size / out_size.view(-1, 1).index_select(0, self.slot_rows)
        return self._add(out, weight * (src - dst)), out_size

    def unmerge(self, y: torch.Tensor) -> torch.Tensor:
        """Copy merged tokens back to their inputs: [B, N-r, C] -> [B, N, C]."""
        b = y.shape[0]
        dest = self.base_rows.new_zeros(b * self.num_tokens)  # output row
        ranks = torch.arange(len(self.base_rows), device=y.device)
        dest = dest.scatter(0, self.base_rows, ranks)
        dest = dest.scatter(0, self.src_rows, self.slot_rows)
        flat = y.reshape(-1, y.shape[-1])  # [B * (N - r), C]
        return flat.index_select(0, dest).view(b, self.num_tokens, -1)


def _best_edges(
    metric: torch.Tensor, lead_a: int, lead_b: int, eager: bool
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Best cosine score [B, Na] of each A token and its B token [B, Na];
    -inf for CLS, never DIST (when protected)."""
    metric = metric / metric.norm(dim=-1, keepdim=True)
    a, b = metric[:, ::2, :], metric[:, 1::2, :]
    scores = a @ b.transpose(-1, -2)  # [B, Na, Nb]
    if eager:  # the same numbers, in place
        if lead_b:  # DIST is never a destination
            scores.narrow(-1, 0, lead_b).fill_(-torch.inf)
        node_max, node_idx = scores.max(dim=-1)  # [B, Na]
        if lead_a:  # CLS is never a source
            node_max.narrow(-1, 0, lead_a).fill_(-torch.inf)
        return node_max, node_idx
    na, nb = scores.shape[-2:]
    keep = torch.ones(na, nb, dtype=torch.bool, device=scores.device)
    keep[:lead_a, :] = False  # CLS is never a source
    keep[:, :lead_b] = False  # DIST is never a destination
    return scores.masked_fill(~keep, -torch.inf).max(dim=-1)


def bipartite_soft_matching(
    metric: torch.Tensor,
    r: int,
    class_token: bool = True,
    distill_token: bool = True,
) -> Tuple[MergeFn, MergeFn]:
    """Find the r most similar A->B token pairs and return merge closures.

    Arguments
    ---------
    metric : torch.Tensor
        [B, N, C] features compared by cosine similarity (ToMe: attention
        keys averaged over heads); no gradient flows through the matching.
    r : int
        Tokens to remove; clipped to ``(N - protected) // 2``.
    class_token : bool
        Protect index 0 (CLS): never merged into another token.
    distill_token : bool
        Protect index 1 (DIST): never receives another token.

    Returns
    -------
    merge : callable
        ``merge(x [B, N, C]) -> [B, N - r, C]``: each merged token is the
        sum of the tokens it absorbed (weight with :func:`merge_wavg`).
    unmerge : callable
        ``unmerge(y [B, N - r, C]) -> [B, N, C]``: copies each merged token
        back to every position it came from.

    Example
    -------
    >>> metric = torch.randn(2, 10, 4)
    >>> merge, unmerge = bipartite_soft_matching(metric, r=3)
    >>> merge(torch.randn(2, 10, 5)).shape
    torch.Size([2, 7, 5])
    >>> unmerge(torch.randn(2, 7, 5)).shape
    torch.Size([2, 10, 5])
    """
    batch, n = metric.shape[:2]
    r = min(int(r), max_merge(n, int(class_token) + int(distill_token)))
    if distill_token and n // 2 < 2:
        r = 0  # the only B token is DIST, which receives nothing
    if r <= 0:
        return _identity, _identity

    lead_a, lead_b = int(class_token), int(distill_token)
    eager = not tracing()
    if eager and metric.is_cpu:  # the indices in NumPy
        if torch.is_grad_enabled():
            with torch.no_grad():
                scores = host_scores(metric)
        else:  # inference: no context manager to enter (microseconds)
            scores = host_scores(metric)
        rows = host_rows(scores, r, lead_a, lead_b, n)
        if rows is not None:  # None: a NaN score, see the torch path
            merge = TokenMerge._from_host(n, r, rows)
            return merge, merge.unmerge
    shape = (batch, n, r, lead_a, lead_b, metric.device, metric.dtype)
    with torch.no_grad():
        node_max, node_idx = _best_edges(metric, lead_a, lead_b, eager)
        split = split_sorted if eager else split_top
        src_idx, unm_idx = split(node_max, r)  # [B, r], [B, Na - r]
        dst_idx = node_idx.gather(dim=-1, index=src_idx)  # [B, r]
        # Output order: [CLS, DIST, unmerged A, B]; each output token's
        # base is the input token at that place; B token j lands at
        # Na - r + j.
        lay = cached_layout(*shape) if eager else layout(*shape)
        unm = lay.offset.add(unm_idx[:, lead_a:], alpha=2)  # unmerged A
        base = torch.cat([lay.prefix, unm, lay.odd], dim=1)  # [B, N - r]
        src = lay.offset.add(src_idx, alpha=2)  # [B, r] rows of the sources
        dst = lay.offset_b.add(dst_idx, alpha=2)  # [B, r] their destinations
        slot = dst_idx + lay.slot_offset  # [B, r] output rows
    merge = TokenMerge._from_rows(n, base, src, dst, slot, lay.ones)
    return merge, merge.unmerge


def merge_wavg(
    merge: MergeFn,
    x: torch.Tensor,
    size: Optional[torch.Tensor] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Merge tokens by their size-weighted average; sizes add up.

    Arguments
    ---------
    merge : callable
        From :func:`bipartite_soft_matching`.
    x : torch.Tensor
        [B, N, C] tokens.
    size : torch.Tensor, optional
        [B, N, 1] number of patches each token holds (ones if ``None``).

    Returns
    -------
    x : torch.Tensor
        [B, N - r, C] merged tokens.
    size : torch.Tensor
        [B, N - r, 1] their sizes.

    Example
    -------
    >>> x = torch.randn(1, 6, 3)
    >>> merge, _ = bipartite_soft_matching(x, r=2)
    >>> y, size = merge_wavg(merge, x)
    >>> y.shape, float(size.sum())
    (torch.Size([1, 4, 3]), 6.0)
    """
    if isinstance(merge, TokenMerge):
        return merge.weighted_average(x, size)
    if size is None:
        size = torch.ones_like(x[..., :1])
    merged = merge(size)
    return merge(x * size) / merged, merged


def merge_source(
    merge: MergeFn,
    x: torch.Tensor,
    source: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Track which input tokens each merged token holds.

    Arguments
    ---------
    merge : callable
        From :func:`bipartite_soft_matching`.
    x : torch.Tensor
        [B, N, C] tokens (only the shape is used when ``source`` is None).
    source : torch.Tensor, optional
        [B, N, N_in] 0/1 map; the identity over the N tokens when ``None``.

    Returns
    -------
    torch.Tensor
        [B, N - r, N_in] map: row j marks the input tokens merged into j.

    Example
    -------
    >>> x = torch.randn(1, 6, 3)
    >>> merge, _ = bipartite_soft_matching(x, r=2)
    >>> merge_source(merge, x).sum(dim=1)
    tensor([[1., 1., 1., 1., 1., 1.]])
    """
    if source is None:
        b, n, _ = x.shape
        source = torch.eye(n, device=x.device, dtype=x.dtype).expand(b, n, n)
    return merge(source)
