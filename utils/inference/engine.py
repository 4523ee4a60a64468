"""What every engine is (a callable from a float32 NCHW batch to logits, with a ``name``), and the checks
layered on engines: agreement with a reference (:class:`VerifiedEngine`) and finite outputs.
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from utils.errors import UsageError
from utils.inference.records import log, softmax

SCORE_TOLERANCE = 1e-4  # engines that agree give softmax scores this close


@runtime_checkable
class Engine(Protocol):
    name: str

    def __call__(self, batch: np.ndarray) -> np.ndarray: ...


def as_numpy(batch) -> np.ndarray:
    """A contiguous float32 numpy batch from numpy or a paddle Tensor (what eval.py's loader yields)."""
    if hasattr(batch, "numpy") and not isinstance(batch, np.ndarray):
        batch = batch.numpy()
    return np.ascontiguousarray(batch, dtype=np.float32)


def same_topk(a: np.ndarray, b: np.ndarray, topk: int, tolerance: float = SCORE_TOLERANCE) -> tuple[bool, float]:
    """Whether two logit batches give the same top-k, and the largest softmax score difference.

    Two classes whose scores are within ``tolerance`` are a tie: swapping them is not a disagreement.
    """
    pa, pb = softmax(a), softmax(b)
    if pa.shape != pb.shape:
        return False, float("inf")
    diff = float(np.abs(pa - pb).max()) if pa.size else 0.0
    k = min(topk, pa.shape[1])
    ids_a = np.argsort(-pa, axis=1, kind="stable")[:, :k]
    ids_b = np.argsort(-pb, axis=1, kind="stable")[:, :k]
    rows = np.arange(len(pb))[:, None]
    ties = np.abs(pb[rows, ids_a] - pb[rows, ids_b]) <= tolerance
    return bool(((ids_a == ids_b) | ties).all() and diff <= tolerance), diff


def _same_topk_ids(a: np.ndarray, b: np.ndarray, topk: int) -> bool:
    if a.shape != b.shape:
        return False
    pa, pb = softmax(a), softmax(b)
    k = min(topk, pa.shape[1])
    ids_a = np.argsort(-pa, axis=1, kind="stable")[:, :k]
    ids_b = np.argsort(-pb, axis=1, kind="stable")[:, :k]
    rows = np.arange(len(pb))[:, None]
    return bool(((ids_a == ids_b) | (np.abs(pb[rows, ids_a] - pb[rows, ids_b]) <= SCORE_TOLERANCE)).all())


def engine_fallback(engine) -> str | None:
    """Why ``engine`` runs dygraph instead of the faster engine it was asked to try (None: no fallback)."""
    return getattr(engine, "fallback", None)


def _spot_checked(batch_number: int) -> bool:
    """Batches 1, 2, 4, 8, ...: a log2 share of a long run is compared with the reference."""
    return batch_number & (batch_number - 1) == 0


class VerifiedEngine:
    """Use ``fast`` while it agrees with ``reference``: on the first batch the scores (within
    SCORE_TOLERANCE) and the top-k, on batches 2, 4, 8, ... the top-k. A disagreement is said on stderr,
    recorded in ``fallback`` and the rest of the run uses the reference."""

    def __init__(self, fast: Engine, reference: Engine, topk: int = 5):
        self.fast, self.reference, self.topk = fast, reference, topk
        self.batches = 0
        self.fallback: str | None = None
        self.fell_back_at = 0  # the batch that disagreed

    @property
    def name(self) -> str:
        fast, reference = getattr(self.fast, "name", "fast"), getattr(self.reference, "name", "reference")
        if self.fallback is None:
            return fast
        return reference if self.fell_back_at == 1 else f"{fast} then {reference}"

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.batches += 1
        if self.fallback is not None:
            return self.reference(batch)
        try:
            fast_out = self.fast(batch)
        except Exception as err:  # e.g. a converted program Paddle Inference cannot run on this input
            return self._fall_back(f"Paddle Inference failed on batch {self.batches} ({short_error(err)}); "
                                   "dygraph used from that batch on", batch)
        if not _spot_checked(self.batches):
            return fast_out
        reference_out = self.reference(batch)
        same, diff = same_topk(fast_out, reference_out, self.topk)
        if self.batches > 1:  # later batches: the top-k must match; scores may drift a little more
            same = same or _same_topk_ids(fast_out, reference_out, self.topk)
        if same:
            if self.batches == 1:
                log(f"engine: {getattr(self.fast, 'name', 'fast')} (first batch matches dygraph: same "
                    f"top-{self.topk}, max score difference {diff:.1e}; top-{self.topk} rechecked on batches "
                    "2, 4, 8, ...)")
            return fast_out
        self.fell_back_at = self.batches
        self.fallback = (f"Paddle Inference disagreed with dygraph on batch {self.batches} (top-{self.topk} or "
                         f"scores, max score difference {diff:.1e}); dygraph used from that batch on")
        log(f"warning: {self.fallback}")
        return reference_out

    def _fall_back(self, reason: str, batch: np.ndarray) -> np.ndarray:
        self.fell_back_at, self.fallback = self.batches, reason
        log(f"warning: {reason}")
        return self.reference(batch)


def short_error(err: Exception) -> str:
    """One line for a (often multi-line, C++-wrapped) Paddle exception: its first line naming an error."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    named = next((line for line in lines if "Error" in line.split(":")[0]), lines[0] if lines else "")
    return f"{type(err).__name__}: {named[:200]}" if named else type(err).__name__


class NonFiniteOutput(UsageError):
    """The model produced NaN/Inf scores: an accuracy over them would be meaningless."""


def require_finite(engine: Engine) -> Engine:
    """``engine`` whose every batch must give finite logits (evaluation: a NaN score is not a prediction)."""
    def checked(batch):
        logits = np.asarray(engine(batch))
        bad_rows = int((~np.isfinite(logits).all(axis=1)).sum()) if logits.size else 0
        if bad_rows:
            raise NonFiniteOutput(f"the model's output is not finite (NaN/Inf) for {bad_rows} of {len(logits)} "
                                  "images of a batch: an input size below the model's minimum, or broken weights")
        return logits

    return checked
