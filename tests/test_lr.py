"""Each lr strategy at known steps (values from the definitions, checked by hand)."""
import math

import pytest

from utils.errors import UsageError
from utils.lr import ScheduleSpec, build_scheduler

SPEC = ScheduleSpec(base_lr=0.1, steps_per_epoch=10, num_epochs=100, warmup_epochs=5,
                    step_epochs=(30, 60, 90), decay_epochs=2.4, decay_rate=0.97)


def lr_at(strategy, step, spec=SPEC):
    scheduler = build_scheduler(strategy, spec)
    for _ in range(step):
        scheduler.step()
    return scheduler()


def test_piecewise_decay_steps_down_tenfold_at_boundaries():
    assert lr_at("piecewise_decay", 0) == pytest.approx(0.1)
    assert lr_at("piecewise_decay", 299) == pytest.approx(0.1)
    assert lr_at("piecewise_decay", 300) == pytest.approx(0.01)
    assert lr_at("piecewise_decay", 600) == pytest.approx(0.001)
    assert lr_at("piecewise_decay", 999) == pytest.approx(0.0001)


def test_cosine_decay_is_per_epoch_half_cosine():
    assert lr_at("cosine_decay", 0) == pytest.approx(0.1)
    assert lr_at("cosine_decay", 9) == pytest.approx(0.1)  # constant within the epoch
    assert lr_at("cosine_decay", 500) == pytest.approx(0.05)
    assert lr_at("cosine_decay", 990) == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi * 99 / 100)))


def test_cosine_decay_warmup_ramps_then_decays_to_zero():
    assert lr_at("cosine_decay_warmup", 0) == pytest.approx(0.1 / 50)
    assert lr_at("cosine_decay_warmup", 24) == pytest.approx(0.05)
    assert lr_at("cosine_decay_warmup", 50) == pytest.approx(0.1)
    assert lr_at("cosine_decay_warmup", 50 + 475) == pytest.approx(0.05)
    assert lr_at("cosine_decay_warmup", 1000) == pytest.approx(0.0, abs=1e-12)


def test_exponential_decay_warmup_staircase():
    assert lr_at("exponential_decay_warmup", 49) == pytest.approx(0.1)
    assert lr_at("exponential_decay_warmup", 50) == pytest.approx(0.1)
    assert lr_at("exponential_decay_warmup", 50 + 23) == pytest.approx(0.1)
    assert lr_at("exponential_decay_warmup", 50 + 24) == pytest.approx(0.097)
    assert lr_at("exponential_decay_warmup", 50 + 48) == pytest.approx(0.1 * 0.97**2)


def test_linear_decay_goes_to_zero():
    assert lr_at("linear_decay", 0) == pytest.approx(0.1)
    assert lr_at("linear_decay", 500) == pytest.approx(0.05)
    assert lr_at("linear_decay", 1000) == pytest.approx(0.0)


def test_scheduler_state_round_trips():
    a = build_scheduler("cosine_decay_warmup", SPEC)
    for _ in range(123):
        a.step()
    b = build_scheduler("cosine_decay_warmup", SPEC)
    b.set_state_dict(a.state_dict())
    assert b() == a()


def test_unknown_strategy_lists_valid_names():
    with pytest.raises(UsageError, match="cosine_decay_warmup"):
        build_scheduler("cosine", SPEC)
