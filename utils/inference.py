"""Deployment-side inference: image inputs, label maps, the engines that turn a batch into logits, and
the JSON records infer.py and predict.py print.

Engines share one interface: ``engine(batch)`` maps a float32 NCHW numpy batch to numpy logits.

- :class:`DygraphEngine`: the paddle.nn.Layer itself (needs the model code).
- :class:`PaddleInferenceEngine`: an exported model (``inference.json`` on Paddle 3, ``.pdmodel`` on 2.6)
  run by the Paddle Inference API: oneDNN on CPU, or a GPU, optionally with TensorRT.
- :class:`OnnxEngine`: the ONNX export run by onnxruntime.
- :class:`VerifiedEngine`: the default on CPU: runs the first batch through a fast engine and the
  reference, and keeps the fast one only when both give the same top-k.

An export directory (written by :mod:`utils.export`) holds the model files, ``preprocess.json``
(model name, class_dim, the :class:`~utils.transforms.PreprocessConfig`) and ``labels.txt``.
"""
from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import cv2
import numpy as np

from utils.errors import UsageError
from utils.transforms import ImageDecodeError, PreprocessConfig, eval_transform, read_image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CLASS_MAP = os.path.join(ROOT, "utils", "tools", "readable_label.txt")
IMAGENET_CLASSES = 1000
EXPORT_PREFIX = "inference"
DEPLOY_JSON = "preprocess.json"
LABELS_FILE = "labels.txt"
ONNX_FILE = "inference.onnx"
# a file with one of these names is an image to classify (an unreadable one becomes an error record); any
# other file is taken when OpenCV recognises its content, and reported as skipped when it does not
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".dib", ".webp", ".tif", ".tiff", ".gif", ".ppm",
                    ".pgm", ".pbm", ".pnm", ".pam", ".jp2", ".ras", ".sr", ".hdr", ".pic", ".avif", ".exr")
SCORE_TOLERANCE = 1e-4  # engines that agree give softmax scores this close

Engine = Callable[[np.ndarray], np.ndarray]


def log(message: str) -> None:
    """Progress and notes go to stderr, so stdout carries only the JSON results."""
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- inputs


@dataclass(frozen=True)
class ImageItem:
    path: str
    label: int | None = None


def _is_image_file(path: str) -> bool:
    return path.lower().endswith(IMAGE_EXTENSIONS) or cv2.haveImageReader(path)


def _walk_images(folder: str) -> tuple[list[ImageItem], list[str]]:
    """Every image file under ``folder`` (sorted walk), and the files left out as not images."""
    found, skipped = [], []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(root, name)
            (found if _is_image_file(path) else skipped).append(path)
    return [ImageItem(path) for path in found], skipped


def _skipped_note(folder: str, skipped: list[str]) -> str:
    kinds = sorted({os.path.splitext(p)[1].lower() or "(no extension)" for p in skipped})
    return (f"--data_dir {folder}: skipped {len(skipped)} files that are not images OpenCV can decode "
            f"({', '.join(kinds[:8])}{' ...' if len(kinds) > 8 else ''}), e.g. {skipped[0]}")


def read_image_list(list_path: str, flag: str = "--data_dir") -> list[ImageItem]:
    """``path [label]`` lines; relative paths are relative to the list file's folder."""
    from reader import read_text_lines

    base = os.path.dirname(os.path.abspath(list_path))
    items = []
    try:
        lines = read_text_lines(list_path)
    except OSError as err:
        raise UsageError(f"{flag} {list_path}: cannot read ({err.strerror or err})") from None
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.rsplit(maxsplit=1)
        label = None
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            line, label = parts[0], int(parts[1])
            if label < 0:
                raise UsageError(f"{list_path}:{number}: negative label {label}")
        items.append(ImageItem(line if os.path.isabs(line) else os.path.join(base, line), label))
    if not items:
        raise UsageError(f"{flag} {list_path}: the list names no images (expected 'path [label]' lines)")
    return items


