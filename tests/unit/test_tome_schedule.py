"""Merge schedules: the one type, its text form, errors, FLOP budgets, clipping
log."""

from __future__ import annotations

import logging

import pytest

from fastast_sb.models.ast import AST
from fastast_sb.tome import schedule as schedule_module
from fastast_sb.tome.flops import clip_schedule, encoder_flops, token_counts
from fastast_sb.tome.schedule import Schedule, parse_schedule


def blocks(spec, num_layers, num_tokens=146, embed_dim=192):
    """The r asked of each block (before clipping)."""
    return parse_schedule(spec).requested(num_layers, num_tokens, embed_dim)


# ------------------------------------------------------------------ kinds
def test_constant():
    assert blocks(8, 4) == [8, 8, 8, 8]
    assert blocks(0, 3) == [0, 0, 0]
    assert blocks(None, 3) == [0, 0, 0]
    assert blocks(8.0, 2) == [8, 8]
    assert blocks("5", 3) == [5, 5, 5]


def test_ramp():
    assert blocks("ramp:8:0", 4) == [8, 8, 8, 8]
    assert blocks("ramp:8:1", 4) == [0, 5, 10, 16]
    assert blocks("ramp:8:-1", 4) == [16, 10, 5, 0]
    assert blocks(Schedule("ramp", r=8, inflect=-1), 4) == [16, 10, 5, 0]
    assert blocks("ramp:8:-1.0", 1) == [8]
    ramp = blocks("ramp:16:0.5", 12)
    assert ramp == sorted(ramp) and abs(sum(ramp) - 12 * 16) <= 12


def test_list_is_padded_to_depth():
    assert blocks([3, 1], 5) == [3, 1, 0, 0, 0]
    assert blocks("3,1", 2) == [3, 1]
    assert blocks("[3, 1]", 2) == [3, 1]
    assert blocks([], 3) == [0, 0, 0]


def test_ratio_follows_the_token_count():
    sched = blocks("ratio:0.25", 4, num_tokens=146)
    n = 146
    for r in sched:
        assert r == int(0.25 * (n - 2))
        n -= r
    assert blocks("ratio:0.5", 4, num_tokens=146)[0] == 72
    assert blocks("ratio:0", 4, num_tokens=146) == [0] * 4
    longer = blocks("ratio:0.25", 4, num_tokens=1214)
    assert longer[0] > sched[0]


def test_flop_budget_is_front_loaded():
    sched = blocks("flops:0.5", 12, num_tokens=602, embed_dim=192)
    assert sched == sorted(sched, reverse=True)
    assert blocks("flops:1.0", 12, num_tokens=602, embed_dim=192) == [0] * 12


@pytest.mark.parametrize(
    "text", ["0", "16", "4,2", "ramp:8:-1", "flops:0.5", "ratio:0.1"]
)
def test_text_form_round_trips(text):
    schedule = parse_schedule(text)
    assert str(schedule) == text
    assert parse_schedule(str(schedule)) == schedule
    assert hash(schedule) == hash(parse_schedule(text))


def test_one_value_many_spellings():
    assert parse_schedule(16) == parse_schedule("16") == Schedule(r=16)
    assert parse_schedule([4, 2]) == parse_schedule(" 4, 2 ")
    assert parse_schedule(" flops : 0.5 ") == Schedule("flops", fraction=0.5)
    assert str(parse_schedule(None)) == "0"


