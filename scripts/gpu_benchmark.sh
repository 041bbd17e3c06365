#!/usr/bin/env bash
# FastAST Table 1 on a CUDA GPU: AST-base at T=512 and T=1024, bf16 and
# fp32 (autocast; fp32 matmuls without TF32, PyTorch's default), r in
# {0, 8, 16, 32, flops:0.5}, transformers' SDPA AST timed in the same
# rounds (--compare-hf), then one bf16 training-step table at T=512.
# Prints every table and writes them under $OUT_DIR (./gpu_benchmark).
# About 2-3 minutes on one H200.
#
# Usage, from anywhere:  bash scripts/gpu_benchmark.sh
# Needs torch with CUDA, transformers and matplotlib (not speechbrain).
# Overrides: PYTHON, OUT_DIR, BATCH (128), REPEATS (10), and, for a
# smoke test without a GPU, DEVICE=cpu PRESET=tiny.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
OUT_DIR="${OUT_DIR:-gpu_benchmark}"
BATCH="${BATCH:-128}"
REPEATS="${REPEATS:-10}"
DEVICE="${DEVICE:-cuda}"
PRESET="${PRESET:-base}"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1

DEVICE="$DEVICE" "$PYTHON" - <<'PY'
import os
import torch
if os.environ["DEVICE"].startswith("cuda"):
    assert torch.cuda.is_available(), "no CUDA device visible"
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}")
PY

bench() {
    "$PYTHON" -m fastast_sb.benchmark --device "$DEVICE" --preset "$PRESET" \
        "$@"
}

for dtype in bf16 fp32; do
    for tdim in 512 1024; do
        echo
        bench --dtype "$dtype" --tdim "$tdim" --batch "$BATCH" \
            --r 0 8 16 32 flops:0.5 --compare-hf \
            --warmup 3 --repeats "$REPEATS" \
            --out "$OUT_DIR/infer_${dtype}_T${tdim}"
    done
done

echo
bench --dtype bf16 --tdim 512 --batch $((BATCH / 4)) --mode train \
    --r 0 16 32 flops:0.5 --compare-hf \
    --warmup 2 --repeats $(((REPEATS + 1) / 2)) \
    --out "$OUT_DIR/train_bf16_T512"
