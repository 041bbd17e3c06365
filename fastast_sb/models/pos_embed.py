"""Positional-embedding adaptation to another patch grid (the AST rule).

The patch part of a learned positional embedding is viewed as its
(frequency, time) grid and fitted to the new grid one axis at a time, time
first: a shrinking axis keeps its middle rows (start ``old // 2 - new // 2``,
as AST's code), a growing one is bilinearly interpolated
(``align_corners=False``). The prefix rows (CLS, DIST) are kept. The same
rule adapts ImageNet DeiT 24x24 grids.

Reference: Y. Gong, Y.-A. Chung, J. Glass, "AST: Audio Spectrogram
Transformer", Interspeech 2021.
"""

from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F


def _fit_axis(grid: torch.Tensor, new: int, dim: int) -> torch.Tensor:
    """Cut the middle of, or interpolate, one axis of a [B, D, f, t] grid."""
    old = grid.shape[dim]
    if new <= old:
        return grid.narrow(dim, old // 2 - new // 2, new)
    size = [new if i == dim else s for i, s in enumerate(grid.shape)]
    return F.interpolate(
        grid, size=size[2:], mode="bilinear", align_corners=False
    )


def _check_grid(name: str, grid: Tuple[int, int]) -> Tuple[int, int]:
    if len(grid) != 2 or any(int(g) < 1 for g in grid):
        raise ValueError(
            f"{name} must be two positive ints (f_dim, t_dim), got {grid!r}"
        )
    return int(grid[0]), int(grid[1])


def resample_pos_embed(
    pos_embed: torch.Tensor,
    old_grid: Tuple[int, int],
    new_grid: Tuple[int, int],
    num_prefix: int = 2,
) -> torch.Tensor:
    """Fit a positional embedding to a new (f_dim, t_dim) patch grid.

    Patch rows are ordered frequency-major (index ``f * t_dim + t``), as
    :class:`fastast_sb.models.layers.PatchEmbed` produces them.

    Arguments
    ---------
    pos_embed : torch.Tensor
        [B, num_prefix + f * t, D] embedding (B is 1 in checkpoints).
    old_grid, new_grid : (int, int)
        (f_dim, t_dim) of ``pos_embed``, and the one wanted.
    num_prefix : int
        Leading rows kept unchanged (CLS and DIST for AST).

    Returns
    -------
    torch.Tensor
        [B, num_prefix + f' * t', D] embedding, same dtype and device.

    Example
    -------
    >>> pos = torch.arange(2 + 2 * 4, dtype=torch.float).reshape(1, -1, 1)
    >>> resample_pos_embed(pos, (2, 4), (2, 2)).flatten().tolist()
    [0.0, 1.0, 3.0, 4.0, 7.0, 8.0]
    >>> resample_pos_embed(pos, (2, 4), (2, 8)).shape
    torch.Size([1, 18, 1])
    """
    old_f, old_t = _check_grid("old_grid", old_grid)
    new_f, new_t = _check_grid("new_grid", new_grid)
    if pos_embed.ndim != 3:
        raise ValueError(
            f"pos_embed must be [B, N, D], got shape {tuple(pos_embed.shape)}"
        )
    b, n, d = pos_embed.shape
    if n != num_prefix + old_f * old_t:
        raise ValueError(
            f"pos_embed has {n} rows; grid {old_f}x{old_t} with {num_prefix} "
            f"prefix rows needs {num_prefix + old_f * old_t}"
        )
    if (old_f, old_t) == (new_f, new_t):
        return pos_embed
    prefix = pos_embed[:, :num_prefix]  # [B, P, D]
    patches = pos_embed[:, num_prefix:]  # [B, f * t, D]
    grid = patches.transpose(1, 2).reshape(b, d, old_f, old_t)  # [B, D, f, t]
    grid = _fit_axis(_fit_axis(grid.float(), new_t, dim=3), new_f, dim=2)
    patches = grid.reshape(b, d, new_f * new_t).transpose(1, 2)  # [B, f't', D]
    return torch.cat([prefix, patches.to(pos_embed.dtype)], dim=1)