def collect_images(image_path: str | None, data_dir: str | None) -> list[ImageItem]:
    """--image_path (one file) or --data_dir (a folder walked recursively, or a list file)."""
    if bool(image_path) == bool(data_dir):
        raise UsageError("give exactly one of --image_path (one image) or --data_dir (a folder or a list file)")
    if image_path:
        if os.path.isdir(image_path):
            raise UsageError(f"--image_path {image_path} is a folder; use --data_dir for folders")
        if not os.path.exists(image_path):
            raise UsageError(f"--image_path {image_path}: no such file")
        return [ImageItem(image_path)]
    if os.path.isdir(data_dir):
        items, skipped = _walk_images(data_dir)
        if not items:
            raise UsageError(f"--data_dir {data_dir}: no images in the folder"
                             + (f" ({_skipped_note(data_dir, skipped)})" if skipped else ""))
        if skipped:
            log(_skipped_note(data_dir, skipped))
        return items
    if os.path.isfile(data_dir):
        return read_image_list(data_dir)
    raise UsageError(f"--data_dir {data_dir}: no such folder or list file")


# ---------------------------------------------------------------- labels


def read_class_map(path: str, class_dim: int, flag: str = "--class_map_path") -> list[str]:
    """Class names from ``index name`` lines or one name per line (line i names class i)."""
    from reader import read_text_lines

    try:
        lines = [line.strip() for line in read_text_lines(path)]
    except OSError as err:
        raise UsageError(f"{flag} {path}: cannot read ({err.strerror or err})") from None
    numbered = [(n, line) for n, line in enumerate(lines, start=1) if line]
    if not numbered:
        raise UsageError(f"{flag} {path}: empty file")
    indexed = all(line.split(maxsplit=1)[0].isdigit() and len(line.split(maxsplit=1)) == 2 for _, line in numbered)
    names: dict[int, str] = {}
    for position, (number, line) in enumerate(numbered):
        index, name = (int(line.split(maxsplit=1)[0]), line.split(maxsplit=1)[1]) if indexed else (position, line)
        if index >= class_dim:
            raise UsageError(f"{path}:{number}: class {index} but the model has --class_dim {class_dim}")
        if index in names:
            raise UsageError(f"{path}:{number}: class {index} is named twice")
        names[index] = name
    if len(names) != class_dim:
        missing = next(i for i in range(class_dim) if i not in names)
        raise UsageError(f"{flag} {path}: names {len(names)} classes but the model has {class_dim} "
                         f"(class {missing} has no name)")
    return [names[i] for i in range(class_dim)]


def label_names(class_map_path: str | None, class_dim: int) -> list[str] | None:
    """The given map, else the shipped ImageNet-1k names for 1000-class models, else None (ids only)."""
    if class_map_path:
        return read_class_map(class_map_path, class_dim)
    if class_dim == IMAGENET_CLASSES and os.path.isfile(DEFAULT_CLASS_MAP):
        return read_class_map(DEFAULT_CLASS_MAP, class_dim, "default class map")
    return None


def check_topk(topk: int, class_dim: int) -> None:
    if topk < 1:
        raise UsageError(f"--topk {topk}: must be >= 1")
    if topk > class_dim:
        raise UsageError(f"--topk {topk} is larger than the number of classes ({class_dim})")


# ---------------------------------------------------------------- outputs


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.asarray(logits, np.float64)
    shifted = shifted - shifted.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def topk_records(paths: list[str], logits: np.ndarray, topk: int, names: list[str] | None) -> list[dict]:
    """One ``{"path", "class_ids", "scores", "label_names"}`` per image, best class first."""
    finite = np.isfinite(np.asarray(logits, np.float64)).all(axis=1)
    probs = softmax(np.where(finite[:, None], logits, 0.0))
    records = []
    for path, row, ok in zip(paths, probs, finite):
        if not ok:
            records.append({"path": path, "error": "the model's output is not finite (NaN/Inf) for this image: "
                                                   "an input size below the model's minimum, or broken weights"})
            continue
        ids = np.argsort(-row, kind="stable")[:topk]
        records.append({
            "path": path,
            "class_ids": [int(i) for i in ids],
            "scores": [round(float(row[i]), 8) for i in ids],
            "label_names": [names[i] if names else str(int(i)) for i in ids],
        })
    return records


