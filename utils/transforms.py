"""The one preprocessing definition, shared by train.py, eval.py, infer.py, predict.py and the export.

Images are decoded with OpenCV to RGB uint8 HWC; training applies random resized crop, flip and the
optional rotation / colour jitter / AutoAugment / RandAugment; evaluation resizes the short side and centre-crops.
Both end in :func:`normalize_to_chw` (float32 CHW, scaled to 0-1 then mean/std normalised).
``PreprocessConfig`` is plain data (JSON-serialisable) so an exported model carries it alongside.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields

from utils.image_limit import limit_opencv_decoder, pixel_limit

limit_opencv_decoder()  # before OpenCV loads: it reads its pixel limit only then

import cv2  # noqa: E402
import numpy as np  # noqa: E402


# A corrupt file is reported once by the reader; OpenCV's own decoder chatter on stderr adds nothing.
def _silence_opencv() -> None:
    logging_module = getattr(getattr(cv2, "utils", None), "logging", None)
    if logging_module is not None:  # OpenCV 5
        logging_module.setLogLevel(logging_module.LOG_LEVEL_SILENT)
    elif hasattr(cv2, "setLogLevel"):  # OpenCV 4
        cv2.setLogLevel(0)


_silence_opencv()

INTERPOLATIONS = {
    "nearest": cv2.INTER_NEAREST,
    "bilinear": cv2.INTER_LINEAR,
    "bicubic": cv2.INTER_CUBIC,
    "area": cv2.INTER_AREA,
    "lanczos": cv2.INTER_LANCZOS4,
}
# The classic suite took --interpolation as a cv2 integer code; accept those too.
_INTERPOLATION_CODES = {str(code): name for name, code in INTERPOLATIONS.items()}


class ImageDecodeError(ValueError):
    """An image that cannot be read; the reader skips and counts it."""


def interpolation_name(value: str | int | None) -> str | None:
    if value is None:
        return None
    text = str(value).strip().lower()
    text = _INTERPOLATION_CODES.get(text, text)
    if text not in INTERPOLATIONS:
        raise ValueError(
            f"--interpolation {value!r} is not one of {', '.join(INTERPOLATIONS)} (or a cv2 code 0-4)"
        )
    return text


@dataclass
class PreprocessConfig:
    crop_size: int = 224
    resize_short: int = 256
    interpolation: str = "bilinear"
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    # training-only augmentation
    lower_scale: float = 0.08
    lower_ratio: float = 3.0 / 4.0
    upper_ratio: float = 4.0 / 3.0
    random_flip: bool = True
    rotate_degrees: float = 0.0
    color_jitter: float = 0.0
    use_aa: bool = False
    use_randaugment: bool = False
    randaugment_n: int = 2  # operations per image; the paper's ImageNet ResNet-50 setting N=2, M=9
    randaugment_m: int = 9  # magnitude, 0-30

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_dict(cls, data: dict) -> PreprocessConfig:
        known = {f.name for f in fields(cls)}
        values = {k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items() if k in known}
        return cls(**values)


# ---------------------------------------------------------------- decoding


def _check_not_bomb(data: bytes, where: str) -> None:
    """Read the declared size from the header (cheap) and refuse decompression bombs before decoding."""
    header = np.frombuffer(data[:65536], dtype=np.uint8)
    width = height = 0
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    elif data[:2] == b"\xff\xd8":
        width, height = _jpeg_size(bytes(header))
    if width * height > pixel_limit():
        raise ImageDecodeError(
            f"{where}: {width}x{height} pixels exceeds the decoder limit of {pixel_limit()} pixels "
            "(possible decompression bomb); resize the image first"
        )


def _jpeg_size(data: bytes) -> tuple[int, int]:
    pos = 2
    while pos + 9 < len(data):
        if data[pos] != 0xFF:
            return 0, 0
        marker = data[pos + 1]
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
            height = int.from_bytes(data[pos + 5 : pos + 7], "big")
            width = int.from_bytes(data[pos + 7 : pos + 9], "big")
            return width, height
        pos += 2 + length
    return 0, 0


def decode_image(data: bytes, where: str = "image") -> np.ndarray:
    """Bytes of any image format OpenCV reads -> RGB uint8 HWC.

    Grayscale, RGBA/palette, CMYK and 16-bit inputs all become 8-bit RGB (alpha is dropped).
    """
    if not data:
        raise ImageDecodeError(f"{where}: empty file")
    _check_not_bomb(data, where)  # PNG/JPEG read here too: the limit holds even if cv2 loaded before ours
    array = np.frombuffer(data, dtype=np.uint8)
    try:
        image = cv2.imdecode(array, cv2.IMREAD_COLOR)
    except cv2.error as err:
        if "CV_IO_MAX_IMAGE_PIXELS" in str(err):  # OpenCV's own check of the header's size, any format
            raise ImageDecodeError(f"{where}: more pixels than the decoder limit of {pixel_limit()} "
                                   "(possible decompression bomb); resize the image first") from None
        raise ImageDecodeError(f"{where}: not a readable image ({str(err).strip().splitlines()[-1][:200]})") from None
    if image is None or image.size == 0:
        raise ImageDecodeError(f"{where}: not a readable image (corrupt, truncated or unknown format)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_image(path: str) -> np.ndarray:
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as err:
        raise ImageDecodeError(f"{path}: cannot read ({err.strerror or err})") from err
    return decode_image(data, path)


# ---------------------------------------------------------------- geometric transforms


def resize_short(image: np.ndarray, size: int, interpolation: str) -> np.ndarray:
    height, width = image.shape[:2]
    scale = size / min(height, width)
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    return cv2.resize(image, (new_w, new_h), interpolation=INTERPOLATIONS[interpolation])


def center_crop(image: np.ndarray, size: int) -> np.ndarray:
    height, width = image.shape[:2]
    if height < size or width < size:  # tiny inputs: pad symmetrically rather than fail
        pad_h, pad_w = max(0, size - height), max(0, size - width)
        image = cv2.copyMakeBorder(
            image, pad_h // 2, pad_h - pad_h // 2, pad_w // 2, pad_w - pad_w // 2, cv2.BORDER_CONSTANT
        )
        height, width = image.shape[:2]
    top, left = (height - size) // 2, (width - size) // 2
    return image[top : top + size, left : left + size]


def random_crop_box(height: int, width: int, cfg: PreprocessConfig, rng: np.random.Generator):
    """Inception-style box ``(top, left, crop_h, crop_w)``: area fraction in [lower_scale, 1], aspect ratio
    log-uniform in the ratio range (the DALI reader crops the same box, drawn from the same generator)."""
    area = height * width
    log_low, log_high = math.log(cfg.lower_ratio), math.log(cfg.upper_ratio)
    for _ in range(10):
        target = area * rng.uniform(cfg.lower_scale, 1.0)
        ratio = math.exp(rng.uniform(log_low, log_high))
        crop_w = int(round(math.sqrt(target * ratio)))
        crop_h = int(round(math.sqrt(target / ratio)))
        if 0 < crop_w <= width and 0 < crop_h <= height:
            top = int(rng.integers(0, height - crop_h + 1))
            left = int(rng.integers(0, width - crop_w + 1))
            break
    else:  # fall back to the largest centred crop within the ratio range
        ratio = min(max(width / height, cfg.lower_ratio), cfg.upper_ratio)
        crop_w, crop_h = (width, int(round(width / ratio))) if width / height < ratio else (
            int(round(height * ratio)), height)
        crop_w, crop_h = min(crop_w, width), min(crop_h, height)
        top, left = (height - crop_h) // 2, (width - crop_w) // 2
    return top, left, crop_h, crop_w


def random_resized_crop(image: np.ndarray, size: int, cfg: PreprocessConfig, rng: np.random.Generator):
    """Inception-style crop: area fraction in [lower_scale, 1], aspect ratio log-uniform in the ratio range."""
    top, left, crop_h, crop_w = random_crop_box(*image.shape[:2], cfg, rng)
    crop = image[top : top + crop_h, left : left + crop_w]
    return cv2.resize(crop, (size, size), interpolation=INTERPOLATIONS[cfg.interpolation])


def rotate(image: np.ndarray, degrees: float, fill: int = 0) -> np.ndarray:
    height, width = image.shape[:2]
    matrix = cv2.getRotationMatrix2D((width / 2.0, height / 2.0), degrees, 1.0)
    return cv2.warpAffine(image, matrix, (width, height), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(fill, fill, fill))


def color_jitter(image: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Brightness, contrast and saturation each scaled by a factor in [1-strength, 1+strength]."""
    out = image.astype(np.float32)
    order = rng.permutation(3)
    for which in order:
        factor = rng.uniform(max(0.0, 1 - strength), 1 + strength)
        if which == 0:
            out = out * factor
        elif which == 1:
            out = (out - out.mean()) * factor + out.mean()
        else:
            gray = out @ np.array([0.299, 0.587, 0.114], np.float32)
            out = (out - gray[..., None]) * factor + gray[..., None]
    return np.clip(out, 0, 255).astype(np.uint8)


