"""NVIDIA DALI reader (``--use_dali=True``): decode and augment in DALI, same batches as the cv2 reader.

The sample order comes from the same :class:`reader.EpochBatchSampler` (so shuffling, rank sharding and
resuming behave exactly as with the cv2 reader). DALI reads the encoded bytes through a parallel external
source (worker processes read and screen the files), decodes (on the GPU with ``mixed`` decoding when one is
given, else on the CPU), crops, flips and normalises.

Training crops are drawn like the cv2 reader's, from a generator seeded by (seed, epoch, sample index), and
DALI decodes only that region (ROI decoding): the crops do not depend on the pipeline's own random state, so
one pipeline serves every epoch of a loader and a resumed run sees the batches an uninterrupted one would.

Every batch is a copy that Paddle owns (DALI reuses its output buffers at the next run), so batches can be
kept (``--same_feed``). Unreadable images are left out and reported like the cv2 reader's; a batch with no
readable image is yielded empty at its own position, so the loader yields exactly ``len(sampler)`` batches.

Supported augmentation: random resized crop and flip (train), resize-short + centre crop (eval).
Rotation, colour jitter and AutoAugment are cv2-reader features; asking for them with DALI is an error.
"""
from __future__ import annotations

import copy
import ctypes
import os

import numpy as np

from reader import EpochBatchSampler, ImageListDataset
from utils.errors import UsageError
from utils.image_limit import pixel_limit
from utils.transforms import random_crop_box

INSTALL_HINT = "pip install -r requirements-dali.txt (nvidia-dali-cuda120; CPU pipelines work without a GPU)"
_OTHER_DALI_FORMATS = (b"BM", b"II*\x00", b"MM\x00*", b"RIFF")  # BMP, TIFF, WebP: DALI decodes them too
PLACEHOLDER_INDEX = -1  # the one stand-in sample of a batch with no readable image
MAX_SOURCE_WORKERS = 4  # reading and screening files is light: a few processes keep ahead of the decoder


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


# ---------------------------------------------------------------- screening encoded files on the CPU


def _jpeg_layout(data: bytes) -> tuple[int, int, int] | None:
    """``(height, width, offset of the scan data)`` from the JPEG markers, or None when they do not parse."""
    pos, height, width = 2, 0, 0
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
            if pos + 9 > len(data):
                return None
            height = int.from_bytes(data[pos + 5 : pos + 7], "big")
            width = int.from_bytes(data[pos + 7 : pos + 9], "big")
        if marker == 0xDA:  # start of scan: the entropy-coded data follows this segment
            return (height, width, pos + 2 + length) if height and width else None
        pos += 2 + length
    return None


def screen_encoded(data: bytes, path: str) -> tuple[int, int] | str:
    """``(height, width)`` of an image DALI can decode, or the reason it cannot (checked without decoding).

    DALI stops the whole pipeline on a file it cannot decode (it has no per-sample skip: NVIDIA/DALI#3913),
    so truncation is caught here: a JPEG's end-of-image marker must follow its scan data (inside the scan,
    0xFF is always followed by a stuffed 0x00 or a restart code), a PNG must end with its IEND chunk.
    """
    if not data:
        return f"{path}: empty file"
    if data[:2] == b"\xff\xd8":
        layout = _jpeg_layout(data[:65536])
        if layout is None:
            return f"{path}: not a readable image (corrupt JPEG header)"
        height, width, scan = layout
        if data.find(b"\xff\xd9", scan) < 0:
            return f"{path}: not a readable image (truncated JPEG: no end-of-image marker)"
    elif data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
        if b"IEND" not in data[-64:]:
            return f"{path}: not a readable image (truncated PNG: no IEND chunk)"
    elif data.startswith(_OTHER_DALI_FORMATS):
        import cv2

        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)  # rare formats: size by decoding
        if image is None:
            return f"{path}: not a readable image (corrupt or unsupported)"
        height, width = image.shape[:2]
    else:
        return f"{path}: not a readable image (unknown format, or one DALI does not decode)"
    if height * width > pixel_limit():
        return f"{path}: {width}x{height} pixels exceeds the decoder limit of {pixel_limit()} pixels"
    if not height or not width:
        return f"{path}: not a readable image (zero size)"
    return height, width


