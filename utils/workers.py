"""Setup of DataLoader worker processes (reader.make_loader passes :func:`init_reader_worker` as
``worker_init_fn``).

The workers are the reader's parallelism: ``--reader_thread`` processes, each decoding and augmenting one
sample at a time. OpenCV would otherwise size its own thread pool to every core in each of them (and a
forked worker keeps the parent's OpenMP thread count), so N workers would run N x cores threads that fight
each other and the training processes for the same cores.
"""
from __future__ import annotations

import contextlib
import os

import cv2


@contextlib.contextmanager
def one_opencv_thread_for_forked_workers():
    """Set OpenCV to one thread while DataLoader forks its workers, then restore the parent's count.

    The forked workers inherit the setting. Calling cv2.setNumThreads inside a forked child instead can
    deadlock: once the parent has used OpenCV's thread pool, the child inherits the pool's state without its
    threads, and resizing the pool waits for them forever (seen here: a test hung in the worker's call)."""
    previous = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        yield
    finally:
        cv2.setNumThreads(previous)


def init_reader_worker(worker_id: int) -> None:
    """For anything a decode worker loads or starts later: one OpenMP/MKL thread (OpenCV's count is set
    before the fork, see :func:`one_opencv_thread_for_forked_workers`)."""
    del worker_id  # same setup for every worker; Paddle's worker loop already seeds each one
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = "1"
