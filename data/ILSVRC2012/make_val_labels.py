#!/usr/bin/env python
"""Write data/ILSVRC2012/ILSVRC2012_val_labels.txt: the class id of each of the 50,000 ILSVRC2012
validation images, line N for ILSVRC2012_val_<N, 8 digits>.JPEG, in the classic lists' class order
(the 1,000 synsets sorted, i.e. the sorted train/ folder names).

The labels are not typed by hand: they come from a data file shipped in a PyPI wheel (tensorflow-datasets
ships the validation ground truth as one synset per line in image order, and the 1,000 synsets). The script
fetches the wheel with ``pip download --no-deps`` (or reads one given with --wheel).

    python data/ILSVRC2012/make_val_labels.py
    python data/ILSVRC2012/make_val_labels.py --wheel tensorflow_datasets-4.9.10-py3-none-any.whl

Without this file, the official devkit gives the same labels: ILSVRC2012_validation_ground_truth.txt counts
classes in the devkit's ILSVRC2012_ID order (data/meta.mat), not the sorted-synset order, so it must be mapped
through meta.mat's synsets first; this file is that mapping done once.
"""
from __future__ import annotations

import argparse
import glob
import os
import subprocess
import sys
import tempfile
import zipfile

PACKAGE = "tensorflow-datasets==4.9.10"
VALIDATION = "tensorflow_datasets/datasets/imagenet2012/validation_labels.txt"
SYNSETS = "tensorflow_datasets/datasets/imagenet2012/labels.txt"
OUTPUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ILSVRC2012_val_labels.txt")
NUM_IMAGES, NUM_CLASSES = 50000, 1000


def download_wheel(directory: str) -> str:
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q",
                    "-d", directory, PACKAGE], check=True)
    return glob.glob(os.path.join(directory, "*.whl"))[0]


def val_labels(wheel: str) -> list[int]:
    with zipfile.ZipFile(wheel) as archive:
        synsets_in_image_order = archive.read(VALIDATION).decode("ascii").split()
        synsets = archive.read(SYNSETS).decode("ascii").split()
    class_order = sorted(synsets)  # the classic lists number the sorted synset folders 0..999
    if len(class_order) != NUM_CLASSES or len(synsets_in_image_order) != NUM_IMAGES:
        raise SystemExit(f"error: {wheel}: expected {NUM_CLASSES} synsets and {NUM_IMAGES} labels, found "
                         f"{len(class_order)} and {len(synsets_in_image_order)}")
    index = {synset: i for i, synset in enumerate(class_order)}
    return [index[synset] for synset in synsets_in_image_order]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wheel", help=f"a {PACKAGE} wheel already downloaded")
    parser.add_argument("--output", default=OUTPUT)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        labels = val_labels(args.wheel or download_wheel(scratch))
    with open(args.output, "w", encoding="ascii", newline="\n") as handle:
        handle.writelines(f"{label}\n" for label in labels)
    print(f"wrote {len(labels)} validation labels to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
