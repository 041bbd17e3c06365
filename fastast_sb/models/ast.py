"""The Audio Spectrogram Transformer as a SpeechBrain lobe, with ToMe.

Input: normalised Kaldi fbank features [B, T, F]; output: the pooled
embedding ``(h_CLS + h_DIST) / 2`` as [B, 1, D] (SpeechBrain's embedding
shape), to be fed to :class:`ASTHead`.

ToMe merges tokens in every block between the attention residual and the
MLP, by the schedule ``r`` (an attribute, set by :func:`.patch.apply_tome`, or
a per-call argument); the resolved schedule, token sizes and source map live
in the forward call, so one model can serve threads with different ``r``.

References:
- Y. Gong, Y.-A. Chung, J. Glass, "AST: Audio Spectrogram Transformer",
  Interspeech 2021.
- D. Bolya et al., "Token Merging: Your ViT But Faster", ICLR 2023.
- S. R. Behera et al., "FastAST: Accelerating Audio Spectrogram Transformer
  via Token Merging and Cross-Model Knowledge Distillation", 2024.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn

from fastast_sb.models.checkpoints import load_checked, read_pretrained
from fastast_sb.models.head import ASTHead, load_head
from fastast_sb.models.layers import Block, PatchEmbed, init_vit_weights
from fastast_sb.models.layers import is_tracing as _is_tracing
from fastast_sb.models.trace import TokenTrace, all_finite
from fastast_sb.tome.flops import (
    encoder_flops,
    patch_embed_flops,
    token_counts,
)
from fastast_sb.tome.schedule import Schedule, parse_schedule

logger = logging.getLogger(__name__)

#: (tokens [B, N_out, D], size, source, per-block schedule) of an encoding.
Encoded = Tuple[Tensor, Optional[Tensor], Optional[Tensor], List[int]]
#: (embed_dim, depth, num_heads) of the DeiT sizes AST uses.
PRESETS: Dict[str, Tuple[int, int, int]] = {
    "tiny": (192, 12, 3),
    "small": (384, 12, 6),
    "base": (768, 12, 12),
}


class AST(nn.Module):
    """Audio Spectrogram Transformer encoder (CLS + DIST tokens) with ToMe.

    Arguments
    ---------
    input_tdim, input_fdim : int
        Frames per input (AudioSet 1024, ESC-50 512, Speech Commands 128);
        mel bins.
    fstride, tstride, patch_size : int
        Patch strides along frequency and time (10 = AST's overlap); square
        patch side.
    preset : str, optional
        "tiny", "small" or "base": sets embed_dim and num_heads, not depth.
    embed_dim, depth, num_heads : int
        Width, blocks and heads.
    mlp_ratio, qkv_bias : float, bool
        MLP hidden size over width; bias in the qkv projection.
    drop_rate, attn_drop_rate, drop_path_rate : float
        Dropout after projections and on attention weights; stochastic depth
        of the last block (linearly increasing).
    norm_eps : float
        LayerNorm epsilon (1e-6 in AST, 1e-12 in transformers' default).
    r : Schedule, int, str or list
        Merge schedule (:func:`fastast_sb.tome.schedule.parse_schedule`).
    prop_attn, trace_source : bool
        Proportional attention (log-size bias) once tokens are merged; track
        source maps in :meth:`forward_tokens` by default.
    check_finite : bool
        Reject NaN/Inf features on the CPU (not while tracing, nor on GPUs,
        where it would sync the device; the Brain checks the loss there).
    cpu_batch_tokens : int, optional
        Single-threaded CPU inference without grad runs sub-batches of at
        most this many tokens: the same numbers, with tensors below glibc's
        mmap threshold (4-7 % faster for base, T=512, batch 8). ``None`` or
        0 turns it off.

    Example
    -------
    >>> model = AST(input_tdim=128, preset="tiny", depth=2).eval()
    >>> model(torch.randn(2, 128, 128)).shape
    torch.Size([2, 1, 192])
    >>> model.num_tokens
    146
    >>> model.r = 8
    >>> model.forward_tokens(torch.randn(1, 128, 128)).counts
    [146, 138, 130]
    """

    def __init__(
        self,
        input_tdim: int = 1024,
        input_fdim: int = 128,
        fstride: int = 10,
        tstride: int = 10,
        patch_size: int = 16,
        preset: Optional[str] = None,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        norm_eps: float = 1e-6,
        r: Any = 0,
        prop_attn: bool = True,
        trace_source: bool = False,
        check_finite: bool = True,
        cpu_batch_tokens: Optional[int] = 1536,
    ) -> None:
        super().__init__()
        if preset is not None:
            if preset not in PRESETS:
                raise ValueError(
                    f"unknown AST preset {preset!r}; expected one of "
                    f"{sorted(PRESETS)}"
                )
            embed_dim, _, num_heads = PRESETS[preset]
        self.input_tdim = input_tdim
        self.input_fdim = input_fdim
        self.embed_dim = embed_dim
        self.depth = depth
        self.num_heads = num_heads
        self.mlp_ratio = mlp_ratio
        self.prop_attn = prop_attn
        self.trace_source = trace_source
        self.check_finite = check_finite
        if cpu_batch_tokens is not None and cpu_batch_tokens < 0:
            raise ValueError(
                f"cpu_batch_tokens must be >= 0 or None, got {cpu_batch_tokens}"
            )
        self.cpu_batch_tokens = cpu_batch_tokens
        self.num_prefix_tokens = 2

        self.patch_embed = PatchEmbed(
            input_fdim, input_tdim, patch_size, fstride, tstride, embed_dim
        )
        self.num_tokens = self.patch_embed.num_patches + self.num_prefix_tokens
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.dist_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(
            torch.zeros(1, self.num_tokens, embed_dim)
        )
        self.pos_drop = nn.Dropout(drop_rate)
        rates = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]
        args = (embed_dim, num_heads, mlp_ratio, qkv_bias, drop_rate)
        self.blocks = nn.ModuleList(
            Block(*args, attn_drop_rate, rate, norm_eps) for rate in rates
        )
        self.norm = nn.LayerNorm(embed_dim, eps=norm_eps)
        self.r = r
        self.reset_parameters()

    @classmethod
    def from_pretrained(
        cls, path: str, input_tdim: Optional[int] = None, **overrides
    ) -> AST:
        """An AST from any checkpoint :func:`load_ast` reads (``overrides``:
        further constructor arguments, e.g. ``r``)."""
        return load_ast(path, input_tdim, **overrides)[0]

    def reset_parameters(self) -> None:
        """timm/DeiT initialisation: truncated normal (std 0.02)."""
        init_vit_weights(self, self.cls_token, self.dist_token, self.pos_embed)

    @property
    def r(self) -> Schedule:
        """The merge schedule used when ``forward`` gets no ``r``."""
        return self._r

    @r.setter
    def r(self, value: Any) -> None:
        schedule = parse_schedule(value)
        schedule.check_depth(self.depth)
        self._r = schedule

    @property
    def grid(self) -> Tuple[int, int]:
        """Patch grid (f_dim, t_dim)."""
        return self.patch_embed.f_dim, self.patch_embed.t_dim

    def schedule(self, r: Any = None) -> List[int]:
        """The per-block r this model merges for its input length.

        Example
        -------
        >>> AST(input_tdim=128, preset="tiny", depth=3).schedule(100)
        [72, 36, 18]
        """
        return parse_schedule(self.r if r is None else r).resolve(
            self.depth, self.num_tokens, *self._dims
        )

    @property
    def _dims(self) -> Tuple[int, float, int]:
        """(embed_dim, mlp_ratio, prefix tokens) for the FLOP counters."""
        return self.embed_dim, self.mlp_ratio, self.num_prefix_tokens

    def flops(self, r: Any = None, pooled: bool = False) -> int:
        """Analytic FLOPs of one example (patch embedding + blocks), every
        block counted in full as in the paper; ``flops:X`` budgets are
        fractions of this count. ``pooled``: what :meth:`forward` computes,
        whose last block asks for CLS and DIST only (see
        :meth:`Block.forward_prefix`): the count to judge a measured
        speed-up by.

        Example
        -------
        >>> m = AST(input_tdim=128, preset="tiny")
        >>> round(m.flops(0) / 1e9, 2), round(m.flops(0, pooled=True) / 1e9, 2)
        (1.76, 1.64)
        """
        pe = self.patch_embed
        keep = self.num_prefix_tokens if pooled else None
        enc = encoder_flops(
            self.num_tokens, self.schedule(r), *self._dims, keep_last=keep
        )
        patch = pe.proj.kernel_size[0]
        return enc + patch_embed_flops(pe.num_patches, self.embed_dim, patch)

    def _check_input(self, x: Tensor) -> None:
        if x.ndim != 3:
            raise ValueError(
                f"AST expects features [B, T, F], got shape {tuple(x.shape)}"
            )
        if x.shape[2] != self.input_fdim:
            raise ValueError(
                f"AST expects {self.input_fdim} mel bins, got {x.shape[2]} "
                f"(features of shape {tuple(x.shape)})"
            )
        if x.shape[1] != self.input_tdim:
            raise ValueError(
                f"AST expects {self.input_tdim} frames, got {x.shape[1]}: set "
                "the fbank target_length to the model's input_tdim"
            )
        if self.check_finite and not _is_tracing() and x.device.type == "cpu":
            if not all_finite(x):
                bad = (~torch.isfinite(x)).sum().item()
                raise ValueError(
                    f"AST input contains {bad} NaN/Inf values; expected finite "
                    "features (check the audio and the normalisation)"
                )

    def _encode(
        self, x: Tensor, r: Any, trace_source: bool, pooled_only: bool = False
    ) -> Encoded:
        """Tokens after the final norm, sizes, source map and schedule;
        ``pooled_only``: the last block computes CLS and DIST only (all
        that :meth:`pool` reads; see :meth:`Block.forward_prefix`)."""
        self._check_input(x)
        schedule = self.schedule(r)
        x = self.patch_embed(x)  # [B, P, D]
        prefix = [
            t.expand(len(x), -1, -1) for t in (self.cls_token, self.dist_token)
        ]
        x = self.pos_drop(torch.cat([*prefix, x], dim=1) + self.pos_embed)
        size = source = None
        last = len(self.blocks) - 1 if pooled_only else None
        for i, (block, r_i) in enumerate(zip(self.blocks, schedule)):
            # The last block of a pooled forward: CLS and DIST only, [B, 2,
            # D] (its merge would change neither).
            keep = self.num_prefix_tokens if i == last else None
            x, size, source = block(
                x, r_i, size, source, self.prop_attn, trace_source, keep
            )
        return self.norm(x), size, source, schedule

    @staticmethod
    def pool(x: Tensor) -> Tensor:
        """``(x[:, 0] + x[:, 1]) / 2`` as [B, 1, D]."""
        return ((x[:, 0] + x[:, 1]) / 2).unsqueeze(1)

    def forward(
        self, x: Tensor, lens: Optional[Tensor] = None, r: Any = None
    ) -> Tensor:
        """Embed features.

        Arguments
        ---------
        x : torch.Tensor
            [B, T, F] normalised fbank features.
        lens : torch.Tensor, optional
            Relative lengths (unused: padding frames are real tokens).
        r : optional
            Merge schedule for this call only; the attribute ``r`` otherwise.

        Returns
        -------
        torch.Tensor
            [B, 1, D] pooled embedding.
        """
        step = self._sub_batch(x)
        if x.ndim == 3 and step < x.shape[0]:
            parts = [self.forward(c, r=r) for c in x.split(step)]
            return torch.cat(parts)  # [B, 1, D]
        return self.pool(self._encode(x, r, False, pooled_only=True)[0])

    def _sub_batch(self, x: Tensor) -> int:
        """Examples per encoder pass (see ``cpu_batch_tokens``)."""
        batch = x.shape[0] if x.ndim == 3 else 1
        if (
            not self.cpu_batch_tokens
            or batch < 2
            or batch * self.num_tokens <= self.cpu_batch_tokens
            or x.device.type != "cpu"
            or torch.is_grad_enabled()
            or torch.get_num_threads() != 1
            or _is_tracing()
        ):
            return batch
        return max(1, self.cpu_batch_tokens // self.num_tokens)

    def forward_tokens(
        self, x: Tensor, r: Any = None, trace_source: Optional[bool] = None
    ) -> TokenTrace:
        """Forward pass that also reports tokens, sizes and the source map.

        Example
        -------
        >>> m = AST(input_tdim=128, preset="tiny", depth=2).eval()
        >>> t = m.forward_tokens(torch.randn(1, 128, 128), r=10,
        ...                      trace_source=True)
        >>> t.counts, tuple(t.source.shape)
        ([146, 136, 126], (1, 126, 146))
        """
        trace = self.trace_source if trace_source is None else trace_source
        tokens, size, source, schedule = self._encode(x, r, trace)
        counts = token_counts(self.num_tokens, schedule, self.num_prefix_tokens)
        pooled, flops = self.pool(tokens), self.flops(r)
        return TokenTrace(pooled, tokens, size, source, counts, schedule, flops)


def load_ast(
    path: str, input_tdim: Optional[int] = None, **overrides: Any
) -> Tuple[AST, Optional[ASTHead]]:
    """An AST and its head (None if absent) from any checkpoint; arguments
    of :func:`fastast_sb.models.checkpoints.read_pretrained`.

    Example
    -------
    >>> import tempfile, os
    >>> from fastast_sb.models.checkpoints import save_ast
    >>> path = os.path.join(tempfile.mkdtemp(), "m.pt")
    >>> save_ast(path, AST(128, preset="tiny", depth=1), ASTHead(192, 5))
    >>> model, head = load_ast(path, input_tdim=256)
    >>> model.num_tokens, head.linear.out_features
    (302, 5)
    """
    ckpt = read_pretrained(path, input_tdim, **overrides)
    model = load_checked(AST(**ckpt.config), ckpt.state, f"{ckpt.fmt} AST")
    return model, None if ckpt.head_state is None else load_head(ckpt)
