"""Setup of DataLoader worker processes (reader.make_loader passes :func:`init_reader_worker` as
``worker_init_fn``).

The workers are the reader's parallelism: ``--reader_thread`` processes, each decoding and augmenting one
sample at a time. OpenCV would otherwise size its own thread pool to every core in each of them (and a
forked worker keeps the parent's OpenMP thread count), so N workers would run N x cores threads that fight
each other and the training processes for the same cores.
"""
from __future__ import annotations

import os

import cv2


def init_reader_worker(worker_id: int) -> None:
    """One thread per decode worker: OpenCV's pool (resize, colour conversion, decode) and, for anything the
    worker loads or starts later, OpenMP and MKL."""
    del worker_id  # same setup for every worker; Paddle's worker loop already seeds each one
    cv2.setNumThreads(1)
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = "1"
