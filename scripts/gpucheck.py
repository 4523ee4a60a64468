"""``bash run.sh gpucheck``: one command that runs every GPU path of the suite for a few steps and prints a table.

Trains ResNet50 for one short epoch and resumes it for a second under fp32, O1 fp16 (``--use_amp``), O2 fp16
(``--use_pure_fp16``, validation on) and bf16 (``--amp_dtype=bfloat16``, compute capability >= 8.0), with the
cv2 and the DALI readers, on every visible GPU (through ``paddle.distributed.launch`` when there are two or
more); then exports the fp32 model (infer.py --save_inference) and runs predict.py without and with TensorRT.
The table: path, pass/fail (or skip and why), images/s (train.py's ``img/s`` log lines after the first step).

Without a GPU it prints the command lines it would run and exits 0. ``--cpu`` runs the fp32 + cv2 rows on the
CPU at a tiny size in one process (this script's own check). Data: ``--data_dir`` with train/val lists, or a
small generated JPEG set in a temporary folder.
"""
from __future__ import annotations

import argparse
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PRECISIONS = {  # name -> train.py flags
    "fp32": [],
    "fp16-O1": ["--use_amp=True"],
    "fp16-O2": ["--use_pure_fp16=True"],
    "bf16": ["--use_amp=True", "--amp_dtype=bfloat16"],
}
BF16_MIN_CAPABILITY = (8, 0)  # bfloat16 tensor cores: Ampere and newer
RATE = re.compile(r"([0-9.]+) img/s")


@dataclass
class Row:
    path: str
    commands: list[list[str]]
    skip: str = ""  # why the row cannot run here (then it is reported, not run)
    expect: list[str | None] = field(default_factory=list)  # per command: a pattern its log must show
    log_name: str = ""  # a launcher's worker log to read img/s from instead of stdout
    result: str = "not run"
    rate: float | None = None
    detail: list[str] = field(default_factory=list)


@dataclass
class Machine:
    gpus: int
    capability: tuple[int, int] | None
    has_dali: bool
    has_tensorrt: bool


def probe_machine(cpu: bool) -> Machine:
    import importlib.util

    import paddle

    gpus = paddle.device.cuda.device_count() if paddle.device.is_compiled_with_cuda() and not cpu else 0
    capability = tuple(paddle.device.cuda.get_device_capability(0)) if gpus else None
    has_dali = importlib.util.find_spec("nvidia") is not None and importlib.util.find_spec("nvidia.dali") is not None
    has_tensorrt = bool(gpus) and any(paddle.inference.get_trt_compile_version())
    return Machine(gpus, capability, has_dali, has_tensorrt)


