"""train.py under paddle.distributed.launch on CPU (gloo): 2 processes, 2 "nodes", a killed rank."""
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT, run_script, subset_list

# Frozen BatchNorm statistics make a 2 x 8 batch compute exactly what one 16 batch does (per-rank BN
# statistics would differ; SyncBatchNorm has no CPU kernel), so the loss curves must agree.
COMMON = ["--model=ResNet18", "--image_shape", "3", "32", "32", "--resize_short_size=32", "--reader_thread=0",
          "--batch_size=16", "--test_batch_size=10", "--print_step=1", "--random_seed=11", "--lr=0.002",
          "--freeze_bn=True", "--num_epochs=1", "--max_iter=3", "--lr_strategy=cosine_decay"]


@pytest.fixture(scope="module")
def data(digits_dir):
    subset_list(digits_dir / "train_list.txt", digits_dir / "dist_train.txt", 64)
    subset_list(digits_dir / "val_list.txt", digits_dir / "dist_val.txt", 41)
    return ["--data_dir", str(digits_dir), "--train_list=dist_train.txt", "--val_list=dist_val.txt"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def losses(text: str) -> list[float]:
    return [float(m) for m in re.findall(r"\[train\] epoch \d+ step \d+/\d+ loss ([0-9.]+)", text)]


def launch(args, log_dir, extra_launch=(), env=None, **kwargs):
    command = [sys.executable, "-m", "paddle.distributed.launch", "--log_dir", str(log_dir), *extra_launch,
               "train.py", *args]
    return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, **(env or {})}, **kwargs)


def test_two_processes_match_one_process_loss_curve(data, tmp_path):
    single = run_script("train.py", *COMMON, *data, f"--model_save_dir={tmp_path / 'single'}", "--validate=False")
    proc = launch([*COMMON, *data, f"--model_save_dir={tmp_path / 'dist'}", "--validate=False"],
                  tmp_path / "log", ["--nproc_per_node", "2"])
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, output[-3000:]
    rank0 = (tmp_path / "log" / "workerlog.0").read_text()
    assert "2 process(es)" in rank0
    expected, got = losses(single.stdout), losses(rank0)
    assert len(expected) == len(got) == 3
    assert got == pytest.approx(expected, abs=1e-4)
    # only rank 0 writes checkpoints
    assert (tmp_path / "dist" / "ResNet18").exists()
    assert "saved checkpoint" not in (tmp_path / "log" / "workerlog.1").read_text()


def test_two_nodes_on_localhost_validate_every_sample_once(data, tmp_path):
    port = free_port()
    args = [*COMMON, *data, "--max_iter=0", f"--model_save_dir={tmp_path / 'out'}"]
    nodes = [launch(args, tmp_path / f"log{n}", ["--nnodes", "2", "--master", f"127.0.0.1:{port}",
                                                 "--nproc_per_node", "1"]) for n in range(2)]
    outputs = [node.communicate(timeout=400)[0] for node in nodes]
    assert all(node.returncode == 0 for node in nodes), outputs[0][-2000:] + outputs[1][-2000:]
    logs = "".join((tmp_path / f"log{n}" / "workerlog.0").read_text() for n in range(2))
    assert "samples 41 skipped 0" in logs  # 41 validation images over 2 ranks, none lost or doubled


def test_killed_rank_ends_the_launch_promptly_and_the_job_resumes(data, tmp_path):
    args = [*COMMON, *data, "--max_iter=0", "--num_epochs=50", f"--model_save_dir={tmp_path / 'out'}"]
    proc = launch(args, tmp_path / "log", ["--nproc_per_node", "2"], start_new_session=True)
    rank0_log = tmp_path / "log" / "workerlog.0"
    deadline = time.time() + 180
    while time.time() < deadline and not (rank0_log.exists() and "saved checkpoint" in rank0_log.read_text()):
        time.sleep(0.5)
    pids = subprocess.run(["pgrep", "-f", f"model_save_dir={tmp_path / 'out'}"], capture_output=True,
                          text=True).stdout.split()
    workers = [int(p) for p in pids if int(p) != proc.pid]
    assert workers, "no worker processes found"
    os.kill(max(workers), signal.SIGKILL)
    killed_at = time.time()
    try:
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode != 0
    assert time.time() - killed_at < 60
    # every rank resumes from the newest complete checkpoint
    resume = [a if a != "--num_epochs=50" else "--num_epochs=3" for a in args] + ["--resume=auto"]
    again = launch(resume, tmp_path / "log2", ["--nproc_per_node", "2"])
    output, _ = again.communicate(timeout=300)
    assert again.returncode == 0, output[-3000:]
    for rank in (0, 1):
        assert "resumed from" in (tmp_path / "log2" / f"workerlog.{rank}").read_text()
