"""Data reading: list files, the cv2 image dataset and its loader (worker processes), bad-image counting.

List format (the classic one): ``relative/path label`` per line, paths relative to ``--data_dir``.
Every problem in a list file is reported with ``file:line`` before any training starts.

Augmentation randomness is drawn from a generator seeded by (seed, epoch, sample index), so a sample's
crop does not depend on which worker decodes it: runs are reproducible and a resumed run sees exactly
the batches an uninterrupted one would.
"""
from __future__ import annotations

import gc
import os
import shutil
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import cv2
import numpy as np
from paddle.io import DataLoader, Dataset

from utils.errors import UsageError
from utils.text_files import ListFileError, read_text_lines  # noqa: F401 (reader.ListFileError: public name)
from utils.transforms import (
    ImageDecodeError,
    PreprocessConfig,
    eval_crop,
    eval_transform,
    read_image,
    train_augment,
    train_transform,
)
from utils.workers import init_reader_worker, one_opencv_thread_for_forked_workers


@dataclass(frozen=True)
class Sample:
    path: str  # absolute or relative to the working directory
    label: int


@dataclass
class ListSummary:
    samples: list[Sample]
    num_classes: int  # max label + 1
    duplicates: int


def _warn_stderr(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def parse_list_file(list_path: str, data_dir: str, class_dim: int | None = None,
                    warn: Callable[[str], None] | None = _warn_stderr) -> ListSummary:
    """Parse ``path label`` lines; refuse malformed lines, bad labels and paths escaping data_dir.

    ``warn`` (default: a line on stderr) hears about suspicious label counts; None keeps quiet.
    """
    if not os.path.isfile(list_path):
        raise ListFileError(f"{list_path}: list file not found (set --data_dir, or --train_list/--val_list)")
    samples, seen, duplicates, first_line = [], set(), 0, {}
    for number, line in read_list_lines(list_path):
        samples.append(_parse_line(line, list_path, number, data_dir, class_dim))
        first_line.setdefault(samples[-1].label, number)
        if samples[-1] in seen:
            duplicates += 1
        seen.add(samples[-1])
    if not samples:
        raise ListFileError(f"{list_path}: no samples (an empty list); expected lines like 'train/a.jpg 3'")
    if warn is not None:
        for message in label_count_warnings(list_path, [s.label for s in samples], first_line):
            warn(message)
    return ListSummary(samples, max(s.label for s in samples) + 1, duplicates)


# a label seen once is a likely typo when the other classes have at least this many samples each (median)
RARE_LABEL_MEDIAN = 5


def label_count_warnings(list_path: str, labels: list[int], first_line: dict[int, int]) -> list[str]:
    """Suspicious label counts: every sample in one class, or a label seen once among well-filled classes."""
    counts = Counter(labels)
    if len(counts) == 1 and len(labels) > 1:
        label = labels[0]
        return [f"{list_path}:{first_line[label]}: all {len(labels)} samples have label {label}: a list of one "
                "class (is the label column right?)"]
    found = []
    for label, count in sorted(counts.items()):
        others = sorted(c for other, c in counts.items() if other != label)
        if count == 1 and others and others[len(others) // 2] >= RARE_LABEL_MEDIAN:
            found.append(f"{list_path}:{first_line[label]}: label {label} appears only once while the other classes "
                         f"have ~{others[len(others) // 2]} samples each (a typo adds a class)")
    return found


def read_list_lines(list_path: str) -> Iterator[tuple[int, str]]:
    """``(line number, stripped line)`` of a list file, blank and ``#`` lines left out."""
    for number, text in enumerate(read_text_lines(list_path), start=1):
        line = text.strip()
        if line and not line.startswith("#"):
            yield number, line


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
    if os.path.isabs(rel_path):
        # an absolute path is fine when it lies inside data_dir (lexically: symlinks inside are not followed)
        root = os.path.abspath(data_dir)
        if os.path.commonpath([root, os.path.normpath(rel_path)]) != root:
            raise ListFileError(f"{where}: path {rel_path!r} escapes --data_dir {data_dir}; an absolute path "
                                "must lie inside it")
        return Sample(os.path.normpath(rel_path), label)
    # lexical check: '..' leaves data_dir; symlinked folders inside it are fine
    normal = os.path.normpath(rel_path)
    if normal == ".." or normal.startswith(".." + os.sep):
        raise ListFileError(f"{where}: path {rel_path!r} escapes --data_dir {data_dir}; use paths inside it")
    return Sample(os.path.join(data_dir, rel_path), label)


def resolve_list(data_dir: str, list_arg: str | None, default_name: str) -> str:
    """``--train_list``/``--val_list``: a path as given, else relative to data_dir; default inside data_dir."""
    if not list_arg:
        return os.path.join(data_dir, default_name)
    if os.path.exists(list_arg) or os.path.isabs(list_arg):
        return list_arg
    return os.path.join(data_dir, list_arg)


# ---------------------------------------------------------------- folder data sets (ImageFolder layout)

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
TRAIN_SPLIT = "train"  # its class folders define the class ids of every split


def images_under(folder: str) -> list[str]:
    """Image files under ``folder`` (recursively, by extension), sorted."""
    found = []
    for current, _dirs, files in os.walk(folder):
        found += [os.path.join(current, f) for f in files if os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS]
    return sorted(found)


def class_folders(folder: str) -> list[str]:
    """The class folder names in ``folder``, sorted: class id = position (hidden folders left out)."""
    return sorted(d for d in os.listdir(folder) if os.path.isdir(os.path.join(folder, d)) and not d.startswith("."))


def folder_dataset(data_dir: str, split: str) -> tuple[ListSummary, list[str]]:
    """``<data_dir>/<split>/<class>/**/<image>`` as samples and the class names. Class ids are the sorted
    folder names of ``<data_dir>/train`` (the training classes), so every split numbers them alike."""
    split_dir = os.path.join(data_dir, split)
    train_dir = os.path.join(data_dir, TRAIN_SPLIT)
    classes = class_folders(train_dir if os.path.isdir(train_dir) else split_dir)
    unknown = sorted(set(class_folders(split_dir)) - set(classes))
    if unknown:
        raise ListFileError(f"{split_dir}: class folder(s) {', '.join(unknown[:5])} are not in {train_dir}; "
                            "every split needs the training classes' folder names")
    samples = []
    for label, name in enumerate(classes):
        found = images_under(os.path.join(split_dir, name))
        if not found and split == TRAIN_SPLIT:
            _warn_stderr(f"{os.path.join(split_dir, name)}: class {label} has no images")
        samples += [Sample(path, label) for path in found]
    if not samples:
        raise ListFileError(f"{split_dir}: no images in class folders (expected {split_dir}/<class>/<image>, "
                            f"extensions {', '.join(sorted(IMAGE_EXTENSIONS))})")
    return ListSummary(samples, len(classes), 0), classes


@dataclass
class SplitData:
    """One split's samples, from a list file or from class folders."""
    summary: ListSummary
    class_names: list[str] | None  # the folder names (a folder data set); None for a list file
    list_path: str | None  # the list file read, None for a folder data set
    source: str  # what was read, for messages


def resolve_split(data_dir: str, list_arg: str | None, default_name: str, split: str, class_dim: int | None = None,
                  warn: Callable[[str], None] | None = _warn_stderr) -> SplitData:
    """``--train_list``/``--val_list`` when given; else ``<data_dir>/<default_name>`` when it exists; else the
    folder data set ``<data_dir>/<split>/<class>/...`` (the classic readers took a list or a folder)."""
    list_path = resolve_list(data_dir, list_arg, default_name)
    split_dir = os.path.join(data_dir, split)
    if list_arg or os.path.isfile(list_path) or not os.path.isdir(split_dir):
        if not list_arg and not os.path.isfile(list_path):
            raise ListFileError(f"{list_path}: list file not found, and no folder data set {split_dir}/<class>/... "
                                "(set --data_dir, give the list with --train_list/--val_list, or run "
                                "data/make_lists.py)")
        return SplitData(parse_list_file(list_path, data_dir, class_dim, warn=warn), None, list_path, list_path)
    summary, classes = folder_dataset(data_dir, split)
    if class_dim is not None and len(classes) > class_dim:
        raise ListFileError(f"{split_dir}: {len(classes)} class folders but class_dim {class_dim}; raise "
                            "--class_dim or remove folders")
    return SplitData(summary, classes, None, split_dir)


# ---------------------------------------------------------------- dataset

BAD_LABEL = -1  # marks a sample whose image could not be decoded; dropped by the collate function


class ImageListDataset(Dataset):
    """Map-style dataset of (image, label, index, error); a bad image yields a marker, not an error.

    Images are normalised float32 CHW, or with ``uint8_hwc`` the augmented uint8 HWC pixels, 4x smaller to
    ship from the workers; the trainer normalises those on the device (transforms.DeviceNormalizer).
    """

    def __init__(self, samples: list[Sample], cfg: PreprocessConfig, training: bool, seed: int = 0,
                 uint8_hwc: bool = False):
        super().__init__()
        self.samples = samples
        self.cfg = cfg
        self.training = training
        self.seed = seed
        self.epoch = 0
        self.uint8_hwc = uint8_hwc

    def image_bytes(self) -> int:
        size = self.cfg.crop_size
        return size * size * 3 * (1 if self.uint8_hwc else 4)

    def _transform(self, image: np.ndarray, index: int) -> np.ndarray:
        if self.training:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            if self.uint8_hwc:
                return train_augment(image, self.cfg, rng)
            return train_transform(image, self.cfg, rng)
        return eval_crop(image, self.cfg) if self.uint8_hwc else eval_transform(image, self.cfg)

    def _placeholder(self) -> np.ndarray:
        size = self.cfg.crop_size
        return np.zeros((size, size, 3), np.uint8) if self.uint8_hwc else np.zeros((3, size, size), np.float32)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        sample = self.samples[index]
        try:
            tensor = self._transform(read_image(sample.path), index)
        except (ImageDecodeError, cv2.error) as err:
            return self._placeholder(), BAD_LABEL, index, str(err)
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
        images = np.zeros((1,) + batch[0][0].shape, batch[0][0].dtype)
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
    options = {"prefetch_factor": max(1, prefetch)} if workers > 0 else {}
    if workers > 0:
        check_shared_memory(dataset.image_bytes() * sampler.batch_size, workers, max(1, prefetch))
    return _DropPlaceholders(DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=workers,
        collate_fn=collate_skip_bad,
        worker_init_fn=init_reader_worker,  # one OpenCV/OpenMP thread per decode worker
        use_shared_memory=True,
        persistent_workers=False,
        **options,
    ))


SHARED_MEMORY = "/dev/shm"


def check_shared_memory(batch_bytes: int, workers: int, prefetch: int) -> None:
    """Worker processes hand batches over in shared memory: refuse a setting that cannot fit, naming
    /dev/shm and its size, rather than failing later with a bus error or a worker crash."""
    if not os.path.isdir(SHARED_MEMORY):
        return
    need = batch_bytes * workers * prefetch
    free = shutil.disk_usage(SHARED_MEMORY).free
    if need > free:
        mib = 2**20
        raise UsageError(f"{SHARED_MEMORY} has {free / mib:.0f} MiB free, but {workers} --reader_thread workers x "
                         f"{prefetch} --prefetch_batches batches of {batch_bytes / mib:.1f} MiB need {need / mib:.0f} "
                         "MiB: lower --reader_thread or --prefetch_batches (classic: --reader_buf_size), or give the "
                         "container more shared memory (docker run --shm-size=...)")


class _DropPlaceholders:
    """Turns the placeholder row of an all-bad batch back into an empty batch (0 images)."""

    def __init__(self, loader):
        self.loader = loader

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        # Finalise unreachable DALI pipelines before forking: their source-worker pool waits, when closed, for
        # its sockets to reach EOF, which never happens while a forked worker holds inherited copies (a hang).
        gc.collect()
        with one_opencv_thread_for_forked_workers():
            batches = iter(self.loader)  # forks the decode workers
        for images, labels, indices, bad in batches:
            if len(labels) == 1 and int(labels[0]) == BAD_LABEL:
                yield images[:0], labels[:0], indices[:0], bad
            else:
                yield images, labels, indices, bad


class TooManyBadImages(RuntimeError):
    """Raised by :class:`BadImageLog` once more images failed than its ``stop_after``."""

    def __init__(self, count: int):
        super().__init__(f"{count} unreadable images")
        self.count = count


class BadImageLog:
    """Counts skipped images and logs each path once; past ``stop_after`` failures it raises TooManyBadImages."""

    def __init__(self, log=print, seen: dict | None = None, stop_after: int | None = None):
        self.messages: dict[str, None] = {} if seen is None else seen  # share to log each path once per run
        self.count = 0
        self.log = log
        self.stop_after = stop_after

    def add(self, messages: list[str]) -> None:
        for message in messages:
            self.count += 1
            if message not in self.messages:
                self.messages[message] = None
                self.log(f"skipped bad image: {message}")
        if self.stop_after is not None and self.count > self.stop_after:
            raise TooManyBadImages(self.count)


# ---------------------------------------------------------------- an epoch with too few readable images


class UnreadableDataError(ListFileError):
    """No image, or more than the allowed fraction, of an epoch could be read; the message says the likely cause."""


def allowed_bad_images(total: int, max_fraction: float) -> int:
    """The most unreadable images an epoch of ``total`` may have under ``--max_bad_image_fraction``."""
    return int(total * max_fraction)


def check_readable(bad: int, total: int, max_fraction: float, samples: list[Sample], data_dir: str,
                   list_path: str | None = None, what: str = "epoch") -> None:
    """Raise UnreadableDataError when every image, or more than ``max_fraction`` of them, could not be read."""
    if total <= 0 or (bad < total and bad <= allowed_bad_images(total, max_fraction)):
        return
    cause = likely_cause(samples, data_dir, list_path)
    if bad >= total:
        raise UnreadableDataError(f"no image of the {what} could be read ({bad} of {total}): {cause}")
    raise UnreadableDataError(f"{bad} of {total} images of the {what} could not be read, more than "
                              f"--max_bad_image_fraction {max_fraction}: {cause}")


CAUSE_SAMPLE = 200  # listed files checked for existence when looking for the cause


def likely_cause(samples: list[Sample], data_dir: str, list_path: str | None = None,
                 root_name: str = "--data_dir") -> str:
    """The most likely reason listed images cannot be read: a wrong --data_dir, paths relative to another
    root, Windows separators, missing files, or files that are not images."""
    if not os.path.isdir(data_dir):
        return f"{root_name} {data_dir} is not a folder; set it to the root the list paths are relative to"
    windows = next((s.path for s in samples if "\\" in s.path), None)
    if windows is not None:
        return f"the list uses Windows separators ('\\'), e.g. {windows!r}; write paths with '/'"
    step = max(1, len(samples) // CAUSE_SAMPLE)
    checked = samples[::step]
    missing = [s for s in checked if not os.path.exists(s.path)]
    if not missing:
        return "the files exist but do not decode as images (corrupt, truncated or not images; see the messages above)"
    example = missing[0].path
    relative = os.path.relpath(example, data_dir)
    if len(missing) == len(checked):
        for root, name in ((os.path.dirname(os.path.abspath(list_path)) if list_path else None, "the list's folder"),
                           (os.getcwd(), "the working directory")):
            if root and os.path.abspath(root) != os.path.abspath(data_dir) and \
                    os.path.exists(os.path.join(root, relative)):
                return (f"the list paths are relative to {name} {root}, not {root_name} {data_dir}"
                        + (f": pass --data_dir={root}" if root_name == "--data_dir" else ""))
        return (f"none of the listed files exist under {root_name} {data_dir} (e.g. {example}); "
                "are the paths relative to another folder?")
    return f"{len(missing)} of {len(checked)} listed files checked do not exist (e.g. {example})"
