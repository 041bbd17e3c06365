"""Inference: recipe run -> model folder -> SpeechBrain, HF import, ONNX.

Every model is loaded through ``from_hparams`` with the network disabled
(``HF_HUB_OFFLINE=1``, ``FetchConfig(allow_network=False)`` and sockets
that refuse to connect).
"""

from __future__ import annotations

import importlib.util
import shutil
import socket
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import speechbrain as sb
import torch
from speechbrain.inference.classifiers import EncoderClassifier
from speechbrain.utils.fetching import FetchConfig

from fastast_sb.audio import AudioError, resample
from fastast_sb.dataio import classification_dataset
from fastast_sb.features import GlobalNorm, KaldiFbank
from fastast_sb.inference import (
    AudioTagger,
    WaveformClassifier,
    export_onnx,
    export_run,
    import_ast,
    write_model_folder,
)
from fastast_sb.inference.cli import manage_main
from fastast_sb.inference.windows import clip_logits
from fastast_sb.models.ast import AST, ASTHead
from fastast_sb.tome.schedule import parse_schedule
from tests.conftest import ROOT, load_recipe_module

RECIPE = ROOT / "recipes" / "ESC50"
sys.path.insert(0, str(RECIPE))

from demo_data import make_demo_esc50  # noqa: E402


def _esc50_train():
    """recipes/ESC50/train.py under its own name (other recipes' too)."""
    return load_recipe_module("esc50_train_for_inference", RECIPE / "train.py")


OFFLINE = FetchConfig(allow_network=False)


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any attempt to reach the network fails the test."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def load(cls, folder, **kwargs):
    # Exactness tests compare fp32 numbers; the default of AudioTagger and,
    # on a model folder, of EncoderClassifier is auto (bf16 where the CPU
    # has it), tested in test_tagger_precision.py / test_folder_windows.py.
    kwargs["overrides"] = {
        "inference_precision": "fp32",
        **kwargs.get("overrides", {}),
    }
    return cls.from_hparams(
        source=str(folder),
        savedir=None,
        run_opts={"device": "cpu"},
        fetch_config=OFFLINE,
        **kwargs,
    )


# ------------------------------------------------------------ recipe run
@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny ESC-50 demo run (depth 1, r=16) and its export.

    Two epochs whose weights are averaged (``test_checkpoint: average``):
    the test, the export and the tests below all use the average.
    """
    root = tmp_path_factory.mktemp("run")
    data = make_demo_esc50(str(root / "data"), clips_per_class_per_fold=2)
    result = _esc50_train().run(
        [
            str(ROOT / "hparams" / "tome.yaml"),
            f"--data_folder={data}",
            f"--output_root={root / 'out'}",
            "--n_classes=5",
            "--fold=5",
            "--target_length=208",
            "--depth=1",
            "--number_of_epochs=2",
            "--test_checkpoint=average",
            "--average_epochs=2",
            "--batch_size=8",
            "--r_sweep=[0]",
            "--bench_repeats=1",
        ]
    )
    run_dir = Path(result["output_folder"])
    model_dir = export_run(run_dir, root / "model")
    return {**result, "run_dir": run_dir, "model_dir": model_dir}


def brain_logits(run, r):
    """The Brain's own test-set evaluation, example by example."""
    brain = run["brain"]
    encoder = sb.dataio.encoder.CategoricalEncoder()
    encoder.load(str(run["run_dir"] / "save" / "label_encoder.txt"))
    test = classification_dataset(run["run_dir"] / "test.csv", encoder)
    loader = sb.dataio.dataloader.make_dataloader(test, batch_size=4)
    brain.eval_r = r
    brain.modules.eval()
    logits, wavs, lens, targets = [], [], [], []
    with torch.no_grad():
        for batch in loader:
            out = brain.compute_forward(batch, sb.Stage.TEST)
            logits.append(out["logits"])
            wavs.append(batch.sig.data)
            lens.append(batch.sig.lengths)
            targets.append(batch.targets.data.argmax(-1))
    paths = [test.data[i]["wav"] for i in test.data_ids]
    return torch.cat(logits), wavs, lens, torch.cat(targets), paths


