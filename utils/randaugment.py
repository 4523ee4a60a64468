"""RandAugment (Cubuk et al., 2020, "RandAugment: Practical automated data augmentation with a reduced search
space"), on RGB uint8 arrays with OpenCV/numpy.

Per image, N operations are drawn uniformly (with replacement) from the paper's 14 and each is applied at the
one magnitude M. M is on the 0-30 scale (as torchvision's 31 magnitude bins): M = 30 is each operation's
largest change, the same maxima AutoAugment uses (the operations are utils.autoaugment's).
"""
from __future__ import annotations

import numpy as np

from utils.autoaugment import BY_STRENGTH

MAX_MAGNITUDE = 30


def identity(image, strength, rng):
    return image


# the paper's list, in its order
OPERATION_NAMES = ("Identity", "AutoContrast", "Equalize", "Rotate", "Solarize", "Color", "Posterize",
                   "Contrast", "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateX", "TranslateY")
OPERATIONS = {name: identity if name == "Identity" else BY_STRENGTH[name] for name in OPERATION_NAMES}


def chosen_operations(num_ops: int, rng: np.random.Generator) -> list[str]:
    return [OPERATION_NAMES[int(i)] for i in rng.integers(len(OPERATION_NAMES), size=num_ops)]


def randaugment(image: np.ndarray, num_ops: int, magnitude: float, rng: np.random.Generator) -> np.ndarray:
    """Apply ``num_ops`` uniformly drawn operations at ``magnitude`` (0-30) to an RGB uint8 image."""
    strength = magnitude / MAX_MAGNITUDE
    for name in chosen_operations(num_ops, rng):
        image = OPERATIONS[name](image, strength, rng)
    return image
