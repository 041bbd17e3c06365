"""The pooled forward computes only what the pooled output reads.

``AST.forward`` returns ``(h0 + h1) / 2`` of the last block's output, so
in that block only CLS and DIST need a query, an attention output and an
MLP; every token still gives its key and value. The block's merge changes
neither CLS nor DIST (CLS is never a source, DIST never a destination), so
it is skipped. ``forward_tokens`` keeps every token (it reports them).
"""

from __future__ import annotations

from typing import List

import pytest
import torch

import fastast_sb.models.layers as layers
from fastast_sb.models.ast import AST
from fastast_sb.models.layers import Block


def _model(depth: int = 3, **kw) -> AST:
    torch.manual_seed(0)
    return AST(input_tdim=64, preset="tiny", depth=depth, **kw).eval()


@pytest.mark.parametrize("r", [0, 4, "flops:0.5", [3, 0, 5]])
def test_forward_matches_full_last_block(r):
    model = _model()
    x = torch.randn(2, 64, 128)
    with torch.inference_mode():
        fast = model(x, r=r)
        full = model.forward_tokens(x, r=r).pooled
    assert fast.shape == full.shape == (2, 1, model.embed_dim)
    torch.testing.assert_close(fast, full, rtol=1e-5, atol=1e-5)


def test_last_block_reads_prefix_rows_only():
    model = _model()
    shapes: List[torch.Size] = []
    model.blocks[-1].mlp.fc1.register_forward_hook(
        lambda mod, inp, out: shapes.append(inp[0].shape)
    )
    with torch.inference_mode():
        model(torch.randn(2, 64, 128), r=4)
        model.forward_tokens(torch.randn(2, 64, 128), r=4)
    n_last = model.forward_tokens(torch.randn(1, 64, 128), r=4).counts[-2]
    assert shapes[0] == (2, 2, model.embed_dim)  # forward: CLS, DIST
    assert shapes[1][1] == n_last - 4  # forward_tokens: every token


def test_last_block_merge_is_skipped(monkeypatch):
    calls: List[int] = []
    real = layers.bipartite_soft_matching

    def counting(metric, r, *args, **kw):
        calls.append(int(r))
        return real(metric, r, *args, **kw)

    monkeypatch.setattr(layers, "bipartite_soft_matching", counting)
    model = _model(depth=4)
    with torch.inference_mode():
        model(torch.randn(1, 64, 128), r=3)
    assert calls == [3, 3, 3]  # not the fourth block's


def test_training_gradients_match_full_last_block():
    model = _model().train()  # drop_path_rate 0: no randomness
    x = torch.randn(2, 64, 128)
    target = torch.randn(2, 1, model.embed_dim)
    grads = []
    for pooled in (
        lambda: model(x, r=4),
        lambda: model.forward_tokens(x, r=4).pooled,
    ):
        model.zero_grad()
        ((pooled() - target) ** 2).sum().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    for name, grad in grads[0].items():
        scale = float(grads[1][name].abs().max()) + 1e-12
        err = float((grad - grads[1][name]).abs().max())
        assert err <= 1e-4 * scale, f"{name}: {err} vs largest {scale}"


def test_block_forward_prefix_with_sizes():
    torch.manual_seed(0)
    block = Block(16, num_heads=2).eval()
    x = torch.randn(2, 9, 16)
    size = torch.randint(1, 4, (2, 9, 1)).float()
    with torch.inference_mode():
        full, _, _ = block(x, 0, size)
        prefix = block.forward_prefix(x, 2, size)
    assert prefix.shape == (2, 2, 16)
    torch.testing.assert_close(prefix, full[:, :2], rtol=1e-5, atol=1e-6)


def test_block_forward_prefix_rejects_bad_keep():
    block = Block(16, num_heads=2).eval()
    with pytest.raises(ValueError, match="keep=0"):
        block.forward_prefix(torch.randn(1, 5, 16), 0)


def test_passt_logits_match_full_last_block():
    from fastast_sb.teachers.passt import PaSST

    torch.manual_seed(0)
    model = PaSST(input_tdim=128, preset="mini", num_classes=5).eval()
    feats = torch.randn(2, 128, 128)
    with torch.inference_mode():
        full = model.forward_features(feats)
        expected = model.head((full[:, 0] + full[:, 1]) / 2)
        assert model.forward_features(feats, pooled_only=True).shape[1] == 2
        torch.testing.assert_close(model(feats), expected, rtol=1e-5, atol=1e-5)


def test_forward_hooks_see_every_block():
    model = _model()
    seen: List[tuple] = []
    for block in model.blocks:
        block.register_forward_hook(
            lambda mod, args, out: seen.append(
                (args[0].shape[1], out[0].shape[1])
            )
        )
    with torch.inference_mode():
        model(torch.randn(1, 64, 128), r=0)
    n = model.num_tokens
    assert seen == [(n, n), (n, n), (n, 2)]


def test_pooled_flops_count_what_the_pooled_forward_computes():
    # FlopCounterMode counts the linear layers and the patch convolution
    # (not CPU attention): with the attention products added from the
    # token counts, flops(pooled=True) is exactly what forward() runs.
    from torch.utils.flop_counter import FlopCounterMode

    from fastast_sb.tome.flops import token_counts

    model = AST(input_tdim=128, preset="tiny", depth=3).eval()
    feats = torch.randn(1, 128, 128)
    aten = torch.ops.aten
    for r in (0, 8):
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(feats, r=r)
        counts = counter.get_flop_counts()["Global"]
        layers = counts[aten.addmm] + counts[aten.convolution]
        n = token_counts(model.num_tokens, model.schedule(r))
        d = model.embed_dim
        attention = sum(4 * a * a * d for a in n[:-2]) + 4 * 2 * n[-2] * d
        assert layers + attention == model.flops(r, pooled=True)
        assert model.flops(r, pooled=True) < model.flops(r)
