"""NVIDIA DALI reader (``--use_dali=True``): decode and augment in DALI, same batches as the cv2 reader.

The sample order comes from the same :class:`reader.EpochBatchSampler` (so shuffling, rank sharding and
resuming behave exactly as with the cv2 reader); DALI reads the encoded bytes through an external source,
decodes (on the GPU with ``mixed`` decoding when one is given, else on the CPU), crops, flips and
normalises. Batches reach Paddle through DLPack (no copy), because DALI's Paddle plugin requires CUDA.

Supported augmentation: random resized crop and flip (train), resize-short + centre crop (eval).
Rotation, colour jitter and AutoAugment are cv2-reader features; asking for them with DALI is an error.
"""
from __future__ import annotations

import os

import numpy as np

from reader import EpochBatchSampler, ImageListDataset
from utils.args import UsageError

INSTALL_HINT = "pip install -r requirements-dali.txt (nvidia-dali-cuda120; CPU pipelines work without a GPU)"
_IMAGE_MAGIC = (b"\xff\xd8", b"\x89PNG", b"BM", b"GIF8", b"II*\x00", b"MM\x00*", b"RIFF")


def import_dali():
    try:
        from nvidia import dali
        from nvidia.dali import fn, types
    except ImportError as err:
        raise UsageError(f"--use_dali=True needs NVIDIA DALI: {INSTALL_HINT}") from err
    return dali, fn, types


def _interp(types, name: str):
    return {"nearest": types.INTERP_NN, "bilinear": types.INTERP_LINEAR, "bicubic": types.INTERP_CUBIC,
            "area": types.INTERP_LINEAR, "lanczos": types.INTERP_LANCZOS3}[name]


class _EncodedBatches:
    """DALI external source: the bytes, labels and indices of each batch, in the sampler's order.

    Files that are missing, empty or not an image are left out of the batch and reported (DALI would
    otherwise abort the whole pipeline on them).
    """

    def __init__(self, dataset: ImageListDataset):
        self.dataset = dataset
        self.batches: list[list[int]] = []
        self.position = 0
        self.bad: list[list[str]] = []

    def start(self, batches: list[list[int]]) -> None:
        self.batches, self.position, self.bad = batches, 0, []

    def _read(self, index: int) -> np.ndarray | str:
        path = self.dataset.samples[index].path
        try:
            data = np.fromfile(path, dtype=np.uint8)
        except OSError as err:
            return f"{path}: cannot read ({err.strerror or err})"
        if data.size == 0:
            return f"{path}: empty file"
        if not bytes(data[:4]).startswith(_IMAGE_MAGIC):
            return f"{path}: not a readable image (unknown format)"
        return data

    def __call__(self):
        while self.position < len(self.batches):
            indices = self.batches[self.position]
            self.position += 1
            encoded, labels, kept, bad = [], [], [], []
            for index in indices:
                data = self._read(index)
                if isinstance(data, str):
                    bad.append(data)
                    continue
                encoded.append(data)
                labels.append(np.int64(self.dataset.samples[index].label))
                kept.append(np.int64(index))
            self.bad.append(bad)
            if encoded:
                return encoded, labels, kept
            # an all-bad batch: nothing for DALI; its messages are reported with the next batch
        raise StopIteration


class DaliLoader:
    """Iterates ``(images, labels, indices, bad_messages)`` like reader.make_loader's DataLoader."""

    def __init__(self, dataset: ImageListDataset, sampler: EpochBatchSampler, threads: int,
                 device_id: int | None = None):
        cfg = dataset.cfg
        if dataset.training and (cfg.use_aa or cfg.rotate_degrees or cfg.color_jitter):
            raise UsageError("--use_dali=True supports random crop and flip only; drop --use_aa, "
                             "--rotate_degrees and --color_jitter or use the cv2 reader")
        self.dali, self.fn, self.types = import_dali()
        self.dataset, self.sampler = dataset, sampler
        self.threads, self.device_id = max(1, threads), device_id

    def __len__(self) -> int:
        return len(self.sampler)

    def _build(self, source: _EncodedBatches):
        fn, types, cfg = self.fn, self.types, self.dataset.cfg
        pipe = self.dali.Pipeline(batch_size=self.sampler.batch_size, num_threads=self.threads,
                                  device_id=self.device_id, seed=self._seed(), prefetch_queue_depth=2)
        with pipe:
            jpegs, labels, indices = fn.external_source(source=source, num_outputs=3,
                                                        dtype=[types.UINT8, types.INT64, types.INT64])
            decode_on = "mixed" if self.device_id is not None else "cpu"
            images = fn.decoders.image(jpegs, device=decode_on, output_type=types.RGB)
            mean = [255.0 * m for m in cfg.mean]
            std = [255.0 * s for s in cfg.std]
            interp = _interp(types, cfg.interpolation)
            if self.dataset.training:
                images = fn.random_resized_crop(images, size=[cfg.crop_size, cfg.crop_size],
                                                random_area=[cfg.lower_scale, 1.0],
                                                random_aspect_ratio=[cfg.lower_ratio, cfg.upper_ratio],
                                                interp_type=interp)
                mirror = fn.random.coin_flip(probability=0.5) if cfg.random_flip else 0
                images = fn.crop_mirror_normalize(images, dtype=types.FLOAT, output_layout="CHW", mean=mean,
                                                  std=std, mirror=mirror)
            else:
                images = fn.resize(images, resize_shorter=cfg.resize_short, interp_type=interp)
                images = fn.crop_mirror_normalize(images, dtype=types.FLOAT, output_layout="CHW", mean=mean,
                                                  std=std, crop=[cfg.crop_size, cfg.crop_size])
            pipe.set_outputs(images, labels, indices)
        pipe.build()
        return pipe

    def _seed(self) -> int:
        # a fresh pipeline per epoch, seeded by (seed, epoch, rank): reproducible and resumable
        return (self.dataset.seed * 1_000_003 + self.sampler.epoch * 101 + self.sampler.rank) % (2**31 - 1)

    def __iter__(self):
        from paddle.utils.dlpack import from_dlpack

        source = _EncodedBatches(self.dataset)
        source.start(list(self.sampler))
        pipe = self._build(source)
        reported = 0
        try:
            while True:
                try:
                    images, labels, indices = pipe.run()
                except StopIteration:
                    break
                bad = [m for batch in source.bad[reported:] for m in batch]
                reported = len(source.bad)
                yield (from_dlpack(images.as_tensor()), from_dlpack(labels.as_tensor()),
                       np.array(indices.as_tensor()), bad)
            leftover = [m for batch in source.bad[reported:] for m in batch]
            if leftover:
                yield _empty_batch(self.dataset.cfg.crop_size), np.zeros((0,), np.int64), \
                    np.zeros((0,), np.int64), leftover
        finally:
            del pipe


def _empty_batch(size: int) -> np.ndarray:
    return np.zeros((0, 3, size, size), np.float32)


def dali_device_id() -> int | None:
    """The GPU to decode on (this process's), or None for a CPU-only pipeline."""
    import paddle

    if paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0:
        return int(os.environ.get("FLAGS_selected_gpus", "0").split(",")[0])
    return None
