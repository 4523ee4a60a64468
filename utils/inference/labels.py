"""Class names: a ``--class_map_path`` file, an export's ``labels.txt``, or the shipped ImageNet-1k names.
"""
from __future__ import annotations

import os

from utils.errors import UsageError
from utils.export_format import LABELS_FILE

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_CLASS_MAP = os.path.join(ROOT, "utils", "tools", "readable_label.txt")
IMAGENET_CLASSES = 1000


def read_class_map(path: str, class_dim: int, flag: str = "--class_map_path") -> list[str]:
    """Class names from ``index name`` lines or one name per line (line i names class i)."""
    from utils.text_files import read_text_lines

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


def label_names(class_map_path: str | None, class_dim: int, pretrained_model: str | None = None) -> list[str] | None:
    """The given map, else the ``labels.txt`` a training run wrote beside ``pretrained_model`` (a folder data
    set's class folders), else the shipped ImageNet-1k names for 1000-class models, else None (ids only)."""
    if class_map_path:
        return read_class_map(class_map_path, class_dim)
    if pretrained_model:
        folder = pretrained_model if os.path.isdir(pretrained_model) else os.path.dirname(pretrained_model)
        beside = os.path.join(folder, LABELS_FILE)
        if os.path.isfile(beside):
            return read_class_map(beside, class_dim, f"checkpoint labels ({beside})")
    if class_dim == IMAGENET_CLASSES and os.path.isfile(DEFAULT_CLASS_MAP):
        return read_class_map(DEFAULT_CLASS_MAP, class_dim, "default class map")
    return None


def check_topk(topk: int, class_dim: int) -> None:
    if topk < 1:
        raise UsageError(f"--topk {topk}: must be >= 1")
    if topk > class_dim:
        raise UsageError(f"--topk {topk} is larger than the number of classes ({class_dim})")
