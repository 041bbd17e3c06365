"""Token merging inside the AST: identity at r=0, token counts, prefix
tokens, size and source bookkeeping, batches, gradients, threads and
``apply_tome``."""

from __future__ import annotations

import threading
from typing import List, Tuple

import pytest
import torch

from fastast_sb.models.ast import AST
from fastast_sb.models.patch import apply_tome
from fastast_sb.tome.schedule import parse_schedule

SCHEDULES = [8, "ramp:16:-1", [40, 0, 30, 5], "ratio:0.3", "flops:0.5", 500]


def tiny(t: int = 128, depth: int = 3, **kwargs) -> AST:
    """The tiny preset, few blocks, random weights, eval mode."""
    return AST(input_tdim=t, preset="tiny", depth=depth, **kwargs).eval()


def narrow(t: int, depth: int = 12) -> AST:
    """Full depth but a narrow width: cheap even for 1214 tokens."""
    return AST(input_tdim=t, embed_dim=32, depth=depth, num_heads=2).eval()


def plain_forward(model: AST, x: torch.Tensor) -> torch.Tensor:
    """The AST without any merging code: attention, residual, MLP."""
    h = model.patch_embed(x)
    b = h.shape[0]
    prefix = torch.cat(
        [model.cls_token.expand(b, -1, -1), model.dist_token.expand(b, -1, -1)],
        dim=1,
    )
    h = model.pos_drop(torch.cat([prefix, h], dim=1) + model.pos_embed)
    for blk in model.blocks:
        h = h + blk.drop_path(blk.attn(blk.norm1(h))[0])
        h = h + blk.drop_path(blk.mlp(blk.norm2(h)))
    h = model.norm(h)
    return ((h[:, 0] + h[:, 1]) / 2).unsqueeze(1)


