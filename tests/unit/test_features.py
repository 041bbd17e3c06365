"""AST front end: Kaldi fbank, normalisation, SpecAugment, mixup, shift."""

from __future__ import annotations

import pytest
import torch
import torchaudio.compliance.kaldi as kaldi

from fastast_sb.features import (
    NORM_STATS,
    GlobalNorm,
    KaldiFbank,
    Mixup,
    SpecAugment,
    TimeShift,
)

SR = 16000


def _reference_fbank(wav: torch.Tensor, target: int) -> torch.Tensor:
    """AST's recipe for one waveform, padded / cut to ``target`` frames."""
    wav = wav - wav.mean()
    fbank = kaldi.fbank(
        wav[None],
        htk_compat=True,
        sample_frequency=16000,
        use_energy=False,
        window_type="hanning",
        num_mel_bins=128,
        dither=0.0,
        frame_shift=10,
    )
    if fbank.shape[0] < target:
        pad = torch.zeros(target - fbank.shape[0], fbank.shape[1])
        fbank = torch.cat([fbank, pad], dim=0)
    return fbank[:target]


def _padded_batch(lengths):
    gen = torch.Generator().manual_seed(1)
    wavs = torch.zeros(len(lengths), max(lengths))
    for i, n in enumerate(lengths):
        # An offset, so that removing the mean matters.
        wavs[i, :n] = 0.3 * torch.randn(n, generator=gen) + 0.05 * (i + 1)
    lens = torch.tensor(lengths, dtype=torch.float) / max(lengths)
    return wavs, lens


@pytest.mark.parametrize("target", [100, 64, None])
def test_fbank_matches_torchaudio(target):
    lengths = [16000, 12345, 8000]
    wavs, lens = _padded_batch(lengths)
    out = KaldiFbank(target_length=target)(wavs, lens)
    frames = target or 98  # the longest example: 1 s -> 98 frames
    assert out.shape == (3, frames, 128)
    for i, n in enumerate(lengths):
        expected = _reference_fbank(wavs[i, :n], frames)
        assert (out[i] - expected).abs().max().item() < 1e-4


def test_fbank_padding_is_zero():
    wavs, lens = _padded_batch([16000, 8000])
    out = KaldiFbank(target_length=100)(wavs, lens)
    # 0.5 s -> 48 frames, the rest zero padding; 1 s -> 98 frames.
    assert (out[1, 48:] == 0).all() and (out[1, 47] != 0).any()
    assert (out[0, 98:] == 0).all()


@pytest.mark.parametrize("seconds,frames", [(1, 98), (5, 498)])
def test_fbank_frame_counts(seconds, frames):
    wav = 0.1 * torch.randn(1, seconds * SR)
    assert KaldiFbank()(wav).shape == (1, frames, 128)


def test_fbank_single_waveform():
    wav = 0.1 * torch.randn(SR)
    assert KaldiFbank(target_length=128)(wav).shape == (1, 128, 128)


def test_fbank_bad_input():
    fbank = KaldiFbank()
    with pytest.raises(ValueError, match="0 samples"):
        fbank(torch.zeros(1, 0))
    with pytest.raises(ValueError, match="100 samples; at least 400"):
        fbank(torch.zeros(1, 100))
    with pytest.raises(ValueError, match=r"\[B, S\], got \(2, 1, 16000\)"):
        fbank(torch.zeros(2, 1, SR))
    with pytest.raises(ValueError, match="0 samples"):
        fbank(torch.randn(2, SR), torch.tensor([1.0, 0.0]))
    with pytest.raises(ValueError, match="target_length must be >= 1, got 0"):
        KaldiFbank(target_length=0)


@pytest.mark.parametrize("name", sorted(NORM_STATS))
def test_global_norm_formula(name):
    mean, std = NORM_STATS[name]
    x = torch.randn(2, 10, 128) * 4 - 5
    out = GlobalNorm(mean, std)(x, torch.ones(2))
    assert torch.allclose(out, (x - mean) / (2 * std))


def test_norm_stats_values():
    assert NORM_STATS["audioset"] == (-4.2677393, 4.5689974)
    assert NORM_STATS["esc50"] == (-6.6268077, 5.358466)
    assert NORM_STATS["speechcommands"] == (-6.845978, 5.5654526)


def test_global_norm_bad_std():
    with pytest.raises(ValueError, match="std must be > 0, got 0"):
        GlobalNorm(0.0, 0.0)


def _band(mask: torch.Tensor):
    """Indices set in a 1-D bool mask, checked to be one contiguous band."""
    idx = mask.nonzero().flatten()
    if idx.numel():
        assert (idx == torch.arange(idx[0], idx[0] + idx.numel())).all()
    return idx.numel()


def test_specaugment_one_band_per_axis():
    freqm, timem = 24, 40
    aug = SpecAugment(freqm=freqm, timem=timem).train()
    x = torch.rand(64, 200, 128) + 1.0  # no zeros before masking
    gen = torch.Generator().manual_seed(0)
    out = aug(x, generator=gen)
    zero = out == 0
    widths_f, widths_t = [], []
    for b in range(x.shape[0]):
        fmask = zero[b].all(dim=0)  # [F] bins zero at every frame
        tmask = zero[b].all(dim=1)  # [T] frames zero in every bin
        widths_f.append(_band(fmask))
        widths_t.append(_band(tmask))
        # Zeros are exactly the union of the two bands.
        union = fmask[None, :] | tmask[:, None]
        assert torch.equal(zero[b], union)
        assert torch.equal(out[b][~union], x[b][~union])
    assert max(widths_f) <= freqm and max(widths_t) <= timem
    assert max(widths_f) > 0 and max(widths_t) > 0