def read_and_screen(path: str) -> tuple[np.ndarray, tuple[int, int]] | str:
    """The file's bytes and ``(height, width)``, or the message to log for a file DALI must not see."""
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as err:
        return f"{path}: cannot read ({err.strerror or err})"
    size = screen_encoded(data.tobytes(), path)
    return size if isinstance(size, str) else (data, size)


# ---------------------------------------------------------------- the external source


class _BatchSource:
    """DALI's external source in parallel batch mode: the batches of the sampler, in its order.

    DALI pickles this callable into its worker processes once, when the pipeline starts, and calls it with
    ``BatchInfo(iteration, epoch_idx)`` (nvidia.dali.types.BatchInfo), where ``epoch_idx`` counts the
    pipeline's epochs. Pipeline epoch k is sampler epoch ``first_epoch + k``, starting at ``first_batch``
    for k = 0 (a resumed run) and at 0 after: the loader rebuilds the pipeline when asked for anything else.
    """

    def __init__(self, dataset: ImageListDataset, sampler: EpochBatchSampler, first_epoch: int, first_batch: int,
                 undecodable: frozenset[int]):
        self.paths = [sample.path for sample in dataset.samples]
        self.labels = np.asarray([sample.label for sample in dataset.samples], np.int64)
        self.cfg, self.training, self.seed = dataset.cfg, dataset.training, dataset.seed
        self.sampler = copy.copy(sampler)
        self.first_epoch, self.first_batch = first_epoch, first_batch
        self.undecodable = undecodable  # files a decode attempt has already failed on (see DaliLoader._run)
        self._epoch_batches: tuple[int, list[list[int]]] | None = None
        self._placeholder: np.ndarray | None = None

    def planned(self, pipeline_epoch: int) -> tuple[int, int]:
        return self.first_epoch + pipeline_epoch, self.first_batch if pipeline_epoch == 0 else 0

    def batches(self, pipeline_epoch: int) -> list[list[int]]:
        if self._epoch_batches is None or self._epoch_batches[0] != pipeline_epoch:
            self.sampler.set_epoch(*self.planned(pipeline_epoch))
            self._epoch_batches = (pipeline_epoch, list(self.sampler))
        return self._epoch_batches[1]

    def __call__(self, info):
        batches = self.batches(info.epoch_idx)
        if info.iteration >= len(batches):
            raise StopIteration
        epoch = self.planned(info.epoch_idx)[0]
        columns: list[list[np.ndarray]] = [[] for _ in range(6 if self.training else 3)]
        for index in batches[info.iteration]:
            read = None if index in self.undecodable else read_and_screen(self.paths[index])
            if read is None or isinstance(read, str):
                continue  # the loader reconstructs the message for the indices missing from the batch
            data, (height, width) = read
            row = [data, np.array(self.labels[index]), np.array(index, np.int64)]
            if self.training:
                # the cv2 reader's draws, in its order: crop box, then flip (reader.ImageListDataset)
                rng = np.random.default_rng([self.seed, epoch, index])
                top, left, crop_h, crop_w = random_crop_box(height, width, self.cfg, rng)
                flip = bool(self.cfg.random_flip and rng.random() < 0.5)
                row += [np.float32([left, top]), np.float32([crop_w, crop_h]), np.array(flip, np.int32)]
            for column, value in zip(columns, row):
                column.append(value)
        if not columns[0]:  # no readable image: one stand-in that the loader turns into an empty batch
            row = [self._stand_in(), np.array(PLACEHOLDER_INDEX, np.int64), np.array(PLACEHOLDER_INDEX, np.int64)]
            row += [np.float32([0, 0]), np.float32([8, 8]), np.array(0, np.int32)] if self.training else []
            for column, value in zip(columns, row):
                column.append(value)
        return tuple(columns)

    def _stand_in(self) -> np.ndarray:
        if self._placeholder is None:
            import cv2

            self._placeholder = cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1].ravel()
        return self._placeholder


# ---------------------------------------------------------------- the loader


