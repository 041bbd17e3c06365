"""Merge schedules: parsing, error messages, FLOP budgets, clipping log."""

from __future__ import annotations

import logging

import pytest

from fastast_sb.models.ast import AST
from fastast_sb.tome import schedule as schedule_module
from fastast_sb.tome.flops import clip_schedule, encoder_flops, token_counts
from fastast_sb.tome.schedule import (
    describe,
    parse_r,
    resolve_schedule,
    validate_r,
)


# ------------------------------------------------------------------ kinds
def test_constant():
    assert parse_r(4, 8) == [8, 8, 8, 8]
    assert parse_r(3, 0) == [0, 0, 0]
    assert parse_r(3, None) == [0, 0, 0]
    assert parse_r(2, 8.0) == [8, 8]
    assert parse_r(3, {"r": 5}) == [5, 5, 5]


def test_ramp():
    assert parse_r(4, (8, 0.0)) == [8, 8, 8, 8]
    assert parse_r(4, (8, 1.0)) == [0, 5, 10, 16]
    assert parse_r(4, (8, -1.0)) == [16, 10, 5, 0]
    assert parse_r(4, {"r": 8, "inflect": -1}) == parse_r(4, (8, -1.0))
    assert parse_r(1, (8, -1.0)) == [8]
    ramp = parse_r(12, (16, 0.5))
    assert ramp == sorted(ramp) and abs(sum(ramp) - 12 * 16) <= 12


def test_list_is_padded_to_depth():
    assert parse_r(5, [3, 1]) == [3, 1, 0, 0, 0]
    assert parse_r(2, [3, 1]) == [3, 1]
    assert parse_r(3, []) == [0, 0, 0]


def test_ratio_follows_the_token_count():
    sched = parse_r(4, {"ratio": 0.25}, num_tokens=146)
    n = 146
    for r in sched:
        assert r == int(0.25 * (n - 2))
        n -= r
    assert parse_r(4, {"ratio": 0.5}, num_tokens=146)[0] == 72
    assert parse_r(4, {"ratio": 0}, num_tokens=146) == [0] * 4
    longer = parse_r(4, {"ratio": 0.25}, num_tokens=1214)
    assert longer[0] > sched[0]


def test_flop_budget_is_front_loaded_and_needs_sizes():
    sched = parse_r(12, {"flops": 0.5}, num_tokens=602, embed_dim=192)
    assert sched == sorted(sched, reverse=True)
    assert (
        parse_r(12, {"flops": 1.0}, num_tokens=602, embed_dim=192) == [0] * 12
    )
    with pytest.raises(ValueError, match="num_tokens"):
        parse_r(12, {"flops": 0.5})
    with pytest.raises(ValueError, match="embed_dim"):
        parse_r(12, {"flops": 0.5}, num_tokens=602)
    with pytest.raises(ValueError, match="num_tokens"):
        parse_r(12, {"ratio": 0.2})


def test_describe():
    assert describe({"flops": 0.5}) == "flops0.5"
    assert describe([4, 2]) == "4_2"
    assert describe(None) == "0"


# ----------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "spec,error,fragment",
    [
        (-1, ValueError, "got -1"),
        (-2.0, ValueError, "got -2"),
        (2.5, TypeError, "got 2.5"),
        (True, TypeError, "got True"),
        ("fast", TypeError, "got 'fast'"),
        ((8, 2.0), ValueError, "got 2.0"),
        ((8, "x"), TypeError, "got 'x'"),
        ((8,), ValueError, r"got \(8,\)"),
        ((-3, 0.0), ValueError, "got -3"),
        ([1, 2, 3, 4, 5], ValueError, r"\[1, 2, 3, 4, 5\] has 5 entries"),
        ([1, -2], ValueError, r"r\[1\] must be >= 0, got -2"),
        ([1, "a"], TypeError, "got 'a'"),
        ({"speed": 2}, ValueError, r"got \['speed'\]"),
        ({"r": 4, "ratio": 0.1}, ValueError, r"got \['r', 'ratio'\]"),
        ({"r": 4, "inflect": 3}, ValueError, "got 3"),
        ({"ratio": 0.6}, ValueError, "got 0.6"),
        ({"ratio": -0.1}, ValueError, "got -0.1"),
        ({"ratio": "half"}, TypeError, "got 'half'"),
        ({"flops": 0.0}, ValueError, r"\(0, 1\], got 0.0"),
        ({"flops": 1.5}, ValueError, r"\(0, 1\], got 1.5"),
        ({"flops": "0.5"}, TypeError, "got '0.5'"),
    ],
)
def test_invalid_specs_name_the_value(spec, error, fragment):
    with pytest.raises(error, match=fragment):
        parse_r(4, spec, num_tokens=146, embed_dim=192)
    with pytest.raises(error, match=fragment):
        validate_r(spec, num_layers=4)


def test_validation_knows_the_depth():
    validate_r([4] * 12)
    validate_r([4] * 12, num_layers=12)
    with pytest.raises(ValueError, match="13 entries, model has 12 blocks"):
        validate_r([4] * 13, num_layers=12)
    model = AST(input_tdim=128, preset="tiny", depth=12, r=[4] * 12)
    assert model.schedule() == [4] * 12
    with pytest.raises(ValueError, match="model has 12 blocks"):
        model.r = [4] * 13
    assert model.r == [4] * 12


# ------------------------------------------------------------ FLOP budget
@pytest.mark.parametrize("preset", ["tiny", "base"])
@pytest.mark.parametrize("t", [128, 512, 1024])
def test_flop_budget_is_reached_within_5_percent(preset, t):
    model = AST(input_tdim=t, preset=preset, depth=12)
    full = model.flops(0)
    enc_full = encoder_flops(model.num_tokens, [0] * 12, model.embed_dim)
    for budget in (0.3, 0.5, 0.7):
        spec = {"flops": budget}
        sched = model.schedule(spec)
        enc = encoder_flops(model.num_tokens, sched, model.embed_dim)
        enc_error = abs(enc / enc_full - budget) / budget
        model_error = abs(model.flops(spec) / full - budget) / budget
        assert enc_error < 0.05, (budget, sched)
        assert model_error < 0.05, (budget, sched)
        # What each block can really merge: nothing left to clip.
        assert clip_schedule(model.num_tokens, sched) == sched
        assert token_counts(model.num_tokens, sched)[-1] >= 2


# --------------------------------------------------------------- clipping
def test_clipping_is_logged(caplog):
    schedule_module._clipped_cached.cache_clear()
    with caplog.at_level(logging.WARNING, logger="fastast_sb.tome.schedule"):
        sched = resolve_schedule(3, 997, num_tokens=146, embed_dim=192)
    assert sched == [72, 36, 18]
    messages = [r.getMessage() for r in caplog.records]
    assert any("[997, 997, 997] clipped to [72, 36, 18]" in m for m in messages)
    assert all(r.levelno == logging.WARNING for r in caplog.records)


def test_no_log_when_nothing_is_clipped(caplog):
    schedule_module._clipped_cached.cache_clear()
    with caplog.at_level(logging.WARNING, logger="fastast_sb.tome.schedule"):
        resolve_schedule(3, 5, num_tokens=146, embed_dim=192)
        resolve_schedule(12, {"flops": 0.3}, num_tokens=146, embed_dim=192)
    assert not caplog.records
