"""Short clips through the ONNX export vs ``classify_file`` (issue 14.9).

Exports a model folder (or run folder) to ONNX in fp32 and int8, cuts each
clip to ``--seconds``, zero-pads it to the model window and prints the
largest |score - classify_file score| over the clips: fed without
``wav_lens`` (the padding counts as audio), with ``wav_lens`` (the clip's
own fbank, the issue's fix) and int8 with ``wav_lens``.

Usage::

    OMP_NUM_THREADS=1 python scripts/onnx_short_clip_parity.py \\
        RUN_OR_MODEL_DIR "../shared/data/esc10/audio/4-*.ogg" --seconds 2
"""

from __future__ import annotations

import argparse
import glob
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from fastast_sb.audio import load_audio
from fastast_sb.benchmark.accuracy import is_run_folder
from fastast_sb.inference import AudioTagger
from fastast_sb.inference.export import export_run
from fastast_sb.inference.onnx_export import export_onnx


def _softmax(logits: np.ndarray, multilabel: bool) -> np.ndarray:
    z = torch.from_numpy(logits[0])
    return (torch.sigmoid(z) if multilabel else torch.softmax(z, -1)).numpy()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("model", help="model folder or recipe run folder")
    p.add_argument("clips", help="glob of audio files")
    p.add_argument("--seconds", type=float, default=2.0)
    p.add_argument("--limit", type=int, default=20, help="clips at most")
    args = p.parse_args()
    import onnxruntime as ort

    tmp = Path(tempfile.mkdtemp())
    folder = args.model
    if is_run_folder(folder):
        folder = export_run(folder, tmp / "model")
    tagger = AudioTagger.from_folder(folder, precision="fp32")
    window, rate = tagger.window_samples, tagger.sample_rate
    sessions = {}
    for fmt in ("fp32", "int8"):
        export_onnx(folder, tmp / f"{fmt}.onnx", precision=fmt)
        sessions[fmt] = ort.InferenceSession(
            str(tmp / f"{fmt}.onnx"), providers=["CPUExecutionProvider"]
        )
    worst = {"fp32, no wav_lens": 0.0, "fp32, wav_lens": 0.0, "int8": 0.0}
    clips = sorted(glob.glob(args.clips))[: args.limit]
    for path in clips:
        wav = load_audio(path, rate)[: int(args.seconds * rate)]
        sf.write(tmp / "clip.wav", wav.numpy(), rate, subtype="FLOAT")
        out_prob = tagger.classify_file(str(tmp / "clip.wav"))[0]
        ref = _softmax(out_prob.numpy(), tagger.multilabel)
        x = np.zeros((1, window), np.float32)
        x[0, : len(wav)] = wav.numpy()
        lens = np.array([len(wav) / window], np.float32)
        feeds = {
            "fp32, no wav_lens": ("fp32", {"wavs": x}),
            "fp32, wav_lens": ("fp32", {"wavs": x, "wav_lens": lens}),
            "int8": ("int8", {"wavs": x, "wav_lens": lens}),
        }
        for key, (fmt, feed) in feeds.items():
            got = _softmax(sessions[fmt].run(None, feed)[0], tagger.multilabel)
            worst[key] = max(worst[key], float(np.abs(got - ref).max()))
    print(
        f"{len(clips)} clips cut to {args.seconds} s, window "
        f"{window / rate:.2f} s; max |score - classify_file score|:"
    )
    for key, value in worst.items():
        print(f"  {key}: {value:.2e}")


if __name__ == "__main__":
    main()
