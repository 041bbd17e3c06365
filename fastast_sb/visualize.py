"""Merged-token groups drawn over the log-mel spectrogram (PNG).

Runs an AST with source tracing and draws the groups of
:mod:`fastast_sb.tome.groups`, one translucent colour and a white outline
each (ToMe's Fig. 4, Bolya et al., ICLR 2023; FastAST, Behera et al.,
Interspeech 2024). Command line (``--preset tiny`` instead of
``--checkpoint``: random weights, a demonstration only)::

    python -m fastast_sb.visualize clip.ogg --checkpoint ast.pt \\
        --r 16 --out merged.png [--target-length 512] [--norm esc50]
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from pathlib import Path
from typing import Any, Optional, Sequence, Tuple, Union

import torch

from fastast_sb.audio import load_audio
from fastast_sb.features import NORM_STATS, GlobalNorm, KaldiFbank
from fastast_sb.models.ast import AST, load_ast
from fastast_sb.models.layers import patch_grid
from fastast_sb.tome.groups import boundaries, cell_maps, merge_groups
from fastast_sb.tome.schedule import FORMS, schedule_arg

logger = logging.getLogger(__name__)

PathLike = Union[str, Path]

#: Golden-ratio hue step: consecutive group ids get far-apart hues.
_HUE_STEP = (math.sqrt(5) - 1) / 2


def _colours(cells: torch.Tensor, alpha: float):
    """RGBA image [F, T, 4]: one hue per group id."""
    import numpy as np
    from matplotlib.colors import hsv_to_rgb

    ids, inverse = torch.unique(cells, return_inverse=True)
    hues = (np.arange(len(ids)) * _HUE_STEP) % 1.0
    hsv = np.stack([hues, np.full_like(hues, 0.8), np.ones_like(hues)], 1)
    palette = np.c_[hsv_to_rgb(hsv), np.full(len(ids), alpha)]  # [G, 4]
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
    """Draw the merged-token groups over the spectrogram; write a PNG.

    Mel bin 0 at the bottom, time to the right; each group one colour of
    opacity ``alpha`` and a white outline (matplotlib's Agg canvas, no
    pyplot). ``fbank`` is the [T, F] (or [1, T, F]) log-mel spectrogram,
    ``source`` this example's [N_out, N_in] source map with ``num_prefix``
    leading non-patch tokens; ``patch``, ``fstride``, ``tstride`` are the
    model's; ``title`` defaults to the token counts. Returns ``out_path``
    (parent folders are created).

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
    fmap, tmap = cell_maps(num_frames, num_bins, grid, patch, fstride, tstride)
    cells = groups[fmap][:, tmap]  # [F, T]

    width = min(max(4.0 + num_frames / 80.0, 6.0), 18.0)
    fig = Figure(figsize=(width, 4.0), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    shown = {"origin": "lower", "aspect": "auto", "interpolation": "nearest"}
    shown["extent"] = (0, num_frames, 0, num_bins)
    spec = fbank.detach().float().cpu().T  # [F, T]
    q = torch.tensor([0.02, 0.995])
    low, high = torch.quantile(spec.flatten(), q).tolist()
    ax.imshow(spec.numpy(), cmap="gray", vmin=low, vmax=high, **shown)
    ax.imshow(_colours(cells, alpha), **shown)
    segments = boundaries(groups, fmap, tmap)
    ax.add_collection(LineCollection(segments, colors="white", linewidths=0.7))
    ax.set(xlim=(0, num_frames), ylim=(0, num_bins), xlabel="frame (10 ms)")
    num_groups = int(torch.unique(groups).numel())
    default = (
        f"{num_groups} merged tokens from {grid[0] * grid[1]} patches "
        f"(grid {grid[0]} x {grid[1]})"
    )
    ax.set(ylabel="mel bin", title=default if title is None else title)
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

    ``fbank`` is the [T, F] spectrogram to draw (e.g. the raw log-mel),
    ``feats`` the [T, F] or [1, T, F] model input (normalised), ``r`` the
    merge schedule of the call (the model's by default). Returns the PNG's
    path and the :class:`~fastast_sb.models.ast.TokenTrace` (token counts,
    schedule, source map).

    Example
    -------
    >>> import tempfile, os
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


# ----------------------------------------------------------- command line
def build_parser() -> argparse.ArgumentParser:
    """Arguments of ``python -m fastast_sb.visualize``."""
    parser = argparse.ArgumentParser(
        prog="python -m fastast_sb.visualize",
        description="Draw an AST's merged-token groups over the spectrogram.",
    )
    add = parser.add_argument
    add("audio", type=Path, help="any soundfile-readable file")
    model = parser.add_mutually_exclusive_group(required=True)
    ckpt_help = "AST checkpoint (ours, original AST or Hugging Face)"
    model.add_argument("--checkpoint", type=Path, help=ckpt_help)
    preset_help = "random weights instead of a checkpoint (a demonstration)"
    presets = ["tiny", "small", "base"]
    model.add_argument("--preset", choices=presets, help=preset_help)
    r_help = f"merge schedule: {FORMS} (default: the model's own)"
    add("--r", type=schedule_arg, default=None, help=r_help)
    add("--out", type=Path, default=Path("merged.png"))
    t_help = "frames T (default: the checkpoint's, or the clip's length)"
    add("--target-length", type=int, help=t_help)
    norm_help = "dataset statistics for the feature normalisation"
    norms = sorted(NORM_STATS)
    add("--norm", choices=norms, default="audioset", help=norm_help)
    add("--depth", type=int, default=12, help="with --preset")
    add("--seed", type=int, default=0, help="with --preset")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point; returns the exit status."""
    args = build_parser().parse_args(argv)
    wav = load_audio(args.audio)
    if args.checkpoint is not None:
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
