"""PaSST: a ViT audio tagger with structured patchout, fed AST features.

Our Patchout faSt Spectrogram Transformer: overlapping 16x16 patches on a
frequency-major grid plus a frequency embedding ``[1, D, f_dim, 1]`` and a
time embedding ``[1, D, 1, t_dim]`` (CLS and DIST get ``[1, 2, D]``),
structured patchout in training (random time columns and frequency rows
dropped for the whole batch), pre-LN blocks without merging, a final
LayerNorm and ``logits = head((x_CLS + x_DIST) / 2)``. Shorter inputs use a
cut of the time embedding (at a random offset in training). Names follow
PaSST's: its state dicts load after :func:`convert_passt_state_dict`.

Released PaSST weights expect their own 32 kHz front end: fine-tune them
(or train the model) on the student's 16 kHz AST features first.

References
----------
K. Koutini, J. Schlüter, H. Eghbal-zadeh, G. Widmer, "Efficient Training of
Audio Transformers with Patchout", Interspeech 2022.

H. Touvron et al., "Training data-efficient image transformers & distillation
through attention", ICML 2021.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, Mapping, Optional, Tuple

import torch
from torch import nn

from fastast_sb.checkpoint import strip_prefix
from fastast_sb.models.layers import (
    Block,
    PatchEmbed,
    init_vit_weights,
    patch_grid,
)

logger = logging.getLogger(__name__)

__all__ = ["PASST_PRESETS", "PaSST", "convert_passt_state_dict"]

#: (embed_dim, depth, num_heads); "mini" is for tests and smoke runs.
PASST_PRESETS: Dict[str, Tuple[int, int, int]] = {
    "mini": (64, 2, 2),
    "tiny": (192, 12, 3),
    "small": (384, 12, 6),
    "base": (768, 12, 12),
}


class PaSST(nn.Module):
    """Patchout spectrogram transformer over AST features.

    Arguments
    ---------
    input_tdim, input_fdim : int
        Largest number of frames T (sets the time embedding) and mel bins F.
    patch_size, fstride, tstride : int
        Square patch side and the strides along frequency and time.
    preset : str, optional
        "mini", "tiny", "small" or "base" (the default): ``embed_dim``,
        ``depth`` and ``num_heads`` unless given.
    embed_dim, depth, num_heads : int, optional
        Width D, blocks and attention heads.
    num_classes : int
        Output logits.
    s_patchout_t, s_patchout_f : int
        Time columns / frequency rows of the grid dropped in training.
    mlp_ratio, drop_rate, attn_drop_rate, drop_path_rate, norm_eps : float
        MLP width over D; dropout after embeddings and projections, on
        attention weights; stochastic depth of the last block (linear from
        0); LayerNorm epsilon.

    Example
    -------
    >>> model = PaSST(input_tdim=128, preset="mini", num_classes=5).eval()
    >>> model(torch.randn(2, 128, 128)).shape  # [B, T, F] -> [B, C]
    torch.Size([2, 5])
    >>> model.grid, model.num_tokens
    ((12, 12), 146)
    """

    def __init__(
        self,
        input_tdim: int = 998,
        input_fdim: int = 128,
        patch_size: int = 16,
        fstride: int = 10,
        tstride: int = 10,
        preset: Optional[str] = None,
        embed_dim: Optional[int] = None,
        depth: Optional[int] = None,
        num_heads: Optional[int] = None,
        num_classes: int = 527,
        s_patchout_t: int = 0,
        s_patchout_f: int = 0,
        mlp_ratio: float = 4.0,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        norm_eps: float = 1e-6,
    ) -> None:
        super().__init__()
        if preset is not None and preset not in PASST_PRESETS:
            raise ValueError(
                f"unknown PaSST preset {preset!r}; expected one of "
                f"{sorted(PASST_PRESETS)}"
            )
        dims = PASST_PRESETS[preset or "base"]
        embed_dim = dims[0] if embed_dim is None else embed_dim
        depth = dims[1] if depth is None else depth
        num_heads = dims[2] if num_heads is None else num_heads
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        self.patch_embed = PatchEmbed(  # checks the input fits a patch
            input_fdim, input_tdim, patch_size, fstride, tstride, embed_dim
        )
        f_dim, t_dim = self.patch_embed.f_dim, self.patch_embed.t_dim
        if not 0 <= s_patchout_t < t_dim:
            raise ValueError(
                f"s_patchout_t={s_patchout_t} must be in [0, {t_dim}): the "
                f"patch grid has {t_dim} time columns"
            )
        if not 0 <= s_patchout_f < f_dim:
            raise ValueError(
                f"s_patchout_f={s_patchout_f} must be in [0, {f_dim}): the "
                f"patch grid has {f_dim} frequency rows"
            )
        self.input_tdim = input_tdim
        self.input_fdim = input_fdim
        self.patch_size = patch_size
        self.tstride = tstride
        self.embed_dim = embed_dim
        self.depth = depth
        self.num_heads = num_heads
        self.num_classes = num_classes
        self.s_patchout_t = s_patchout_t
        self.s_patchout_f = s_patchout_f
        self.num_prefix_tokens = 2
        self.num_tokens = self.patch_embed.num_patches + self.num_prefix_tokens

        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.dist_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.new_pos_embed = nn.Parameter(torch.zeros(1, 2, embed_dim))
        self.freq_new_pos_embed = nn.Parameter(
            torch.zeros(1, embed_dim, f_dim, 1)
        )
        self.time_new_pos_embed = nn.Parameter(
            torch.zeros(1, embed_dim, 1, t_dim)
        )
        self.pos_drop = nn.Dropout(drop_rate)
        rates = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]
        self.blocks = nn.ModuleList(
            Block(
                embed_dim,
                num_heads,
                mlp_ratio,
                qkv_bias=True,
                drop=drop_rate,
                attn_drop=attn_drop_rate,
                drop_path=rate,
                norm_eps=norm_eps,
            )
            for rate in rates
        )
        self.norm = nn.LayerNorm(embed_dim, eps=norm_eps)
        self.head = nn.Sequential(
            nn.LayerNorm(embed_dim, eps=norm_eps),
            nn.Linear(embed_dim, num_classes),
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """timm/DeiT initialisation: truncated normal (std 0.02)."""
        # Own parameters: CLS, DIST and the three positional embeddings.
        init_vit_weights(self, *self.parameters(recurse=False))

    @classmethod
    def from_state_dict(
        cls, state: Mapping[str, torch.Tensor], **overrides: Any
    ) -> PaSST:
        """Build a PaSST whose shape fits ``state``, loaded strictly, in eval.

        ``embed_dim``, ``depth`` and ``num_classes`` are read from the
        state, ``input_tdim`` is the largest frame count whose grid has as
        many columns as the time embedding, ``num_heads`` is
        ``embed_dim // 64``; ``overrides`` (constructor arguments) win.

        Example
        -------
        >>> saved = PaSST(input_tdim=128, preset="mini", num_classes=3)
        >>> model = PaSST.from_state_dict(saved.state_dict(), num_heads=2)
        >>> model.grid, model.input_tdim, model.num_classes, model.training
        ((12, 12), 135, 3, False)
        """
        state = convert_passt_state_dict(state)
        needed = ("cls_token", "time_new_pos_embed", "head.1.bias")
        missing = [k for k in needed if k not in state]
        if missing:
            raise ValueError(f"not a PaSST state dict: missing keys {missing}")
        patch = int(overrides.get("patch_size", 16))
        tstride = int(overrides.get("tstride", 10))
        embed_dim = int(state["cls_token"].shape[-1])
        t_dim = int(state["time_new_pos_embed"].shape[3])
        depth = 0
        while f"blocks.{depth}.norm1.weight" in state:
            depth += 1
        config = {
            "input_tdim": t_dim * tstride + patch - 1,
            "embed_dim": embed_dim,
            "depth": depth,
            "num_heads": max(embed_dim // 64, 1),
            "num_classes": int(state["head.1.bias"].shape[0]),
        }
        model = cls(**{**config, **overrides})
        model.load_state_dict(state, strict=True)
        dims = (model.embed_dim, model.depth, model.grid, model.num_classes)
        logger.info("Loaded PaSST (D=%d, depth %d, grid %s, %d classes)", *dims)
        return model.eval()

    @property
    def grid(self) -> Tuple[int, int]:
        """Patch grid ``(f_dim, t_dim)`` of an ``input_tdim``-frame input."""
        return self.patch_embed.f_dim, self.patch_embed.t_dim

    def _check_input(self, feats: torch.Tensor) -> None:
        if feats.dim() != 3:
            raise ValueError(
                f"PaSST expects features [B, T, F], got {tuple(feats.shape)}"
            )
        frames, bins = feats.shape[1], feats.shape[2]
        if bins != self.input_fdim:
            raise ValueError(
                f"PaSST expects {self.input_fdim} mel bins, got {bins} "
                f"(features of shape {tuple(feats.shape)})"
            )
        if not self.patch_size <= frames <= self.input_tdim:
            raise ValueError(
                f"PaSST expects {self.patch_size} to {self.input_tdim} frames, "
                f"got {frames}: set the fbank target_length to at most the "
                "model's input_tdim"
            )

    def _time_embedding(self, t_dim: int) -> torch.Tensor:
        """The time embedding ``[1, D, 1, t_dim]`` for ``t_dim`` columns."""
        full = self.time_new_pos_embed.shape[-1]
        if t_dim == full:
            return self.time_new_pos_embed
        offset = 0
        if self.training:
            offset = int(torch.randint(full - t_dim + 1, (1,)).item())
        return self.time_new_pos_embed[..., offset : offset + t_dim]

    def _patchout(self, x: torch.Tensor) -> torch.Tensor:
        """Drop random time columns / frequency rows of ``x [B, D, f, t]``."""
        if not self.training:
            return x
        if self.s_patchout_t >= x.shape[3]:  # f_dim is checked in __init__
            raise ValueError(
                f"s_patchout_t={self.s_patchout_t} would drop all "
                f"{x.shape[3]} time columns of this input"
            )
        for dim, drop in ((3, self.s_patchout_t), (2, self.s_patchout_f)):
            if drop:
                keep = torch.randperm(x.shape[dim], device=x.device)
                keep = keep[: x.shape[dim] - drop].sort().values
                x = x.index_select(dim, keep)  # [B, D, f - s_f, t - s_t]
        return x

    def forward_features(
        self, feats: torch.Tensor, pooled_only: bool = False
    ) -> torch.Tensor:
        """Final tokens ``[B, 2 + N, D]`` (CLS, DIST, the patches patchout
        kept) of AST features ``[B, T, F]``; ``pooled_only``: CLS and DIST
        only, ``[B, 2, D]`` (the last block computes no other token: see
        :meth:`~fastast_sb.models.layers.Block.forward_prefix`).

        Example
        -------
        >>> model = PaSST(input_tdim=128, preset="mini", s_patchout_t=4)
        >>> model.train().forward_features(torch.randn(1, 128, 128)).shape
        torch.Size([1, 98, 64])
        >>> model.eval().forward_features(torch.randn(1, 128, 128)).shape
        torch.Size([1, 146, 64])
        """
        self._check_input(feats)
        b = feats.shape[0]
        f_dim = self.patch_embed.f_dim
        t_dim = patch_grid(feats.shape[1], self.patch_size, self.tstride)
        x = self.patch_embed(feats)  # [B, f * t, D]
        x = x.transpose(1, 2).reshape(b, self.embed_dim, f_dim, t_dim)
        x = x + self.freq_new_pos_embed + self._time_embedding(t_dim)
        x = self._patchout(x)  # [B, D, f', t']
        x = x.flatten(2).transpose(1, 2)  # [B, f' * t', D]
        prefix = torch.cat([self.cls_token, self.dist_token], dim=1)
        prefix = (prefix + self.new_pos_embed).expand(b, -1, -1)  # [B, 2, D]
        x = self.pos_drop(torch.cat([prefix, x], dim=1))  # [B, 2 + N, D]
        last = len(self.blocks) - 1 if pooled_only else None
        for i, block in enumerate(self.blocks):
            x, _, _ = block(x, keep=2 if i == last else None)  # last: [B, 2, D]
        return self.norm(x)

    def forward(
        self, feats: torch.Tensor, lens: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """Logits ``[B, num_classes]`` of AST features ``[B, T, F]``,
        ``T <= input_tdim`` (``lens`` unused: padding frames are patches)."""
        x = self.forward_features(feats, pooled_only=True)
        return self.head((x[:, 0] + x[:, 1]) / 2)


def convert_passt_state_dict(
    state: Mapping[str, torch.Tensor],
) -> Dict[str, torch.Tensor]:
    """Map a PaSST state dict onto :class:`PaSST`'s keys.

    Strips a ``module.`` / ``net.`` prefix (training wrappers) and drops the
    distillation head ``head_dist.*`` (PaSST classifies with ``head``).

    Example
    -------
    >>> model = PaSST(input_tdim=128, preset="mini", depth=1)
    >>> state = {"net." + k: v for k, v in model.state_dict().items()}
    >>> state["net.head_dist.weight"] = torch.zeros(527, 64)
    >>> model.load_state_dict(convert_passt_state_dict(state))
    <All keys matched successfully>
    """
    state = strip_prefix(state, ("module.", "net."))
    return {k: v for k, v in state.items() if not k.startswith("head_dist.")}