# ----------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "spec,error,fragment",
    [
        (-1, ValueError, "got -1"),
        (-2.0, ValueError, "got -2"),
        (2.5, TypeError, "got 2.5"),
        (True, TypeError, "True"),
        ("fast", ValueError, "'fast' is not an int r"),
        ("ramp:8:2.0", ValueError, "got 2.0"),
        ("ramp:8:x", ValueError, "'ramp:8:x' is not"),
        ("ramp:8", ValueError, "'ramp:8' is not"),
        ("ramp:-3:0", ValueError, "got -3"),
        ([1, -2], ValueError, r"r\[1\] must be >= 0, got -2"),
        ([1, "a"], TypeError, "got 'a'"),
        ("speed:2", ValueError, "'speed:2' is not"),
        ({"flops": 0.5}, TypeError, "flops:BUDGET"),
        ((8, -1.0), TypeError, "ramp:R:INFLECT"),
        ("ratio:0.6", ValueError, "got 0.6"),
        ("ratio:-0.1", ValueError, "got -0.1"),
        ("ratio:half", ValueError, "'ratio:half' is not"),
        ("flops:0", ValueError, r"\(0, 1\], got 0.0"),
        ("flops:1.5", ValueError, r"\(0, 1\], got 1.5"),
        (Schedule, TypeError, "is not"),
        ("", ValueError, "'' is not"),
    ],
)
def test_invalid_specs_name_the_value(spec, error, fragment):
    with pytest.raises(error, match=fragment):
        parse_schedule(spec)


def test_bad_fields_name_the_value():
    with pytest.raises(TypeError, match="got 'half'"):
        Schedule("ratio", fraction="half")
    with pytest.raises(TypeError, match="got '0.5'"):
        Schedule("flops", fraction="0.5")
    with pytest.raises(ValueError, match="'fast' is not one of"):
        Schedule("fast")


def test_validation_knows_the_depth():
    parse_schedule([4] * 12).check_depth(12)
    with pytest.raises(ValueError, match="13 entries, model has 12 blocks"):
        parse_schedule([4] * 13).check_depth(12)
    model = AST(input_tdim=128, preset="tiny", depth=12, r=[4] * 12)
    assert model.schedule() == [4] * 12
    with pytest.raises(ValueError, match="model has 12 blocks"):
        model.r = [4] * 13
    assert model.r == parse_schedule([4] * 12)


# ------------------------------------------------------------ FLOP budget
@pytest.mark.parametrize("preset", ["tiny", "base"])
@pytest.mark.parametrize("t", [128, 512, 1024])
def test_flop_budget_is_reached_within_5_percent(preset, t):
    model = AST(input_tdim=t, preset=preset, depth=12)
    full = model.flops(0)
    enc_full = encoder_flops(model.num_tokens, [0] * 12, model.embed_dim)
    for budget in (0.3, 0.5, 0.7):
        spec = f"flops:{budget}"
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
def _resolve(spec, num_layers):
    return parse_schedule(spec).resolve(num_layers, 146, 192)


def test_clipping_is_logged(caplog):
    schedule_module._clipped.cache_clear()
    with caplog.at_level(logging.WARNING, logger="fastast_sb.tome.schedule"):
        sched = _resolve(997, 3)
    assert sched == [72, 36, 18]
    messages = [r.getMessage() for r in caplog.records]
    assert any("[997, 997, 997] clipped to [72, 36, 18]" in m for m in messages)
    assert all(r.levelno == logging.WARNING for r in caplog.records)


def test_no_log_when_nothing_is_clipped(caplog):
    schedule_module._clipped.cache_clear()
    with caplog.at_level(logging.WARNING, logger="fastast_sb.tome.schedule"):
        _resolve(5, 3)
        _resolve("flops:0.3", 12)
    assert not caplog.records


def test_an_unreachable_budget_is_logged_with_what_was_reached(caplog):
    schedule_module._requested.cache_clear()
    model = AST(input_tdim=128, preset="tiny", depth=2, r="flops:0.1")
    with caplog.at_level(logging.WARNING, logger="fastast_sb.tome.schedule"):
        sched = model.schedule()
    enc = encoder_flops(model.num_tokens, sched, model.embed_dim)
    reached = enc / encoder_flops(model.num_tokens, [0, 0], model.embed_dim)
    assert reached > 0.5  # two blocks cannot cut the FLOPs to 0.1
    messages = [r.getMessage() for r in caplog.records]
    assert any(
        "FLOP budget 0.1 not reachable" in m and f"keeps {reached:.2f}" in m
        for m in messages
    ), messages
    # The model's count adds the patch embedding, which never shrinks.
    assert reached < model.flops() / model.flops(0) < 1
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="fastast_sb.tome.schedule"):
        AST(input_tdim=128, preset="tiny", depth=12, r="flops:0.5").schedule()
    assert not caplog.records
