#!/usr/bin/env python
"""Fault injection: SIGKILL a training run at random moments, resume it with --resume auto each time, and
check that the final weights equal an uninterrupted run's (bitwise, on CPU).

    python scripts/chaos_train.py --kills 5 [--seed 0] [--workdir DIR]

Uses the demo digits (built if missing) and a small ResNet18 run of a few epochs. Kills land anywhere:
during start-up, a training step, validation or a checkpoint write. Prints one line per kill and a verdict;
exits 0 only if the weights match.
"""
from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def train_command(data_dir: str, out: str) -> list[str]:
    return [sys.executable, "train.py", "--model=ResNet18", f"--data_dir={data_dir}", "--train_list=chaos_train.txt",
            "--val_list=chaos_val.txt", "--image_shape", "3", "32", "32", "--resize_short_size=32", "--batch_size=16",
            "--num_epochs=6", "--lr=0.05", "--lr_strategy=cosine_decay", "--random_seed=5", "--reader_thread=0",
            "--print_step=1", "--use_ema=True", f"--model_save_dir={out}", "--resume=auto"]


def prepare_data(data_dir: str) -> None:
    if not os.path.isfile(os.path.join(data_dir, "train_list.txt")):
        subprocess.run([sys.executable, "data/make_demo_data.py", "--out", data_dir], cwd=ROOT, check=True,
                       capture_output=True)
    for name, count in (("train", 64), ("val", 30)):
        lines = open(os.path.join(data_dir, f"{name}_list.txt"), encoding="utf-8").read().split("\n")
        lines = [line for line in lines if line.strip()]
        step = len(lines) // count
        with open(os.path.join(data_dir, f"chaos_{name}.txt"), "w", encoding="utf-8") as handle:
            handle.write("\n".join(lines[::step][:count]) + "\n")


def final_weights(out: str) -> dict:
    from utils.checkpoint import safe_load

    return safe_load(os.path.join(out, "ResNet18", "5", "model.pdparams"))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--max_delay", type=float, default=12.0, help="kill within this many seconds of a start")
    args = parser.parse_args(argv)
    workdir = args.workdir or tempfile.mkdtemp(prefix="chaos-")
    data_dir = os.path.join(workdir, "digits")
    prepare_data(data_dir)
    rng = random.Random(args.seed)

    reference = os.path.join(workdir, "reference")
    subprocess.run(train_command(data_dir, reference), cwd=ROOT, check=True, capture_output=True)

    chaos = os.path.join(workdir, "chaos")
    kills = runs = 0
    while True:  # kill each run after a random delay until the kill budget is spent, then let one finish
        runs += 1
        proc = subprocess.Popen(train_command(data_dir, chaos), cwd=ROOT, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        delay = rng.uniform(1.0, args.max_delay) if kills < args.kills else None
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills += 1
            print(f"kill {kills}: SIGKILL {delay:.1f} s into run {runs}", flush=True)
            continue
        if proc.returncode != 0:
            print(f"run {runs} failed with exit code {proc.returncode}:\n{proc.stderr.read()[-2000:]}")
            return 1
        break  # a run finished training
    expected, got = final_weights(reference), final_weights(chaos)
    equal = expected.keys() == got.keys() and all(np.array_equal(expected[k], got[k]) for k in expected)
    print(f"{kills} kills, {runs} runs: final weights {'EQUAL' if equal else 'DIFFERENT'} to the uninterrupted run's")
    return 0 if equal else 1


if __name__ == "__main__":
    sys.path.insert(0, ROOT)
    from utils.runtime import import_paddle_quietly, prepare_cpu

    prepare_cpu()
    import_paddle_quietly()
    sys.exit(main())