def format_record(record: dict) -> str:
    if "error" in record:
        return f"{record['path']}: error: {record['error']}"
    best = ", ".join(f"{i} {name!r} {score:.4f}" for i, name, score in
                     zip(record["class_ids"], record["label_names"], record["scores"]))
    return f"{record['path']}: {best}"


def records_json(records: list[dict]) -> str:
    """A JSON list with one image per line (valid JSON, and still readable with a thousand images)."""
    if not records:
        return "[]"
    return "[\n" + ",\n".join(json.dumps(r, ensure_ascii=False, allow_nan=False) for r in records) + "\n]"


def write_json(path: str, records: list[dict]) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(records_json(records) + "\n")


# ---------------------------------------------------------------- preprocessing in batches


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


def summarize(records: list[dict], source: str | None = None, max_bad_fraction: float | None = None) -> int:
    """Exit code: 1 when every image failed (or more than ``max_bad_fraction`` of them), with the likely
    cause; else 0. ``source``: the folder or list file the images came from."""
    failed = [r["path"] for r in records if "error" in r]
    if not failed:
        return 0
    log(f"{len(failed)} of {len(records)} images could not be read (see their 'error' entries)")
    if len(failed) == len(records):
        log(f"error: no image could be classified: {_unreadable_cause(failed, source)}")
        return 1
    if max_bad_fraction is not None and len(failed) > max_bad_fraction * len(records):
        log(f"error: {len(failed)} of {len(records)} images could not be classified, more than "
            f"--max_bad_image_fraction {max_bad_fraction}: {_unreadable_cause(failed, source)}")
        return 1
    return 0


def _unreadable_cause(paths: list[str], source: str | None) -> str:
    from reader import Sample, likely_cause

    if source and os.path.isfile(source):  # a list file: its relative paths start at its folder
        root, list_path, root_name = os.path.dirname(os.path.abspath(source)), source, "the list's folder"
    else:
        root, list_path, root_name = source or os.path.dirname(paths[0]), None, "--data_dir"
    return likely_cause([Sample(p, 0) for p in paths], root, list_path, root_name)


# ---------------------------------------------------------------- engines


def as_numpy(batch) -> np.ndarray:
    """A contiguous float32 numpy batch from numpy or a paddle Tensor (what eval.py's loader yields)."""
    if hasattr(batch, "numpy") and not isinstance(batch, np.ndarray):
        batch = batch.numpy()
    return np.ascontiguousarray(batch, dtype=np.float32)


class DygraphEngine:
    name = "dygraph"

    def __init__(self, model, fallback: str | None = None):
        self.model = model
        self.fallback = fallback  # why the faster engine was not used, when it was the default
        model.eval()

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        import paddle

        from models.base import main_logits

        with paddle.no_grad():
            tensor = batch if isinstance(batch, paddle.Tensor) else paddle.to_tensor(np.ascontiguousarray(batch))
            return main_logits(self.model(tensor)).numpy()


@dataclass
class DeviceOptions:
    use_gpu: bool = False
    gpu_id: int = 0
    gpu_mem: int = 500  # MB the GPU memory pool starts with
    use_tensorrt: bool = False
    cpu_threads: int = 2
    use_onednn: bool = True
    max_batch_size: int = 32  # TensorRT engines are built for batches up to this size
    # On CPU a batch runs through the predictor this many images at a time: activations of 8 images stay
    # in cache where 32 do not (measured here: MobileNetV3_large batch 32 in 250 ms as 4 x 8, 420 ms whole).
    cpu_chunk: int = 8
    precision: str = "fp32"  # fp16: Paddle Inference's half precision on the GPU (--precision)


