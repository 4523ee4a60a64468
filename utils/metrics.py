"""Top-k accuracy counting, running averages and time formatting for the logs."""
from __future__ import annotations

import numpy as np


def topk_correct(logits: np.ndarray, labels: np.ndarray, ks=(1, 5)) -> dict[int, int]:
    """Number of samples whose label is among the k highest logits, for each k (k capped at classes)."""
    order = np.argsort(-logits, axis=1, kind="stable")
    hits = order == labels.reshape(-1, 1)
    return {k: int(hits[:, : min(k, logits.shape[1])].any(axis=1).sum()) for k in ks}


class Accumulator:
    """Exact counts over an epoch (sums, not averages of averages)."""

    def __init__(self):
        self.samples = 0
        self.correct = {1: 0, 5: 0}
        self.loss_sum = 0.0

    def add(self, logits: np.ndarray, labels: np.ndarray, loss: float | None = None) -> None:
        for k, hits in topk_correct(logits, labels).items():
            self.correct[k] += hits
        self.samples += len(labels)
        if loss is not None:
            self.loss_sum += loss * len(labels)

    def top(self, k: int) -> float:
        return self.correct[k] / self.samples if self.samples else 0.0

    @property
    def loss(self) -> float:
        return self.loss_sum / self.samples if self.samples else float("nan")


def format_seconds(seconds: float) -> str:
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours:d}:{rest // 60:02d}:{rest % 60:02d}"