def normalization_constants(mean, std) -> tuple[np.ndarray, np.ndarray]:
    """(scale, shift) with (x/255 - mean)/std == x * scale - shift, float32, shape (3, 1, 1).

    The one definition of normalisation: the cv2 path applies it on the CPU (:func:`normalize_to_chw`), the
    trainer on the device (:class:`DeviceNormalizer`), with the same float32 operations in the same order,
    so both give bit-identical inputs."""
    scale = (1.0 / (255.0 * np.asarray(std, np.float32))).reshape(3, 1, 1)
    shift = (np.asarray(mean, np.float32) / np.asarray(std, np.float32)).reshape(3, 1, 1)
    return scale.astype(np.float32), shift.astype(np.float32)


def normalize_to_chw(image: np.ndarray, mean, std) -> np.ndarray:
    """uint8 RGB HWC -> float32 CHW, (x/255 - mean)/std, in one fused pass."""
    scale, shift = normalization_constants(mean, std)
    chw = np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32)
    chw *= scale
    chw -= shift
    return chw


class DeviceNormalizer:
    """A uint8 NHWC batch (numpy or Paddle) -> the float32 NCHW model input.

    Loader workers then ship 1 byte per pixel instead of 4 through shared memory. A batch on a GPU is
    normalised there by Paddle ops; a batch in host memory (CPU training) with numpy, vectorised over the
    batch (Paddle's CPU transpose/cast kernels measured 8x slower than numpy here). Both run the same
    float32 operations in the same order as :func:`normalize_to_chw`. A batch that is already floating
    point (the DALI reader normalises on its own) passes through unchanged."""

    def __init__(self, mean, std):
        self.constants = normalization_constants(mean, std)
        self._tensors = None

    def __call__(self, batch):
        import paddle

        if batch.dtype not in (np.uint8, paddle.uint8):
            return batch if isinstance(batch, paddle.Tensor) else paddle.to_tensor(batch)
        place = getattr(batch, "place", None)
        if place is not None and place.is_gpu_place():
            return self.on_device(batch)
        return paddle.to_tensor(self.on_host(batch if isinstance(batch, np.ndarray) else batch.numpy()))

    def on_host(self, batch: np.ndarray) -> np.ndarray:
        scale, shift = self.constants
        nchw = np.ascontiguousarray(batch.transpose(0, 3, 1, 2), dtype=np.float32)
        nchw *= scale
        nchw -= shift
        return nchw

    def on_device(self, batch):
        import paddle

        if self._tensors is None:  # created on first use, on the device of that moment
            self._tensors = tuple(paddle.to_tensor(c.reshape(1, 3, 1, 1)) for c in self.constants)
        scale, shift = self._tensors
        images = batch if isinstance(batch, paddle.Tensor) else paddle.to_tensor(batch)
        return paddle.transpose(images, [0, 3, 1, 2]).astype("float32") * scale - shift


