"""Merged-token groups drawn over the log-mel spectrogram (PNG).

After the last block every token of a merged AST holds a group of input
patches: row j of the source map marks the patches merged into token j
(Bolya et al., "Token Merging: Your ViT But Faster", ICLR 2023, Fig. 4, and
FastAST, Behera et al., Interspeech 2024, for the audio version). This
module turns the source map into a patch-grid image of group ids
(:func:`merge_groups`) and draws it over the spectrogram
(:func:`plot_merge_groups`), each group one semi-transparent colour with
its outline.

Patch regions. AST's 16 x 16 patches overlap (stride 10), so a spectrogram
cell lies in up to four patches. Each cell is coloured by the group of the
patch whose centre is nearest (ties: the earlier patch); this is the stride
cell of each patch, centred in the patch, and the cells before the first or
after the last centre go to the first or last patch
(:func:`nearest_patch`). Group outlines follow the edges of these regions.

Command line::

    python -m fastast_sb.tome.visualize clip.ogg --checkpoint ast.pt \\
        --r 16 --out merged.png [--target-length 512] [--norm esc50]

``--preset tiny`` instead of ``--checkpoint`` draws the groups of a
random-weight model (a demonstration of the mechanics only).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from pathlib import Path
from typing import Any, List, Optional, Sequence, Tuple, Union

import torch

from fastast_sb.models.layers import patch_grid

logger = logging.getLogger(__name__)

PathLike = Union[str, Path]

#: Golden-ratio hue step: consecutive group ids get far-apart hues.
_HUE_STEP = (math.sqrt(5) - 1) / 2


def merge_groups(
    source: torch.Tensor,
    num_prefix: int = 2,
    grid: Optional[Tuple[int, int]] = None,
) -> torch.Tensor:
    """Group id of every patch: the output token it was merged into.

    Arguments
    ---------
    source : torch.Tensor
        [N_out, N_in] source map of one example (``[1, N_out, N_in]`` is
        accepted): row j marks the input tokens merged into output token j.
    num_prefix : int
        Leading input tokens that are not patches (CLS, DIST).
    grid : (int, int), optional
        Patch grid (f_dim, t_dim), frequency-major like ``PatchEmbed``;
        a single row (1, N_in - num_prefix) by default.

    Returns
    -------
    torch.Tensor
        [f_dim, t_dim] long tensor; entry (f, t) is the row of ``source``
        holding patch ``f * t_dim + t``.

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
    if grid is None:
        grid = (1, num_patches)
    f_dim, t_dim = grid
    if f_dim * t_dim != num_patches:
        raise ValueError(
            f"grid {tuple(grid)} has {f_dim * t_dim} patches, the source map "
            f"has {num_patches} ({source.shape[1]} inputs - {num_prefix} "
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
    """For each spectrogram cell along one axis, the nearest patch centre.

    Patch i covers cells ``i * stride .. i * stride + patch``; its centre is
    ``i * stride + patch / 2`` and cell k's is ``k + 1/2``.

    Arguments
    ---------
    length : int
        Cells along the axis (frames or mel bins).
    num_patches : int
        Patches along the axis.
    patch, stride : int
        Patch side and stride.

    Returns
    -------
    torch.Tensor
        [length] long tensor of patch indices (non-decreasing).

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


def group_image(
    groups: torch.Tensor,
    num_frames: int,
    num_bins: int,
    patch: int = 16,
    fstride: int = 10,
    tstride: int = 10,
) -> torch.Tensor:
    """Group id of every spectrogram cell (see :func:`nearest_patch`).

    Arguments
    ---------
    groups : torch.Tensor
        [f_dim, t_dim] from :func:`merge_groups`.
    num_frames, num_bins : int
        Spectrogram size T and F.
    patch, fstride, tstride : int
        Patch side and strides.

    Returns
    -------
    torch.Tensor
        [F, T] group ids (row 0 = lowest mel bin).

    Example
    -------
    >>> group_image(torch.tensor([[4, 5], [6, 6]]), 26, 26).shape
    torch.Size([26, 26])
    """
    f_dim, t_dim = groups.shape
    fmap = nearest_patch(num_bins, f_dim, patch, fstride)
    tmap = nearest_patch(num_frames, t_dim, patch, tstride)
    return groups[fmap][:, tmap]


def _extents(index: torch.Tensor, n: int) -> Tuple[List[int], List[int]]:
    """First and one-past-last cell of each patch's region."""
    ids = torch.arange(n)
    lo = torch.searchsorted(index, ids, right=False).tolist()
    hi = torch.searchsorted(index, ids, right=True).tolist()
    return lo, hi


def _boundaries(
    groups: torch.Tensor, fmap: torch.Tensor, tmap: torch.Tensor
) -> List[Tuple[Tuple[float, float], Tuple[float, float]]]:
    """Line segments (x = frame, y = bin) between patches of other groups."""
    f_dim, t_dim = groups.shape
    f_lo, f_hi = _extents(fmap, f_dim)
    t_lo, t_hi = _extents(tmap, t_dim)
    segments = []
    for f, t in (groups[:, 1:] != groups[:, :-1]).nonzero().tolist():
        x = t_hi[t]
        segments.append(((x, f_lo[f]), (x, f_hi[f])))
    for f, t in (groups[1:, :] != groups[:-1, :]).nonzero().tolist():
        y = f_hi[f]
        segments.append(((t_lo[t], y), (t_hi[t], y)))
    return segments


def _colours(cells: torch.Tensor, alpha: float):
    """RGBA image [F, T, 4]: one hue per group id."""
    import numpy as np
    from matplotlib.colors import hsv_to_rgb

    ids, inverse = torch.unique(cells, return_inverse=True)
    hues = (np.arange(len(ids)) * _HUE_STEP) % 1.0
    hsv = np.stack([hues, np.full_like(hues, 0.8), np.ones_like(hues)], 1)
    palette = np.concatenate(
        [hsv_to_rgb(hsv), np.full((len(ids), 1), alpha)], 1
    )
    return palette[inverse.numpy()]


def plot_merge_groups(
    fbank: torch.Tensor,
    source: torch.Tensor,
    out_path: PathLike,
    num_prefix: int = 2,
    patch: int = 16,
    fstride: int = 10,
    tstride: int = 10,
    alpha: float = 0.35,
    title: Optional[str] = None,
    dpi: int = 120,
) -> Path:
    """Draw the merged-token groups over the spectrogram and save a PNG.

    Frequency points up (mel bin 0 at the bottom), time to the right. Each
    group gets one semi-transparent colour and a white outline. Rendering
    uses matplotlib's Agg canvas directly (no pyplot, no global backend).

    Arguments
    ---------
    fbank : torch.Tensor
        [T, F] log-mel spectrogram (``[1, T, F]`` is accepted).
    source : torch.Tensor
        [N_out, N_in] source map of the last block for this example.
    out_path : str or Path
        Where to write the PNG (parent folders are created).
    num_prefix : int
        Leading non-patch tokens (CLS, DIST).
    patch, fstride, tstride : int
        The model's patch side and strides.
    alpha : float
        Opacity of the group colours.
    title : str, optional
        Figure title; token counts by default.
    dpi : int
        Resolution.

    Returns
    -------
    Path
        ``out_path``.

    Example
    -------
    >>> import tempfile, os
    >>> from fastast_sb.tome.merge import bipartite_soft_matching, merge_source
    >>> fbank = torch.randn(56, 36)  # T=56, F=36: a 3 x 5 patch grid
    >>> tokens = torch.randn(1, 2 + 15, 8)
    >>> merge, _ = bipartite_soft_matching(tokens, r=6)
    >>> source = merge_source(merge, tokens)[0]
    >>> tmp = tempfile.TemporaryDirectory()
    >>> path = plot_merge_groups(fbank, source, os.path.join(tmp.name, "g.png"))
    >>> path.read_bytes()[:4] == b"\\x89PNG"
    True
    >>> tmp.cleanup()
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.collections import LineCollection
    from matplotlib.figure import Figure

    if fbank.ndim == 3 and fbank.shape[0] == 1:
        fbank = fbank[0]
    if fbank.ndim != 2:
        raise ValueError(
            f"fbank must be one spectrogram [T, F], got {tuple(fbank.shape)}"
        )
    num_frames, num_bins = fbank.shape
    grid = (
        patch_grid(num_bins, patch, fstride),
        patch_grid(num_frames, patch, tstride),
    )
    groups = merge_groups(source, num_prefix, grid)
    fmap = nearest_patch(num_bins, grid[0], patch, fstride)
    tmap = nearest_patch(num_frames, grid[1], patch, tstride)
    cells = groups[fmap][:, tmap]  # [F, T]

    width = min(max(4.0 + num_frames / 80.0, 6.0), 18.0)
    fig = Figure(figsize=(width, 4.0), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    extent = (0, num_frames, 0, num_bins)
    spec = fbank.detach().float().cpu().T  # [F, T]
    low, high = torch.quantile(spec.flatten(), torch.tensor([0.02, 0.995]))
    ax.imshow(
        spec.numpy(),
        origin="lower",
        aspect="auto",
        cmap="gray",
        vmin=float(low),
        vmax=float(high),
        extent=extent,
        interpolation="nearest",
    )
    ax.imshow(
        _colours(cells, alpha),
        origin="lower",
        aspect="auto",
        extent=extent,
        interpolation="nearest",
    )
    ax.add_collection(
        LineCollection(
            _boundaries(groups, fmap, tmap), colors="white", linewidths=0.7
        )
    )
    ax.set_xlim(0, num_frames)
    ax.set_ylim(0, num_bins)
    ax.set_xlabel("frame (10 ms)")
    ax.set_ylabel("mel bin")
    num_groups = int(torch.unique(groups).numel())
    if title is None:
        title = (
            f"{num_groups} merged tokens from {grid[0] * grid[1]} patches "
            f"(grid {grid[0]} x {grid[1]})"
        )
    ax.set_title(title)
    fig.tight_layout()
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, format="png")
    logger.info("wrote %s (%d groups)", out_path, num_groups)
    return out_path


def visualize(
    model: Any,
    fbank: torch.Tensor,
    feats: torch.Tensor,
    out_path: PathLike,
    r: Any = None,
    title: Optional[str] = None,
) -> Tuple[Path, Any]:
    """Run an AST with source tracing and draw its last block's groups.

    Arguments
    ---------
    model : AST
        The lobe (put it in eval mode first for inference behaviour).
    fbank : torch.Tensor
        [T, F] spectrogram to draw (e.g. the raw log-mel).
    feats : torch.Tensor
        [T, F] or [1, T, F] model input (the normalised features).
    out_path : str or Path
        PNG to write.
    r : int, tuple, list or dict, optional
        Merge schedule for this call; the model's ``r`` by default.
    title : str, optional
        Figure title.

    Returns
    -------
    path : Path
        The PNG.
    trace : TokenTrace
        Token counts, schedule and source map of the run.

    Example
    -------
    >>> import tempfile, os
    >>> from fastast_sb.models.ast import AST
    >>> model = AST(input_tdim=64, preset="tiny", depth=2).eval()
    >>> feats = torch.randn(64, 128)
    >>> tmp = tempfile.TemporaryDirectory()
    >>> path, trace = visualize(model, feats, feats,
    ...                         os.path.join(tmp.name, "g.png"), r=20)
    >>> trace.counts
    [62, 42, 22]
    >>> tmp.cleanup()
    """
    if feats.ndim == 2:
        feats = feats.unsqueeze(0)
    with torch.no_grad():
        trace = model.forward_tokens(feats, r=r, trace_source=True)
    if trace.source is None:  # nothing merged: every token is its own group
        n = trace.tokens.shape[1]
        source = torch.eye(n, dtype=trace.tokens.dtype)
    else:
        source = trace.source[0]
    proj = model.patch_embed.proj
    path = plot_merge_groups(
        fbank,
        source,
        out_path,
        num_prefix=model.num_prefix_tokens,
        patch=int(proj.kernel_size[0]),
        fstride=int(proj.stride[0]),
        tstride=int(proj.stride[1]),
        title=title,
    )
    return path, trace


# ------------------------------------------------------------ command line
def load_audio(path: PathLike, sample_rate: int = 16000) -> torch.Tensor:
    """Read any soundfile format as a mono waveform [S] at ``sample_rate``.

    Arguments
    ---------
    path : str or Path
        Audio file.
    sample_rate : int
        Target rate (resampled with torchaudio's functional resample).

    Returns
    -------
    torch.Tensor
        [S] float waveform (channels averaged).

    Example
    -------
    >>> import tempfile, os, soundfile
    >>> tmp = tempfile.TemporaryDirectory()
    >>> path = os.path.join(tmp.name, "a.wav")
    >>> soundfile.write(path, torch.zeros(8000, 2).numpy(), 8000)
    >>> load_audio(path).shape
    torch.Size([16000])
    >>> tmp.cleanup()
    """
    import soundfile

    data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    wav = torch.from_numpy(data).mean(dim=1)  # [S]
    if rate != sample_rate:
        import torchaudio.functional as AF

        wav = AF.resample(wav, rate, sample_rate)
    return wav


def parse_r_arg(text: str) -> Any:
    """``--r`` value: an int, or JSON (a list or a dict).

    Example
    -------
    >>> parse_r_arg("16"), parse_r_arg('{"flops": 0.5}'), parse_r_arg("[8, 4]")
    (16, {'flops': 0.5}, [8, 4])
    """
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(
            f"--r must be an int or JSON such as '{{\"flops\": 0.5}}' or "
            f"'[16, 8]', got {text!r}"
        ) from err


def build_parser() -> argparse.ArgumentParser:
    """Arguments of ``python -m fastast_sb.tome.visualize``."""
    from fastast_sb.features import NORM_STATS

    parser = argparse.ArgumentParser(
        prog="python -m fastast_sb.tome.visualize",
        description="Draw an AST's merged-token groups over the spectrogram.",
    )
    parser.add_argument("audio", type=Path, help="any soundfile-readable file")
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument(
        "--checkpoint",
        type=Path,
        help="AST checkpoint (ours, original AST or Hugging Face)",
    )
    model.add_argument(
        "--preset",
        choices=["tiny", "small", "base"],
        help="random weights instead of a checkpoint (a demonstration)",
    )
    parser.add_argument(
        "--r",
        type=parse_r_arg,
        default=None,
        help="merge schedule: an int or JSON, e.g. '{\"flops\": 0.5}' "
        "(default: the model's own)",
    )
    parser.add_argument("--out", type=Path, default=Path("merged.png"))
    parser.add_argument(
        "--target-length",
        type=int,
        default=None,
        help="frames T (default: the checkpoint's, or the clip's length)",
    )
    parser.add_argument(
        "--norm",
        choices=sorted(NORM_STATS),
        default="audioset",
        help="dataset statistics for the feature normalisation",
    )
    parser.add_argument("--depth", type=int, default=12, help="with --preset")
    parser.add_argument("--seed", type=int, default=0, help="with --preset")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point; returns the exit status."""
    from fastast_sb.features import NORM_STATS, GlobalNorm, KaldiFbank
    from fastast_sb.models.ast import AST

    args = build_parser().parse_args(argv)
    wav = load_audio(args.audio)
    if args.checkpoint is not None:
        from fastast_sb.models.convert import load_ast

        model, _ = load_ast(args.checkpoint, input_tdim=args.target_length)
    else:
        frames = args.target_length
        if frames is None:
            frames = KaldiFbank()(wav[None]).shape[1]
        torch.manual_seed(args.seed)
        model = AST(input_tdim=frames, preset=args.preset, depth=args.depth)
    model.eval()
    fbank = KaldiFbank(target_length=model.input_tdim)(wav[None])  # [1, T, F]
    feats = GlobalNorm(*NORM_STATS[args.norm])(fbank)
    path, trace = visualize(model, fbank[0], feats, args.out, r=args.r)
    print(f"wrote {path}")
    print(
        f"tokens per block: {trace.counts} (schedule {trace.schedule}, "
        f"{trace.tokens.shape[1]} tokens after the last block)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
