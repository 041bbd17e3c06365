"""Checkpoint conversion: parity with transformers, layouts, resampling.

The reference models are randomly initialised ``ASTForAudioClassification``
instances built offline from an ``ASTConfig``; nothing is downloaded.
"""

from __future__ import annotations

import builtins
import json
from pathlib import Path
from typing import Dict, Tuple

import pytest
import torch
import torch.nn.functional as F

from fastast_sb.models.ast import AST, ASTHead, load_ast
from fastast_sb.models.checkpoints import save_ast
from fastast_sb.models.convert import (
    convert_hf_state_dict,
    convert_original_state_dict,
    detect_format,
)
from fastast_sb.models.pos_embed import resample_pos_embed
from fastast_sb.tome.schedule import parse_schedule

transformers = pytest.importorskip("transformers")

TOL = 1e-4
PFX = "audio_spectrogram_transformer."
N_LABELS = 7


def _hf_model(
    width: int, heads: int, layers: int, frames: int, eps: float = 1e-6
) -> torch.nn.Module:
    """A random HF AST whose every parameter (LayerNorms too) is random."""
    cfg = transformers.ASTConfig(
        hidden_size=width,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=4 * width,
        max_length=frames,
        num_mel_bins=128,
        frequency_stride=10,
        time_stride=10,
        patch_size=16,
        layer_norm_eps=eps,
        num_labels=N_LABELS,
        attn_implementation="eager",
    )
    model = transformers.ASTForAudioClassification(cfg)
    gen = torch.Generator().manual_seed(width + frames + layers)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen)
            if "layernorm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.1 * noise)
            else:
                p.copy_(0.05 * noise)
    return model.eval()


def _features(frames: int, batch: int = 2) -> torch.Tensor:
    gen = torch.Generator().manual_seed(frames)
    return torch.randn(batch, frames, 128, generator=gen)


def _hf_logits(model: torch.nn.Module, feats: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_values=feats).logits


