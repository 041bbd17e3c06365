"""Merged-token groups on the patch grid, from a ToMe source map.

Row j of the last block's source map marks the input patches merged into
token j (Bolya et al., "Token Merging: Your ViT But Faster", ICLR 2023,
Fig. 4); :func:`merge_groups` gives each patch its group id and
:mod:`fastast_sb.visualize` draws the groups over the spectrogram.

AST's 16 x 16 patches overlap (stride 10), so each spectrogram cell takes
the group of the patch whose centre is nearest (ties: the earlier patch;
:func:`nearest_patch`); outlines follow the edges of these regions
(:func:`boundaries`).
"""

from __future__ import annotations

from typing import List, Optional, Tuple

import torch


def merge_groups(
    source: torch.Tensor,
    num_prefix: int = 2,
    grid: Optional[Tuple[int, int]] = None,
) -> torch.Tensor:
    """Group id of every patch: the output token it was merged into.

    ``source`` is one example's [N_out, N_in] (or [1, N_out, N_in]) source
    map with ``num_prefix`` leading non-patch tokens; ``grid`` the
    frequency-major patch grid (f_dim, t_dim), one row by default. Entry
    (f, t) of the [f_dim, t_dim] result is the row holding patch
    ``f * t_dim + t``.

    Example
    -------
    >>> source = torch.tensor([[1, 0, 0, 0, 0, 0],
    ...                        [0, 1, 0, 0, 0, 0],
    ...                        [0, 0, 1, 0, 1, 1],
    ...                        [0, 0, 0, 1, 0, 0]])
    >>> merge_groups(source, grid=(2, 2))
    tensor([[2, 3],
            [2, 2]])
    """
    if source.ndim == 3 and source.shape[0] == 1:
        source = source[0]
    if source.ndim != 2:
        raise ValueError(
            "merge_groups expects one example's source map [N_out, N_in], "
            f"got shape {tuple(source.shape)}"
        )
    num_patches = source.shape[1] - num_prefix
    f_dim, t_dim = (1, num_patches) if grid is None else grid
    if f_dim * t_dim != num_patches:
        raise ValueError(
            f"grid {(f_dim, t_dim)} has {f_dim * t_dim} patches, the source "
            f"map has {num_patches} ({source.shape[1]} inputs - {num_prefix} "
            "prefix tokens)"
        )
    patches = source[:, num_prefix:] != 0  # [N_out, P]
    owners = patches.sum(dim=0)  # [P]
    if not torch.all(owners == 1):
        bad = (owners != 1).nonzero().flatten()[:5].tolist()
        raise ValueError(
            f"every patch must belong to exactly one token; patches {bad} "
            f"belong to {owners[bad].tolist()} tokens"
        )
    return patches.long().argmax(dim=0).reshape(f_dim, t_dim)


def nearest_patch(
    length: int, num_patches: int, patch: int = 16, stride: int = 10
) -> torch.Tensor:
    """For each of ``length`` cells along one axis, the nearest patch.

    Patch i covers cells ``i * stride .. i * stride + patch`` and is
    centred at ``i * stride + patch / 2``; cell k at ``k + 1/2``. Returns
    [length] non-decreasing patch indices.

    Example
    -------
    >>> nearest_patch(36, 3).tolist()  # doctest: +NORMALIZE_WHITESPACE
    [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
     2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2]
    """
    cells = torch.arange(length, dtype=torch.float64) + 0.5
    centres = torch.arange(num_patches, dtype=torch.float64) * stride
    centres = centres + patch / 2
    return (cells[:, None] - centres[None, :]).abs().argmin(dim=1)


def cell_maps(
    num_frames: int,
    num_bins: int,
    grid: Tuple[int, int],
    patch: int = 16,
    fstride: int = 10,
    tstride: int = 10,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Nearest patch (:func:`nearest_patch`) of every mel bin and frame.

    Example
    -------
    >>> fmap, tmap = cell_maps(26, 36, (3, 2))
    >>> fmap.shape, tmap.tolist()[-1]
    (torch.Size([36]), 1)
    """
    fmap = nearest_patch(num_bins, grid[0], patch, fstride)
    return fmap, nearest_patch(num_frames, grid[1], patch, tstride)


def group_image(
    groups: torch.Tensor,
    num_frames: int,
    num_bins: int,
    patch: int = 16,
    fstride: int = 10,
    tstride: int = 10,
) -> torch.Tensor:
    """[F, T] group id of every spectrogram cell (row 0: lowest mel bin),
    from the [f_dim, t_dim] grid of :func:`merge_groups`.

    Example
    -------
    >>> group_image(torch.tensor([[4, 5], [6, 6]]), 26, 26).shape
    torch.Size([26, 26])
    """
    grid = tuple(groups.shape)
    fmap, tmap = cell_maps(num_frames, num_bins, grid, patch, fstride, tstride)
    return groups[fmap][:, tmap]


def _extents(index: torch.Tensor, n: int) -> Tuple[List[int], List[int]]:
    """First and one-past-last cell of each patch's region."""
    ids = torch.arange(n)
    lo = torch.searchsorted(index, ids, right=False).tolist()
    return lo, torch.searchsorted(index, ids, right=True).tolist()


def boundaries(
    groups: torch.Tensor, fmap: torch.Tensor, tmap: torch.Tensor
) -> List[Tuple[Tuple[int, int], Tuple[int, int]]]:
    """Line segments (x = frame, y = bin) between patches of other groups
    (``groups`` from :func:`merge_groups`, the maps from :func:`cell_maps`).

    Example
    -------
    >>> groups = torch.tensor([[0, 1]])
    >>> boundaries(groups, *cell_maps(26, 16, (1, 2)))
    [((13, 0), (13, 16))]
    """
    f_dim, t_dim = groups.shape
    f_lo, f_hi = _extents(fmap, f_dim)
    t_lo, t_hi = _extents(tmap, t_dim)
    segments = []
    for f, t in (groups[:, 1:] != groups[:, :-1]).nonzero().tolist():
        segments.append(((t_hi[t], f_lo[f]), (t_hi[t], f_hi[f])))
    for f, t in (groups[1:, :] != groups[:-1, :]).nonzero().tolist():
        segments.append(((t_lo[t], f_hi[f]), (t_hi[t], f_hi[f])))
    return segments