class DaliLoader:
    """Iterates ``(images, labels, indices, bad_messages)`` like reader.make_loader's loader: exactly
    ``len(sampler)`` batches in the sampler's order, a batch with no readable image as 0 rows.

    The pipeline is built on the first iteration and reused by the next ones when they continue the
    sampler's epochs in order (epoch e, then e + 1, ...); an out-of-order epoch or an abandoned pass
    rebuilds it. Images are a paddle Tensor on the GPU (a copy Paddle owns), or a numpy copy on the CPU.
    """

    def __init__(self, dataset: ImageListDataset, sampler: EpochBatchSampler, threads: int,
                 device_id: int | None = None):
        cfg = dataset.cfg
        if dataset.training and (cfg.use_aa or cfg.use_randaugment or cfg.rotate_degrees or cfg.color_jitter):
            raise UsageError("--use_dali=True supports random crop and flip only; drop --use_aa, "
                             "--use_randaugment, --rotate_degrees and --color_jitter or use the cv2 reader")
        self.dali, self.fn, self.types = import_dali()
        self.dataset, self.sampler = dataset, sampler
        self.threads, self.device_id = max(1, threads), device_id
        self.builds = 0  # pipelines built so far (one per loader unless epochs come out of order)
        self._pipe = None
        self._source: _BatchSource | None = None
        self._epochs_done = 0  # complete pipeline epochs since the build
        self._ready = False  # the last pass ran to its end and the pipeline was reset for the next one
        self._undecodable: dict[int, str] = {}

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self):
        wanted = (self.sampler.epoch, self.sampler.start_batch)
        if not (self._ready and self._source.planned(self._epochs_done) == wanted):
            self._build(*wanted)
        self._ready = False
        first_batch = wanted[1]
        for position, indices in enumerate(list(self.sampler)):
            outputs = self._run(indices, wanted[0], first_batch + position)
            images, labels, kept = outputs[0], np.array(outputs[1].as_tensor()), np.array(outputs[2].as_tensor())
            bad = self._messages(indices, kept)
            if len(kept) == 1 and kept[0] == PLACEHOLDER_INDEX:
                size = self.dataset.cfg.crop_size
                yield np.zeros((0, 3, size, size), np.float32), labels[:0], kept[:0], bad
            else:
                yield self._owned_images(images), labels, kept, bad
        try:
            self._pipe.run()
            raise RuntimeError("DALI source gave more batches than the sampler")  # a bug, not bad input
        except StopIteration:
            pass
        self._pipe.reset()
        self._epochs_done += 1
        self._ready = True

    def close(self) -> None:
        """Stop the pipeline and its source worker processes."""
        self._pipe, self._source, self._ready = None, None, False

    def _run(self, indices: list[int], epoch: int, absolute_batch: int):
        try:
            return self._pipe.run()
        except StopIteration:
            raise RuntimeError("DALI source ended before the sampler's last batch") from None
        except RuntimeError:
            # A file with sound markers but corrupt data: DALI fails the whole pipeline. Find the file(s)
            # with one-image pipelines, then restart at this batch without them; anything else is re-raised.
            failed = {index: message for index in indices if (message := self._decode_fails(index))}
            if not failed:
                raise
            self._undecodable.update(failed)
            self._build(epoch, absolute_batch)
            return self._run(indices, epoch, absolute_batch)

    def _decode_fails(self, index: int) -> str | None:
        path = self.dataset.samples[index].path
        read = read_and_screen(path)
        if isinstance(read, str):
            return None  # screened out already: not the cause
        pipe = self.dali.Pipeline(batch_size=1, num_threads=1, device_id=self.device_id, prefetch_queue_depth=1)
        with pipe:
            encoded = self.fn.external_source(source=lambda: [read[0]], dtype=self.types.UINT8)
            pipe.set_outputs(self.fn.decoders.image(encoded, device=self._decode_device(), output_type=self.types.RGB))
        try:
            pipe.build()
            pipe.run()
        except RuntimeError:
            return f"{path}: not a readable image (DALI cannot decode its data: corrupt)"
        finally:
            del pipe
        return None

    def _messages(self, indices: list[int], kept: np.ndarray) -> list[str]:
        missing = set(indices) - set(kept.tolist())
        messages = []
        for index in indices:
            if index in missing:
                # re-screened here (cheap, and only for bad files) so the source need not send strings back
                known = self._undecodable.get(index)
                read = known or read_and_screen(self.dataset.samples[index].path)
                messages.append(read if isinstance(read, str) else f"{self.dataset.samples[index].path}: unreadable")
        return messages

    def _owned_images(self, images):
        if self.device_id is None:
            return np.array(images.as_tensor(), copy=True)  # DALI reuses this buffer at the next run
        import paddle

        out = paddle.empty(list(images.as_tensor().shape()), dtype="float32")
        # the copy is queued on Paddle's current stream (no host wait): DALI's TensorListGPU.copy_to_external
        # with non_blocking; the handle is paddle.device.Stream.stream_base.cuda_stream (Paddle 2.6 and 3.x)
        stream = paddle.device.current_stream().stream_base.cuda_stream
        images.copy_to_external(ctypes.c_void_p(out.data_ptr()), ctypes.c_void_p(stream), non_blocking=True)
        return out

    def _decode_device(self) -> str:
        return "mixed" if self.device_id is not None else "cpu"

    def _build(self, first_epoch: int, first_batch: int) -> None:
        self.close()
        fn, types, cfg = self.fn, self.types, self.dataset.cfg
        self._source = _BatchSource(self.dataset, self.sampler, first_epoch, first_batch,
                                    frozenset(self._undecodable))
        # parallel external source: DALI pickles the callable into py_num_workers processes; "spawn" because
        # the training process has usually initialised CUDA, which forked workers must not inherit
        # (nvidia.dali.Pipeline py_start_method docs)
        pipe = self.dali.Pipeline(batch_size=self.sampler.batch_size, num_threads=self.threads,
                                  device_id=self.device_id, seed=self._seed(), prefetch_queue_depth=2,
                                  py_num_workers=min(self.threads, MAX_SOURCE_WORKERS), py_start_method="spawn")
        with pipe:
            columns = fn.external_source(source=self._source, num_outputs=6 if self.dataset.training else 3,
                                         parallel=True, batch=True, batch_info=True, prefetch_queue_depth=2,
                                         dtype=[types.UINT8, types.INT64, types.INT64, types.FLOAT, types.FLOAT,
                                                types.INT32][: 6 if self.dataset.training else 3])
            jpegs, labels, indices = columns[:3]
            mean = [255.0 * m for m in cfg.mean]
            std = [255.0 * s for s in cfg.std]
            interp = _interp(types, cfg.interpolation)
            if self.dataset.training:
                anchor, shape, mirror = columns[3:]
                # ROI decoding: only the crop window is decoded (anchor/shape in pixels, x then y). The window
                # is in the stored frame the header declares, so EXIF rotation is not applied (it could move
                # the window outside the image, which fails the pipeline)
                images = fn.decoders.image_slice(jpegs, anchor, shape, device=self._decode_device(),
                                                 output_type=types.RGB, adjust_orientation=False,
                                                 normalized_anchor=False, normalized_shape=False)
                images = fn.resize(images, resize_x=cfg.crop_size, resize_y=cfg.crop_size, interp_type=interp)
                images = fn.crop_mirror_normalize(images, dtype=types.FLOAT, output_layout="CHW", mean=mean,
                                                  std=std, mirror=mirror)
            else:
                images = fn.decoders.image(jpegs, device=self._decode_device(), output_type=types.RGB)
                images = fn.resize(images, resize_shorter=cfg.resize_short, interp_type=interp)
                images = fn.crop_mirror_normalize(images, dtype=types.FLOAT, output_layout="CHW", mean=mean,
                                                  std=std, crop=[cfg.crop_size, cfg.crop_size])
            pipe.set_outputs(images, labels, indices)
        try:
            pipe.build()
        except RuntimeError as err:
            if "Workers initialization failed" not in str(err):
                raise
            raise UsageError("DALI's source worker processes did not start; spawned workers re-import the main "
                             "script, so its code must run under if __name__ == '__main__' (the usual cause)") from None
        self._pipe, self._epochs_done, self._ready = pipe, 0, False
        self.builds += 1

    def _seed(self) -> int:
        # DALI draws nothing random here (the source draws the crops); a fixed seed keeps it that way
        return (self.dataset.seed * 1_000_003 + self.sampler.rank) % (2**31 - 1)


def dali_device_id() -> int | None:
    """The GPU to decode on (this process's), or None for a CPU-only pipeline."""
    import paddle

    if paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0:
        return int(os.environ.get("FLAGS_selected_gpus", "0").split(",")[0])
    return None