def test_export_folder_contents(run):
    names = sorted(p.name for p in run["model_dir"].iterdir())
    assert names == [
        "classifier.ckpt",
        "embedding_model.ckpt",
        "hyperparams.yaml",
        "label_encoder.ckpt",
    ]
    text = (run["model_dir"] / "hyperparams.yaml").read_text()
    assert "tome_r: 16\n" in text and "target_length: 208\n" in text
    assert "data_folder" not in text and "teacher" not in text


def test_averaged_weights_are_tested_and_exported(run):
    save = run["run_dir"] / "save"
    copies = sorted((save / "epochs_for_average").glob("epoch_*.pt"))
    assert [p.name for p in copies] == ["epoch_0001.pt", "epoch_0002.pt"]
    states = [torch.load(p, weights_only=True) for p in copies]
    averaged = torch.load(
        save / "averaged" / "embedding_model.ckpt", weights_only=True
    )
    exported = torch.load(
        run["model_dir"] / "embedding_model.ckpt", weights_only=True
    )
    brain_model = run["brain"].modules.embedding_model.state_dict()
    moved = 0
    for key, value in averaged.items():
        a = states[0]["embedding_model"][key]
        b = states[1]["embedding_model"][key]
        torch.testing.assert_close(value, (a + b) / 2, rtol=0, atol=1e-7)
        assert torch.equal(exported[key], value), key
        assert torch.equal(brain_model[key], value), key
        moved += int(not torch.equal(a, b))
    assert moved > 0, "the two epochs' weights should differ"


def test_from_hparams_matches_brain_evaluation(run):
    clf = load(EncoderClassifier, run["model_dir"])
    assert clf.mods.embedding_model.r == parse_schedule(16)
    expected, wavs, lens, targets, paths = brain_logits(run, r=None)
    got = torch.cat([clf.classify_batch(w, n)[0] for w, n in zip(wavs, lens)])
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    # classify_file: SpeechBrain's own audio loading, one clip at a time.
    for i in (0, len(paths) - 1):
        logits, _, index, label = clf.classify_file(paths[i])
        torch.testing.assert_close(logits[0], expected[i], rtol=0, atol=1e-5)
        assert label[0] == clf.hparams.label_encoder.decode_ndim(
            int(expected[i].argmax())
        )
    assert torch.equal(got.argmax(-1), expected.argmax(-1))


def test_r_override_reproduces_the_sweep(run):
    clf = load(EncoderClassifier, run["model_dir"], overrides={"tome_r": 0})
    assert clf.mods.embedding_model.r == parse_schedule(0)
    expected, wavs, lens, targets, _ = brain_logits(run, r=0)
    got = torch.cat([clf.classify_batch(w, n)[0] for w, n in zip(wavs, lens)])
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    accuracy = (got.argmax(-1) == targets).float().mean().item()
    assert accuracy == pytest.approx(run["rows"][0]["metric"], abs=1e-6)


def test_flop_budget_override_and_relocation(run, tmp_path):
    moved = Path(shutil.copytree(run["model_dir"], tmp_path / "moved"))
    tagger = load(AudioTagger, moved, overrides={"tome_r": "flops:0.5"})
    assert tagger.r == parse_schedule("flops:0.5")
    model = tagger.mods.embedding_model
    assert model.schedule()[0] > 0  # one block: as close to 0.5 as it gets
    assert model.flops() < 0.8 * model.flops(0)
    # Weights from another folder, collected (symlinked) in a savedir.
    other = AudioTagger.from_hparams(
        source=str(moved),
        savedir=str(tmp_path / "collected"),
        overrides={"pretrained_path": str(run["model_dir"])},
        run_opts={"device": "cpu"},
        fetch_config=OFFLINE,
    )
    link = tmp_path / "collected" / "embedding_model.ckpt"
    assert link.resolve() == (run["model_dir"] / link.name).resolve()
    for a, b in zip(
        model.parameters(), other.mods.embedding_model.parameters()
    ):
        assert torch.equal(a, b)


def test_export_command_sets_r(run, tmp_path, capsys):
    out = tmp_path / "model8"
    argv = ["export", str(run["run_dir"]), str(out), "--r", "8"]
    assert manage_main(argv + ["--checkpoint", "best"]) == 0
    assert f"wrote model folder {out}" in capsys.readouterr().out
    # The plain call: a local folder needs no FetchConfig to stay offline.
    clf = EncoderClassifier.from_hparams(source=str(out), savedir=None)
    assert clf.mods.embedding_model.r == parse_schedule(8)


