"""The AST lobe and head: shapes, token counts, input validation."""

from __future__ import annotations

import pytest
import torch

from fastast_sb.models.ast import AST, PRESETS, ASTHead


@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize("frames", [128, 512])
def test_output_shape(preset, frames):
    width, _, heads = PRESETS[preset]
    model = AST(input_tdim=frames, preset=preset, depth=1).eval()
    assert (model.embed_dim, model.num_heads) == (width, heads)
    with torch.no_grad():
        out = model(torch.randn(2, frames, 128), torch.ones(2))
    assert out.shape == (2, 1, width)
    assert torch.isfinite(out).all()


def test_preset_sizes():
    assert PRESETS["tiny"] == (192, 12, 3)
    assert PRESETS["small"] == (384, 12, 6)
    assert PRESETS["base"] == (768, 12, 12)
    for name, (width, _, heads) in PRESETS.items():
        model = AST(input_tdim=128, preset=name, depth=1)
        assert (model.embed_dim, model.num_heads) == (width, heads)
        assert model.blocks[0].attn.head_dim == 64
    # A preset keeps the default depth of 12 blocks.
    assert len(AST(input_tdim=128, preset="tiny").blocks) == 12


@pytest.mark.parametrize(
    "frames,grid,tokens",
    [(128, (12, 12), 146), (512, (12, 50), 602), (1024, (12, 101), 1214)],
)
def test_token_counts(frames, grid, tokens):
    model = AST(input_tdim=frames, embed_dim=8, depth=1, num_heads=2)
    assert model.grid == grid
    assert model.num_tokens == tokens
    assert model.pos_embed.shape == (1, tokens, 8)


@pytest.fixture(scope="module")
def small_model() -> AST:
    return AST(input_tdim=128, embed_dim=16, depth=1, num_heads=2).eval()


def test_wrong_mel_bins(small_model):
    with pytest.raises(ValueError, match="128 mel bins, got 64"):
        small_model(torch.randn(1, 128, 64))


def test_wrong_frames(small_model):
    with pytest.raises(ValueError, match="128 frames, got 100"):
        small_model(torch.randn(1, 100, 128))


def test_wrong_rank(small_model):
    with pytest.raises(ValueError, match=r"\[B, T, F\].*\(128, 128\)"):
        small_model(torch.randn(128, 128))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_features(small_model, bad):
    x = torch.randn(2, 128, 128)
    x[1, 5, 7] = bad
    x[0, 0, 0] = bad
    with pytest.raises(ValueError, match="2 NaN/Inf"):
        small_model(x)


def test_non_finite_check_can_be_disabled():
    model = AST(
        input_tdim=128, embed_dim=16, depth=1, num_heads=2, check_finite=False
    ).eval()
    x = torch.randn(1, 128, 128)
    x[0, 0, 0] = float("nan")
    with torch.no_grad():
        assert torch.isnan(model(x)).any()


def test_preset_errors():
    with pytest.raises(ValueError, match="'huge'.*base"):
        AST(input_tdim=128, preset="huge")
    with pytest.raises(ValueError, match="100.*not divisible.*3"):
        AST(input_tdim=128, embed_dim=100, num_heads=3, depth=1)
    with pytest.raises(ValueError, match="shorter than the patch size 16"):
        AST(input_tdim=10, embed_dim=8, num_heads=2, depth=1)


def test_lens_unused(small_model):
    x = torch.randn(2, 128, 128)
    with torch.no_grad():
        a = small_model(x)
        b = small_model(x, torch.tensor([1.0, 0.5]))
    assert torch.equal(a, b)


@pytest.mark.parametrize("shape", [(3, 1, 16), (3, 16), (2, 5, 16)])
def test_head_shapes(shape):
    head = ASTHead(16, 7)
    assert head(torch.randn(*shape)).shape == shape[:-1] + (7,)


def test_head_layers_and_errors():
    head = ASTHead(16, 4, norm_eps=1e-12)
    assert head.norm.eps == 1e-12
    assert head.linear.weight.shape == (4, 16)
    with pytest.raises(ValueError, match="n_classes must be >= 1, got 0"):
        ASTHead(16, 0)


def test_head_on_lobe(small_model):
    head = ASTHead(small_model.embed_dim, 5).eval()
    with torch.no_grad():
        logits = head(small_model(torch.randn(3, 128, 128)))
    assert logits.shape == (3, 1, 5)