def model_files(directory: str, flag: str = "--inference_model") -> tuple[str, str]:
    """The program file (``.json`` on Paddle 3, ``.pdmodel`` on 2.6) and the parameters of an export."""
    params = os.path.join(directory, EXPORT_PREFIX + ".pdiparams")
    for ext in (".json", ".pdmodel"):
        program = os.path.join(directory, EXPORT_PREFIX + ext)
        if os.path.isfile(program) and os.path.isfile(params):
            return program, params
    raise UsageError(f"{flag} {directory}: no exported model ({EXPORT_PREFIX}.json or {EXPORT_PREFIX}.pdmodel "
                     f"with {EXPORT_PREFIX}.pdiparams); export one with infer.py --save_inference=True")


def _enable_onednn(config) -> None:
    # Paddle 3 names it oneDNN; Paddle 2.6 only has the MKLDNN spelling
    if hasattr(config, "enable_onednn"):
        config.enable_onednn()
        config.set_onednn_cache_capacity(16)  # input shapes cached (the last batch is often smaller)
    else:
        config.enable_mkldnn()
        config.set_mkldnn_cache_capacity(16)


class InferenceLoadError(UsageError):
    """Paddle Inference could not load an exported model."""


class PaddleInferenceEngine:
    """An exported model run by paddle.inference (Config + create_predictor)."""

    name = "inference"

    def __init__(self, directory: str, options: DeviceOptions | None = None, flag: str = "--inference_model",
                 files: tuple[str, str] | None = None):
        import paddle
        import paddle.inference as paddle_infer

        options = options or DeviceOptions()
        # files: (program, params) named by predict.py --model_file/--params_file (a classic export)
        program, params = files or model_files(directory, flag)
        config = paddle_infer.Config(program, params)
        if options.use_gpu:
            if not paddle.device.is_compiled_with_cuda():
                raise UsageError("--use_gpu=True, but this Paddle build has no CUDA; install paddlepaddle-gpu")
            # Config.enable_use_gpu(memory_pool_init_size_mb, device_id, precision_mode) (paddle.inference)
            config.enable_use_gpu(options.gpu_mem, options.gpu_id, _PRECISIONS[options.precision](paddle_infer))
            if options.use_tensorrt:
                self._enable_tensorrt(config, paddle_infer, options, program, directory)
        else:
            if options.use_tensorrt:
                raise UsageError("--use_tensorrt=True needs --use_gpu=True and a Paddle GPU build with TensorRT")
            config.disable_gpu()
            config.set_cpu_math_library_num_threads(max(1, options.cpu_threads))
            if options.use_onednn:
                _enable_onednn(config)
        config.switch_ir_optim(True)
        config.disable_glog_info()
        try:
            self.predictor = paddle_infer.create_predictor(config)
        except Exception as err:  # a truncated or foreign file fails deep inside Paddle's C++ loader
            first_line = next((line for line in str(err).splitlines() if line.strip()), type(err).__name__)
            raise InferenceLoadError(f"{flag} {directory}: Paddle Inference cannot load {os.path.basename(params)} "
                             f"({first_line.strip()[:200]}); the export is damaged or incomplete: export it "
                             "again with infer.py --save_inference=True") from None
        self.input = self.predictor.get_input_handle(self.predictor.get_input_names()[0])
        self.output_name = self.predictor.get_output_names()[0]
        self.options = options

    @staticmethod
    def _enable_tensorrt(config, paddle_infer, options: DeviceOptions, program: str, directory: str) -> None:
        version = paddle_infer.get_trt_compile_version()
        if not any(version):
            raise UsageError("--use_tensorrt=True, but this Paddle build was compiled without TensorRT")
        if program.endswith(".json"):
            # a Paddle 3 (PIR) program has a dynamic batch: TensorRT needs each input's shape range first,
            # as paddle.incubate.jit.inference_decorator does for .json programs before enable_tensorrt_engine
            PaddleInferenceEngine.set_tensorrt_shapes(config, directory, options.max_batch_size)
        config.enable_tensorrt_engine(workspace_size=1 << 30, max_batch_size=options.max_batch_size,
                                      min_subgraph_size=3, precision_mode=_PRECISIONS[options.precision](paddle_infer),
                                      use_static=False, use_calib_mode=False)

    @staticmethod
    def set_tensorrt_shapes(config, directory: str, max_batch: int) -> tuple[dict, dict, dict]:
        """TensorRT's (min, max, opt) input shapes for an export: batch 1 to ``max_batch`` at its input size."""
        meta_path = os.path.join(directory, DEPLOY_JSON)
        try:
            with open(meta_path, encoding="utf-8") as handle:
                meta = json.load(handle)
            name, shape = str(meta["input_name"]), [int(v) for v in meta["input_shape"]]
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise UsageError(f"{meta_path}: no input name and shape for TensorRT ({type(err).__name__}: {err}); "
                             "re-export with infer.py --save_inference=True") from None
        ranges = ({name: [1, *shape]}, {name: [max(1, max_batch), *shape]}, {name: [max(1, max_batch), *shape]})
        config.set_trt_dynamic_shape_info(*ranges)
        return ranges

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        if self.options.use_gpu and _on_gpu(batch):
            return self._run_on_device(batch)
        batch = as_numpy(batch)
        chunk = 0 if self.options.use_gpu else self.options.cpu_chunk
        if chunk <= 0 or len(batch) <= chunk:
            return self._run(batch)
        return np.concatenate([self._run(batch[start:start + chunk]) for start in range(0, len(batch), chunk)])

    def _run_on_device(self, batch) -> np.ndarray:
        """A batch already on the GPU (the DALI reader, or a loader on the GPU) is handed to the predictor
        without a device -> host -> device round trip; only the logits come back to the host.
        Relies on paddle.inference.Tensor.share_external_data(paddle.Tensor) (not observable without a GPU)."""
        import paddle

        if batch.dtype != paddle.float32:
            batch = batch.astype("float32")
        self.input.share_external_data(batch)
        self.predictor.run()
        return self.predictor.get_output_handle(self.output_name).copy_to_cpu()

    def _run(self, batch: np.ndarray) -> np.ndarray:
        self.input.reshape(list(batch.shape))
        self.input.copy_from_cpu(np.ascontiguousarray(batch))
        self.predictor.run()
        return self.predictor.get_output_handle(self.output_name).copy_to_cpu()