def test_specaugment_eval_identity():
    aug = SpecAugment(freqm=24, timem=96).eval()
    x = torch.randn(2, 512, 128)
    assert torch.equal(aug(x), x)
    assert torch.equal(SpecAugment().train()(x), x)


def test_specaugment_bad_width():
    with pytest.raises(ValueError, match="freqm=-1"):
        SpecAugment(freqm=-1)


def _reconstruct(wavs, mixed, targets, i):
    """Mixed waveform i rebuilt from lambda and partner read off the target."""
    row = targets[i]
    lam = row[i].item()
    others = [j for j in range(len(row)) if j != i and row[j] > 0]
    if not others:  # partner was the example itself
        return wavs[i] - wavs[i].mean(), 1.0
    (j,) = others
    assert row[j].item() == pytest.approx(1 - lam, abs=1e-6)
    w = lam * wavs[i] + (1 - lam) * wavs[j]
    return w - w.mean(), lam


def test_mixup_same_lambda_for_targets():
    b = 8
    wavs = torch.randn(b, 400) + 0.2
    targets = torch.eye(b)
    mixed, mixed_t, _ = Mixup(prob=1.0).train()(wavs, targets)
    lams = []
    for i in range(b):
        expected, lam = _reconstruct(wavs, mixed, mixed_t, i)
        assert torch.allclose(mixed[i], expected, atol=1e-5)
        lams.append(lam)
    assert all(0.0 < lam <= 1.0 for lam in lams)
    assert torch.allclose(mixed_t.sum(1), torch.ones(b))


def test_mixup_partial_keeps_unmixed_exactly():
    b = 32
    wavs = torch.randn(b, 300) + 0.2
    targets = torch.eye(b)
    mixed, mixed_t, _ = Mixup(prob=0.5).train()(wavs, targets)
    kept = 0
    for i in range(b):
        if torch.equal(mixed[i], wavs[i]):
            assert torch.equal(mixed_t[i], targets[i])
            kept += 1
        else:
            expected, _ = _reconstruct(wavs, mixed, mixed_t, i)
            assert torch.allclose(mixed[i], expected, atol=1e-5)
    assert 0 < kept < b


def test_mixup_prob_zero_and_eval_unchanged():
    wavs = torch.randn(4, 100)
    targets = torch.eye(4)
    lens = torch.tensor([1.0, 0.5, 0.7, 0.2])
    for mix in (Mixup(prob=0.0).train(), Mixup(prob=1.0).eval()):
        w, t, n = mix(wavs, targets, lens)
        assert torch.equal(w, wavs) and torch.equal(t, targets)
        assert torch.equal(n, lens)


def test_mixup_lengths_are_pair_max():
    wavs = torch.randn(6, 100)
    lens = torch.tensor([1.0, 0.5, 0.7, 0.2, 0.9, 0.3])
    _, t, n = Mixup(prob=1.0).train()(wavs, torch.eye(6), lens)
    for i in range(6):
        partners = (t[i] > 0).nonzero().flatten()
        assert n[i] == lens[partners].max()


def test_mixup_unmixed_lengths_unchanged():
    """An example left unmixed keeps its own relative length."""
    b = 32
    wavs = torch.randn(b, 100)
    lens = torch.linspace(0.1, 1.0, b)
    mixed, _, n = Mixup(prob=0.5).train()(wavs, torch.eye(b), lens)
    unmixed = [i for i in range(b) if torch.equal(mixed[i], wavs[i])]
    assert unmixed
    assert torch.equal(n[unmixed], lens[unmixed])


def test_mixup_bad_input():
    with pytest.raises(ValueError, match="got 1.5"):
        Mixup(prob=1.5)
    with pytest.raises(ValueError, match="alpha must be > 0, got 0"):
        Mixup(prob=0.5, alpha=0)
    with pytest.raises(ValueError, match=r"\[B, C\].*\(4,\) for 4"):
        Mixup(prob=1.0).train()(torch.randn(4, 10), torch.zeros(4))


def test_time_shift_rolls_inside_each_clip():
    torch.manual_seed(0)
    shift = TimeShift(max_shift=0.5, sample_rate=10).train()  # <= 5 samples
    wavs = torch.zeros(3, 12)
    lens = torch.tensor([1.0, 0.5, 0.25])
    for i, n in enumerate([12, 6, 3]):
        wavs[i, :n] = torch.arange(1.0, n + 1)
    seen = set()
    for _ in range(20):
        out = shift(wavs, lens)
        for i, n in enumerate([12, 6, 3]):
            # A circular shift of the valid part; the padding stays zero.
            k = int(torch.nonzero(out[i] == 1.0)[0])
            assert torch.equal(out[i, :n], torch.roll(wavs[i, :n], k))
            assert torch.equal(out[i, n:], wavs[i, n:])
            seen.add((i, k))
    # Shifts of up to 5 samples both ways reach several offsets.
    assert len({k for i, k in seen if i == 0}) > 3


def test_time_shift_identity_cases_and_bad_input():
    w = torch.randn(2, 50)
    assert torch.equal(TimeShift(1.0, 16000).eval()(w), w)
    assert torch.equal(TimeShift(0.0, 16000).train()(w), w)
    with pytest.raises(ValueError, match=r"seconds, got -1"):
        TimeShift(-1.0)
    with pytest.raises(ValueError, match=r"\[B, S\], got \(50,\)"):
        TimeShift(0.1, 100).train()(torch.randn(50))
