"""Data reading: list files, the cv2 image dataset and its loader (worker processes), bad-image counting.

List format (the classic one): ``relative/path label`` per line, paths relative to ``--data_dir``.
Every problem in a list file is reported with ``file:line`` before any training starts.

Augmentation randomness is drawn from a generator seeded by (seed, epoch, sample index), so a sample's
crop does not depend on which worker decodes it: runs are reproducible and a resumed run sees exactly
the batches an uninterrupted one would.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np
from paddle.io import DataLoader, Dataset

from utils.transforms import ImageDecodeError, PreprocessConfig, eval_transform, read_image, train_transform


class ListFileError(ValueError):
    """A list file that cannot be used; the message names file:line and the fix."""


@dataclass(frozen=True)
class Sample:
    path: str  # absolute or relative to the working directory
    label: int


@dataclass
class ListSummary:
    samples: list[Sample]
    num_classes: int  # max label + 1
    duplicates: int


def parse_list_file(list_path: str, data_dir: str, class_dim: int | None = None) -> ListSummary:
    """Parse ``path label`` lines; refuse malformed lines, bad labels and paths escaping data_dir."""
    if not os.path.isfile(list_path):
        raise ListFileError(f"{list_path}: list file not found (set --data_dir, or --train_list/--val_list)")
    samples, seen, duplicates = [], set(), 0
    with open(list_path, encoding="utf-8", errors="replace", newline=None) as handle:
        for number, raw in enumerate(handle, start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            samples.append(_parse_line(line, list_path, number, data_dir, class_dim))
            if samples[-1] in seen:
                duplicates += 1
            seen.add(samples[-1])
    if not samples:
        raise ListFileError(f"{list_path}: no samples (an empty list); expected lines like 'train/a.jpg 3'")
    return ListSummary(samples, max(s.label for s in samples) + 1, duplicates)


def _parse_line(line, list_path, number, data_dir, class_dim) -> Sample:
    where = f"{list_path}:{number}"
    parts = line.rsplit(maxsplit=1)  # the path may contain spaces; the label is the last field
    if len(parts) != 2:
        raise ListFileError(f"{where}: expected 'relative/path label', got {line!r}")
    rel_path, label_text = parts
    try:
        label = int(label_text)
    except ValueError:
        raise ListFileError(f"{where}: label {label_text!r} is not an integer") from None
    if label < 0:
        raise ListFileError(f"{where}: negative label {label}; labels are 0..class_dim-1")
    if class_dim is not None and label >= class_dim:
        raise ListFileError(
            f"{where}: label {label} >= class_dim {class_dim}; raise --class_dim or fix the list"
        )
    full = os.path.join(data_dir, rel_path)
    # lexical check: '..' or an absolute path leaves data_dir; symlinked folders inside it are fine
    normal = os.path.normpath(rel_path)
    if os.path.isabs(rel_path) or normal == ".." or normal.startswith(".." + os.sep):
        raise ListFileError(f"{where}: path {rel_path!r} escapes --data_dir {data_dir}; use paths inside it")
    return Sample(full, label)


def resolve_list(data_dir: str, list_arg: str | None, default_name: str) -> str:
    """``--train_list``/``--val_list``: a path as given, else relative to data_dir; default inside data_dir."""
    if not list_arg:
        return os.path.join(data_dir, default_name)
    if os.path.exists(list_arg) or os.path.isabs(list_arg):
        return list_arg
    return os.path.join(data_dir, list_arg)


# ---------------------------------------------------------------- dataset

BAD_LABEL = -1  # marks a sample whose image could not be decoded; dropped by the collate function


class ImageListDataset(Dataset):
    """Map-style dataset of (CHW float32 image, label, index); a bad image yields a marker, not an error."""

    def __init__(self, samples: list[Sample], cfg: PreprocessConfig, training: bool, seed: int = 0):
        super().__init__()
        self.samples = samples
        self.cfg = cfg
        self.training = training
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        sample = self.samples[index]
        try:
            image = read_image(sample.path)
            if self.training:
                rng = np.random.default_rng([self.seed, self.epoch, index])
                tensor = train_transform(image, self.cfg, rng)
            else:
                tensor = eval_transform(image, self.cfg)
        except (ImageDecodeError, cv2.error) as err:
            size = self.cfg.crop_size
            return np.zeros((3, size, size), np.float32), BAD_LABEL, index, str(err)
        return tensor, sample.label, index, ""


def collate_skip_bad(batch):
    """Stack good samples; return bad ones' messages so the main process can count and log them."""
    good = [item for item in batch if item[1] != BAD_LABEL]
    bad = [item[3] for item in batch if item[1] == BAD_LABEL]
    if good:
        images = np.stack([item[0] for item in good])
        labels = np.asarray([item[1] for item in good], dtype=np.int64)
        indices = np.asarray([item[2] for item in good], dtype=np.int64)
    else:
        # one placeholder row: zero-size arrays cannot travel through shared memory; see _DropPlaceholders
        images = np.zeros((1,) + batch[0][0].shape, np.float32)
        labels = indices = np.full((1,), BAD_LABEL, np.int64)
    return images, labels, indices, bad


