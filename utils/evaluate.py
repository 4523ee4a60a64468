"""Top-1/top-5 evaluation over a loader, with a progress line and exact cross-rank aggregation."""
from __future__ import annotations

import sys
import time

import numpy as np
import paddle

from models.base import main_logits
from reader import BadImageLog
from utils.metrics import Accumulator, format_seconds
from utils.report import ClassCounts, PredictionLog


def _progress(done: int, total: int, started: float, accuracy: Accumulator, out) -> None:
    """A redrawn bar on a terminal; in a log file, one line per ~10% of the batches."""
    interactive = hasattr(out, "isatty") and out.isatty()
    if not interactive and done % max(1, total // 10) and done != total:
        return
    elapsed = time.perf_counter() - started
    eta = elapsed / done * (total - done) if done else 0.0
    width = 30
    filled = int(width * done / max(1, total))
    line = (f"[eval] [{'#' * filled}{'.' * (width - filled)}] {done}/{total} batches "
            f"top1 {accuracy.top(1):.4f} top5 {accuracy.top(5):.4f} ETA {format_seconds(eta)}")
    if interactive:
        print("\r" + line, end="" if done < total else "\n", file=out, flush=True)
    else:
        print(line, file=out, flush=True)


def _as_tensor(batch) -> paddle.Tensor:
    return batch if isinstance(batch, paddle.Tensor) else paddle.to_tensor(batch)


def _as_numpy(batch) -> np.ndarray:
    return batch.numpy() if isinstance(batch, paddle.Tensor) else np.asarray(batch)


@paddle.no_grad()
def evaluate(model: paddle.nn.Layer, loader, bad_log: BadImageLog | None = None, show_progress: bool = True,
             out=sys.stdout, forward=None, class_counts: ClassCounts | None = None,
             predictions: PredictionLog | None = None) -> Accumulator:
    """Accumulate exact top-1/top-5 counts; unreadable images are skipped and counted in ``bad_log``.

    ``forward`` maps a float32 NCHW batch (a paddle Tensor from the loader) to numpy logits
    (defaults to the dygraph model). ``class_counts`` (confusion matrix, per-class top-5 hits) and
    ``predictions`` (dataset index, label and logits of every image), when given, are filled too.
    """
    was_training = model.training if model is not None else False
    if model is not None:
        model.eval()
    forward = forward or (lambda batch: main_logits(model(_as_tensor(batch))).numpy())
    accuracy = Accumulator()
    total = len(loader)
    started = time.perf_counter()
    for step, (images, labels, indices, bad) in enumerate(loader, start=1):
        if bad_log is not None:
            bad_log.add(bad)
        if len(labels):
            logits = np.asarray(forward(images))
            labels = _as_numpy(labels)
            accuracy.add(logits, labels)
            if class_counts is not None:
                class_counts.add(logits, labels)
            if predictions is not None:
                predictions.add(_as_numpy(indices), labels, logits)
        if show_progress:
            _progress(step, total, started, accuracy, out)
    if model is not None and was_training:
        model.train()
    return accuracy


def all_reduce_counts(accuracy: Accumulator, bad: int) -> tuple[Accumulator, int]:
    """Sum exact counts over ranks (a no-op in a single process)."""
    import paddle.distributed as dist

    if dist.get_world_size() <= 1:
        return accuracy, bad
    counts = paddle.to_tensor([accuracy.samples, accuracy.correct[1], accuracy.correct[5], bad], dtype="int64")
    dist.all_reduce(counts)
    samples, top1, top5, bad_total = (int(v) for v in counts.numpy())
    total = Accumulator()
    total.samples, total.correct = samples, {1: top1, 5: top5}
    return total, bad_total