_PRECISIONS = {
    "fp32": lambda paddle_infer: paddle_infer.PrecisionType.Float32,
    "fp16": lambda paddle_infer: paddle_infer.PrecisionType.Half,
}
PRECISIONS = tuple(_PRECISIONS)


def _on_gpu(batch) -> bool:
    place = getattr(batch, "place", None)
    return place is not None and hasattr(place, "is_gpu_place") and place.is_gpu_place()


def onnx_available() -> str | None:
    """None when onnxruntime imports, else the reason it does not."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError as err:
        return f"onnxruntime is not installed ({err}); pip install -r requirements-onnx.txt"
    return None


class OnnxEngine:
    name = "onnxruntime"

    def __init__(self, onnx_path: str, threads: int = 2, flag: str = "--inference_model"):
        reason = onnx_available()
        if reason:
            raise UsageError(reason)
        import onnxruntime as ort

        if not os.path.isfile(onnx_path):
            raise UsageError(f"{flag}: {onnx_path} not found; export it with infer.py --save_onnx=True")
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, threads)
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self.session = ort.InferenceSession(onnx_path, options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: as_numpy(batch)})[0]


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


def _same_topk_ids(a: np.ndarray, b: np.ndarray, topk: int) -> bool:
    if a.shape != b.shape:
        return False
    pa, pb = softmax(a), softmax(b)
    k = min(topk, pa.shape[1])
    ids_a = np.argsort(-pa, axis=1, kind="stable")[:, :k]
    ids_b = np.argsort(-pb, axis=1, kind="stable")[:, :k]
    rows = np.arange(len(pb))[:, None]
    return bool(((ids_a == ids_b) | (np.abs(pb[rows, ids_a] - pb[rows, ids_b]) <= SCORE_TOLERANCE)).all())


# ---------------------------------------------------------------- exported models


@dataclass
class ExportedModel:
    directory: str
    model: str
    class_dim: int
    preprocess: PreprocessConfig
    labels: list[str] | None
    temperature: float = 1.0  # scores are softmax(logits / temperature)


def load_export(directory: str, flag: str = "--inference_model") -> ExportedModel:
    """Read ``preprocess.json`` (and ``labels.txt``) of an export made by infer.py --save_inference."""
    if not os.path.isdir(directory):
        raise UsageError(f"{flag} {directory}: no such directory")
    model_files(directory, flag)
    meta_path = os.path.join(directory, DEPLOY_JSON)
    try:
        with open(meta_path, encoding="utf-8") as handle:
            meta = json.load(handle)
        class_dim = int(meta["class_dim"])
        cfg = PreprocessConfig.from_dict(meta["preprocess"])
        temperature = float(meta.get("temperature", 1.0))
    except OSError as err:
        raise UsageError(f"{flag} {directory}: cannot read {DEPLOY_JSON} ({err.strerror or err}); "
                         "re-export with infer.py --save_inference=True") from None
    except (ValueError, KeyError, TypeError) as err:
        raise UsageError(f"{meta_path}: not a valid export description ({type(err).__name__}: {err})") from None
    labels_path = os.path.join(directory, LABELS_FILE)
    labels = read_class_map(labels_path, class_dim, "exported labels") if os.path.isfile(labels_path) else None
    check_temperature(temperature, f"{meta_path}: \"temperature\"")
    return ExportedModel(directory, str(meta.get("model", "?")), class_dim, cfg, labels, temperature)


def check_temperature(temperature: float, flag: str = "--temperature") -> None:
    if not (np.isfinite(temperature) and temperature > 0):
        raise UsageError(f"{flag} {temperature}: must be a positive number (eval.py's \"temperature\"; 1 leaves "
                         "the scores as they are)")


def inference_options(args, batch_size: int = 32, device: str | None = None) -> DeviceOptions:
    """DeviceOptions from the flags a script has (missing flags keep the defaults); ``device`` is
    utils.cli.select_device's answer when the script asked it."""
    from utils.runtime import usable_cores

    return DeviceOptions(
        use_gpu=device == "gpu" if device else bool(getattr(args, "use_gpu", False)),
        gpu_id=getattr(args, "gpu_id", 0) or 0,
        gpu_mem=getattr(args, "gpu_mem", 500) or 500,
        use_tensorrt=bool(getattr(args, "use_tensorrt", False)),
        cpu_threads=getattr(args, "cpu_threads", None) or int(os.environ.get("OMP_NUM_THREADS", 0)) or usable_cores(),
        use_onednn=getattr(args, "enable_mkldnn", True) is not False,
        max_batch_size=max(1, batch_size),
        precision=_precision(args, device),
    )


