"""Tests of our PaSST: shapes, structured patchout, embeddings, loading."""

from typing import List

import pytest
import torch

from fastast_sb.teachers.passt import PaSST, convert_passt_state_dict

F_DIM = 12  # (128 - 16) // 10 + 1 mel-bin rows of the patch grid


def _t_dim(frames: int) -> int:
    return (frames - 16) // 10 + 1


def _mini(**kwargs) -> PaSST:
    torch.manual_seed(0)
    config = dict(input_tdim=128, preset="mini", depth=2, num_classes=7)
    config.update(kwargs)
    return PaSST(**config)


def _tokens_entering_blocks(model: PaSST, feats: torch.Tensor) -> List[int]:
    """Token count entering each block, recorded by forward hooks."""
    counts: List[int] = []
    hooks = [
        block.register_forward_hook(
            lambda _m, args, _out: counts.append(args[0].shape[1])
        )
        for block in model.blocks
    ]
    try:
        model(feats)
    finally:
        for hook in hooks:
            hook.remove()
    return counts


@pytest.mark.parametrize("frames", [128, 512])
def test_output_shape(frames: int) -> None:
    model = _mini(input_tdim=frames).eval()
    with torch.no_grad():
        logits = model(torch.randn(2, frames, 128), torch.ones(2))
    assert logits.shape == (2, 7)
    assert torch.isfinite(logits).all()
    assert model.grid == (F_DIM, _t_dim(frames))
    assert model.num_tokens == 2 + F_DIM * _t_dim(frames)


def test_embedding_shapes() -> None:
    model = _mini(input_tdim=512)
    d, t = model.embed_dim, _t_dim(512)
    assert model.freq_new_pos_embed.shape == (1, d, F_DIM, 1)
    assert model.time_new_pos_embed.shape == (1, d, 1, t)
    assert model.new_pos_embed.shape == (1, 2, d)
    assert isinstance(model.head[0], torch.nn.LayerNorm)
    assert model.head[1].out_features == 7


def test_presets_and_overrides() -> None:
    model = PaSST(input_tdim=128, preset="tiny", depth=1)
    assert (model.embed_dim, model.depth, model.num_heads) == (192, 1, 3)
    with pytest.raises(ValueError, match="unknown PaSST preset 'huge'"):
        PaSST(input_tdim=128, preset="huge")


@pytest.mark.parametrize("s_t, s_f", [(3, 0), (0, 4), (5, 2)])
def test_patchout_drops_tokens_in_training_only(s_t: int, s_f: int) -> None:
    frames = 256
    model = _mini(input_tdim=frames, s_patchout_t=s_t, s_patchout_f=s_f)
    feats = torch.randn(2, frames, 128)
    full = 2 + F_DIM * _t_dim(frames)
    kept = 2 + (F_DIM - s_f) * (_t_dim(frames) - s_t)
    assert _tokens_entering_blocks(model.train(), feats) == [kept, kept]
    with torch.no_grad():
        assert _tokens_entering_blocks(model.eval(), feats) == [full, full]


def test_patchout_is_random_in_training() -> None:
    model = _mini(s_patchout_t=6, s_patchout_f=6).train()
    feats = torch.randn(1, 128, 128)
    with torch.no_grad():
        first, second = model(feats), model(feats)
    assert not torch.allclose(first, second)


def test_eval_is_deterministic_and_ignores_patchout() -> None:
    model = _mini(s_patchout_t=4, s_patchout_f=3, drop_path_rate=0.2)
    plain = _mini()  # same seed, same weights, no patchout
    plain.load_state_dict(model.state_dict())
    model.eval()
    plain.eval()
    feats = torch.randn(3, 128, 128)
    with torch.no_grad():
        out = model(feats)
        assert torch.equal(out, model(feats))
        assert torch.equal(out, plain(feats))


def test_gradients_flow_with_patchout() -> None:
    model = _mini(s_patchout_t=2, s_patchout_f=2, drop_path_rate=0.1)
    model.train()
    model(torch.randn(2, 128, 128)).logsumexp(-1).sum().backward()
    missing = [
        name
        for name, p in model.named_parameters()
        if p.grad is None or not torch.isfinite(p.grad).all()
    ]
    assert not missing, f"no (finite) gradient for {missing}"
    for name in ("cls_token", "dist_token", "new_pos_embed"):
        assert getattr(model, name).grad.abs().sum() > 0, name
    assert model.patch_embed.proj.weight.grad.abs().sum() > 0
    # Rows / columns dropped by patchout get no gradient this step.
    time_grad = model.time_new_pos_embed.grad.abs().sum(dim=(0, 1, 2))
    assert int((time_grad > 0).sum()) == _t_dim(128) - 2
    freq_grad = model.freq_new_pos_embed.grad.abs().sum(dim=(0, 1, 3))
    assert int((freq_grad > 0).sum()) == F_DIM - 2


def test_cls_and_dist_pooled() -> None:
    model = _mini().eval()
    feats = torch.randn(2, 128, 128)
    with torch.no_grad():
        tokens = model.forward_features(feats)
        expected = model.head((tokens[:, 0] + tokens[:, 1]) / 2)
        assert torch.allclose(model(feats), expected)


def test_shorter_input_cuts_time_embedding() -> None:
    model = _mini(input_tdim=512).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 128, 128)).shape == (1, 7)
        counts = _tokens_entering_blocks(model, torch.randn(1, 128, 128))
    assert counts == [2 + F_DIM * _t_dim(128)] * 2


def test_input_errors_name_values() -> None:
    model = _mini().eval()
    with pytest.raises(ValueError, match="expects 128 mel bins, got 64"):
        model(torch.randn(1, 128, 64))
    with pytest.raises(ValueError, match="16 to 128 frames, got 256"):
        model(torch.randn(1, 256, 128))
    with pytest.raises(ValueError, match=r"\[B, T, F\]"):
        model(torch.randn(128, 128))


def test_patchout_validation() -> None:
    with pytest.raises(ValueError, match="s_patchout_t=12 must be in"):
        _mini(s_patchout_t=12)
    with pytest.raises(ValueError, match="s_patchout_f=-1 must be in"):
        _mini(s_patchout_f=-1)
    # Valid for input_tdim, but the shorter input leaves too few columns.
    model = _mini(input_tdim=512, s_patchout_t=20).train()
    with pytest.raises(ValueError, match="drop all 12 time columns"):
        model(torch.randn(1, 128, 128))


def test_drop_path_rates_increase_linearly() -> None:
    model = _mini(depth=3, drop_path_rate=0.2)
    rates = [block.drop_path.drop_prob for block in model.blocks]
    assert rates == pytest.approx([0.0, 0.1, 0.2])


def test_from_state_dict_roundtrip_with_passt_keys() -> None:
    saved = _mini(num_heads=4).eval()
    state = {f"net.{k}": v for k, v in saved.state_dict().items()}
    state["net.head_dist.weight"] = torch.zeros(7, saved.embed_dim)
    state["net.head_dist.bias"] = torch.zeros(7)
    assert "head_dist.weight" not in convert_passt_state_dict(state)
    loaded = PaSST.from_state_dict(state, num_heads=4)
    assert not loaded.training
    assert (loaded.depth, loaded.num_classes) == (2, 7)
    feats = torch.randn(2, 128, 128)
    with torch.no_grad():
        assert torch.equal(loaded(feats), saved(feats))
    with pytest.raises(ValueError, match="missing keys"):
        PaSST.from_state_dict({"cls_token": torch.zeros(1, 1, 8)})
