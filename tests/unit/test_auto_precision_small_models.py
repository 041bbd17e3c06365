"""``auto`` keeps fp32 for a model too small for bf16 to pay on the CPU.

Measured on this project's CPU (AMX bf16): the 6-block, 192-wide ESC-10
student (1.7 GFLOPs per clip) ran one clip at half the fp32 speed in bf16;
models from 4.9 GFLOPs per clip up ran faster in bf16 (README)."""

from __future__ import annotations

from unittest import mock

import pytest

from fastast_sb import precision
from fastast_sb.models.ast import AST
from fastast_sb.precision import AUTO_BF16_MIN_GFLOPS, resolve_precision


@pytest.fixture
def native_cpu():
    with mock.patch.object(precision, "native_bf16", return_value=True):
        yield


def test_small_model_stays_fp32_on_a_bf16_cpu(native_cpu):
    assert resolve_precision("auto", "cpu", gflops=1.7) == "fp32"
    assert resolve_precision("auto", "cpu", gflops=4.9) == "bf16"
    assert resolve_precision("auto", "cpu") == "bf16"  # no model: device only


def test_threshold_lies_between_the_measured_models(native_cpu):
    student = AST(
        input_tdim=512, preset="tiny", depth=6, fstride=16, tstride=16
    )
    tiny6 = AST(input_tdim=512, preset="tiny", depth=6)
    assert student.flops(0) / 1e9 < AUTO_BF16_MIN_GFLOPS < tiny6.flops(0) / 1e9


def test_explicit_formats_ignore_the_size(native_cpu):
    assert resolve_precision("bf16", "cpu", gflops=0.1) == "bf16"
    assert resolve_precision("fp32", "cpu", gflops=100.0) == "fp32"


def test_emulating_device_never_gets_bf16():
    with mock.patch.object(precision, "native_bf16", return_value=False):
        assert resolve_precision("auto", "cpu", gflops=100.0) == "fp32"


def test_tagger_auto_on_a_small_model_is_fp32(native_cpu, tmp_path):
    from fastast_sb.inference import AudioTagger
    from tests.conftest import tiny_model_folder

    tagger = AudioTagger.from_folder(tiny_model_folder(tmp_path, ["a", "b"]))
    assert tagger.set_precision("auto") == "fp32"
    assert tagger.set_precision("bf16") == "bf16"
