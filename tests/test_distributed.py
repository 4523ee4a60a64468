"""train.py under paddle.distributed.launch on CPU (gloo): 2 processes, 2 "nodes", a killed rank."""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import paddle
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
    # 2 ranks x 4 images x --accum_steps 2 train each step on the single run's 16 images (the ranks interleave
    # one order); the ranks all-reduce once per optimizer step, so a missed all-reduce shows in the losses
    proc = launch([*COMMON, *data, f"--model_save_dir={tmp_path / 'dist'}", "--validate=False", "--batch_size=8",
                   "--accum_steps=2"], tmp_path / "log", ["--nproc_per_node", "2"])
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, output[-3000:]
    rank0 = (tmp_path / "log" / "workerlog.0").read_text()
    assert "2 process(es)" in rank0 and "of 2 batches each" in rank0
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


# ---------------------------------------------------------------- imperfect data, shared order, resume, stop


def write_list_with_bad_images(digits_dir, tmp_path, count, bad_positions):
    """A list of ``count`` digits whose entries at ``bad_positions`` are files that do not decode."""
    lines = [line for line in (digits_dir / "train_list.txt").read_text().splitlines() if line.strip()]
    picked = lines[:: max(1, len(lines) // count)][:count]
    bad_dir = digits_dir / f"bad-{tmp_path.name}"  # list paths lie inside --data_dir
    bad_dir.mkdir(exist_ok=True)
    for position in bad_positions:
        name = bad_dir / f"broken_{position}.png"
        name.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
        picked[position] = f"{name.relative_to(digits_dir)} {picked[position].rsplit(maxsplit=1)[1]}"
    target = tmp_path / "mixed_list.txt"
    target.write_text("\n".join(picked) + "\n")
    return target


def rank_logs(log_dir):
    return [(log_dir / f"workerlog.{rank}").read_text() for rank in (0, 1)]


def test_a_rank_with_only_unreadable_images_skips_the_step_with_every_rank(digits_dir, tmp_path):
    from reader import EpochBatchSampler

    seed, count = 5, 32
    # rank 1's second batch (2 images per rank) is unreadable: that rank alone has nothing to train on
    rank1 = EpochBatchSampler(count, 2, shuffle=True, seed=seed, drop_last=True, rank=1, world_size=2)
    rank1.set_epoch(0)
    all_bad_batch = list(rank1)[1]
    others = [i for i in range(count) if i not in all_bad_batch][::5][:6]
    bad = sorted(set(all_bad_batch) | set(others))
    train_list = write_list_with_bad_images(digits_dir, tmp_path, count, bad)
    args = [*COMMON, f"--data_dir={digits_dir}", f"--train_list={train_list}", "--validate=False",
            "--batch_size=4", "--max_iter=0", f"--random_seed={seed}", f"--model_save_dir={tmp_path / 'out'}"]
    proc = launch(args, tmp_path / "log", ["--nproc_per_node", "2"])
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, output[-3000:]
    rank0, rank1_log = rank_logs(tmp_path / "log")
    assert "skipped on every rank (1 rank(s) had no readable image)" in rank0
    assert f"epoch 0: {len(bad)} unreadable images skipped (all ranks)" in rank0  # summed over ranks
    steps = [re.search(r"finished at global step (\d+)", log).group(1) for log in (rank0, rank1_log)]
    assert steps[0] == steps[1] == "8"


def test_ranks_share_one_order_without_random_seed_and_validate_what_they_save(digits_dir, tmp_path):
    # Every other image is unreadable and each rank logs the unreadable files it was given: together they
    # must be each unreadable file exactly once (one shuffle for all ranks, each rank its own share).
    count = 40
    bad = list(range(0, count, 2))
    train_list = write_list_with_bad_images(digits_dir, tmp_path, count, bad)
    subset_list(digits_dir / "val_list.txt", tmp_path / "val.txt", 30)
    out = tmp_path / "out"
    args = ["--model=ResNet18", "--image_shape", "3", "32", "32", "--resize_short_size=32", "--reader_thread=0",
            "--batch_size=4", "--test_batch_size=8", "--num_epochs=1", "--lr=0.05", f"--data_dir={digits_dir}",
            f"--train_list={train_list}", f"--val_list={tmp_path / 'val.txt'}", "--max_bad_image_fraction=1",
            f"--model_save_dir={out}"]
    proc = launch(args, tmp_path / "log", ["--nproc_per_node", "2"])
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, output[-3000:]
    seen = [set(re.findall(r"broken_(\d+)\.png", log)) for log in rank_logs(tmp_path / "log")]
    assert not seen[0] & seen[1]
    assert seen[0] | seen[1] == {str(i) for i in bad}
    # BatchNorm statistics are averaged over ranks before validating and saving: the validated model is
    # the saved one, so eval.py on the checkpoint counts exactly what the 2-process validation counted
    validated = re.search(r"\[val\] epoch 0 top1 ([0-9.]+) top5 ([0-9.]+) samples 30", rank_logs(tmp_path / "log")[0])
    evaluated = run_script("eval.py", "--model=ResNet18", "--image_shape", "3", "32", "32", "--resize_short_size=32",
                           f"--data_dir={digits_dir}", f"--val_list={tmp_path / 'val.txt'}", "--reader_thread=0",
                           f"--pretrained_model={out / 'ResNet18' / '0'}", f"--save_json_path={tmp_path / 'e.json'}")
    result = json.loads((tmp_path / "e.json").read_text())
    assert validated, evaluated.stdout
    assert float(validated.group(1)) == round(result["top1"], 4)
    assert float(validated.group(2)) == round(result["top5"], 4)


def test_rank_zero_chooses_the_checkpoint_every_node_resumes(digits_dir, data, tmp_path):
    """Two nodes without a shared filesystem: node A has checkpoints of epochs 0 and 1, node B only epoch 0.
    Whichever node is rank 0 decides; the other either resumes the same epoch or stops naming the path."""
    script = str(ROOT / "train.py")
    args = [*COMMON, *data, "--max_iter=0", "--validate=False", "--model_save_dir=output"]
    node_a, node_b = tmp_path / "a", tmp_path / "b"
    node_a.mkdir()
    run = subprocess.run([sys.executable, script, *args, "--num_epochs=2"], cwd=node_a, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    shutil.copytree(node_a / "output" / "ResNet18" / "0", node_b / "output" / "ResNet18" / "0")
    port = free_port()
    nodes = [subprocess.Popen([sys.executable, "-m", "paddle.distributed.launch", "--log_dir", str(node / "log"),
                               "--nnodes", "2", "--master", f"127.0.0.1:{port}", "--nproc_per_node", "1",
                               script, *args, "--num_epochs=3", "--resume=auto"], cwd=node,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for node in (node_a, node_b)]
    for node in nodes:
        node.communicate(timeout=300)
    logs = [(node / "log" / "workerlog.0").read_text() for node in (node_a, node_b)]
    resumed = [re.search(r"continuing at epoch (\d+)", log) for log in logs]
    if all(resumed):  # node B was rank 0: both resume its epoch 0 checkpoint
        assert resumed[0].group(1) == resumed[1].group(1) == "1"
        assert all(node.returncode == 0 for node in nodes)
    else:  # node A was rank 0 and chose epoch 1, which node B cannot read: both stop, naming the path
        assert all(node.returncode != 0 for node in nodes)
        assert all(os.path.join("output", "ResNet18", "1") in log and "error:" in log for log in logs), logs


def test_sigterm_to_one_rank_stops_all_at_one_step_and_resumes_exactly(data, tmp_path):
    args = [*COMMON, *data, "--max_iter=0", "--validate=False", "--num_epochs=2"]
    reference = launch([*args, f"--model_save_dir={tmp_path / 'ref'}"], tmp_path / "ref_log",
                       ["--nproc_per_node", "2"])
    assert reference.wait(timeout=300) == 0
    proc = launch([*args, "--num_epochs=50", f"--model_save_dir={tmp_path / 'out'}"], tmp_path / "log",
                  ["--nproc_per_node", "2"], start_new_session=True)
    rank0_log = tmp_path / "log" / "workerlog.0"
    deadline = time.time() + 180
    while time.time() < deadline and not (rank0_log.exists() and "[train] epoch 0 step 1/" in rank0_log.read_text()):
        time.sleep(0.2)
    pids = subprocess.run(["pgrep", "-f", f"model_save_dir={tmp_path / 'out'}"], capture_output=True,
                          text=True).stdout.split()
    rank1 = [int(p) for p in pids if int(p) != proc.pid and "PADDLE_TRAINER_ID=1\0" in
             open(f"/proc/{p}/environ", encoding="latin-1").read()]
    assert len(rank1) == 1
    os.kill(rank1[0], signal.SIGTERM)
    stopped_at = time.time()
    try:
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert time.time() - stopped_at < 60
    saved = [n for n in os.listdir(tmp_path / "out" / "ResNet18") if "_step" in n]
    assert len(saved) == 1, os.listdir(tmp_path / "out" / "ResNet18")
    assert "every rank stops before step" in rank0_log.read_text()
    # a mid-epoch checkpoint from the agreed step: resuming reaches the uninterrupted run's weights exactly
    again = launch([*args, f"--model_save_dir={tmp_path / 'out'}", "--resume=auto"], tmp_path / "log2",
                   ["--nproc_per_node", "2"])
    output, _ = again.communicate(timeout=300)
    assert again.returncode == 0, output[-3000:]
    final = paddle.load(str(tmp_path / "out" / "ResNet18" / "1" / "model.pdparams"))
    expected = paddle.load(str(tmp_path / "ref" / "ResNet18" / "1" / "model.pdparams"))
    for key, value in expected.items():
        if not key.endswith("@@"):
            np.testing.assert_array_equal(np.asarray(final[key]), np.asarray(value), err_msg=key)
