#!/usr/bin/env python
"""Write utils/tools/readable_label.txt, the ImageNet-1k class names infer.py and predict.py print.

The names are not typed by hand: they come from data files shipped in a PyPI wheel (timm ships the
1,000 ImageNet-1k synsets in class-index order and a synset -> WordNet lemma table). The script fetches
the wheel with ``pip download --no-deps`` (or reads one given with --wheel) and writes one
``index name`` line per class, e.g. ``0 tench, Tinca tinca``.

    python utils/tools/make_readable_label.py                  # downloads the pinned wheel
    python utils/tools/make_readable_label.py --wheel timm-1.0.31-py3-none-any.whl
"""
from __future__ import annotations

import argparse
import glob
import os
import subprocess
import sys
import tempfile
import zipfile

PACKAGE = "timm==1.0.31"
SYNSETS = "timm/data/_info/imagenet_synsets.txt"
LEMMAS = "timm/data/_info/imagenet_synset_to_lemma.txt"
OUTPUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "readable_label.txt")
NUM_CLASSES = 1000


def download_wheel(directory: str) -> str:
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q",
                    "-d", directory, PACKAGE], check=True)
    wheels = glob.glob(os.path.join(directory, "*.whl"))
    if len(wheels) != 1:
        raise SystemExit(f"expected one wheel in {directory}, found {wheels}")
    return wheels[0]


def class_names(wheel: str) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        synsets = archive.read(SYNSETS).decode("utf-8").split()
        lemma_lines = archive.read(LEMMAS).decode("utf-8").splitlines()
    lemmas = dict(line.split("\t", 1) for line in lemma_lines if "\t" in line)
    if len(synsets) != NUM_CLASSES:
        raise SystemExit(f"{wheel}:{SYNSETS} lists {len(synsets)} synsets, expected {NUM_CLASSES}")
    missing = [s for s in synsets if s not in lemmas]
    if missing:
        raise SystemExit(f"{wheel}:{LEMMAS} has no name for {len(missing)} synsets, e.g. {missing[0]}")
    return [" ".join(lemmas[s].split()) for s in synsets]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wheel", help=f"a downloaded {PACKAGE} wheel (default: pip download it)")
    parser.add_argument("--output", default=OUTPUT, help="where to write the label file")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        names = class_names(args.wheel or download_wheel(tmp))
    with open(args.output, "w", encoding="utf-8", newline="\n") as handle:
        handle.writelines(f"{index} {name}\n" for index, name in enumerate(names))
    print(f"wrote {len(names)} class names to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
