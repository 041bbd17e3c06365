"""Transformer layers of the AST: patch embedding, attention, MLP, block.

Names follow timm (``patch_embed.proj``, ``attn.qkv``, ``mlp.fc1``), so
checkpoint conversion is a key map. Each block merges tokens (ToMe) between
attention and MLP; r, sizes and source map are ``forward`` arguments.

References: Dosovitskiy et al., "An Image is Worth 16x16 Words", ICLR 2021;
Gong et al., "AST: Audio Spectrogram Transformer", Interspeech 2021;
Bolya et al., "Token Merging: Your ViT But Faster", ICLR 2023.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fastast_sb.tome.merge import (
    bipartite_soft_matching,
    merge_source,
    merge_wavg,
)


def init_vit_weights(module: nn.Module, *tokens: nn.Parameter) -> None:
    """timm/DeiT initialisation: truncated normal (std 0.02) for tokens and
    linear weights, zero biases, unit LayerNorms.

    Example
    -------
    >>> lin = nn.Linear(4, 4)
    >>> init_vit_weights(lin)
    >>> float(lin.bias.detach().abs().sum())
    0.0
    """
    for p in tokens:
        nn.init.trunc_normal_(p, std=0.02)
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def is_tracing() -> bool:
    """True while tracing, exporting or compiling (no data-dependent checks).

    Example
    -------
    >>> is_tracing()
    False
    """
    return (
        torch.jit.is_tracing()
        or torch.jit.is_scripting()
        or torch.compiler.is_compiling()
        or torch.compiler.is_exporting()
    )


def dropped(module: nn.Module, x: Tensor) -> Tensor:
    """``module(x)`` for a ``nn.Dropout`` or :class:`DropPath`; x itself
    while that is the identity (eval mode or rate 0), without the cost of
    a module call (it adds up in small models).

    Example
    -------
    >>> x = torch.ones(2)
    >>> dropped(nn.Dropout(0.5).eval(), x) is x
    True
    """
    rate = module.p if isinstance(module, nn.Dropout) else module.drop_prob
    return module(x) if module.training and rate > 0 else x


def patch_grid(length: int, patch: int, stride: int) -> int:
    """Number of patches along one axis: ``(length - patch) // stride + 1``.

    Example
    -------
    >>> patch_grid(128, 16, 10), patch_grid(1024, 16, 10)
    (12, 101)
    """
    if length < patch:
        raise ValueError(
            f"input length {length} is shorter than the patch size {patch}"
        )
    return (length - patch) // stride + 1


class PatchEmbed(nn.Module):
    """Split a spectrogram into overlapping 16x16 patches and project them.

    Arguments
    ---------
    input_fdim, input_tdim : int
        Mel bins F and frames T.
    patch_size, fstride, tstride : int
        Square patch side; strides along frequency and time.
    embed_dim : int
        Output width D.

    Example
    -------
    >>> pe = PatchEmbed(128, 128, embed_dim=8)
    >>> pe(torch.randn(2, 128, 128)).shape
    torch.Size([2, 144, 8])
    """

    def __init__(
        self,
        input_fdim: int = 128,
        input_tdim: int = 1024,
        patch_size: int = 16,
        fstride: int = 10,
        tstride: int = 10,
        embed_dim: int = 768,
    ) -> None:
        super().__init__()
        self.input_fdim = input_fdim
        self.input_tdim = input_tdim
        self.f_dim = patch_grid(input_fdim, patch_size, fstride)
        self.t_dim = patch_grid(input_tdim, patch_size, tstride)
        self.num_patches = self.f_dim * self.t_dim
        self.proj = nn.Conv2d(
            1, embed_dim, kernel_size=patch_size, stride=(fstride, tstride)
        )

    def forward(self, x: Tensor) -> Tensor:
        """[B, T, F] features -> [B, f_dim * t_dim, D] (frequency-major)."""
        x = x.unsqueeze(1).transpose(2, 3)  # [B, 1, F, T]
        x = self.proj(x)  # [B, D, f_dim, t_dim]
        return x.flatten(2).transpose(1, 2)  # [B, f_dim * t_dim, D]


class Attention(nn.Module):
    """Multi-head self-attention through ``scaled_dot_product_attention``.

    Proportional attention (ToMe) adds ``log(size)`` of each key to the
    logits, passed to SDPA as an additive mask so the fused kernel is kept.

    Example
    -------
    >>> attn = Attention(8, num_heads=2)
    >>> y, k = attn(torch.randn(1, 5, 8))
    >>> y.shape, k.shape
    (torch.Size([1, 5, 8]), torch.Size([1, 5, 4]))
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ) -> None:
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(
                f"embed_dim {dim} is not divisible by num_heads {num_heads}"
            )
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(
        self,
        x: Tensor,
        size: Optional[Tensor] = None,
        need_metric: bool = True,
        queries: Optional[int] = None,
    ) -> Tuple[Tensor, Optional[Tensor]]:
        """Attend over x [B, N, D].

        Arguments
        ---------
        x : torch.Tensor
            [B, N, D] tokens.
        size : torch.Tensor, optional
            [B, N, 1] token sizes for proportional attention.
        need_metric : bool
            Compute the merge metric (a block that merges nothing skips it).
        queries : int, optional
            Only the first ``queries`` tokens ask (every token is a key):
            the output is [B, queries, D].

        Returns
        -------
        out : torch.Tensor
            [B, N, D] (or [B, queries, D]).
        metric : torch.Tensor or None
            [B, N, head_dim] keys averaged over heads (ToMe's metric).
        """
        b, n, c = x.shape
        # q [B, H, queries or N, hd]; k, v [B, H, N, hd]
        q, k, v = self._qkv(x, queries)
        mask = None
        if size is not None:
            mask = size.log().reshape(b, 1, 1, n)  # [B, 1, 1, N]
            if mask.dtype != q.dtype:
                mask = mask.to(q.dtype)
        drop = self.attn_drop if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, mask, drop)
        out = out.transpose(1, 2).reshape(b, q.shape[2], c)  # [B, nq, D]
        metric = k.mean(dim=1) if need_metric else None  # [B, N, hd]
        return dropped(self.proj_drop, self.proj(out)), metric

    def _qkv(
        self, x: Tensor, queries: Optional[int] = None
    ) -> Tuple[Tensor, Tensor, Tensor]:
        """q [B, H, queries or N, hd], k, v [B, H, N, hd] of x [B, N, D]."""
        b, n, _ = x.shape
        weight = getattr(self.qkv, "weight", None)
        if type(weight) not in (Tensor, nn.Parameter):
            # A quantized qkv layer (int8): one product, then split.
            qkv = self.qkv(x).view(b, n, 3, self.num_heads, self.head_dim)
            q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
            return (q if queries is None else q[:, :, :queries]), k, v
        # One product per row block of the qkv weight (the same numbers):
        # dense q, k, v, which SDPA reads faster than strided slices.
        bias = self.qkv.bias
        biases = (None,) * 3 if bias is None else bias.chunk(3)
        inputs = (x if queries is None else x[:, :queries].contiguous(), x, x)
        return tuple(
            F.linear(rows, w, bias_i)  # [B, N, D]
            .view(b, rows.shape[1], self.num_heads, self.head_dim)
            .transpose(1, 2)  # [B, H, N, hd]
            for rows, w, bias_i in zip(inputs, weight.chunk(3), biases)
        )


