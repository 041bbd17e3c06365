"""The benchmark command line and the speed work it measures.

Tiny models only: the tests check the tables, files, ratios and errors,
never absolute times.
"""

from __future__ import annotations

import csv
import importlib.util
import sys
from pathlib import Path
from typing import List

import numpy as np
import pytest
import soundfile as sf
import torch

from fastast_sb.benchmark.cli import run
from fastast_sb.benchmark.report import CSV_COLUMNS
from fastast_sb.models.ast import AST, ASTHead
from fastast_sb.timing import (
    interleaved_throughput,
    interleaved_times,
    paired_speedups,
    throughput,
    time_fn,
)
from fastast_sb.tome.merge import bipartite_soft_matching, merge_wavg
from fastast_sb.tome.schedule import Schedule, parse_schedule

TINY = [
    "--preset",
    "tiny",
    "--depth",
    "2",
    "--tdim",
    "128",
    "--batch",
    "2",
    "--repeats",
    "2",
    "--warmup",
    "0",
    "--threads",
    "1",
]
MD_COLUMNS = [
    "r",
    "tokens per block",
    "GFLOPs",
    "FLOP ratio",
    "samples/s",
    "speed-up",
    "speed-up / FLOP ratio",
]

needs_transformers = pytest.mark.skipif(
    importlib.util.find_spec("transformers") is None,
    reason="--compare-hf needs transformers (pip install transformers)",
)


