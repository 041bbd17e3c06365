"""The index work of token merging on the CPU, in NumPy.

Bipartite soft matching (ToMe; Bolya et al., "Token Merging: Your ViT But
Faster", ICLR 2023) spends little arithmetic on its indices (one argmax,
two sorts, a few additions) but many ops: on a small model each torch op
pays a dispatch cost of several microseconds, which after the block's
matrix products (cold caches) grows several-fold; a NumPy call pays about
one, and NumPy's ``argmax`` runs 4-6x faster than ``torch.max(dim)``. So,
for eager CPU runs, the cosine scores stay in torch (the very kernels of
the torch path, hence the same numbers) and everything after them runs
here: the best B token of each A token (the first maximum, as
``torch.max``), the stable descending sort of the edges (ties: the lower A
index first) and the rows each merged token reads. Index constants of a
shape are built once (:func:`host_layout`). Every result equals the torch
path's bit for bit; scores with a NaN (a zero key) fall back to it.
"""

from __future__ import annotations

import functools
from typing import NamedTuple, Optional, Tuple

import numpy as np
import torch

Rows = Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


class HostLayout(NamedTuple):
    """Index constants of one matching shape (see :func:`host_layout`)."""

    prefix: np.ndarray  # [B, protected] input rows of CLS, DIST
    odd: np.ndarray  # [B, Nb - lead_b] input rows of the other B tokens
    offset: np.ndarray  # [B, 1] first input row of each example
    offset_b: np.ndarray  # [B, 1] offset + 1: the rows of B tokens
    slot_offset: np.ndarray  # [B, 1] first output row, + Na - r
    score_rows: np.ndarray  # [B, Na] flat index of each row of the scores
    bump: np.ndarray  # [B, Na] e * Na, + Na past the first r columns
    row_shift: np.ndarray  # [B, Na] offset - 2 * bump


@functools.lru_cache(maxsize=512)
def host_layout(
    batch: int, n: int, r: int, lead_a: int, lead_b: int
) -> HostLayout:
    """The index constants of a matching that depend on shapes only (B
    examples of n tokens, r merged, ``lead_a`` / ``lead_b`` protected),
    built once per shape; read only.

    Example
    -------
    >>> lay = host_layout(2, 5, 1, 1, 1)
    >>> lay.prefix.tolist(), lay.odd.tolist(), lay.slot_offset.tolist()
    ([[0, 1], [5, 6]], [[3], [8]], [[2], [6]])
    """
    na, nb = (n + 1) // 2, n // 2
    examples = np.arange(batch, dtype=np.int64)[:, None]  # [B, 1]
    offset = examples * n
    prefix = np.array([0] * lead_a + [1] * lead_b, dtype=np.int64) + offset
    odd = 2 * np.arange(lead_b, nb, dtype=np.int64) + 1 + offset
    slot_offset = examples * (n - r) + na - r
    score_rows = np.arange(batch * na, dtype=np.int64).reshape(batch, na) * nb
    bump = examples * na + np.where(np.arange(na) < r, 0, na)  # [B, Na]
    consts = (prefix, odd, offset, offset + 1, slot_offset, score_rows, bump)
    consts += (offset - 2 * bump,)
    for a in consts:
        a.flags.writeable = False
    return HostLayout(*consts)


def host_scores(metric: torch.Tensor) -> torch.Tensor:
    """Cosine similarity [B, Na, Nb] of the A (even) and B (odd) tokens of
    [B, N, C] ``metric``: ``Tensor.norm`` and a 3-D ``@`` without their
    Python wrappers (they call these very kernels).

    Example
    -------
    >>> host_scores(torch.tensor([[[1.0, 0.0], [0.0, 2.0]]]))
    tensor([[[0.]]])
    """
    metric = metric / torch.linalg.vector_norm(metric, 2, -1, True)
    return torch.bmm(metric[:, ::2], metric[:, 1::2].transpose(1, 2))


def host_rows(
    scores: torch.Tensor, r: int, lead_a: int, lead_b: int, n: int
) -> Optional[Rows]:
    """Flattened rows (base, src, dst, slot) of the merge, as the torch
    path of :func:`fastast_sb.tome.merge.bipartite_soft_matching` builds
    them, from the [B, Na, Nb] cosine scores of a CPU run (overwritten:
    DIST's column); ``None`` if a score is NaN.

    Example
    -------
    >>> scores = torch.tensor([[[0.0, 0.9], [0.0, 0.2], [0.0, 0.5]]])
    >>> [a.tolist() for a in host_rows(scores, 1, 1, 1, 5)]
    [[0, 1, 2, 3], [4], [3], [3]]
    """
    if scores.dtype not in (torch.float32, torch.float64):  # no bf16 in NumPy
        scores = scores.float()  # exact: the order and the ties are kept
    s = scores.numpy()  # [B, Na, Nb]
    batch = s.shape[0]
    lay = host_layout(batch, n, r, lead_a, lead_b)
    if lead_b:  # DIST is never a destination
        s[..., :lead_b] = -np.inf
    node_idx = s.argmax(axis=-1)  # [B, Na] best B token (first maximum)
    node_max = s.reshape(-1)[node_idx + lay.score_rows]  # [B, Na]
    if lead_a:  # CLS is never a source
        node_max[:, :lead_a] = -np.inf
    if np.isnan(node_max).any():
        return None
    order = np.argsort(-node_max, axis=-1, kind="stable")  # [B, Na]
    # One sort for both parts: key e * Na + i for the r best A tokens i of
    # example e, e * Na + Na + i for the rest: sources, then the rest, each
    # ascending; the keys of the sources index the flattened node_idx.
    order += lay.bump
    order.sort(axis=-1)
    dst_idx = node_idx.reshape(-1)[order[:, :r]]  # [B, r]
    rows = 2 * order + lay.row_shift  # [B, Na] input rows: sources, rest
    unm = rows[:, r + lead_a :]  # unmerged A (CLS, first of the rest, out)
    base = np.concatenate([lay.prefix, unm, lay.odd], axis=1)  # [B, N - r]
    src = rows[:, :r]  # [B, r] rows of the sources
    dst = 2 * dst_idx + lay.offset_b  # [B, r] their destinations
    slot = dst_idx + lay.slot_offset  # [B, r] output rows
    return base.reshape(-1), src.reshape(-1), dst.reshape(-1), slot.reshape(-1)
