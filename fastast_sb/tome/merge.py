"""Bipartite soft matching and size-weighted token merging.

Our own implementation of token merging (ToMe) as described in
D. Bolya, C.-Y. Fu, X. Dai, P. Zhang, C. Feichtenhofer, J. Hoffman,
"Token Merging: Your ViT But Faster", ICLR 2023, adapted to the AST token
layout (CLS at index 0, DIST at index 1) as in FastAST
(Behera et al., "FastAST: Accelerating Audio Spectrogram Transformer via
Token Merging and Cross-Model Knowledge Distillation", Interspeech 2024).

Every function here is pure: the state of a forward pass (token sizes,
source maps) is passed in and returned, never stored. Only ``topk``
values, comparisons, ``cumsum``, ``gather`` and ``scatter(_add)`` are used
(no sort, no ``.item()``), so the merged model traces and exports
(TorchScript, ``torch.export``, ONNX) for a fixed input length and
schedule.

Layout of a merged sequence: tokens are split into a set A (even positions)
and a set B (odd positions). CLS (index 0) is the first A token and is never
a merge source; DIST (index 1) is the first B token and never a merge
destination. Each A token proposes an edge to its most similar B token
(cosine); the r best edges merge (ties: the lower A index first). After
merging, the sequence is ``[protected prefix, unmerged A (in order),
B (in order)]``, where the prefix holds CLS then DIST, each only when
protected, and is left out of the A and B parts. With both protected this
is ``[CLS, DIST, A..., B...]``: CLS stays at index 0 and DIST at index 1.
"""

from __future__ import annotations

from typing import Callable, Optional, Tuple

import torch

MergeFn = Callable[[torch.Tensor], torch.Tensor]


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


def num_protected(class_token: bool = True, distill_token: bool = True) -> int:
    """Number of prefix tokens that never merge.

    Example
    -------
    >>> num_protected(True, True)
    2
    """
    return int(class_token) + int(distill_token)


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
    """Split indices into the r highest scores and the rest.

    Equivalent to a stable descending ``argsort`` (ties: the lower index
    counts as higher), but built from ``topk`` values, comparisons,
    ``cumsum`` and ``scatter`` only, so every exporter (TorchScript,
    ``torch.export``, both ONNX paths) supports it; tie order never depends
    on the ``topk`` kernel.

    Arguments
    ---------
    scores : torch.Tensor
        [B, K] scores (no NaN).
    r : int
        How many to select, ``0 <= r <= K``.

    Returns
    -------
    top : torch.Tensor
        [B, r] indices of the r highest scores, in ascending index order.
    rest : torch.Tensor
        [B, K - r] the other indices, in ascending order.

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

    Every output token has one *base* token (itself, for the tokens that
    absorb nothing) plus the merge sources sent to it. Calling the object
    sums each group; :meth:`weighted_average` averages it by size. Both
    copy the base rows with one row gather (``index_select`` on the
    flattened batch, a plain memory copy) and touch only the ``r`` source
    rows otherwise: cheaper than a scatter over every token.

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
        self.base = base
        self.src = src

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
            out_size = size[:, : self.num_out]  # [B, N - r, 1] ones
            src_size = size[:, : self.slot.shape[1]]  # [B, r, 1] ones
        else:
            out_size = self._rows(size, self.base_rows)  # [B, N - r, 1]
            src_size = self._rows(size, self.src_rows)  # [B, r, 1]
        out_size = out_size.scatter_add(1, slot1, src_size)  # [B, N - r, 1]
        index = self._slot_index(x.shape[-1])  # [B, r, C]
        weight = src_size / out_size.gather(1, slot1)  # [B, r, 1]
        dst = self._rows(x, self.dst_rows)  # [B, r, C]
        delta = weight * (src - dst)  # [B, r, C]
        out = out.scatter_add_(1, index, delta.to(out.dtype))
        return out, out_size

    def unmerge(self, y: torch.Tensor) -> torch.Tensor:
        """Copy merged tokens back to their inputs: [B, N-r, C] -> [B, N, C]."""
        b = y.shape[0]
        n_out = self.num_out
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
        [B, N, C] similarity features (ToMe: attention keys averaged over
        heads). Cosine similarity is used; no gradient flows through the
        matching.
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
    protected = num_protected(class_token, distill_token)
    n = metric.shape[1]
    r = min(int(r), max_merge(n, protected))
    na, nb = (n + 1) // 2, n // 2
    if distill_token and nb < 2:
        r = 0  # the only B token is DIST, which receives nothing
    if r <= 0:
        return _identity, _identity

    with torch.no_grad():
        metric = metric / metric.norm(dim=-1, keepdim=True)
        a, b = metric[:, ::2, :], metric[:, 1::2, :]
        scores = a @ b.transpose(-1, -2)  # [B, Na, Nb]
        if class_token or distill_token:
            keep = torch.ones(na, nb, dtype=torch.bool, device=scores.device)
            if class_token:
                keep[0, :] = False
            if distill_token:
                keep[:, 0] = False
            scores = scores.masked_fill(~keep, -torch.inf)
        node_max, node_idx = scores.max(dim=-1)  # [B, Na]
        src_idx, unm_idx = _split_top(node_max, r)  # [B, r], [B, Na - r]
        dst_idx = node_idx.gather(dim=-1, index=src_idx)  # [B, r]

    n_unm = na - r
    lead_a = 1 if class_token else 0
    lead_b = 1 if distill_token else 0
    with torch.no_grad():
        # Output order: [CLS, DIST, unmerged A in order, B in order]; each
        # output token's base is the input token at that place.
        bsz = metric.shape[0]
        unm = 2 * unm_idx  # [B, Na - r] input positions of unmerged A
        odd = 2 * torch.arange(nb, device=metric.device) + 1  # [Nb]
        odd = odd.expand(bsz, nb)  # [B, Nb] input positions of B
        base = torch.cat(
            [
                unm[:, :lead_a],
                odd[:, :lead_b],
                unm[:, lead_a:],
                odd[:, lead_b:],
            ],
            dim=1,
        )  # [B, N - r]
        slot = torch.where(dst_idx < lead_b, dst_idx + lead_a, dst_idx + n_unm)
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
    x = merge(x * size)
    size = merge(size)
    return x / size, size


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
        source = torch.eye(n, device=x.device, dtype=x.dtype)[None].expand(
            b, n, n
        )
    return merge(source)