class Mlp(nn.Module):
    """Two linear layers with GELU.

    Example
    -------
    >>> Mlp(8, 32)(torch.randn(1, 3, 8)).shape
    torch.Size([1, 3, 8])
    """

    def __init__(self, dim: int, hidden: int, drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: Tensor) -> Tensor:
        """[B, N, D] -> [B, N, D].

        Without autograd GELU runs in place: one [B, N, hidden] tensor, the
        block's largest, fewer (2-5 % faster for base at T=512 on CPU).
        """
        h = self.fc1(x)  # [B, N, hidden]
        if h.requires_grad or is_tracing():
            h = self.act(h)
        else:
            h = torch.ops.aten.gelu_(h, approximate=self.act.approximate)
        return dropped(self.drop, self.fc2(dropped(self.drop, h)))


class DropPath(nn.Module):
    """Stochastic depth: drop the whole residual branch per example.

    Example
    -------
    >>> DropPath(0.5).eval()(torch.ones(2, 3)).sum().item()
    6.0
    """

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= drop_prob < 1.0:
            raise ValueError(f"drop_path must be in [0, 1), got {drop_prob}")
        self.drop_prob = drop_prob

    def forward(self, x: Tensor) -> Tensor:
        """Scale kept examples by 1 / keep_prob in training."""
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1))
        return x * mask.bernoulli_(keep) / keep