def expected_counts(n: int, schedule: List[int]) -> List[int]:
    counts = [n]
    for r in schedule:
        counts.append(counts[-1] - min(r, (counts[-1] - 2) // 2))
    return counts


def record_blocks(model: AST) -> Tuple[list, list]:
    """Attach hooks recording every block's input and output."""
    seen: list = []

    def hook(module, args, kwargs, output):
        seen.append((args[0].shape[1], output))

    handles = [
        blk.register_forward_hook(hook, with_kwargs=True)
        for blk in model.blocks
    ]
    return seen, handles


# --------------------------------------------------------------- identity
def test_r_zero_is_bit_identical_to_the_plain_model():
    model = tiny(depth=4)
    x = torch.randn(2, 128, 128)
    with torch.no_grad():
        plain = plain_forward(model, x)
        # The pooled forward's last block computes CLS and DIST only (a
        # matrix product of 2 rows, not N: the same sums, another order).
        out = model(x)
        torch.testing.assert_close(out, plain, rtol=0, atol=1e-5)
        assert torch.equal(model.forward_tokens(x).pooled, plain)
        for r in (0, [0, 0], "ramp:0:0.5", "ratio:0.0", "flops:1.0"):
            assert torch.equal(model(x, r=r), out), r
        apply_tome(model, 16)
        assert not torch.allclose(model(x), plain, atol=1e-3)
        apply_tome(model, 0)
        assert torch.equal(model(x), out)


# ----------------------------------------------------------- token counts
@pytest.mark.parametrize("t,n", [(128, 146), (512, 602), (1024, 1214)])
def test_tokens_per_block(t, n):
    model = narrow(t, depth=12)
    assert model.num_tokens == n
    x = torch.randn(1, t, 128)
    seen, handles = record_blocks(model)
    try:
        for spec in SCHEDULES:
            requested = parse_schedule(spec).requested(12, n, model.embed_dim)
            expected = expected_counts(n, requested)
            seen.clear()
            with torch.no_grad():
                trace = model.forward_tokens(x, r=spec)
            actual = [n_in for n_in, _ in seen] + [seen[-1][1][0].shape[1]]
            assert actual == expected, spec
            assert trace.counts == expected, spec
            assert trace.tokens.shape[1] == expected[-1]
            assert trace.schedule == [a - b for a, b in zip(actual, actual[1:])]
    finally:
        for h in handles:
            h.remove()


# ------------------------------------------------- prefix, sizes, sources
@pytest.mark.parametrize("spec", [16, "flops:0.3", "ramp:12:-1"])
def test_prefix_size_and_source_bookkeeping(spec):
    model = tiny(t=128, depth=6)
    x = torch.randn(3, 128, 128)
    seen, handles = record_blocks(model)
    try:
        with torch.no_grad():
            trace = model.forward_tokens(x, r=spec, trace_source=True)
    finally:
        for h in handles:
            h.remove()
    n_in = model.num_tokens
    merged_any = False
    for _, (tokens, size, source) in seen:
        if size is None:  # nothing merged yet
            assert source is None
            continue
        merged_any = True
        assert source.shape == (3, tokens.shape[1], n_in)
        assert size.shape == (3, tokens.shape[1], 1)
        for col in (0, 1):  # CLS and DIST rows hold exactly themselves
            expected = torch.zeros(3, n_in)
            expected[:, col] = 1
            assert torch.equal(source[:, col], expected)
        assert torch.all(size.sum(dim=1) == n_in)
        assert torch.equal(source.sum(dim=1), torch.ones(3, n_in))
        assert set(source.unique().tolist()) <= {0.0, 1.0}
        assert torch.equal(source.sum(dim=2), size[..., 0])
    assert merged_any
    assert torch.equal(trace.source, seen[-1][1][2])
    assert torch.equal(trace.size, seen[-1][1][1])


# ------------------------------------------------------------------ batch
@pytest.mark.parametrize("spec", [16, "flops:0.4"])
def test_batch_equals_examples_one_by_one(spec):
    model = tiny(t=128, depth=4)
    x = torch.randn(4, 128, 128)
    x[1, 60:] = 0.0  # a padded example merges differently
    with torch.no_grad():
        batch = model(x, r=spec)
        alone = torch.cat([model(x[i : i + 1], r=spec) for i in range(4)])
    torch.testing.assert_close(batch, alone, rtol=0, atol=1e-5)


# -------------------------------------------------------------- gradients
def test_gradients_reach_every_parameter_with_merging():
    model = tiny(t=128, depth=3, r=20).train()
    x = torch.randn(2, 128, 128)
    trace = model.forward_tokens(x)
    assert trace.counts[-1] < trace.counts[0]
    trace.pooled.pow(2).sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


# ---------------------------------------------------------------- threads
def test_threads_with_different_r_share_no_state():
    model = tiny(t=128, depth=3)
    x = torch.randn(2, 128, 128)
    specs = [0, 24, "flops:0.5"]
    with torch.no_grad():
        expected = {
            i: model.forward_tokens(x, r=s) for i, s in enumerate(specs)
        }
    iterations = 4
    barrier = threading.Barrier(len(specs))
    results = {i: [] for i in range(len(specs))}
    errors: list = []

    def work(i: int) -> None:
        try:
            for _ in range(iterations):
                barrier.wait(timeout=60)
                with torch.no_grad():
                    results[i].append(model.forward_tokens(x, r=specs[i]))
        except Exception as err:  # reported in the main thread
            errors.append(err)
            barrier.abort()

    threads = [
        threading.Thread(target=work, args=(i,)) for i in range(len(specs))
    ]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=120)
    assert not errors, errors
    for i, runs in results.items():
        assert len(runs) == iterations
        for run in runs:
            assert run.counts == expected[i].counts
            torch.testing.assert_close(
                run.pooled, expected[i].pooled, rtol=0, atol=1e-6
            )


# ------------------------------------------------------------- apply_tome
def test_apply_tome_is_idempotent():
    model = tiny(depth=3)
    x = torch.randn(1, 128, 128)
    once = apply_tome(model, "ramp:8:-1", prop_attn=False, trace_source=True)
    assert once is model
    state = (model.r, model.prop_attn, model.trace_source, model.schedule())
    with torch.no_grad():
        out1 = model(x)
    apply_tome(model, "ramp:8:-1", prop_attn=False, trace_source=True)
    assert (model.r, model.prop_attn, model.trace_source, model.schedule()) == (
        state
    )
    with torch.no_grad():
        assert torch.equal(model(x), out1)
    assert model.forward_tokens(x).source is not None


@pytest.mark.parametrize(
    "bad", [-1, "ramp:8:3", [1] * 4, "speed:2", "ratio:0.9", "fast"]
)
def test_apply_tome_validates_before_mutating(bad):
    first, second = tiny(depth=3), tiny(depth=3)
    model = torch.nn.ModuleDict({"a": first, "b": second})
    apply_tome(model, 8)
    with pytest.raises((ValueError, TypeError)):
        apply_tome(model, bad, prop_attn=False, trace_source=True)
    for ast in (first, second):
        assert ast.r == parse_schedule(8)
        assert ast.prop_attn is True
        assert ast.trace_source is False


def test_apply_tome_rejects_models_without_an_ast():
    with pytest.raises(TypeError, match="Linear"):
        apply_tome(torch.nn.Linear(2, 2), 8)


def test_apply_tome_on_a_model_trained_without_merging():
    model = tiny(t=128, depth=4)  # random weights stand in for training
    params = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(2, 128, 128)
    with torch.no_grad():
        plain = model(x)
        apply_tome(model, 16)
        merged = model.forward_tokens(x)
    assert merged.counts == [146, 130, 114, 98, 82]
    assert torch.isfinite(merged.pooled).all()
    assert not torch.equal(merged.pooled, plain)
    state = model.state_dict()
    assert state.keys() == params.keys()  # merging adds no parameters
    assert all(torch.equal(state[k], v) for k, v in params.items())