@pytest.fixture(autouse=True)
def restore_threads():
    """``--threads`` sets torch's global thread count: restore it."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _table_header(markdown: str) -> List[str]:
    line = next(x for x in markdown.splitlines() if x.startswith("| r |"))
    return [c.strip() for c in line.strip("|").split("|")]


def _table_rows(markdown: str) -> List[List[str]]:
    lines = [x for x in markdown.splitlines() if x.startswith("| ")]
    return [[c.strip() for c in x.strip("|").split("|")] for x in lines[1:]]


# ------------------------------------------------------------ the CLI
def test_cli_writes_markdown_csv_and_png(tmp_path):
    out = tmp_path / "bench"
    res = run(TINY + ["--r", "0", "8", "flops:0.5", "--out", str(out)])
    md = (out / "benchmark.md").read_text(encoding="utf-8")
    assert _table_header(md) == MD_COLUMNS
    assert [row[0] for row in _table_rows(md)] == ["0", "8", "flops:0.5"]
    assert "python -m fastast_sb.benchmark" in md
    with open(out / "benchmark.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == CSV_COLUMNS
    assert [r["r"] for r in rows] == ["0", "8", "flops:0.5"]
    assert rows[1]["schedule"] == " ".join(["8"] * 2)
    assert rows[1]["tokens_per_block"] == "146 138 130"
    png = (out / "benchmark.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert set(res.paths) == {"md", "csv", "png"}


def test_first_row_is_the_reference_and_flop_ratios_match_the_model():
    res = run(TINY + ["--r", "16", "ratio:0.1", "ramp:8:-1"])
    # r=0 is added in front when missing.
    assert [row["r"] for row in res.rows] == [
        "0",
        "16",
        "ratio:0.1",
        "ramp:8:-1",
    ]
    assert res.rows[0]["speedup"] == 1.0
    assert res.rows[0]["flop_ratio"] == 1.0
    model = AST(input_tdim=128, preset="tiny", depth=2)
    specs = [0, 16, "ratio:0.1", "ramp:8:-1"]
    for row, spec in zip(res.rows, specs):
        assert row["flop_ratio"] == pytest.approx(
            model.flops(0) / model.flops(spec)
        )
        assert row["gflops"] == pytest.approx(model.flops(spec) / 1e9)
        assert row["schedule"] == model.schedule(spec)
        assert row["counts"][0] == model.num_tokens
        assert row["speedup_per_flop_ratio"] == pytest.approx(
            row["speedup"] / row["flop_ratio"]
        )
        assert row["samples_per_s"] > 0


def test_training_mode_runs():
    res = run(TINY + ["--mode", "train", "--r", "0", "8"])
    assert res.meta["mode"] == "train"
    assert "training steps" in res.markdown
    assert [row["r"] for row in res.rows] == ["0", "8"]
    assert all(row["samples_per_s"] > 0 for row in res.rows)


@needs_transformers
@pytest.mark.parametrize("mode", ["infer", "train"])
def test_compare_hf_runs_on_a_tiny_config(mode):
    res = run(TINY + ["--r", "0", "--compare-hf", "--mode", mode])
    assert res.hf is not None
    assert res.hf["samples_per_s"] > 0 and res.hf["ratio"] > 0
    assert "ASTForAudioClassification" in res.markdown


def test_compare_hf_without_transformers_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)  # import fails
    with pytest.raises(ImportError, match="pip install transformers"):
        run(TINY + ["--r", "0", "--compare-hf"])


@pytest.mark.parametrize(
    "args,message",
    [
        (["--r", "fast"], "merge schedule 'fast' is not"),
        (["--r", "speed:0.5"], "merge schedule 'speed:0.5' is not"),
        (["--r", "flops:2"], "FLOP budget must be in"),
        (["--r", "16,x"], "merge schedule '16,x' is not"),
        (["--batch", "0"], "--batch must be >= 1"),
        (["--train-inf-checkpoint", "x"], "needs --checkpoint"),
        (["--dtype", "int8"], "invalid choice"),
    ],
)
def test_parse_errors_are_clear(args, message, capsys):
    with pytest.raises(SystemExit) as err:
        run(TINY + args)
    assert err.value.code == 2
    assert message in capsys.readouterr().err


def test_the_cli_reads_the_one_schedule_text():
    assert parse_schedule("16") == Schedule(r=16)
    assert parse_schedule(" flops:0.5 ") == Schedule("flops", fraction=0.5)
    assert parse_schedule("ratio:0.1") == Schedule("ratio", fraction=0.1)
    assert parse_schedule("ramp:16:-1") == Schedule("ramp", r=16, inflect=-1)
    with pytest.raises(ValueError, match="is not an int r"):
        parse_schedule("")
    res = run(TINY + ["--r", " flops : 0.5 ", "--repeats", "1"])
    assert [row["r"] for row in res.rows] == ["0", "flops:0.5"]


# ----------------------------------------------------- accuracy columns
def _model_folder(folder: Path, classes: List[str]) -> None:
    from fastast_sb.features import GlobalNorm, KaldiFbank
    from fastast_sb.inference.folder import write_model_folder

    torch.manual_seed(0)
    write_model_folder(
        folder,
        AST(input_tdim=128, preset="tiny", depth=1),
        ASTHead(192, len(classes)),
        classes,
        KaldiFbank(target_length=128),
        GlobalNorm(-6.6, 5.4),
    )


def test_checkpoint_and_data_add_accuracy_columns(tmp_path):
    classes = ["dog", "rain"]
    _model_folder(tmp_path / "inf", classes)
    _model_folder(tmp_path / "train_inf", classes)
    rng = np.random.default_rng(0)
    manifest = tmp_path / "test.csv"
    with open(manifest, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["ID", "duration", "wav", "label"])
        for i in range(4):
            wav = tmp_path / f"{i}.wav"
            sf.write(wav, 0.1 * rng.standard_normal(16000), 16000)
            writer.writerow([f"c{i}", 1.0, str(wav), classes[i % 2]])
    out = tmp_path / "bench"
    res = run(
        [
            "--checkpoint",
            str(tmp_path / "inf"),
            "--train-inf-checkpoint",
            str(tmp_path / "train_inf"),
            "--data",
            str(manifest),
            "--batch",
            "2",
            "--repeats",
            "1",
            "--warmup",
            "0",
            "--r",
            "0",
            "8",
            "--threads",
            "1",
            "--out",
            str(out),
        ]
    )
    for row in res.rows:
        assert 0.0 <= row["metric_inf"] <= 1.0
        assert 0.0 <= row["metric_train_inf"] <= 1.0
    header = _table_header(res.markdown)
    assert header == MD_COLUMNS + ["acc (%) Inf", "acc (%) Train+Inf"]
    with open(out / "benchmark.csv", newline="", encoding="utf-8") as f:
        assert list(csv.DictReader(f))[0].keys() >= {
            "metric_inf",
            "metric_train_inf",
        }
    # The checkpoint fixes the input length.
    with pytest.raises(SystemExit):
        run(["--checkpoint", str(tmp_path / "inf"), "--tdim", "512"])


# ------------------------------------------------- timing primitives
def test_paired_speedups_are_medians_of_per_round_ratios():
    times = [[2.0, 2.0, 10.0], [1.0, 1.0, 1.0], [4.0, 4.0, 20.0]]
    assert paired_speedups(times) == [1.0, 2.0, 0.5]
    with pytest.raises(ValueError, match="rounds"):
        paired_speedups([[1.0, 1.0], [1.0]])


def test_interleaved_times_round_robin():
    calls: List[str] = []
    times = interleaved_times(
        [lambda: calls.append("a"), lambda: calls.append("b")],
        torch.device("cpu"),
        warmup=1,
        repeats=3,
    )
    assert calls == ["a", "b"] + ["a", "b"] * 3
    assert [len(t) for t in times] == [3, 3]


def test_legacy_helpers_keep_working():
    """fastast_sb.sweep and older scripts import these names."""
    model = AST(input_tdim=128, preset="tiny", depth=1)
    assert time_fn(lambda: None, torch.device("cpu")) >= 0
    assert throughput(model, 0, batch_size=1, warmup=0, repeats=1) > 0
    speeds = interleaved_throughput(model, [0, 8], 1, warmup=0, repeats=1)
    assert len(speeds) == 2 and min(speeds) > 0


# ------------------------------------------------------ the speed work
def test_cpu_sub_batches_give_the_same_numbers():
    torch.set_num_threads(1)  # restored by the autouse fixture
    torch.manual_seed(0)
    model = AST(input_tdim=128, preset="tiny", depth=2).eval()
    x = torch.randn(5, 128, 128)
    with torch.inference_mode():
        model.cpu_batch_tokens = 2 * model.num_tokens  # 2 examples a pass
        assert model._sub_batch(x) == 2
        split = model(x, r=8)
        model.cpu_batch_tokens = None
        assert model._sub_batch(x) == 5
        whole = model(x, r=8)
    torch.testing.assert_close(split, whole, rtol=0, atol=1e-6)
    model.cpu_batch_tokens = 2 * model.num_tokens
    with torch.no_grad():
        assert model._sub_batch(x) == 2
    assert model._sub_batch(x) == 5  # autograd: the whole batch
    torch.set_num_threads(2)
    with torch.no_grad():
        assert model._sub_batch(x) == 5  # several threads: the whole batch
    with pytest.raises(ValueError, match="cpu_batch_tokens"):
        AST(input_tdim=128, preset="tiny", depth=1, cpu_batch_tokens=-1)


def test_in_place_gelu_without_autograd_gives_the_same_numbers():
    torch.manual_seed(0)
    mlp = AST(input_tdim=128, preset="tiny", depth=1).blocks[0].mlp
    x = torch.randn(2, 7, 192)
    with_grad = mlp(x)
    assert with_grad.requires_grad
    with torch.inference_mode():
        without = mlp(x)
    torch.testing.assert_close(without, with_grad.detach(), rtol=0, atol=0)


def test_fast_weighted_average_equals_the_generic_merge():
    """TokenMerge's row-copy average equals merge(x * s) / merge(s)."""
    g = torch.Generator().manual_seed(0)
    metric = torch.randn(3, 21, 8, generator=g, dtype=torch.float64)
    x = torch.randn(3, 21, 6, generator=g, dtype=torch.float64)
    size = torch.randint(1, 5, (3, 21, 1), generator=g).double()
    merge, _ = bipartite_soft_matching(metric, 6)
    fast, fast_size = merge_wavg(merge, x, size)
    slow_size = merge(size)
    slow = merge(x * size) / slow_size
    torch.testing.assert_close(fast, slow, rtol=0, atol=1e-12)
    torch.testing.assert_close(fast_size, slow_size, rtol=0, atol=0)


def test_block_skips_the_merge_metric_when_it_merges_nothing():
    model = AST(input_tdim=128, preset="tiny", depth=1).eval()
    attn = model.blocks[0].attn
    x = torch.randn(1, 10, 192)
    _, metric = attn(x, need_metric=False)
    assert metric is None
    _, metric = attn(x)
    assert metric.shape == (1, 10, 64)
