"""AutoAugment with the ImageNet policy (Cubuk et al., 2019, "AutoAugment: Learning Augmentation
Strategies from Data", the ImageNet policy table), on RGB uint8 arrays with OpenCV/numpy.

Each sub-policy is two (operation, probability, magnitude 0-10) steps; one sub-policy is drawn per image.
"""
from __future__ import annotations

import cv2
import numpy as np

FILL = 128  # grey fill for geometric operations, as in the paper's implementation notes

IMAGENET_POLICY = (
    (("Posterize", 0.4, 8), ("Rotate", 0.6, 9)),
    (("Solarize", 0.6, 5), ("AutoContrast", 0.6, 5)),
    (("Equalize", 0.8, 8), ("Equalize", 0.6, 3)),
    (("Posterize", 0.6, 7), ("Posterize", 0.6, 6)),
    (("Equalize", 0.4, 7), ("Solarize", 0.2, 4)),
    (("Equalize", 0.4, 4), ("Rotate", 0.8, 8)),
    (("Solarize", 0.6, 3), ("Equalize", 0.6, 7)),
    (("Posterize", 0.8, 5), ("Equalize", 1.0, 2)),
    (("Rotate", 0.2, 3), ("Solarize", 0.6, 8)),
    (("Equalize", 0.6, 8), ("Posterize", 0.4, 6)),
    (("Rotate", 0.8, 8), ("Color", 0.4, 0)),
    (("Rotate", 0.4, 9), ("Equalize", 0.6, 2)),
    (("Equalize", 0.0, 7), ("Equalize", 0.8, 8)),
    (("Invert", 0.6, 4), ("Equalize", 1.0, 8)),
    (("Color", 0.6, 4), ("Contrast", 1.0, 8)),
    (("Rotate", 0.8, 8), ("Color", 1.0, 2)),
    (("Color", 0.8, 8), ("Solarize", 0.8, 7)),
    (("Sharpness", 0.4, 7), ("Invert", 0.6, 8)),
    (("ShearX", 0.6, 5), ("Equalize", 1.0, 9)),
    (("Color", 0.4, 0), ("Equalize", 0.6, 3)),
    (("Equalize", 0.4, 7), ("Solarize", 0.2, 4)),
    (("Solarize", 0.6, 5), ("AutoContrast", 0.6, 5)),
    (("Invert", 0.6, 4), ("Equalize", 1.0, 8)),
    (("Color", 0.6, 4), ("Contrast", 1.0, 8)),
    (("Equalize", 0.8, 8), ("Equalize", 0.6, 3)),
)


def _signed(value: float, rng: np.random.Generator) -> float:
    return -value if rng.random() < 0.5 else value


def _affine(image: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    height, width = image.shape[:2]
    return cv2.warpAffine(image, matrix, (width, height), flags=cv2.INTER_NEAREST,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(FILL, FILL, FILL))


def _blend(image: np.ndarray, degenerate: np.ndarray, factor: float) -> np.ndarray:
    out = degenerate.astype(np.float32) + factor * (image.astype(np.float32) - degenerate)
    return np.clip(out, 0, 255).astype(np.uint8)


def _gray(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)


# The operations, shared with RandAugment. ``strength`` is the fraction (0-1) of each operation's largest
# change: AutoAugment passes magnitude / 10, RandAugment magnitude / 30. The maxima are the AutoAugment
# paper's ranges (shear 0.3, translate 150/331 of the side, rotate 30 degrees, enhance factor 1 +- 0.9,
# posterize 8 -> 4 bits, solarize threshold 256 -> 0); the sign of signed operations is drawn from ``rng``.


def shear_x(image, strength, rng):
    shear = _signed(strength * 0.3, rng)
    return _affine(image, np.float32([[1, shear, 0], [0, 1, 0]]))


def shear_y(image, strength, rng):
    shear = _signed(strength * 0.3, rng)
    return _affine(image, np.float32([[1, 0, 0], [shear, 1, 0]]))


def translate_x(image, strength, rng):
    shift = _signed(strength * (150 / 331) * image.shape[1], rng)
    return _affine(image, np.float32([[1, 0, shift], [0, 1, 0]]))


def translate_y(image, strength, rng):
    shift = _signed(strength * (150 / 331) * image.shape[0], rng)
    return _affine(image, np.float32([[1, 0, 0], [0, 1, shift]]))


def rotation_degrees(strength: float) -> float:
    return strength * 30.0


def rotate(image, strength, rng):
    height, width = image.shape[:2]
    degrees = _signed(rotation_degrees(strength), rng)
    return _affine(image, cv2.getRotationMatrix2D((width / 2, height / 2), degrees, 1.0))


def color(image, strength, rng):
    return _blend(image, _gray(image), 1.0 + _signed(strength * 0.9, rng))


def contrast(image, strength, rng):
    mean = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).mean()
    return _blend(image, np.full_like(image, int(mean + 0.5)), 1.0 + _signed(strength * 0.9, rng))