class EpochBatchSampler:
    """Batches of indices for one rank: a seeded permutation per epoch (training) or the list order.

    With ``world_size`` > 1 each rank takes an interleaved share; evaluation shards without padding so
    counts stay exact. ``start_batch`` lets a resumed run skip batches already trained.
    """

    def __init__(self, size: int, batch_size: int, shuffle: bool, seed: int = 0, drop_last: bool = False,
                 rank: int = 0, world_size: int = 1):
        self.size, self.batch_size, self.shuffle = size, batch_size, shuffle
        self.seed, self.drop_last, self.rank, self.world_size = seed, drop_last, rank, world_size
        self.epoch = 0
        self.start_batch = 0  # a run resumed mid-epoch skips the batches it already trained on

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = epoch, start_batch

    def _indices(self) -> np.ndarray:
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(self.size)
        else:
            order = np.arange(self.size)
        if self.world_size > 1 and self.shuffle:
            usable = len(order) - len(order) % self.world_size  # equal steps on every rank
            order = order[:usable]
        return order[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[list[int]]:
        order = self._indices()
        for start in range(self.start_batch * self.batch_size, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            if self.drop_last and len(batch) < self.batch_size:
                return
            yield batch.tolist()

    def __len__(self) -> int:
        count = len(self._indices())
        return count // self.batch_size if self.drop_last else -(-count // self.batch_size)


def make_loader(dataset: ImageListDataset, sampler: EpochBatchSampler, workers: int, prefetch: int,
                use_dali: bool = False):
    """A paddle DataLoader over worker processes (``--reader_thread``), ``--reader_buf_size`` prefetch;
    or, with ``use_dali``, the NVIDIA DALI loader (utils/dali.py) yielding the same batches."""
    if use_dali:
        from utils.dali import DaliLoader, dali_device_id

        return DaliLoader(dataset, sampler, threads=max(1, workers), device_id=dali_device_id())
    options = {"prefetch_factor": max(2, prefetch)} if workers > 0 else {}
    return _DropPlaceholders(DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=workers,
        collate_fn=collate_skip_bad,
        use_shared_memory=True,
        persistent_workers=False,
        **options,
    ))


class _DropPlaceholders:
    """Turns the placeholder row of an all-bad batch back into an empty batch (0 images)."""

    def __init__(self, loader):
        self.loader = loader

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        for images, labels, indices, bad in self.loader:
            if len(labels) == 1 and int(labels[0]) == BAD_LABEL:
                yield images[:0], labels[:0], indices[:0], bad
            else:
                yield images, labels, indices, bad


class BadImageLog:
    """Counts skipped images and logs each path once."""

    def __init__(self, log=print, seen: dict | None = None):
        self.messages: dict[str, None] = {} if seen is None else seen  # share to log each path once per run
        self.count = 0
        self.log = log

    def add(self, messages: list[str]) -> None:
        for message in messages:
            self.count += 1
            if message not in self.messages:
                self.messages[message] = None
                self.log(f"skipped bad image: {message}")
