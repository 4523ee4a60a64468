"""The decoder's pixel limit, which OpenCV reads from its environment once, when the library loads.

OpenCV refuses (cv2.error naming CV_IO_MAX_IMAGE_PIXELS) any image whose header declares more pixels than
``OPENCV_IO_MAX_IMAGE_PIXELS``, for every format, before allocating it. Its default (2**30) lets a 256 MP
TIFF through, so the suite sets a lower one before the first ``import cv2`` (a value the user exported wins).
"""
from __future__ import annotations

import os
import sys

MAX_IMAGE_PIXELS = 178_956_970  # what Pillow calls a decompression bomb (2x its warning limit)
ENV_NAME = "OPENCV_IO_MAX_IMAGE_PIXELS"


def limit_opencv_decoder() -> bool:
    """Set the limit for OpenCV; False when cv2 was imported earlier without it (then it is not in force)."""
    already_loaded = "cv2" in sys.modules and ENV_NAME not in os.environ
    os.environ.setdefault(ENV_NAME, str(MAX_IMAGE_PIXELS))
    return not already_loaded


def pixel_limit() -> int:
    """The limit in force: the environment's value (ours unless the user exported another)."""
    try:
        return int(os.environ.get(ENV_NAME, MAX_IMAGE_PIXELS))
    except ValueError:
        return MAX_IMAGE_PIXELS
