"""Training-pipeline throughput: decode + random resized crop 224 + flip + normalise to CHW float32.

This suite's reader (cv2, utils/transforms.py) against a plain Pillow + numpy baseline doing the same work,
on the Imagenette JPEGs, one process and with every core (worker processes), in the same run.
"""
from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import time

import numpy as np

from utils.runtime import usable_cores
from utils.transforms import PreprocessConfig, read_image, train_transform

DEFAULT_DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "data",
                            "imagenette")
MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)


def ours(path: str, seed: int) -> np.ndarray:
    return train_transform(read_image(path), PreprocessConfig(crop_size=224), np.random.default_rng(seed))


def pillow_baseline(path: str, seed: int) -> np.ndarray:
    """The same steps written the plain way: PIL decode/crop/resize, numpy flip and normalise."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    with Image.open(path) as image:
        image = image.convert("RGB")
        width, height = image.size
        for _ in range(10):
            area = width * height * rng.uniform(0.08, 1.0)
            ratio = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
            crop_w, crop_h = round(math.sqrt(area * ratio)), round(math.sqrt(area / ratio))
            if 0 < crop_w <= width and 0 < crop_h <= height:
                break
        else:
            crop_w, crop_h = width, height
        left = int(rng.integers(0, width - crop_w + 1))
        top = int(rng.integers(0, height - crop_h + 1))
        image = image.resize((224, 224), Image.BILINEAR, box=(left, top, left + crop_w, top + crop_h))
        array = np.asarray(image)
    if rng.random() < 0.5:
        array = array[:, ::-1]
    return ((array.astype(np.float32) / 255.0 - MEAN) / STD).transpose(2, 0, 1).copy()


def _run_chunk(args):
    function, paths, offset = args
    for i, path in enumerate(paths):
        function(path, offset + i)
    return len(paths)


def measure(function, paths: list[str], processes: int) -> float:
    """Images per second over ``paths`` (one warm-up pass over a few images first)."""
    _run_chunk((function, paths[:8], 0))
    start = time.perf_counter()
    if processes == 1:
        _run_chunk((function, paths, 0))
    else:
        chunks = [(function, paths[i::processes], i * len(paths)) for i in range(processes)]
        pool = multiprocessing.get_context("fork").Pool(processes)
        pool.map(_run_chunk, chunks)
        pool.close()  # close + join, not terminate: workers end normally
        pool.join()
    return len(paths) / (time.perf_counter() - start)


def image_paths(data_dir: str, count: int) -> list[str]:
    list_file = os.path.join(data_dir, "train_list.txt")
    if not os.path.isfile(list_file):
        raise SystemExit(f"benchmark reader: {list_file} not found (pass --data_dir)")
    lines = [line.rsplit(maxsplit=1)[0] for line in open(list_file, encoding="utf-8") if line.strip()]
    step = max(1, len(lines) // count)
    return [os.path.join(data_dir, rel) for rel in lines[::step][:count]]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="benchmark.py reader", description=__doc__)
    parser.add_argument("--data_dir", default=os.path.normpath(DEFAULT_DATA))
    parser.add_argument("--images", type=int, default=600)
    args = parser.parse_args(argv)
    paths = image_paths(args.data_dir, args.images)
    cores = usable_cores()
    print(f"reader benchmark: {len(paths)} JPEGs from {args.data_dir}, RandomResizedCrop 224 + flip + "
          f"normalise to CHW float32; {cores} cores")
    print(f"{'pipeline':<26}{'1 process img/s':>18}{f'{cores} processes img/s':>22}")
    results = {}
    for name, function in (("this suite (cv2)", ours), ("Pillow + numpy baseline", pillow_baseline)):
        single = measure(function, paths, 1)
        multi = measure(function, paths, cores) if cores > 1 else single
        results[name] = single
        print(f"{name:<26}{single:>18.0f}{multi:>22.0f}")
    ratio = results["this suite (cv2)"] / results["Pillow + numpy baseline"]
    print(f"speed-up per core: {ratio:.2f}x (target >= 2x)")
    return 0


def loader_rate(paths: list[str], use_dali: bool, workers: int, batch: int = 32, uint8_hwc: bool = False,
                prefetch: int = 2) -> float:
    """images/s of a full training loader (decode + crop 224 + flip, batched; normalised to float32 CHW in
    the workers, or shipped as uint8 HWC and normalised by the consumer, as the trainer does), cv2 or DALI-CPU."""
    from reader import EpochBatchSampler, ImageListDataset, Sample, make_loader
    from utils.transforms import DeviceNormalizer

    samples = [Sample(path, 0) for path in paths]
    config = PreprocessConfig(crop_size=224)
    dataset = ImageListDataset(samples, config, training=True, seed=0, uint8_hwc=uint8_hwc)
    sampler = EpochBatchSampler(len(samples), batch, shuffle=True, seed=0)
    loader = make_loader(dataset, sampler, workers=workers, prefetch=prefetch, use_dali=use_dali)
    normalize = DeviceNormalizer(config.mean, config.std)
    start, count = time.perf_counter(), 0
    for images, _labels, _indices, _bad in loader:
        normalize(images)  # what the trainer does with every batch (a pass-through for float batches)
        count += len(_labels)
    return count / (time.perf_counter() - start)


def shared_memory_per_rank(batch: int, workers: int, prefetch: int, uint8_hwc: bool, size: int = 224) -> float:
    """MiB of /dev/shm the loader's prefetched batches hold per training process."""
    return batch * size * size * 3 * (1 if uint8_hwc else 4) * workers * prefetch / 2**20


def compare_loaders(data_dir: str, images: int = 600) -> None:
    """The cv2 reader (worker processes) against the DALI CPU pipeline, both feeding Paddle tensors."""
    import importlib.util

    paths = image_paths(data_dir, images)
    workers = usable_cores()
    print(f"training loader, {len(paths)} Imagenette JPEGs, batch 32, {workers} workers/threads:")
    for uint8_hwc, prefetch, label in ((False, 8, "float32 CHW, prefetch 8 (before)"),
                                       (True, 2, "uint8 HWC, prefetch 2 (now)   ")):
        rate = loader_rate(paths, False, workers, uint8_hwc=uint8_hwc, prefetch=prefetch)
        shm = shared_memory_per_rank(32, workers, prefetch, uint8_hwc)
        print(f"  cv2 reader, {label}  {rate:8.0f} img/s, /dev/shm per rank {shm:7.1f} MiB "
              f"(8 workers, batch 64: {shared_memory_per_rank(64, 8, prefetch, uint8_hwc):.0f} MiB)")
    if importlib.util.find_spec("nvidia") and importlib.util.find_spec("nvidia.dali"):
        print(f"  DALI CPU pipeline (parallel source){loader_rate(paths, True, workers):8.0f} img/s")
    else:
        print("  DALI CPU pipeline: not installed (pip install -r requirements-dali.txt)")