def test_export_errors_are_clear(run, tmp_path):
    with pytest.raises(FileNotFoundError, match="hyperparams.yaml not found"):
        export_run(tmp_path, tmp_path / "m")
    bad = tmp_path / "bad"
    bad.mkdir()
    text = (run["run_dir"] / "hyperparams.yaml").read_text()
    (bad / "hyperparams.yaml").write_text(text)
    assert "test_checkpoint: average\n" in text
    with pytest.raises(FileNotFoundError, match="no averaged weights in"):
        export_run(bad, tmp_path / "m")
    with pytest.raises(FileNotFoundError, match="no checkpoints in"):
        export_run(bad, tmp_path / "m", checkpoint="last")
    text = text.replace(
        "!new:fastast_sb.models.ast.AST", "!new:fastast_sb.teachers.X"
    )
    (bad / "hyperparams.yaml").write_text(text)
    with pytest.raises(ValueError, match="only AST runs export"):
        export_run(bad, tmp_path / "m")


# ------------------------------------------------------------ AudioTagger
@pytest.fixture(scope="module")
def tagger_dir(tmp_path_factory):
    """A random multi-label model folder (input 1.25 s)."""
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tagger")
    return write_model_folder(
        folder,
        AST(input_tdim=128, preset="tiny", depth=1, r=8),
        ASTHead(192, 4),
        ["speech", "music", "dog", "rain"],
        KaldiFbank(target_length=128),
        GlobalNorm(-4.2677393, 4.5689974),
        multilabel=True,
    )


def test_tagger_multilabel_scores_and_topk(tagger_dir):
    tagger = load(AudioTagger, tagger_dir)
    wavs = 0.1 * torch.randn(2, 16000)
    logits = tagger.classify_batch(wavs)[0]
    scores = tagger.scores_batch(wavs)
    torch.testing.assert_close(scores, torch.sigmoid(logits))
    tags = tagger.tag_batch(wavs, top=2)
    assert len(tags) == 2 and len(tags[0]) == 2
    best = scores[0].argmax().item()
    assert tags[0][0] == (tagger.labels[best], pytest.approx(scores[0, best]))


def test_tagger_respects_lengths_in_padded_batches(tagger_dir):
    """AudioTagger, and EncoderClassifier on a model folder (which gives
    compute_features no wav_lens), score a padded clip by its own length."""
    tagger = load(AudioTagger, tagger_dir)
    plain = load(EncoderClassifier, tagger_dir)
    long, short = 0.1 * torch.randn(16000), 0.1 * torch.randn(9000)
    batch = torch.stack([long, torch.nn.functional.pad(short, (0, 7000))])
    lens = torch.tensor([1.0, 9000 / 16000])
    alone = tagger.classify_batch(short.unsqueeze(0))[0][0]
    padded = tagger.classify_batch(batch, lens)[0][1]
    torch.testing.assert_close(padded, alone, rtol=0, atol=1e-5)
    got = plain.classify_batch(batch, lens)[0][1]
    torch.testing.assert_close(got, alone, rtol=0, atol=1e-5)
    # The padding, scored as audio, would move the scores.
    as_audio = tagger.classify_batch(batch[1:])[0][0]
    assert (as_audio - alone).abs().max() > 1e-4


def test_long_clip_windows_are_averaged(tagger_dir):
    tagger = load(AudioTagger, tagger_dir)
    window = tagger.window_samples
    assert window == 127 * 160 + 400
    wav = 0.1 * torch.randn(3 * window)
    result = tagger.tag_waveform(wav)
    # Frame starts (160 samples) half a window (64 frames) apart; the last
    # at 387 - 128 frames: the clip's last whole frame ends its window.
    starts = [160 * f for f in (0, 64, 128, 192, 256, 259)]
    assert result.windows == len(starts)
    chunks = torch.stack([wav[s : s + window] for s in starts])
    torch.testing.assert_close(
        result.window_scores, tagger.scores_batch(chunks), rtol=0, atol=1e-6
    )
    torch.testing.assert_close(
        result.scores, result.window_scores.mean(0), rtol=0, atol=1e-7
    )
    assert result.duration == pytest.approx(3 * window / 16000)
    one = tagger.tag_waveform(wav, hop=window / 16000, batch_size=2)
    assert one.windows == 3