# ---------------------------------------------------------------- pipelines


def eval_crop(image: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    """Evaluation geometry: resize the short side, centre crop; uint8 HWC."""
    return center_crop(resize_short(image, cfg.resize_short, cfg.interpolation), cfg.crop_size)


def eval_transform(image: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    return normalize_to_chw(eval_crop(image, cfg), cfg.mean, cfg.std)


def train_transform(image: np.ndarray, cfg: PreprocessConfig, rng: np.random.Generator) -> np.ndarray:
    return normalize_to_chw(train_augment(image, cfg, rng), cfg.mean, cfg.std)


def train_augment(image: np.ndarray, cfg: PreprocessConfig, rng: np.random.Generator) -> np.ndarray:
    """Training augmentation (crop, flip, rotation, AutoAugment or RandAugment, colour); uint8 HWC."""
    if cfg.rotate_degrees:
        image = rotate(image, rng.uniform(-cfg.rotate_degrees, cfg.rotate_degrees))
    image = random_resized_crop(image, cfg.crop_size, cfg, rng)
    if cfg.random_flip and rng.random() < 0.5:
        image = cv2.flip(image, 1)  # a contiguous copy, ~5x faster than numpy's [:, ::-1] + copy
    if cfg.use_aa:
        from utils.autoaugment import imagenet_autoaugment

        image = imagenet_autoaugment(np.ascontiguousarray(image), rng)
    if cfg.use_randaugment:
        from utils.randaugment import randaugment

        image = randaugment(np.ascontiguousarray(image), cfg.randaugment_n, cfg.randaugment_m, rng)
    if cfg.color_jitter:
        image = color_jitter(image, cfg.color_jitter, rng)
    return image
