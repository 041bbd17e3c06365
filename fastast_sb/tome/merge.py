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
        # Output slot of every input token, for one scatter-add (merge) and
        # one gather (unmerge): [CLS, DIST, unmerged A in order, B in order].
        bsz, dev = metric.shape[0], metric.device
        rank = torch.arange(n_unm, device=dev)
        slot_unm = torch.where(rank < lead_a, rank, rank + lead_b)  # [Na - r]
        k = torch.arange(nb, device=dev)
        slot_b = torch.where(k < lead_b, k + lead_a, k + n_unm)  # [Nb]
        slot_b = slot_b.expand(bsz, nb)  # [B, Nb]
        slot_a = torch.zeros_like(node_idx)  # [B, Na]
        slot_a = slot_a.scatter(1, unm_idx, slot_unm.expand(bsz, n_unm))
        slot_a = slot_a.scatter(1, src_idx, slot_b.gather(1, dst_idx))
        if na > nb:
            slot_b = torch.cat([slot_b, slot_b[:, :1]], dim=1)  # [B, Na]
        dest = torch.stack([slot_a, slot_b], dim=2).reshape(bsz, 2 * na)
        dest = dest[:, :n]  # [B, N] interleaved A (even) and B (odd)
    n_out = n - r

    def merge(x: torch.Tensor) -> torch.Tensor:
        index = dest[..., None].expand(-1, -1, x.shape[-1])  # [B, N, C]
        out = x.new_zeros(x.shape[0], n_out, x.shape[-1])
        return out.scatter_add(1, index, x)  # [B, N - r, C]

    def unmerge(y: torch.Tensor) -> torch.Tensor:
        index = dest[..., None].expand(-1, -1, y.shape[-1])  # [B, N, C]
        return y.gather(1, index)

    return merge, unmerge


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
