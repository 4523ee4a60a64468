"""Learning-rate schedules of the classic suite, as pure functions of the global step.

The scheduler is stepped once per iteration; its state (the step) is saved in checkpoints, so a resumed
run continues the same curve.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

from paddle.optimizer.lr import LRScheduler

from utils.errors import UsageError


@dataclass(frozen=True)
class ScheduleSpec:
    base_lr: float
    steps_per_epoch: int
    num_epochs: int
    warmup_epochs: float = 5.0
    step_epochs: tuple[int, ...] = (30, 60, 90)
    decay_epochs: float = 2.4
    decay_rate: float = 0.97

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.num_epochs

    @property
    def warmup_steps(self) -> int:
        return int(round(self.warmup_epochs * self.steps_per_epoch))


def piecewise_decay(spec: ScheduleSpec, step: int) -> float:
    """x0.1 at each of step_epochs (epoch boundaries)."""
    epoch = step // spec.steps_per_epoch
    passed = sum(1 for boundary in spec.step_epochs if epoch >= boundary)
    return spec.base_lr * 0.1**passed


def cosine_decay(spec: ScheduleSpec, step: int) -> float:
    """Half-cosine over the run, updated once per epoch (the classic behaviour)."""
    epoch = step // spec.steps_per_epoch
    return spec.base_lr * 0.5 * (math.cos(epoch * math.pi / spec.num_epochs) + 1)


def _linear_warmup(spec: ScheduleSpec, step: int) -> float:
    return spec.base_lr * (step + 1) / spec.warmup_steps


def cosine_decay_warmup(spec: ScheduleSpec, step: int) -> float:
    """Linear warmup over warm_up_epochs, then a per-step half-cosine to zero at the last step."""
    if step < spec.warmup_steps:
        return _linear_warmup(spec, step)
    span = max(1, spec.total_steps - spec.warmup_steps)
    progress = min(1.0, (step - spec.warmup_steps) / span)
    return spec.base_lr * 0.5 * (math.cos(progress * math.pi) + 1)


def exponential_decay_warmup(spec: ScheduleSpec, step: int) -> float:
    """Linear warmup, then x decay_rate every decay_epochs (staircase), the EfficientNet recipe."""
    if step < spec.warmup_steps:
        return _linear_warmup(spec, step)
    period = max(1, int(round(spec.decay_epochs * spec.steps_per_epoch)))
    return spec.base_lr * spec.decay_rate ** ((step - spec.warmup_steps) // period)


def linear_decay(spec: ScheduleSpec, step: int) -> float:
    """Straight line from base_lr at step 0 to zero at the end of the run."""
    return spec.base_lr * max(0.0, 1.0 - step / max(1, spec.total_steps))


SCHEDULES = {
    "piecewise_decay": piecewise_decay,
    "cosine_decay": cosine_decay,
    "cosine_decay_warmup": cosine_decay_warmup,
    "exponential_decay_warmup": exponential_decay_warmup,
    "linear_decay": linear_decay,
}


class StepScheduler(LRScheduler):
    """A paddle LRScheduler over one of the functions above; ``last_epoch`` counts iterations."""

    def __init__(self, function, spec: ScheduleSpec):
        self.function = partial(function, spec)
        super().__init__(learning_rate=spec.base_lr, last_epoch=-1)

    def get_lr(self) -> float:
        return self.function(max(0, self.last_epoch))


def build_scheduler(strategy: str, spec: ScheduleSpec) -> StepScheduler:
    if strategy not in SCHEDULES:
        raise UsageError(f"--lr_strategy {strategy!r} is unknown; choose one of: {', '.join(SCHEDULES)}")
    return StepScheduler(SCHEDULES[strategy], spec)