def _write(path, data, sr):
    sf.write(str(path), data, sr, subtype="FLOAT")
    return path


def test_bad_input(tagger_dir, tmp_path):
    tagger = load(AudioTagger, tagger_dir)
    with pytest.raises(FileNotFoundError, match="not found"):
        tagger.tag_file(tmp_path / "missing.wav")
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF not really a wave file")
    with pytest.raises(AudioError, match="cannot decode"):
        tagger.tag_file(junk)
    empty = _write(tmp_path / "empty.wav", np.zeros(0, "float32"), 16000)
    with pytest.raises(AudioError, match="empty"):
        tagger.tag_file(empty)
    tiny = _write(tmp_path / "tiny.wav", np.zeros(100, "float32"), 16000)
    with pytest.raises(ValueError, match="at least 400"):
        tagger.tag_file(tiny)
    silence = _write(tmp_path / "silence.wav", np.zeros(16000, "f4"), 16000)
    result = tagger.tag_file(silence)
    assert torch.isfinite(result.scores).all()
    assert len(result.top(3)) == 3


def test_8khz_stereo_is_resampled_and_downmixed(tagger_dir, tmp_path):
    tagger = load(AudioTagger, tagger_dir)
    t = np.arange(16000) / 8000
    left = 0.3 * np.sin(2 * np.pi * 440 * t)
    right = 0.1 * np.sin(2 * np.pi * 1000 * t)
    stereo = np.stack([left, right], 1).astype("float32")
    path = _write(tmp_path / "stereo8k.wav", stereo, 8000)
    result = tagger.tag_file(path)
    assert result.duration == pytest.approx(2.0)
    mono = resample(torch.from_numpy(stereo).mean(1), 8000, 16000)
    expected = tagger.tag_waveform(mono)
    torch.testing.assert_close(result.scores, expected.scores)
    # SpeechBrain's classify_file (AudioNormalizer) covers the whole clip
    # with the same windows: the logits of their averaged scores.
    assert expected.windows == 3
    plain = load(EncoderClassifier, tagger_dir)
    sb_logits = plain.classify_file(str(path))[0][0]
    ours = clip_logits(expected.scores, multilabel=True)
    torch.testing.assert_close(sb_logits, ours, rtol=0, atol=1e-4)


# ------------------------------------------------------------ HF import
transformers_spec = importlib.util.find_spec("transformers")
needs_transformers = pytest.mark.skipif(
    transformers_spec is None, reason="transformers is not installed"
)


@needs_transformers
def test_hf_import_matches_transformers(tmp_path):
    import transformers

    cfg = transformers.ASTConfig(
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=256,
        max_length=128,
        num_labels=3,
        id2label={0: "Speech", 1: "Music", 2: "Dog"},
        label2id={"Speech": 0, "Music": 1, "Dog": 2},
    )  # layer_norm_eps: HF's 1e-12, read from config.json
    torch.manual_seed(3)
    hf = transformers.ASTForAudioClassification(cfg)
    with torch.no_grad():
        for name, p in hf.named_parameters():
            scale = 0.1 if "layernorm" in name else 0.05
            p.add_(scale * torch.randn_like(p))
    hf.eval().save_pretrained(tmp_path / "hf")
    extractor = transformers.ASTFeatureExtractor(max_length=128)
    extractor.save_pretrained(tmp_path / "hf")

    out = import_ast(tmp_path / "hf", tmp_path / "model")
    clf = load(EncoderClassifier, out)
    assert clf.hparams.label_encoder.decode_ndim(2) == "Dog"
    assert clf.mods.embedding_model.norm.eps == pytest.approx(1e-12)
    feats = torch.randn(2, 128, 128)
    with torch.no_grad():
        expected = hf(input_values=feats).logits
        emb = clf.mods.embedding_model(feats)
        got = clf.mods.classifier(emb).squeeze(1)
    diff = (got - expected).abs().max().item()
    assert diff < 1e-4, diff
    # The whole pipeline against HF's feature extractor on a waveform.
    wav = 0.1 * torch.randn(16000)
    inputs = extractor(wav.numpy(), sampling_rate=16000, return_tensors="pt")
    with torch.no_grad():
        expected = hf(**inputs).logits
    got = clf.classify_batch(wav.unsqueeze(0))[0]
    assert (got - expected).abs().max().item() < 1e-3
    # ToMe on the imported weights.
    merged = load(EncoderClassifier, out, overrides={"tome_r": 8})
    assert merged.mods.embedding_model.schedule() == [8, 8]


