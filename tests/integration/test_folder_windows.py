"""SpeechBrain's own ``EncoderClassifier`` on a model folder covers a long
clip with ``AudioTagger``'s windows (issue 14.4) and honours the folder's
``inference_precision`` (issue 16.1).

The folder (a tiny random AST, input 100 frames, 1.03 s) is loaded with
``EncoderClassifier.from_hparams`` as a user does; its clip scores are
checked against ``AudioTagger.classify_file`` (windows read from the file,
each window's own fbank) and against a computation by hand from the
folder's weights (whole-clip fbank cut into windows).
"""

from __future__ import annotations

import logging
import shutil

import pytest
import soundfile as sf
import torch
from speechbrain.inference.classifiers import EncoderClassifier
from speechbrain.utils.fetching import FetchConfig

from fastast_sb.features import GlobalNorm, KaldiFbank
from fastast_sb.inference import AudioTagger
from fastast_sb.inference.windows import clip_logits, window_starts
from fastast_sb.models.ast import AST, ASTHead
from tests.conftest import tiny_model_folder

RATE = 16000
TDIM = 100
WINDOW = (TDIM - 1) * 160 + 400  # samples of one model input
LABELS = ["a", "b", "c", "d", "e"]
NORM = (-4.27, 4.57)


@pytest.fixture(
    scope="module", params=[False, True], ids=["softmax", "sigmoid"]
)
def folder(request, tmp_path_factory):
    path = tmp_path_factory.mktemp("model")
    return tiny_model_folder(
        path, LABELS, tdim=TDIM, norm=NORM, multilabel=request.param
    )


def plain(folder, precision="fp32"):
    """The folder as a SpeechBrain user loads it."""
    return EncoderClassifier.from_hparams(
        source=str(folder),
        savedir=None,
        overrides={"inference_precision": precision},
        fetch_config=FetchConfig(allow_network=False),
    )


def clip(seconds, seed, tone_from=None):
    """Noise; from ``tone_from`` seconds on, a loud tone (the evidence)."""
    gen = torch.Generator().manual_seed(seed)
    wav = 0.05 * torch.randn(int(seconds * RATE), generator=gen)
    if tone_from is not None:
        t = torch.arange(wav.numel() - int(tone_from * RATE)) / RATE
        wav[int(tone_from * RATE) :] += 0.5 * torch.sin(2 * torch.pi * 900 * t)
    return wav


def write(path, wav):
    sf.write(str(path), wav.numpy(), RATE, subtype="FLOAT")
    return str(path)


def scores(out_prob, multilabel):
    return torch.sigmoid(out_prob) if multilabel else out_prob.softmax(-1)


