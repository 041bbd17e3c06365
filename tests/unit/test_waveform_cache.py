"""Decoded clips are kept in memory between epochs (``audio_cache_mb``):
the same values as reading the file, within the budget, shared by splits."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from fastast_sb.audio import load_audio
from fastast_sb.dataio import WaveformCache, manifest_datasets, write_manifests


def _clip(path, seconds=0.5, rate=44100, seed=0):
    rng = np.random.default_rng(seed)
    sf.write(path, 0.1 * rng.standard_normal(int(seconds * rate)), rate)
    return path


def test_cached_clip_equals_a_fresh_read_and_skips_the_disk(tmp_path):
    path = _clip(tmp_path / "a.wav")
    cache = WaveformCache(max_mb=1)
    first = cache.load(path, 16000)
    path.unlink()  # a second read from disk would now fail
    again = cache.load(path, 16000)
    assert cache.hits == 1
    assert torch.equal(first, again)
    _clip(tmp_path / "b.wav")
    assert torch.equal(again, load_audio(tmp_path / "b.wav", 16000))


def test_callers_get_a_copy(tmp_path):
    path = _clip(tmp_path / "a.wav")
    cache = WaveformCache(max_mb=1)
    cache.load(path, 16000).zero_()  # e.g. an in-place augmentation
    assert cache.load(path, 16000).abs().sum() > 0


def test_the_budget_is_kept(tmp_path):
    # 0.5 s at 16 kHz in float32 is 31.25 KiB: two fit in 64 KiB, not three.
    paths = [_clip(tmp_path / f"{k}.wav", seed=k) for k in range(3)]
    cache = WaveformCache(max_mb=64 / 1024)
    for path in paths:
        cache.load(path, 16000)
    assert len(cache.clips) == 2
    assert cache.used <= cache.max_bytes
    paths[2].unlink()  # not cached: read from disk, which now fails
    with pytest.raises(FileNotFoundError, match="2.wav"):
        cache.load(paths[2], 16000)


def test_a_negative_budget_is_refused():
    with pytest.raises(ValueError, match="audio_cache_mb=-1"):
        WaveformCache(-1)


def test_splits_share_one_cache(tmp_path):
    wav = _clip(tmp_path / "a.wav")
    row = {"ID": "a", "duration": "0.5", "wav": str(wav), "label": "dog"}
    out = tmp_path / "run"
    splits = dict.fromkeys(("train", "valid", "test"), [row])
    write_manifests(out, splits, list(row), ["dog"], {})
    sets = manifest_datasets(out, 1, 16000, audio_cache_mb=1)
    train = sets["train"][0]["sig"]
    wav.unlink()
    assert torch.equal(sets["test"][0]["sig"], train)  # from the cache
    off = manifest_datasets(out, 1, 16000, audio_cache_mb=0)
    with pytest.raises(FileNotFoundError):
        off["test"][0]


def test_one_default_budget():
    """The class, prepared_datasets and the recipes' YAML agree (they had
    said 1024, 0 and 2048 MiB)."""
    import inspect
    import re
    from pathlib import Path

    from fastast_sb.dataio import AUDIO_CACHE_MB

    default = inspect.signature(WaveformCache).parameters["max_mb"].default
    assert default == AUDIO_CACHE_MB
    root = Path(__file__).resolve().parents[2]
    text = (root / "hparams" / "base" / "training.yaml").read_text()
    found = re.findall(r"^audio_cache_mb: *([0-9.]+) *$", text, re.M)
    assert [float(v) for v in found] == [AUDIO_CACHE_MB]