def _precision(args, device: str | None) -> str:
    precision = getattr(args, "precision", None) or "fp32"
    if precision not in PRECISIONS:
        raise UsageError(f"--precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    on_gpu = device == "gpu" if device else bool(getattr(args, "use_gpu", False))
    if precision == "fp16" and not on_gpu:
        raise UsageError("--precision fp16 is Paddle Inference's half precision on the GPU (--use_gpu=True); "
                         "on the CPU use --precision fp32")
    return precision


def engine_for_model(engine: str | None, device: str, model, cfg: PreprocessConfig, options: DeviceOptions,
                     topk: int, export_dir: str | None = None) -> Engine:
    """--engine for a dygraph model: ``dygraph``, ``inference`` (from ``export_dir``, else converted in
    memory), or None: Paddle Inference on CPU, kept only if the first batch gives dygraph's top-k."""
    if engine not in (None, "dygraph", "inference"):
        raise UsageError(f"--engine {engine!r}: choose dygraph or inference")
    dygraph = DygraphEngine(model)
    if options.precision != "fp32" and engine != "inference":
        raise UsageError(f"--precision {options.precision} applies to Paddle Inference: add --engine inference")
    if engine == "dygraph" or (engine is None and device != "cpu"):
        return dygraph
    try:
        if export_dir is None:
            from utils.export import convert_in_memory

            export_dir = convert_in_memory(model, cfg)
        fast = PaddleInferenceEngine(export_dir, options, flag="--engine inference")
    except InferenceLoadError as err:
        if engine == "inference":
            raise
        return _dygraph_fallback(model, str(err))
    except UsageError:
        raise
    except Exception as err:  # a network jit.save or Paddle Inference cannot handle
        first_line = next((line for line in str(err).splitlines() if line.strip()), "")[:200]
        if engine == "inference":
            raise UsageError(f"--engine inference: could not convert the model ({type(err).__name__}: "
                             f"{first_line}); use --engine dygraph") from None
        return _dygraph_fallback(model, f"Paddle Inference could not convert this model ({type(err).__name__}: "
                                        f"{first_line})")
    if engine == "inference":
        return fast
    return VerifiedEngine(fast, dygraph, topk=max(5, topk))


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


def _dygraph_fallback(model, reason: str) -> DygraphEngine:
    log(f"warning: {reason}; using --engine dygraph")
    return DygraphEngine(model, fallback=reason)


# ---------------------------------------------------------------- scripts' shared steps


def load_model(args, fallback_class_dim: int = IMAGENET_CLASSES):
    """Build ``--model`` with ``--pretrained_model`` (see utils.presets.load_trained_model); eval mode.

    Returns ``(model, class_dim)``.
    """
    from utils.presets import load_trained_model

    model, class_dim = load_trained_model(args, fallback_class_dim, log=log)
    model.eval()
    return model, class_dim


def emit_results(records: list[dict], save_json_path: str | None, source: str | None = None,
                 max_bad_fraction: float | None = None) -> int:
    """Print the JSON list on stdout, write it to ``save_json_path``; the exit code (see :func:`summarize`)."""
    print(records_json(records), flush=True)
    if save_json_path:
        write_json(save_json_path, records)
        log(f"wrote {len(records)} results to {save_json_path}")
    return summarize(records, source, max_bad_fraction)


def engine_for_export(engine: str, deployed: ExportedModel, options: DeviceOptions) -> Engine:
    """``inference`` (Paddle Inference) or ``onnxruntime`` (the export's inference.onnx) for an export."""
    if engine == "onnxruntime":
        if options.use_gpu:
            raise UsageError("--engine onnxruntime runs on CPU here; pass --use_gpu=False")
        if options.precision != "fp32":
            raise UsageError(f"--precision {options.precision} applies to Paddle Inference (--engine inference)")
        return OnnxEngine(os.path.join(deployed.directory, ONNX_FILE), options.cpu_threads)
    return PaddleInferenceEngine(deployed.directory, options)


def eval_accumulator(items: list[ImageItem], enabled: bool):
    """An Accumulator when --eval is on; every image then needs a label (a 'path label' list)."""
    if not enabled:
        return None
    from utils.metrics import Accumulator

    unlabelled = [item.path for item in items if item.label is None]
    if unlabelled:
        raise UsageError(f"--eval needs a labelled list in --data_dir ('path label' lines); "
                         f"{len(unlabelled)} images have no label, e.g. {unlabelled[0]}")
    return Accumulator()


def decode_threads(args) -> int:
    from utils.runtime import usable_cores

    return getattr(args, "cpu_threads", None) or usable_cores()


_PREPROCESS_FLAGS = ("image_shape", "resize_short_size", "interpolation", "image_mean", "image_std")


def exported_for_eval(args, device: str) -> tuple[ExportedModel, Engine]:
    """eval.py --inference_model DIR: the export and its Paddle Inference engine (preprocessing from DIR)."""
    given = [f"--{name}" for name in _PREPROCESS_FLAGS if getattr(args, name, None) is not None]
    if given:
        raise UsageError(f"{', '.join(given)}: with --inference_model the preprocessing comes from "
                         f"{os.path.join(args.inference_model, DEPLOY_JSON)}; drop the flag")
    if args.engine == "dygraph":
        raise UsageError("--engine dygraph needs the model code; with --inference_model the engine is inference")
    deployed = load_export(args.inference_model)
    engine = PaddleInferenceEngine(deployed.directory, inference_options(args, args.batch_size, device))
    return deployed, engine