def by_hand(folder, wav, multilabel):
    """Clip logits from the folder's weights: fbank of the whole clip, cut
    into windows of TDIM frames, TDIM // 2 apart, the last at the end."""
    ast = AST(input_tdim=TDIM, preset="tiny", depth=1).eval()
    head = ASTHead(192, len(LABELS)).eval()
    for module, name in ((ast, "embedding_model"), (head, "classifier")):
        state = torch.load(folder / f"{name}.ckpt", weights_only=True)
        module.load_state_dict(state)
    feats = GlobalNorm(*NORM)(KaldiFbank()(wav[None]))[0]  # [frames, F]
    starts = window_starts(feats.shape[0], TDIM, TDIM // 2)
    windows = torch.stack([feats[s : s + TDIM] for s in starts])
    with torch.no_grad():
        logits = head(ast(windows).transpose(0, 1))[0]  # [W, C]
    probs = torch.sigmoid(logits) if multilabel else logits.softmax(-1)
    return clip_logits(probs.mean(0), multilabel), len(starts)


def test_classify_file_equals_audio_tagger(folder, tmp_path):
    multilabel = "multilabel: true" in (folder / "hyperparams.yaml").read_text()
    wav = clip(4.3, seed=1, tone_from=3.4)  # evidence in the last second
    path = write(tmp_path / "long.wav", wav)
    clf = plain(folder)
    out, score, index, label = clf.classify_file(path)
    tagger = AudioTagger.from_folder(folder, precision="fp32")
    t_out, _, t_index, t_label = tagger.classify_file(path)
    result = tagger.tag_file(path)
    assert result.windows == 8  # 428 frames: starts 0, 50, ..., 300, 328
    assert int(index[0]) == int(t_index[0]) and label == t_label
    torch.testing.assert_close(out, t_out, rtol=0, atol=1e-5)
    torch.testing.assert_close(
        scores(out[0], multilabel), result.scores, rtol=0, atol=1e-6
    )
    assert score[0] == out[0].max()
    # Not the first window's scores (the old cut).
    first = clf.classify_batch(wav[:WINDOW][None])[0][0]
    gap = (scores(first, multilabel) - result.scores).abs().max()
    assert gap > 1e-3, gap


def test_fp32_equals_the_windows_by_hand(folder):
    multilabel = "multilabel: true" in (folder / "hyperparams.yaml").read_text()
    wav = clip(3.1, seed=2)
    expected, windows = by_hand(folder, wav, multilabel)
    assert windows == 6
    got = plain(folder, "fp32").classify_batch(wav[None])[0][0]
    assert torch.equal(got, expected)


def test_batch_scores_each_clip_by_its_own_length(folder, tmp_path):
    clf = plain(folder)
    wavs = [clip(2.7, 3), clip(1.63, 4), clip(0.6, 5)]  # 5, 3 and 1 windows
    batch = torch.nn.utils.rnn.pad_sequence(wavs, batch_first=True)
    lens = torch.tensor([w.numel() for w in wavs]) / batch.shape[1]
    got, _, index, _ = clf.classify_batch(batch, lens)
    assert clf.encode_batch(batch, lens).shape == (3, 5, 192)
    for i, wav in enumerate(wavs):
        alone = clf.classify_file(write(tmp_path / f"{i}.wav", wav))
        torch.testing.assert_close(got[i], alone[0][0], rtol=0, atol=1e-5)
        assert int(index[i]) == int(alone[2][0])


def test_short_clip_scores_as_before(folder):
    """One window: the head's logits of the one model input, as the
    folder's old template (KaldiFbank cut/padded to TDIM) gave them."""
    clf = plain(folder)
    wav = clip(0.8, seed=6)
    ast = AST(input_tdim=TDIM, preset="tiny", depth=1).eval()
    head = ASTHead(192, len(LABELS)).eval()
    for module, name in ((ast, "embedding_model"), (head, "classifier")):
        state = torch.load(folder / f"{name}.ckpt", weights_only=True)
        module.load_state_dict(state)
    feats = GlobalNorm(*NORM)(KaldiFbank(target_length=TDIM)(wav[None]))
    with torch.no_grad():
        before = head(ast(feats)).squeeze(1)
    got, _, index, _ = clf.classify_batch(wav[None])
    torch.testing.assert_close(got, before, rtol=0, atol=1e-5)
    assert int(index[0]) == int(before.argmax())
    assert clf.encode_batch(wav[None]).shape == (1, 1, 192)


def test_bf16_runs_in_bf16_with_the_fp32_top1(folder):
    wav = clip(3.1, seed=7, tone_from=2.0)
    ref = plain(folder, "fp32").classify_batch(wav[None])
    clf = plain(folder, "bf16")
    seen = []
    fc1 = clf.mods.embedding_model.blocks[0].mlp.fc1
    fc1.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    got = clf.classify_batch(wav[None])
    assert seen and set(seen) == {torch.bfloat16}
    assert got[0].dtype == torch.float32
    assert int(got[2][0]) == int(ref[2][0])
    diff = (got[0] - ref[0]).abs().max()
    assert 0 < diff < 0.1, diff  # computed in bf16, close to fp32


def test_int8_and_default_precision(folder):
    wav = clip(3.1, seed=8)
    ref = plain(folder, "fp32").classify_batch(wav[None])
    clf = plain(folder, "int8")
    got = clf.classify_batch(wav[None])
    quantized = [
        m
        for m in clf.mods.embedding_model._int8.modules()
        if "quantized" in type(m).__module__
    ]
    assert quantized  # a quantized copy, made after the weights loaded
    assert not any(
        "quantized" in type(m).__module__
        for m in clf.mods.embedding_model.modules()
    )
    diff = (got[0] - ref[0]).abs().max()
    assert 0 < diff < 0.5, diff
    # null: AudioTagger's default (auto)
    default = EncoderClassifier.from_hparams(source=str(folder), savedir=None)
    assert default.mods.embedding_model.precision is None
    auto = plain(folder, "auto").classify_batch(wav[None])[0]
    torch.testing.assert_close(default.classify_batch(wav[None])[0], auto)


def legacy(folder, tmp_path):
    """The folder as the template before windows wrote it (ModelFbank,
    GlobalNorm, AST, ASTHead; same weight files)."""
    old = tmp_path / "old"
    shutil.copytree(folder, old)
    text = (old / "hyperparams.yaml").read_text()
    for new, before in (
        ("inference.windowed.ClipFbank", "inference.folder.ModelFbank"),
        ("inference.windowed.ClipNorm", "features.GlobalNorm"),
        ("inference.windowed.WindowedAST", "models.ast.AST"),
        ("inference.windowed.WindowedHead", "models.ast.ASTHead"),
        ("    precision: !ref <inference_precision>\n", ""),
        ("    multilabel: !ref <multilabel>\n", ""),
    ):
        assert new in text, new
        text = text.replace(new, before)
    (old / "hyperparams.yaml").write_text(text)
    return old


def test_folders_written_before_windows_load_as_before(
    folder, tmp_path, caplog
):
    old = legacy(folder, tmp_path)
    wav = clip(4.3, seed=9)
    path = write(tmp_path / "long.wav", wav)
    clf = plain(old)
    assert type(clf.mods.embedding_model) is AST
    with caplog.at_level(logging.WARNING):
        out = clf.classify_file(path)[0]
    (record,) = [r for r in caplog.records if "cut" in r.getMessage()]
    assert "a 4.30 s clip is cut to the model input of 1.01 s" in (
        record.getMessage()
    )
    first = plain(folder).classify_batch(wav[:WINDOW][None])[0]
    torch.testing.assert_close(out, first, rtol=0, atol=1e-5)
    # AudioTagger windows both alike.
    tagger = AudioTagger.from_folder(old, precision="fp32")
    expected = AudioTagger.from_folder(folder, precision="fp32")
    torch.testing.assert_close(
        tagger.classify_file(path)[0], expected.classify_file(path)[0]
    )