def make_data(folder: str, size: int, count: int) -> None:
    """``count`` JPEGs in 4 classes (smooth colour fields with a class-dependent gradient) and their lists."""
    import cv2
    import numpy as np

    rng = np.random.default_rng(0)
    lines = {"train": [], "val": []}
    for split, number in (("train", count), ("val", max(8, count // 4))):
        os.makedirs(os.path.join(folder, split), exist_ok=True)
        for i in range(number):
            label = i % 4
            ramp = np.linspace(0, 255, size, dtype=np.float32)
            base = np.stack([np.tile(ramp, (size, 1)), np.tile(ramp[:, None], (1, size)),
                             np.full((size, size), 64.0 * label)], -1)
            image = np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
            name = f"{split}/{i}.jpg"
            cv2.imwrite(os.path.join(folder, name), image)
            lines[split].append(f"{name} {label}")
    for split, entries in lines.items():
        with open(os.path.join(folder, f"{split}_list.txt"), "w", encoding="utf-8") as handle:
            handle.write("\n".join(entries) + "\n")


def plan(args, machine: Machine, work: str) -> list[Row]:
    python = sys.executable
    devices = max(1, machine.gpus)
    batch = args.batch_size * devices
    common = [f"--model={args.model}", f"--data_dir={args.data_dir}", "--image_shape", "3", str(args.image_size),
              str(args.image_size), f"--resize_short_size={args.image_size}", f"--batch_size={batch}",
              f"--test_batch_size={batch}", "--print_step=1", "--class_dim=4", f"--use_gpu={not args.cpu}"]
    if args.cpu:
        common += ["--reader_thread=0"]
    rows = []
    readers = ["cv2"] if args.cpu else ["cv2", "dali"]
    precisions = ["fp32"] if args.cpu else list(PRECISIONS)
    for reader in readers:
        for precision in precisions:
            name = f"{precision}-{reader}"
            out = os.path.join(work, "runs", name)
            launch = [python, "-m", "paddle.distributed.launch", "--devices", ",".join(map(str, range(devices))),
                      "--log_dir", os.path.join(out, "log")] if devices > 1 else [python]
            flags = [*common, *PRECISIONS[precision], f"--use_dali={reader == 'dali'}", f"--model_save_dir={out}",
                     f"--validate={precision == 'fp16-O2'}"]
            first = [*launch, "train.py", *flags, "--num_epochs=1"]
            resumed = [*launch, "train.py", *flags, "--num_epochs=2", "--resume=auto"]
            skip = ""
            if reader == "dali" and not machine.has_dali:
                skip = "DALI not installed (pip install -r requirements-dali.txt)"
            if precision == "bf16" and machine.capability is not None and machine.capability < BF16_MIN_CAPABILITY:
                major, minor = machine.capability
                skip = f"bf16 needs compute capability >= 8.0, this GPU has {major}.{minor}"
            log_name = os.path.join(out, "log", "workerlog.0") if devices > 1 else ""
            rows.append(Row(f"train+resume {name} x{devices}", [first, resumed], skip, log_name=log_name,
                            expect=[None, r"resumed from \S+: continuing at epoch 1\b"]))
    fp32_run = os.path.join(work, "runs", "fp32-cv2")
    export_dir = os.path.join(work, "export")
    checkpoint = os.path.join(fp32_run, args.model, "1")
    rows.append(Row("export (infer.py --save_inference)", [[
        python, "infer.py", f"--model={args.model}", f"--pretrained_model={checkpoint}", "--image_shape", "3",
        str(args.image_size), str(args.image_size), f"--resize_short_size={args.image_size}", "--class_dim=4",
        "--save_inference=True", f"--model_save_dir={export_dir}", f"--use_gpu={not args.cpu}"]]))
    predict = [python, "predict.py", f"--inference_model={os.path.join(export_dir, args.model)}",
               f"--data_dir={os.path.join(args.data_dir, 'val_list.txt')}", "--eval=True",
               f"--batch_size={args.batch_size}", f"--use_gpu={not args.cpu}"]
    rows.append(Row("predict.py (Paddle Inference)", [predict]))
    planning_only = not machine.gpus and not args.cpu  # what a GPU machine would run: its TensorRT is unknown
    trt_skip = "" if machine.has_tensorrt or planning_only else "needs a GPU and a Paddle build with TensorRT"
    rows.append(Row("predict.py --use_tensorrt", [[*predict, "--use_tensorrt=True"]], trt_skip))
    return rows


def run_row(row: Row, env: dict) -> None:
    if row.skip:
        row.result = f"skip: {row.skip}"
        return
    rates = []
    for number, command in enumerate(row.commands):
        started = time.perf_counter()
        proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env)
        text = proc.stdout + proc.stderr
        if row.log_name and os.path.isfile(row.log_name):
            with open(row.log_name, encoding="utf-8", errors="replace") as handle:
                text += handle.read()
        row.detail.append(f"$ {shlex.join(command)}  ({time.perf_counter() - started:.0f} s, exit {proc.returncode})")
        if proc.returncode != 0:
            row.result = f"FAIL (exit {proc.returncode})"
            row.detail += text.strip().splitlines()[-15:]
            return
        expected = row.expect[number] if number < len(row.expect) else None
        if expected and not re.search(expected, text):
            row.result = "FAIL (no resume)"
            row.detail += [f"its log does not show /{expected}/:"] + text.strip().splitlines()[-15:]
            return
        rates += [float(m) for m in RATE.findall(text)[1:]]  # the first step includes start-up
    row.result = "pass"
    row.rate = statistics.median(rates) if rates else None


def print_table(rows: list[Row], out=sys.stdout) -> None:
    width = max(len(r.path) for r in rows)
    print(f"{'path':<{width}}  {'result':<16}  {'images/s':>8}", file=out)
    for row in rows:
        rate = f"{row.rate:.1f}" if row.rate is not None else "-"
        result = "skip" if row.skip else row.result
        note = f"  ({row.skip})" if row.skip else ""
        print(f"{row.path:<{width}}  {result:<16}  {rate:>8}{note}", file=out)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpu", action="store_true", help="run the fp32 + cv2 rows on the CPU at a tiny size")
    parser.add_argument("--data_dir", help="a folder with train_list.txt and val_list.txt (4 classes: labels 0-3); "
                        "default: a generated JPEG set")
    parser.add_argument("--model", default="ResNet50")
    parser.add_argument("--batch_size", type=int, help="per device (default 32 on GPU, 4 with --cpu)")
    parser.add_argument("--image_size", type=int, help="default 224 on GPU, 32 with --cpu")
    parser.add_argument("--steps", type=int, default=8, help="training steps per epoch (generated data)")
    parser.add_argument("--verbose", action="store_true", help="print each command and a failing run's log tail")
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    args.batch_size = args.batch_size or (4 if args.cpu else 32)
    args.image_size = args.image_size or (32 if args.cpu else 224)
    if args.batch_size < 1 or args.image_size < 16 or args.steps < 1:
        print("error: --batch_size >= 1, --image_size >= 16 and --steps >= 1 are needed", file=sys.stderr)
        return 2
    machine = probe_machine(args.cpu)
    with tempfile.TemporaryDirectory(prefix="gpucheck-") as work:
        generated = args.data_dir is None
        args.data_dir = args.data_dir or os.path.join(work, "data")
        rows = plan(args, machine, work)
        if not machine.gpus and not args.cpu:
            print("No GPU visible to Paddle (a CPU build, or no CUDA device): nothing run. On a GPU machine this "
                  "runs:")
            for row in rows:
                for command in row.commands:
                    print(f"  [{row.path}] {shlex.join(command).replace(work, '$WORK')}")
                if row.skip:
                    print(f"  [{row.path}] would be skipped: {row.skip}")
            print(f"($WORK: a temporary folder with the generated data, runs and export; python: {sys.executable})")
            print("(--cpu runs the fp32 + cv2 rows on this CPU.)")
            return 0
        if generated:
            make_data(args.data_dir, args.image_size + args.image_size // 8,
                      args.steps * args.batch_size * max(1, machine.gpus))
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")])}
        for row in rows:
            run_row(row, env)
            print(f"{row.path}: {row.result}", file=sys.stderr, flush=True)
            if args.verbose or row.result.startswith("FAIL"):
                print("\n".join(row.detail), file=sys.stderr)
        print_table(rows)
    return 1 if any(r.result.startswith("FAIL") for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