def _our_logits(ast: AST, head: ASTHead, feats: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return head.eval()(ast.eval()(feats)).squeeze(1)


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


def _original_layout(hf_sd: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """The same weights as the AST repository saves them (written by hand)."""
    e = PFX + "embeddings."
    out = {
        "module.v.cls_token": hf_sd[e + "cls_token"],
        "module.v.dist_token": hf_sd[e + "distillation_token"],
        "module.v.pos_embed": hf_sd[e + "position_embeddings"],
        "module.v.norm.weight": hf_sd[PFX + "layernorm.weight"],
        "module.v.norm.bias": hf_sd[PFX + "layernorm.bias"],
        "module.mlp_head.0.weight": hf_sd["classifier.layernorm.weight"],
        "module.mlp_head.0.bias": hf_sd["classifier.layernorm.bias"],
        "module.mlp_head.1.weight": hf_sd["classifier.dense.weight"],
        "module.mlp_head.1.bias": hf_sd["classifier.dense.bias"],
    }
    for kind in ("weight", "bias"):
        proj = hf_sd[e + f"patch_embeddings.projection.{kind}"]
        out[f"module.v.patch_embed.proj.{kind}"] = proj
    width = hf_sd[e + "cls_token"].shape[-1]
    depth = len(
        {k.split(".")[2] for k in hf_sd if k.startswith(PFX + "layers.")}
    )
    names = {
        "norm1": "layernorm_before",
        "norm2": "layernorm_after",
        "attn.proj": "attention.o_proj",
        "mlp.fc1": "mlp.fc1",
        "mlp.fc2": "mlp.fc2",
    }
    for i in range(depth):
        src = f"{PFX}layers.{i}."
        dst = f"module.v.blocks.{i}."
        for kind in ("weight", "bias"):
            for ours, theirs in names.items():
                out[dst + f"{ours}.{kind}"] = hf_sd[src + f"{theirs}.{kind}"]
            out[dst + f"attn.qkv.{kind}"] = torch.cat(
                [hf_sd[src + f"attention.{n}_proj.{kind}"] for n in "qkv"]
            )
    # timm's unused ImageNet classifiers: must be dropped.
    out["module.v.head.weight"] = torch.randn(1000, width)
    out["module.v.head.bias"] = torch.randn(1000)
    out["module.v.head_dist.weight"] = torch.randn(1000, width)
    out["module.v.head_dist.bias"] = torch.randn(1000)
    return out


# (width, heads, layers): tiny and base widths with few layers for CPU time.
SIZES = {"tiny": (192, 3, 3), "base": (768, 12, 2)}
CASES = [(s, t) for s in SIZES for t in (1024, 128)]


@pytest.fixture(scope="module")
def reference() -> Dict[Tuple[str, int], tuple]:
    """HF model, features and HF logits per (size, frames), built lazily."""
    cache: Dict[Tuple[str, int], tuple] = {}

    def get(size: str, frames: int) -> tuple:
        if (size, frames) not in cache:
            width, heads, layers = SIZES[size]
            model = _hf_model(width, heads, layers, frames)
            feats = _features(frames)
            cache[(size, frames)] = (model, feats, _hf_logits(model, feats))
        return cache[(size, frames)]

    return get


def _build(sd: Dict[str, torch.Tensor], **kwargs) -> Tuple[AST, ASTHead]:
    """Our model from a converted state dict (no file involved)."""
    ast = AST(**kwargs)
    body = {k: v for k, v in sd.items() if not k.startswith("head.")}
    ast.load_state_dict(body, strict=True)
    head = ASTHead(ast.embed_dim, N_LABELS, norm_eps=kwargs["norm_eps"])
    head.load_state_dict(
        {k[5:]: v for k, v in sd.items() if k.startswith("head.")},
        strict=True,
    )
    return ast, head


# ----------------------------------------------------------- HF parity
@pytest.mark.parametrize("size,frames", CASES)
def test_hf_state_dict_parity(reference, size, frames):
    model, feats, expected = reference(size, frames)
    width, heads, layers = SIZES[size]
    sd = convert_hf_state_dict(model.state_dict())
    ast, head = _build(
        sd,
        input_tdim=frames,
        embed_dim=width,
        depth=layers,
        num_heads=heads,
        norm_eps=1e-6,
    )
    got = _our_logits(ast, head, feats)
    assert got.shape == (2, N_LABELS)
    assert _max_diff(got, expected) < TOL


@pytest.mark.parametrize("size,frames", CASES)
def test_hf_folder_parity(reference, size, frames, tmp_path):
    model, feats, expected = reference(size, frames)
    model.save_pretrained(tmp_path)
    ast, head = load_ast(tmp_path)
    assert ast.input_tdim == frames
    got = _our_logits(ast, head, feats)
    assert _max_diff(got, expected) < TOL


@pytest.mark.parametrize(
    "width,heads,frames,eps", [(192, 3, 128, 1e-12), (192, 6, 512, 1e-12)]
)
def test_hf_folder_config(width, heads, frames, eps, tmp_path):
    """eps and num_heads come from config.json, not the defaults."""
    model = _hf_model(width, heads, 2, frames, eps=eps)
    # Make the eps matter: tiny embeddings give tokens of tiny variance.
    with torch.no_grad():
        for p in model.audio_spectrogram_transformer.embeddings.parameters():
            p.mul_(1e-3)
    feats = _features(frames)
    expected = _hf_logits(model, feats)
    model.save_pretrained(tmp_path)
    ast, head = load_ast(tmp_path)
    assert ast.num_heads == heads
    assert ast.norm.eps == eps and head.norm.eps == eps
    assert all(b.norm1.eps == eps and b.norm2.eps == eps for b in ast.blocks)
    assert _max_diff(_our_logits(ast, head, feats), expected) < TOL
    # AST's 1e-6 would give visibly different logits here.
    ast6, head6 = load_ast(tmp_path, norm_eps=1e-6)
    assert _max_diff(_our_logits(ast6, head6, feats), expected) > 100 * TOL


def test_hf_two_generations_agree(reference, tmp_path):
    """On-disk (save_pretrained) and in-memory names convert identically."""
    from safetensors.torch import load_file

    model, _, _ = reference("tiny", 128)
    model.save_pretrained(tmp_path)
    disk = load_file(str(tmp_path / "model.safetensors"))
    assert any(".attention.attention.query." in k for k in disk)
    assert any(".attention.q_proj." in k for k in model.state_dict())
    a = convert_hf_state_dict(disk)
    b = convert_hf_state_dict(model.state_dict())
    assert sorted(a) == sorted(b)
    assert all(torch.equal(a[k], b[k]) for k in a)
    # The encoder alone (no prefix, no classifier) converts too.
    bare = convert_hf_state_dict(
        model.audio_spectrogram_transformer.state_dict()
    )
    assert not any(k.startswith("head.") for k in bare)
    assert torch.equal(
        bare["blocks.0.attn.qkv.weight"], a["blocks.0.attn.qkv.weight"]
    )


def test_hf_weights_file_beside_config(reference, tmp_path):
    model, feats, expected = reference("tiny", 128)
    model.save_pretrained(tmp_path)
    ast, head = load_ast(tmp_path / "model.safetensors")
    got = _our_logits(ast, head, feats)
    assert _max_diff(got, expected) < TOL


def test_hf_state_dict_file_without_config(reference, tmp_path):
    """A bare in-memory state_dict file: eps defaults to AST's 1e-6."""
    model, feats, expected = reference("tiny", 128)
    torch.save(model.state_dict(), tmp_path / "hf_weights.bin")
    ast, head = load_ast(tmp_path / "hf_weights.bin")
    assert ast.norm.eps == 1e-6 and ast.input_tdim == 128
    assert _max_diff(_our_logits(ast, head, feats), expected) < TOL


def test_hf_unexpected_key():
    sd = {PFX + "encoder.layer.0.attention.attention.rotary.weight": 0}
    sd = {k: torch.zeros(1) for k in sd}
    with pytest.raises(ValueError, match="unexpected keys.*rotary"):
        convert_hf_state_dict(sd)


# ------------------------------------------------------- original layout
@pytest.mark.parametrize("size,frames", [("tiny", 128), ("base", 1024)])
def test_original_layout_parity(reference, size, frames, tmp_path):
    model, feats, expected = reference(size, frames)
    original = _original_layout(model.state_dict())
    assert detect_format(original) == "original"
    converted = convert_original_state_dict(original)
    assert not any("head_dist" in k or k.startswith("v.") for k in converted)
    path = tmp_path / "audioset_10_10.pth"
    torch.save(original, path)
    ast, head = load_ast(path)
    assert ast.input_tdim == frames  # inferred from the pos_embed length
    assert ast.num_heads == SIZES[size][1]  # width // 64
    got = _our_logits(ast, head, feats)
    assert _max_diff(got, expected) < TOL


def test_original_unexpected_key():
    sd = {
        "module.v.cls_token": torch.zeros(1, 1, 4),
        "module.v.foo": torch.zeros(1),
    }
    with pytest.raises(ValueError, match="v.foo"):
        convert_original_state_dict(sd)


# ------------------------------------------------------- our own format
@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_save_load_roundtrip(suffix, tmp_path):
    ast = AST(
        input_tdim=128, preset="tiny", depth=2, norm_eps=1e-12, r=3
    ).eval()
    head = ASTHead(192, 4, norm_eps=1e-12).eval()
    path = tmp_path / f"model{suffix}"
    save_ast(path, ast, head)
    ast2, head2 = load_ast(path)
    assert ast2.r == parse_schedule(3)
    assert ast2.norm.eps == 1e-12 and head2.norm.eps == 1e-12
    feats = _features(128)
    with torch.no_grad():
        assert torch.equal(head(ast(feats)), head2.eval()(ast2.eval()(feats)))
    # Overrides reach the constructor.
    assert load_ast(path, r=0)[0].r == parse_schedule(0)


def test_speechbrain_folder(tmp_path):
    ast = AST(input_tdim=128, preset="tiny", depth=1).eval()
    head = ASTHead(192, 3).eval()
    torch.save(ast.state_dict(), tmp_path / "embedding_model.ckpt")
    torch.save(head.state_dict(), tmp_path / "classifier.ckpt")
    (tmp_path / "brain.ckpt").write_text("step: 10\navg_train_loss: 0.5\n")
    (tmp_path / "counter.ckpt").write_text("3")
    (tmp_path / "CKPT.yaml").write_text("end-of-epoch: true\n")
    ast2, head2 = load_ast(tmp_path)
    feats = _features(128)
    with torch.no_grad():
        assert torch.equal(head(ast(feats)), head2.eval()(ast2.eval()(feats)))


def test_head_from_pretrained(tmp_path):
    path = tmp_path / "m.pt"
    save_ast(path, AST(input_tdim=128, preset="tiny", depth=1))
    with pytest.raises(ValueError, match="no classification head"):
        ASTHead.from_pretrained(str(path))
    save_ast(path, AST(input_tdim=128, preset="tiny", depth=1), ASTHead(192, 9))
    assert ASTHead.from_pretrained(str(path)).linear.out_features == 9
    assert AST.from_pretrained(str(path), input_tdim=512).num_tokens == 602


# ------------------------------------------------------------ resampling
def _patch_grid(pos: torch.Tensor, f_dim: int, t_dim: int) -> torch.Tensor:
    """[1, 2 + f*t, D] -> [1, D, f, t] (written out, not via our code)."""
    d = pos.shape[-1]
    return pos[0, 2:].T.reshape(1, d, f_dim, t_dim)


def _flat(prefix: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    d = grid.shape[1]
    return torch.cat([prefix, grid.reshape(1, d, -1).transpose(1, 2)], dim=1)


@pytest.mark.parametrize(
    "frames,cols", [(512, slice(25, 75)), (128, slice(44, 56))]
)
def test_cut_1024_checkpoint(frames, cols, tmp_path):
    """101 time columns -> 50 or 12: AST keeps columns 25..74 or 44..55."""
    src = AST(input_tdim=1024, preset="tiny", depth=1)
    head = ASTHead(192, 5)
    path = tmp_path / "m1024.pt"
    save_ast(path, src, head)
    model, head2 = load_ast(path, input_tdim=frames)
    pos = src.pos_embed.detach()
    expected = _flat(pos[:, :2], _patch_grid(pos, 12, 101)[..., cols])
    assert model.pos_embed.shape == expected.shape
    assert torch.equal(model.pos_embed.detach(), expected)
    # Everything else is copied unchanged.
    other = {k: v for k, v in src.state_dict().items() if k != "pos_embed"}
    got = model.state_dict()
    assert all(torch.equal(v, got[k]) for k, v in other.items())
    assert torch.equal(head2.linear.weight, head.linear.weight)
    with torch.no_grad():
        out = model.eval()(torch.randn(1, frames, 128))
    assert out.shape == (1, 1, 192) and torch.isfinite(out).all()


def test_interpolate_128_checkpoint_to_1024(tmp_path):
    src = AST(input_tdim=128, preset="tiny", depth=1)
    path = tmp_path / "m128.pt"
    save_ast(path, src)
    model, _ = load_ast(path, input_tdim=1024)
    pos = src.pos_embed.detach()
    grid = F.interpolate(
        _patch_grid(pos, 12, 12),
        size=(12, 101),
        mode="bilinear",
        align_corners=False,
    )
    expected = _flat(pos[:, :2], grid)
    assert torch.allclose(model.pos_embed.detach(), expected, atol=1e-7)


def test_resample_deit_grid():
    """A 24x24 DeiT grid -> AST's 12x101: cut frequency, interpolate time."""
    pos = torch.randn(1, 2 + 24 * 24, 8)
    out = resample_pos_embed(pos, (24, 24), (12, 101))
    grid = _patch_grid(pos, 24, 24)
    grid = F.interpolate(
        grid, size=(24, 101), mode="bilinear", align_corners=False
    )
    expected = _flat(pos[:, :2], grid[:, :, 6:18])
    assert torch.allclose(out, expected, atol=1e-7)


def test_resample_odd_offset():
    """AST's offset is old//2 - new//2 (24 -> 11 keeps 7..17, not 6..16)."""
    pos = torch.randn(1, 2 + 2 * 24, 3)
    out = resample_pos_embed(pos, (2, 24), (2, 11))
    expected = _flat(pos[:, :2], _patch_grid(pos, 2, 24)[..., 7:18])
    assert torch.equal(out, expected)
    assert torch.equal(resample_pos_embed(pos, (2, 24), (2, 24)), pos)


def test_resample_bad_grid():
    with pytest.raises(ValueError, match="146 rows"):
        resample_pos_embed(torch.zeros(1, 146, 4), (12, 13), (12, 12))
    with pytest.raises(ValueError, match="new_grid"):
        resample_pos_embed(torch.zeros(1, 146, 4), (12, 12), (0, 12))


# --------------------------------------------------------------- bad input
def test_width_mismatch_names_key_and_shapes(tmp_path):
    path = tmp_path / "tiny.pt"
    save_ast(path, AST(input_tdim=128, preset="tiny", depth=1))
    with pytest.raises(ValueError) as err:
        load_ast(path, embed_dim=384, num_heads=6)
    msg = str(err.value)
    assert "cls_token" in msg
    assert "(1, 1, 192)" in msg and "(1, 1, 384)" in msg


def test_width_mismatch_hf(reference, tmp_path):
    model, _, _ = reference("tiny", 128)
    model.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"\(1, 1, 192\).*\(1, 1, 384\)"):
        load_ast(tmp_path, preset="small")


class _Payload:
    """Unpickling this object creates ``marker`` (arbitrary code)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (builtins.open, (self.marker, "w"))


def test_pickled_object_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {"cls_token": _Payload(marker)}}, path)
    assert not marker.exists()
    with pytest.raises(ValueError, match="pickled"):
        load_ast(path)
    assert not marker.exists()
    # The payload is real: an unsafe load would have run it.
    other = tmp_path / "proof"
    torch.save(_Payload(other), tmp_path / "proof.pt")
    torch.load(tmp_path / "proof.pt", weights_only=False).close()
    assert other.exists()


def test_unknown_layout(tmp_path):
    path = tmp_path / "weird.pt"
    torch.save(
        {"encoder.conv.weight": torch.zeros(3), "foo": torch.zeros(1)}, path
    )
    with pytest.raises(ValueError, match="unknown checkpoint layout.*foo"):
        load_ast(path)


def test_bad_paths(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_ast(tmp_path / "missing.pt")
    (tmp_path / "weights.npz").write_bytes(b"x")
    with pytest.raises(ValueError, match="suffix"):
        load_ast(tmp_path / "weights.npz")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="config.json"):
        load_ast(empty)
    (tmp_path / "text.pt").write_text("not a checkpoint")
    with pytest.raises(ValueError, match="cannot read"):
        load_ast(tmp_path / "text.pt")


def test_hf_incomplete_qkv():
    sd = {
        "layers.0.attention.q_proj.weight": torch.zeros(2, 2),
        "layers.0.attention.k_proj.weight": torch.zeros(2, 2),
    }
    with pytest.raises(ValueError, match="lacks the weight of v"):
        convert_hf_state_dict(sd)


def test_hf_unknown_activation(reference, tmp_path):
    model, _, _ = reference("tiny", 128)
    model.save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["hidden_act"] = "relu"
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="relu"):
        load_ast(tmp_path)
