#!/usr/bin/env python
"""Build the bundled demo data set offline: scikit-learn's handwritten digits as PNG files + list files.

    python data/make_demo_data.py [--out data/demo] [--size 32]

1,797 8x8 grey digits (10 classes) are upscaled to ``size`` x ``size`` PNGs under ``out/{train,val}/<label>/``,
split 80/20 per class with a fixed seed, and listed in ``train_list.txt`` / ``val_list.txt`` (classic format).
"""
import argparse
import os

import cv2
import numpy as np


def build(out: str, size: int, seed: int = 0) -> tuple[int, int]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images * (255.0 / 16.0)).astype(np.uint8)
    rng = np.random.default_rng(seed)
    lines = {"train": [], "val": []}
    for label in range(10):
        indices = np.flatnonzero(digits.target == label)
        rng.shuffle(indices)
        cut = int(round(len(indices) * 0.8))
        for split, chosen in (("train", indices[:cut]), ("val", indices[cut:])):
            folder = os.path.join(out, split, str(label))
            os.makedirs(folder, exist_ok=True)
            for index in chosen:
                rel = f"{split}/{label}/{index:04d}.png"
                big = cv2.resize(images[index], (size, size), interpolation=cv2.INTER_CUBIC)
                cv2.imwrite(os.path.join(out, rel), big)
                lines[split].append(f"{rel} {label}")
    for split, rows in lines.items():
        with open(os.path.join(out, f"{split}_list.txt"), "w", encoding="utf-8") as handle:
            handle.write("\n".join(rows) + "\n")
    return len(lines["train"]), len(lines["val"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "demo"))
    parser.add_argument("--size", type=int, default=32)
    args = parser.parse_args()
    train, val = build(args.out, args.size)
    print(f"demo data: {train} train / {val} val images in {args.out}")


if __name__ == "__main__":
    main()
