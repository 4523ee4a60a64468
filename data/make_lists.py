#!/usr/bin/env python
"""Write classic list files for a class-per-folder image tree.

    python data/make_lists.py ROOT [--val_fraction 0.1] [--seed 0]

ROOT/<class_name>/**/<image> -> ROOT/train_list.txt, ROOT/val_list.txt (``relative/path label``) and
ROOT/labels.txt (``label class_name``, classes sorted by name). If ROOT has ``train/`` and ``val/``
sub-trees, they are used as the split and --val_fraction is ignored. Then:
    python train.py --data_dir ROOT --model ResNet50_vd ...
(Such a ROOT/train + ROOT/val tree needs no lists: without list files the scripts read the folders.)
"""
import argparse
import os
import random
import sys

# the readers' own folder rules (class ids = sorted folder names), so lists and folder data sets agree
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from reader import class_folders, images_under  # noqa: E402


def list_lines(root: str, tree: str, classes: list[str]) -> list[str]:
    lines = []
    for label, name in enumerate(classes):
        class_dir = os.path.join(tree, name)
        if os.path.isdir(class_dir):
            # '/' even on Windows: the lists are read on Linux training machines too
            lines += [f"{os.path.relpath(p, root).replace(os.sep, '/')} {label}" for p in images_under(class_dir)]
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root")
    parser.add_argument("--val_fraction", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    root = args.root
    if not os.path.isdir(root):
        print(f"error: {root} is not a directory", file=sys.stderr)
        return 2
    split_dirs = os.path.isdir(os.path.join(root, "train")) and os.path.isdir(os.path.join(root, "val"))
    if split_dirs:
        classes = class_folders(os.path.join(root, "train"))
        train = list_lines(root, os.path.join(root, "train"), classes)
        val = list_lines(root, os.path.join(root, "val"), classes)
    else:
        classes = class_folders(root)
        rng = random.Random(args.seed)
        train, val = [], []
        for label, name in enumerate(classes):
            lines = list_lines(root, root, [name])
            lines = [line.rsplit(" ", 1)[0] + f" {label}" for line in lines]
            rng.shuffle(lines)
            cut = int(round(len(lines) * args.val_fraction))
            val += sorted(lines[:cut])
            train += sorted(lines[cut:])
    if not classes or not train:
        print(f"error: no class folders with images under {root} (expected ROOT/<class>/<image>)", file=sys.stderr)
        return 2
    for name, lines in (("train_list.txt", train), ("val_list.txt", val)):
        with open(os.path.join(root, name), "w", encoding="utf-8") as handle:
            handle.write("\n".join(lines) + ("\n" if lines else ""))
    with open(os.path.join(root, "labels.txt"), "w", encoding="utf-8") as handle:
        handle.write("".join(f"{i} {name}\n" for i, name in enumerate(classes)))
    print(f"{len(classes)} classes: {len(train)} train / {len(val)} val images; lists written in {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
