"""The images a run classifies: one file, a folder walked recursively, or a ``path [label]`` list.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import cv2

from utils.errors import UsageError
from utils.inference.records import log

# a file with one of these names is an image to classify (an unreadable one becomes an error record); any
# other file is taken when OpenCV recognises its content, and reported as skipped when it does not
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".dib", ".webp", ".tif", ".tiff", ".gif", ".ppm",
                    ".pgm", ".pbm", ".pnm", ".pam", ".jp2", ".ras", ".sr", ".hdr", ".pic", ".avif", ".exr")


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
    from utils.text_files import read_text_lines

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