class Block(nn.Module):
    """Pre-LN transformer block with token merging after attention.

    ``x = x + attn(norm1(x), size)``; merge r tokens; ``x = x + mlp(norm2(x))``

    Example
    -------
    >>> blk = Block(8, num_heads=2)
    >>> x, size, source = blk(torch.randn(1, 10, 8), r=3)
    >>> x.shape, float(size.sum())
    (torch.Size([1, 7, 8]), 10.0)
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
        norm_eps: float = 1e-6,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads, qkv_bias, attn_drop, drop)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop)

    def forward(
        self,
        x: Tensor,
        r: int = 0,
        size: Optional[Tensor] = None,
        source: Optional[Tensor] = None,
        prop_attn: bool = True,
        trace_source: bool = False,
        keep: Optional[int] = None,
    ) -> Tuple[Tensor, Optional[Tensor], Optional[Tensor]]:
        """Run the block, merging ``r`` tokens (or, with ``keep``, only the
        first ``keep`` outputs, unmerged: :meth:`forward_prefix`).

        Arguments
        ---------
        x : torch.Tensor
            [B, N, D] tokens.
        r : int
            Tokens to merge in this block (0: none).
        size : torch.Tensor, optional
            [B, N, 1] token sizes; ``None`` means all ones.
        source : torch.Tensor, optional
            [B, N, N_in] source map, updated when ``trace_source``.
        prop_attn, trace_source : bool
            Proportional attention when sizes are known; track the source map.
        keep : int, optional
            Compute the first ``keep`` tokens only ([B, keep, D]; r, sizes
            and source map are then returned as they came).

        Returns
        -------
        x, size, source
            [B, N - r, D], [B, N - r, 1] or None, [B, N - r, N_in] or None.
        """
        if keep is not None:
            return self.forward_prefix(x, keep, size, prop_attn), size, source
        attn_size = size if prop_attn else None
        y, metric = self.attn(self.norm1(x), attn_size, need_metric=r > 0)
        x = x + dropped(self.drop_path, y)
        if metric is not None:
            merge, _ = bipartite_soft_matching(metric, r)  # CLS, DIST kept
            if trace_source:
                source = merge_source(merge, x, source)
            x, size = merge_wavg(merge, x, size)
        x = x + dropped(self.drop_path, self.mlp(self.norm2(x)))
        return x, size, source

    def forward_prefix(
        self,
        x: Tensor,
        keep: int,
        size: Optional[Tensor] = None,
        prop_attn: bool = True,
    ) -> Tensor:
        """The block's output for the first ``keep`` tokens only: [B, keep,
        D], as ``forward(x, 0, size)[0][:, :keep]``. Every token is a key
        and a value; only these ask, and only these go through the MLP.
        A last block whose other outputs nothing reads (the pooled CLS and
        DIST) costs about a quarter of a full one; a merge there would
        change neither, so none is made.

        Example
        -------
        >>> blk = Block(8, num_heads=2).eval()
        >>> x = torch.randn(1, 10, 8)
        >>> torch.allclose(blk.forward_prefix(x, 2), blk(x)[0][:, :2],
        ...                atol=1e-6)
        True
        """
        if not 0 < keep <= x.shape[1]:
            raise ValueError(
                f"keep={keep}: expected 1 to {x.shape[1]} (the tokens of x)"
            )
        attn_size = size if prop_attn else None
        y, _ = self.attn(
            self.norm1(x), attn_size, need_metric=False, queries=keep
        )
        x = x[:, :keep] + dropped(self.drop_path, y)  # [B, keep, D]
        return x + dropped(self.drop_path, self.mlp(self.norm2(x)))
