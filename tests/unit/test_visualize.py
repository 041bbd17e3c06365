"""Merged-token groups: ids from the source map, regions, PNG and CLI."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile
import torch

from fastast_sb.models.ast import AST
from fastast_sb.tome.groups import group_image, merge_groups, nearest_patch
from fastast_sb.visualize import main, plot_merge_groups, visualize
from tests.conftest import shared_data

PNG = b"\x89PNG\r\n\x1a\n"


def traced(r=24, t: int = 128, depth: int = 3):
    model = AST(input_tdim=t, preset="tiny", depth=depth).eval()
    with torch.no_grad():
        trace = model.forward_tokens(
            torch.randn(1, t, 128), r=r, trace_source=True
        )
    return model, trace


@pytest.mark.parametrize("r", [24, "flops:0.3"])
def test_groups_match_the_source_map(r):
    model, trace = traced(r)
    source = trace.source[0]  # [N_out, N_in]
    groups = merge_groups(source, 2, model.grid)
    assert groups.shape == model.grid
    flat = groups.flatten()
    for row in range(source.shape[0]):
        patches = set((flat == row).nonzero().flatten().tolist())
        columns = set((source[row, 2:] != 0).nonzero().flatten().tolist())
        assert patches == columns, row
    assert set(flat.tolist()) == set(range(2, source.shape[0]))
    counts = torch.bincount(flat, minlength=source.shape[0])
    assert counts[2:].tolist() == trace.size[0, 2:, 0].long().tolist()


def test_drawn_cells_carry_their_patch_group():
    model, trace = traced(40)
    groups = merge_groups(trace.source, 2, model.grid)
    cells = group_image(groups, 128, 128)  # [F, T]
    f_dim, t_dim = model.grid
    for f in range(f_dim):
        for t in range(t_dim):
            # The cell at a patch's centre is drawn in that patch's group.
            assert cells[f * 10 + 8, t * 10 + 8] == groups[f, t]


def test_nearest_patch_regions_are_stride_cells():
    index = nearest_patch(128, 12, patch=16, stride=10)
    for i in range(1, 11):
        region = (index == i).nonzero().flatten().tolist()
        assert region == list(range(10 * i + 3, 10 * i + 13))
    assert index[0] == 0 and index[-1] == 11
    # Every cell lies inside the patch it is drawn with (T = 128 leaves
    # two frames after the last patch, which take the last patch).
    starts = index * 10
    inside = (torch.arange(128) >= starts) & (torch.arange(128) < starts + 16)
    assert inside[:126].all()


def test_merge_groups_rejects_bad_maps():
    source = torch.eye(6)
    with pytest.raises(ValueError, match="grid"):
        merge_groups(source, 2, (3, 3))
    source[2, 3] = 1  # patch 1 owned twice
    with pytest.raises(ValueError, match=r"patches \[1\] belong to \[2\]"):
        merge_groups(source, 2, (2, 2))
    with pytest.raises(ValueError, match="one example"):
        merge_groups(torch.zeros(2, 3, 6), 2)


def test_plot_without_merging_draws_one_group_per_patch(tmp_path):
    model = AST(input_tdim=128, preset="tiny", depth=1).eval()
    feats = torch.randn(128, 128)
    path, trace = visualize(model, feats, feats, tmp_path / "plain.png", r=0)
    assert trace.counts == [146, 146]
    assert path.read_bytes()[:8] == PNG


def test_png_for_a_real_clip(tmp_path):
    from fastast_sb.audio import load_audio
    from fastast_sb.features import NORM_STATS, GlobalNorm, KaldiFbank

    clip = sorted(shared_data("esc10", "audio").glob("*.ogg"))[0]
    wav = load_audio(clip)
    fbank = KaldiFbank(target_length=512)(wav[None])  # [1, 512, 128]
    feats = GlobalNorm(*NORM_STATS["esc50"])(fbank)
    model = AST(input_tdim=512, preset="tiny", depth=3).eval()
    path, trace = visualize(model, fbank[0], feats, tmp_path / "clip.png", 60)
    assert trace.counts == [602, 542, 482, 422]
    data = path.read_bytes()
    assert data[:8] == PNG and len(data) > 10_000
    groups = merge_groups(trace.source, 2, model.grid)
    assert int(torch.unique(groups).numel()) == 422 - 2


def test_cli_with_a_preset_on_a_real_clip(tmp_path, capsys):
    clip = sorted(shared_data("esc10", "audio").glob("*.ogg"))[0]
    out = tmp_path / "sub" / "merged.png"
    argv = [str(clip), "--preset", "tiny", "--depth", "2", "--r", "30"]
    argv += ["--out", str(out), "--target-length", "256", "--norm", "esc50"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed
    assert "[302, 272, 242]" in printed
    assert out.read_bytes()[:8] == PNG


def test_cli_with_a_checkpoint(tmp_path, capsys):
    convert = pytest.importorskip("fastast_sb.models.checkpoints")
    ckpt = tmp_path / "ast.pt"
    convert.save_ast(ckpt, AST(input_tdim=128, preset="tiny", depth=2))
    # A 1.2 s stereo clip at 22.05 kHz: downmixed and resampled to 16 kHz.
    g = np.random.default_rng(0)
    audio = tmp_path / "noise.wav"
    soundfile.write(audio, 0.1 * g.standard_normal((26460, 2)), 22050)
    out = tmp_path / "merged.png"
    argv = [str(audio), "--checkpoint", str(ckpt), "--r", "flops:0.6"]
    argv += ["--out", str(out), "--target-length", "200"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "tokens per block: [230," in printed
    assert out.read_bytes()[:8] == PNG


def test_cli_needs_a_model(tmp_path):
    with pytest.raises(SystemExit):
        main([str(tmp_path / "a.wav"), "--r", "8"])
    with pytest.raises(SystemExit):
        main([str(tmp_path / "a.wav"), "--preset", "tiny", "--r", "fast"])


def test_plot_accepts_a_batch_of_one(tmp_path):
    source = torch.eye(146)[None]
    path = plot_merge_groups(
        torch.randn(1, 128, 128), source, tmp_path / "a.png"
    )
    assert path.read_bytes()[:8] == PNG
