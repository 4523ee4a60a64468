"""Decode and preprocess images in batches on threads, and classify them batch by batch.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import cv2
import numpy as np

from utils.errors import UsageError
from utils.inference.engine import Engine, engine_fallback
from utils.inference.inputs import ImageItem
from utils.inference.records import topk_records
from utils.transforms import ImageDecodeError, PreprocessConfig, eval_transform, read_image


@dataclass
class Batch:
    entries: list[tuple[ImageItem, str | None]]  # every image of the batch in order, with its error if any
    images: np.ndarray  # float32 NCHW, one row per image that decoded

    @property
    def good(self) -> list[ImageItem]:
        return [item for item, error in self.entries if error is None]


def _load(item: ImageItem, cfg: PreprocessConfig) -> np.ndarray | str:
    try:
        return eval_transform(read_image(item.path), cfg)
    except (ImageDecodeError, cv2.error) as err:
        message = str(err)
        return message if message.startswith(item.path) else f"{item.path}: {message}"


def iter_batches(items: list[ImageItem], cfg: PreprocessConfig, batch_size: int,
                 threads: int = 2) -> Iterator[Batch]:
    """Decode and preprocess with ``threads`` (OpenCV releases the GIL) and yield batches in list order;
    the next batch is decoded while the caller runs the model on this one."""
    if batch_size < 1:
        raise UsageError(f"--batch_size {batch_size}: must be >= 1")
    chunks = [items[start:start + batch_size] for start in range(0, len(items), batch_size)]
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        pending = [pool.submit(_load, item, cfg) for item in chunks[0]] if chunks else []
        for number, chunk in enumerate(chunks):
            results = [future.result() for future in pending]
            if number + 1 < len(chunks):
                pending = [pool.submit(_load, item, cfg) for item in chunks[number + 1]]
            arrays = [r for r in results if not isinstance(r, str)]
            images = np.stack(arrays) if arrays else np.zeros((0, 3, cfg.crop_size, cfg.crop_size), np.float32)
            yield Batch([(item, r if isinstance(r, str) else None) for item, r in zip(chunk, results)], images)


def classify(batches: Iterable[Batch], engine: Engine, topk: int, names: list[str] | None,
             on_record: Callable[[dict], None] | None = None, accuracy=None, temperature: float = 1.0) -> list[dict]:
    """Run every batch; records come out in input order, unreadable images as ``{"path", "error"}``.

    ``accuracy`` (a utils.metrics.Accumulator) counts top-1/top-5 over the images that carry a label.
    The scores are softmax(logits / ``temperature``) (eval.py fits a calibrating one; the order is unchanged).
    """
    records = []
    for batch in batches:
        good = batch.good
        logits = engine(batch.images) if good else np.zeros((0, 1), np.float32)
        fallback = engine_fallback(engine)
        if accuracy is not None and good:
            labelled = [n for n, item in enumerate(good) if item.label is not None]
            if labelled:
                accuracy.add(logits[labelled], np.asarray([good[n].label for n in labelled], np.int64))
        done = iter(topk_records([i.path for i in good], np.asarray(logits) / temperature, topk, names))
        for item, error in batch.entries:
            record = {"path": item.path, "error": error} if error is not None else next(done)
            if fallback and "error" not in record:
                record["engine_fallback"] = fallback
            records.append(record)
            if on_record:
                on_record(record)
    return records


def decode_threads(args) -> int:
    from utils.runtime import usable_cores

    return getattr(args, "cpu_threads", None) or usable_cores()
