"""Bipartite soft matching and size-weighted token merging.

Our own implementation of token merging (ToMe; Bolya et al., "Token
Merging: Your ViT But Faster", ICLR 2023) for the AST token layout (CLS at
index 0, DIST at index 1), as in FastAST (Behera et al., "FastAST:
Accelerating Audio Spectrogram Transformer via Token Merging and
Cross-Model Knowledge Distillation", Interspeech 2024).

Every function is pure: token sizes and source maps are passed in and
returned, never stored. Only ``topk`` values, comparisons, ``cumsum``,
``gather`` and ``scatter(_add)`` are used (no sort, no ``.item()``), so the
merged model exports (TorchScript, ``torch.export``, ONNX) for a fixed
input length and schedule.

Tokens split into A (even positions) and B (odd positions). CLS, the first
A token, is never a merge source; DIST, the first B token, never a
destination. Each A token proposes an edge to its most similar B token
(cosine); the r best edges merge (ties: the lower A index first). The
output is ``[protected prefix (CLS, DIST), unmerged A, B]``, each part in
order, so CLS stays at index 0 and DIST at index 1.
"""

from __future__ import annotations

from typing import Callable, Optional, Tuple

import torch

MergeFn = Callable[[torch.Tensor], torch.Tensor]


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


def _split_top(
    scores: torch.Tensor, r: int
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Indices [B, r] of the r highest of [B, K] ``scores`` (no NaN,
    ``0 <= r <= K``) and [B, K - r] of the rest, each in ascending order.

    A stable descending ``argsort`` (ties: the lower index first) from
    exportable ops only; tie order never depends on the ``topk`` kernel.

    Example
    -------
    >>> _split_top(torch.tensor([[0.1, 0.9, 0.5, 0.9]]), 2)
    (tensor([[1, 3]]), tensor([[0, 2]]))
    >>> _split_top(torch.tensor([[0.5, 0.9, 0.5, 0.5]]), 2)
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


class TokenMerge:
    """The merge step found by :func:`bipartite_soft_matching`.

    Every output token has one *base* token plus the merge sources sent to
    it. Calling the object sums each group; :meth:`weighted_average`
    averages it by size. Both copy the base rows with one row gather and
    touch only the ``r`` source rows otherwise (cheaper than a scatter over
    every token).

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
        self.num_tokens = num_tokens
        self.num_out = base.shape[1]
        self.slot = slot  # [B, r]
        offset = torch.arange(base.shape[0], device=base.device)[:, None]
        offset = offset * num_tokens  # [B, 1] first row of each example
        self.base_rows = (base + offset).reshape(-1)  # [B * (N - r)]
        self.src_rows = (src + offset).reshape(-1)  # [B * r]
        dst = base.gather(1, slot)  # [B, r] input index of each destination
        self.dst_rows = (dst + offset).reshape(-1)  # [B * r]
        self.base, self.src = base, src

    def _rows(self, x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        b, _, c = x.shape
        flat = x.reshape(b * self.num_tokens, c)  # [B * N, C]
        return flat.index_select(0, rows).reshape(b, -1, c)

    def _slot_index(self, width: int) -> torch.Tensor:
        return self.slot[..., None].expand(-1, -1, width)  # [B, r, C]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Sum every group: [B, N, C] -> [B, N - r, C]."""
        out = self._rows(x, self.base_rows)  # [B, N - r, C]
        src = self._rows(x, self.src_rows)  # [B, r, C]
        return out.scatter_add_(1, self._slot_index(x.shape[-1]), src)

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
        out = self._rows(x, self.base_rows)  # [B, N - r, C]
        src = self._rows(x, self.src_rows)  # [B, r, C]
        slot1 = self._slot_index(1)  # [B, r, 1]
        if size is None:
            size = torch.ones_like(x[..., :1])
        out_size = self._rows(size, self.base_rows)  # [B, N - r, 1]
        src_size = self._rows(size, self.src_rows)  # [B, r, 1]
        out_size = out_size.scatter_add(1, slot1, src_size)  # [B, N - r, 1]
        weight = src_size / out_size.gather(1, slot1)  # [B, r, 1]
        delta = weight * (src - self._rows(x, self.dst_rows))  # [B, r, C]
        index = self._slot_index(x.shape[-1])  # [B, r, C]
        return out.scatter_add_(1, index, delta.to(out.dtype)), out_size

    def unmerge(self, y: torch.Tensor) -> torch.Tensor:
        """Copy merged tokens back to their inputs: [B, N-r, C] -> [B, N, C]."""
        b, n_out = y.shape[0], self.num_out
        dest = self.base.new_zeros(b, self.num_tokens)  # [B, N] output slot
        ranks = torch.arange(n_out, device=y.device).expand(b, n_out)
        dest = dest.scatter(1, self.base, ranks).scatter(1, self.src, self.slot)
        return y.gather(1, dest[..., None].expand(-1, -1, y.shape[-1]))


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
    n = metric.shape[1]
    r = min(int(r), max_merge(n, int(class_token) + int(distill_token)))
    na, nb = (n + 1) // 2, n // 2
    if distill_token and nb < 2:
        r = 0  # the only B token is DIST, which receives nothing
    if r <= 0:
        return _identity, _identity

    lead_a, lead_b = int(class_token), int(distill_token)
    with torch.no_grad():
        metric = metric / metric.norm(dim=-1, keepdim=True)
        a, b = metric[:, ::2, :], metric[:, 1::2, :]
        scores = a @ b.transpose(-1, -2)  # [B, Na, Nb]
        keep = torch.ones(na, nb, dtype=torch.bool, device=scores.device)
        keep[:lead_a, :] = False  # CLS is never a source
        keep[:, :lead_b] = False  # DIST is never a destination
        scores = scores.masked_fill(~keep, -torch.inf)
        node_max, node_idx = scores.max(dim=-1)  # [B, Na]
        src_idx, unm_idx = _split_top(node_max, r)  # [B, r], [B, Na - r]
        dst_idx = node_idx.gather(dim=-1, index=src_idx)  # [B, r]
        # Output order: [CLS, DIST, unmerged A, B]; each output token's
        # base is the input token at that place.
        unm = 2 * unm_idx  # [B, Na - r] input positions of unmerged A
        odd = 2 * torch.arange(nb, device=metric.device) + 1  # [Nb]
        odd = odd.expand(metric.shape[0], nb)  # [B, Nb] input positions of B
        parts = [unm[:, :lead_a], odd[:, :lead_b], unm[:, lead_a:]]
        base = torch.cat(parts + [odd[:, lead_b:]], dim=1)  # [B, N - r]
        slot = torch.where(dst_idx < lead_b, dst_idx + lead_a, dst_idx + na - r)
    merge = TokenMerge(base, 2 * src_idx, slot, n)
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