def test_original_checkpoint_import(tmp_path):
    torch.manual_seed(1)
    ast, head = AST(input_tdim=128, preset="tiny", depth=1), ASTHead(192, 2)
    sd = {f"module.v.{k}": v for k, v in ast.state_dict().items()}
    for i, part in enumerate((head.norm, head.linear)):
        for k, v in part.state_dict().items():
            sd[f"module.mlp_head.{i}.{k}"] = v
    torch.save(sd, tmp_path / "speechcommands_10_10.pth")
    labels = tmp_path / "labels.csv"
    labels.write_text("index,mid,display_name\n1,/m/b,no\n0,/m/a,yes\n")
    out = import_ast(
        tmp_path / "speechcommands_10_10.pth",
        tmp_path / "model",
        labels=labels,
        norm="speechcommands",
        multilabel=False,
    )
    tagger = load(AudioTagger, out)
    assert tagger.labels == ["yes", "no"] and not tagger.multilabel
    assert tagger.mods.mean_var_norm.mean == pytest.approx(-6.845978)
    feats = torch.randn(1, 128, 128)
    with torch.no_grad():
        expected = head.eval()(ast.eval()(feats))
        got = tagger.mods.classifier(tagger.mods.embedding_model(feats))
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="2 class names for a head with 3"):
        write_model_folder(
            tmp_path / "x", ast, ASTHead(192, 3), ["a", "b"],
            KaldiFbank(target_length=128), GlobalNorm(0.0, 1.0),
        )  # fmt: skip


# ------------------------------------------------------------ ONNX
@pytest.mark.skipif(
    importlib.util.find_spec("onnxruntime") is None
    or importlib.util.find_spec("onnxscript") is None,
    reason="needs onnxruntime and onnxscript",
)
@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_onnx_export_matches_pytorch(tagger_dir, tmp_path, capsys):
    import onnxruntime as ort

    path = tmp_path / "model.onnx"
    argv = ["onnx", str(tagger_dir), str(path), "--batch-size", "2"]
    assert manage_main(argv) == 0
    printed = capsys.readouterr().out.strip()
    assert printed.startswith(f"wrote {path} (max |ONNX - PyTorch| = ")
    assert float(printed.split("= ")[1].rstrip(")")) < 1e-4
    assert not (tmp_path / "model.onnx.data").exists()
    tagger = load(AudioTagger, tagger_dir)
    wavs = 0.2 * torch.randn(2, tagger.window_samples)
    wavs[1] = 0.0  # silence merges differently from noise
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = sess.run(None, {"wavs": wavs.numpy()})
    expected = tagger.classify_batch(wavs)[0]
    diff = (torch.from_numpy(got) - expected).abs().max().item()
    assert diff < 1e-4, diff
    with pytest.raises(ValueError, match="at least 400"):
        export_onnx(tagger_dir, tmp_path / "x.onnx", num_samples=100)


def test_waveform_wrapper_equals_pipeline_on_short_and_long_input(tagger_dir):
    tagger = load(AudioTagger, tagger_dir)
    m = tagger.mods
    net = WaveformClassifier(
        m.compute_features, m.mean_var_norm, m.embedding_model, m.classifier
    )
    wavs = 0.1 * torch.randn(2, 8000)  # padded to target_length
    with torch.no_grad():
        got = net(wavs)
    torch.testing.assert_close(
        got, tagger.classify_batch(wavs)[0], rtol=0, atol=1e-6
    )
    # Longer: classify_batch averages windows (186 frames: starts 0 and 58
    # frames), each what the one-input wrapper gives its waveform.
    wavs = 0.1 * torch.randn(2, 30000)
    window = tagger.window_samples
    with torch.no_grad():
        each = [net(wavs[:, s : s + window]) for s in (0, 58 * 160)]
    scores = torch.sigmoid(torch.stack(each)).mean(0)
    torch.testing.assert_close(
        clip_logits(scores, multilabel=True),
        tagger.classify_batch(wavs)[0],
        rtol=0,
        atol=1e-5,
    )
