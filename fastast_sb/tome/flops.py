"""Analytic token counts and FLOPs of an AST under a merge schedule.

A block sees ``n_i`` tokens in attention, merges ``r_i`` of them (clipped to
``(n_i - protected) // 2``), and its MLP sees ``n_{i+1} = n_i - r_i``.
FLOPs count one multiply-add as two operations; layer norms, softmax, biases
and the merge itself are ignored (all linear in N with small constants).

Per block, with width D and MLP ratio m:
- qkv and output projections: ``2 * 4 * n_i * D^2``
- attention scores and weighted sum: ``2 * 2 * n_i^2 * D``
- MLP: ``2 * 2 * m * n_{i+1} * D^2``
"""

from __future__ import annotations

from typing import List, Optional, Sequence

from fastast_sb.tome.merge import max_merge


def token_counts(
    num_tokens: int, schedule: Sequence[int], protected: int = 2
) -> List[int]:
    """Tokens entering each block, then after the last block (``len(schedule)
    + 1`` counts): ``n_{i+1} = n_i - min(r_i, (n_i - protected) // 2)`` for
    the requested r_i; ``num_tokens`` counts patches and prefix tokens.

    Example
    -------
    >>> token_counts(146, [16] * 3)
    [146, 130, 114, 98]
    """
    counts = [int(num_tokens)]
    for r in schedule:
        n = counts[-1]
        counts.append(n - min(int(r), max_merge(n, protected)))
    return counts


def clip_schedule(
    num_tokens: int, schedule: Sequence[int], protected: int = 2
) -> List[int]:
    """The r each block really merges after clipping.

    Example
    -------
    >>> clip_schedule(10, [8, 8, 8])
    [4, 2, 1]
    """
    counts = token_counts(num_tokens, schedule, protected)
    return [a - b for a, b in zip(counts[:-1], counts[1:])]


def block_flops(n_in: int, n_out: int, embed_dim: int, mlp_ratio: float) -> int:
    """FLOPs of one pre-LN transformer block that merges n_in -> n_out.

    Example
    -------
    >>> block_flops(2, 2, 4, 4.0)
    832
    """
    d = embed_dim
    attn = 2 * 4 * n_in * d * d + 2 * 2 * n_in * n_in * d
    mlp = 2 * 2 * mlp_ratio * n_out * d * d
    return int(attn + mlp)


def prefix_block_flops(
    n_in: int, keep: int, embed_dim: int, mlp_ratio: float
) -> int:
    """FLOPs of a block that computes its first ``keep`` outputs only
    (:meth:`fastast_sb.models.layers.Block.forward_prefix`): keys and
    values of all ``n_in`` tokens; queries, attention, output projection
    and MLP of ``keep`` of them; no merge.

    Example
    -------
    >>> prefix_block_flops(2, 2, 4, 4.0) == block_flops(2, 2, 4, 4.0)
    True
    >>> f = prefix_block_flops(258, 2, 192, 4.0)
    >>> round(f / block_flops(258, 258, 192, 4.0), 3)
    0.143
    """
    d = embed_dim
    kv = 2 * 2 * n_in * d * d
    q_out = 2 * 2 * keep * d * d
    attn = 2 * 2 * keep * n_in * d
    mlp = 2 * 2 * mlp_ratio * keep * d * d
    return int(kv + q_out + attn + mlp)


def encoder_flops(
    num_tokens: int,
    schedule: Sequence[int],
    embed_dim: int,
    mlp_ratio: float = 4.0,
    protected: int = 2,
    keep_last: Optional[int] = None,
) -> int:
    """FLOPs of all transformer blocks under a schedule; with
    ``keep_last``, the last block computes that many outputs only
    (:func:`prefix_block_flops`; its merge is not made).

    Example
    -------
    >>> encoder_flops(146, [0] * 12, 192) > encoder_flops(146, [8] * 12, 192)
    True
    >>> encoder_flops(146, [0] * 12, 192, keep_last=2) < encoder_flops(
    ...     146, [0] * 12, 192)
    True
    """
    counts = token_counts(num_tokens, schedule, protected)
    pairs = list(zip(counts[:-1], counts[1:]))
    dims = (embed_dim, mlp_ratio)
    total = 0
    if keep_last is not None and pairs:
        total = prefix_block_flops(pairs[-1][0], keep_last, *dims)
        pairs = pairs[:-1]
    return total + sum(block_flops(a, b, *dims) for a, b in pairs)


def patch_embed_flops(num_patches: int, embed_dim: int, patch: int = 16) -> int:
    """FLOPs of the patch-embedding convolution (one input channel).

    Example
    -------
    >>> patch_embed_flops(10, 4)
    20480
    """
    return 2 * num_patches * embed_dim * patch * patch
