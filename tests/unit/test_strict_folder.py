"""Strict model folders (issue 14.2): weights that do not match are an
error naming the file and the first keys, through ``EncoderClassifier``,
``AudioTagger`` and ``fastast-tag`` (exit status 1, one line, no warnings).
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import soundfile as sf
import torch
from speechbrain.inference.classifiers import EncoderClassifier
from speechbrain.utils.fetching import FetchConfig

from fastast_sb.dataio import make_label_encoder
from fastast_sb.features import GlobalNorm, KaldiFbank
from fastast_sb.inference import AudioTagger, write_model_folder
from fastast_sb.inference.cli import main
from fastast_sb.models.ast import AST, ASTHead

LABELS = ["dog", "cat", "bird"]


def _folder(path, depth=1):
    torch.manual_seed(0)
    return write_model_folder(
        path,
        AST(input_tdim=128, preset="tiny", depth=depth),
        ASTHead(192, len(LABELS)),
        LABELS,
        KaldiFbank(target_length=128),
        GlobalNorm(-4.27, 4.57),
    )


def _load(cls, folder):
    return cls.from_hparams(
        source=str(folder),
        savedir=None,
        run_opts={"device": "cpu"},
        fetch_config=FetchConfig(allow_network=False),
    )


@pytest.fixture
def wrong_weights(tmp_path):
    """A folder whose embedding_model.ckpt is an original-AST checkpoint
    (``module.v.`` prefixes): no key matches."""
    folder = _folder(tmp_path / "model")
    ckpt = folder / "embedding_model.ckpt"
    state = torch.load(ckpt, weights_only=True)
    torch.save({f"module.v.{k}": v for k, v in state.items()}, ckpt)
    return folder


def test_wrong_weights_fail_through_encoder_classifier(wrong_weights, caplog):
    with caplog.at_level(logging.WARNING):
        with pytest.raises(ValueError) as err:
            _load(EncoderClassifier, wrong_weights)
    message = str(err.value)
    assert "embedding_model.ckpt does not match the model" in message
    assert "missing (cls_token" in message or "missing (" in message
    assert "unexpected (module.v." in message
    transfer = [r for r in caplog.records if "parameter transfer" in r.msg]
    assert transfer == []  # no wall of per-key warnings


def test_wrong_weights_fail_through_audio_tagger(wrong_weights):
    with pytest.raises(ValueError, match="embedding_model.ckpt does not"):
        AudioTagger.from_folder(wrong_weights)


def test_other_depth_and_shape_and_labels(tmp_path):
    folder = _folder(tmp_path / "model")
    deeper = _folder(tmp_path / "deeper", depth=2)
    (folder / "embedding_model.ckpt").write_bytes(
        (deeper / "embedding_model.ckpt").read_bytes()
    )
    with pytest.raises(ValueError, match=r"unexpected \(blocks\.1\."):
        _load(EncoderClassifier, folder)
    folder = _folder(tmp_path / "head")
    torch.save(ASTHead(192, 5).state_dict(), folder / "classifier.ckpt")
    with pytest.raises(ValueError, match=r"classifier.ckpt .* another shape"):
        _load(EncoderClassifier, folder)
    folder = _folder(tmp_path / "labels")
    make_label_encoder(["a", "b"], folder / "label_encoder.ckpt")
    with pytest.raises(ValueError, match="names 2 classes; the model has 3"):
        _load(EncoderClassifier, folder)


def test_matching_weights_still_load(tmp_path):
    folder = _folder(tmp_path / "model")
    clf = _load(EncoderClassifier, folder)
    saved = torch.load(folder / "embedding_model.ckpt", weights_only=True)
    for key, value in clf.mods.embedding_model.state_dict().items():
        assert torch.equal(value, saved[key]), key


def test_folder_without_strict_hooks_is_checked_by_the_tagger(wrong_weights):
    """Folders written before strict loading (no custom_hooks)."""
    yaml = wrong_weights / "hyperparams.yaml"
    text = yaml.read_text()
    cut = text.index("    custom_hooks:")
    yaml.write_text(text[:cut])
    _load(EncoderClassifier, wrong_weights)  # SpeechBrain's lenient load
    with pytest.raises(ValueError, match="embedding_model.ckpt does not"):
        AudioTagger.from_folder(wrong_weights)


def test_cli_exits_1_with_one_line(wrong_weights, tmp_path, capsys):
    wav = tmp_path / "a.wav"
    sf.write(str(wav), 0.1 * np.random.randn(16000).astype("float32"), 16000)
    code = main([str(wav), "--model", str(wrong_weights)])
    out = capsys.readouterr()
    assert code == 1 and out.out == ""
    lines = out.err.strip().splitlines()
    assert len(lines) == 1, lines[:5]
    assert lines[0].startswith(f"error: cannot load model {wrong_weights}")
    assert "embedding_model.ckpt" in lines[0] and "module.v." in lines[0]
