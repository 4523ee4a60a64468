#!/usr/bin/env python
"""Benchmarks that print figures (speed targets live here, never in timed tests).

    python benchmark.py infer     latency and images/s of every engine x precision on this CPU (dygraph, Paddle
                                  Inference, onnxruntime, OpenVINO; fp32/bf16/int8) and the default's choice
    python benchmark.py reader    training-pipeline images/s, this suite vs a Pillow + numpy baseline
    python benchmark.py train     training-step images/s, this suite vs paddle.vision's resnet50

Each subcommand lives in benchmarks/<name>.py as ``main(argv)``; ``--help`` after it shows its options.
"""
import importlib
import sys

from utils.runtime import prepare_cpu

SUBCOMMANDS = ("infer", "reader", "train")


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in SUBCOMMANDS:
        print(__doc__, file=sys.stderr)
        return 2
    prepare_cpu()
    module = importlib.import_module(f"benchmarks.{sys.argv[1]}")
    return module.main(sys.argv[2:]) or 0


if __name__ == "__main__":
    sys.exit(main())