def brightness(image, strength, rng):
    return _blend(image, np.zeros_like(image), 1.0 + _signed(strength * 0.9, rng))


def sharpness(image, strength, rng):
    kernel = np.array([[1, 1, 1], [1, 5, 1], [1, 1, 1]], np.float32) / 13.0
    smooth = cv2.filter2D(image, -1, kernel)
    return _blend(image, smooth, 1.0 + _signed(strength * 0.9, rng))


def posterize_bits_dropped(strength: float) -> int:
    return int(strength * 4)  # keep 8 - (0..4) bits, as the paper's [4, 8] range


def posterize(image, strength, rng):
    shift = posterize_bits_dropped(strength)
    return ((image >> shift) << shift).astype(np.uint8)


def solarize_threshold(strength: float) -> int:
    return 256 - int(strength * 256)  # 256: nothing inverted; 0: everything


def solarize(image, strength, rng):
    return np.where(image >= solarize_threshold(strength), 255 - image, image).astype(np.uint8)


def auto_contrast(image, strength, rng):
    out = np.empty_like(image)
    for channel in range(3):
        plane = image[..., channel]
        low, high = int(plane.min()), int(plane.max())
        if high <= low:
            out[..., channel] = plane
            continue
        lut = np.clip((np.arange(256) - low) * (255.0 / (high - low)), 0, 255).astype(np.uint8)
        out[..., channel] = lut[plane]
    return out


def equalize(image, strength, rng):
    return np.stack([cv2.equalizeHist(np.ascontiguousarray(image[..., c])) for c in range(3)], axis=-1)


def invert(image, strength, rng):
    return (255 - image).astype(np.uint8)


BY_STRENGTH = {
    "ShearX": shear_x, "ShearY": shear_y, "TranslateX": translate_x, "TranslateY": translate_y,
    "Rotate": rotate, "Color": color, "Contrast": contrast, "Brightness": brightness,
    "Sharpness": sharpness, "Posterize": posterize, "Solarize": solarize,
    "AutoContrast": auto_contrast, "Equalize": equalize, "Invert": invert,
}


def _on_magnitude_10(operation):
    def apply(image, magnitude, rng):
        return operation(image, magnitude / 10.0, rng)

    return apply


# AutoAugment's operations, taking the policy's magnitude (0-10)
OPERATIONS = {name: _on_magnitude_10(operation) for name, operation in BY_STRENGTH.items()}


def imagenet_autoaugment(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Apply one randomly drawn ImageNet sub-policy to an RGB uint8 image."""
    policy = IMAGENET_POLICY[int(rng.integers(len(IMAGENET_POLICY)))]
    for name, probability, magnitude in policy:
        if rng.random() < probability:
            image = OPERATIONS[name](image, magnitude, rng)
    return image
