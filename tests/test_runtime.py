"""CPU setup before paddle loads: thread counts from --cpu_threads / CPU_NUM_THREADS / OMP_NUM_THREADS / the
cores shared out among the node's training processes; the MKL switch on AMD only; Paddle's OpenMP warning only
when the node is really oversubscribed; one OpenCV thread per reader worker."""
import os
import subprocess
import sys

import cv2
import numpy as np
from paddle.io import DataLoader, Dataset

from tests.conftest import ROOT
from utils.runtime import cpu_vendor, flag_value, usable_cores
from utils.workers import init_reader_worker

THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "MKL_DEBUG_CPU_TYPE", "CPU_NUM_THREADS", "PADDLE_LOCAL_SIZE")
PROBE = ("import sys; from utils.runtime import prepare_cpu; n = prepare_cpu(argv=sys.argv[1:]); import os; "
         "print(n, os.environ['OMP_NUM_THREADS'], os.environ.get('MKL_DEBUG_CPU_TYPE'), os.environ['MKL_NUM_THREADS'])")
IMPORT = ("import sys; from utils.runtime import import_paddle_quietly, prepare_cpu; prepare_cpu(argv=sys.argv[1:]); "
          "import_paddle_quietly()")


def clean_env(**env_vars):
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARS}
    env.update(env_vars)
    return env


def run_python(code, *argv, **env_vars):
    return subprocess.run([sys.executable, "-c", code, *argv], cwd=ROOT, env=clean_env(**env_vars),
                          capture_output=True, text=True, timeout=120)


def probe(*argv, **env_vars):
    return run_python(PROBE, *argv, **env_vars).stdout.split()


def test_threads_default_to_usable_cores_and_flag_overrides():
    assert probe()[:2] == [str(usable_cores())] * 2
    assert probe("--cpu_threads=3")[:2] == ["3", "3"]
    assert probe("--cpu_threads", "1")[:2] == ["1", "1"]


def test_threads_are_the_cores_shared_out_among_the_nodes_training_processes():
    cores = usable_cores()
    assert probe(PADDLE_LOCAL_SIZE="2")[:2] == [str(max(1, cores // 2))] * 2
    assert probe(PADDLE_LOCAL_SIZE="3")[3] == str(max(1, cores // 3))  # MKL's pool too
    # The launcher's own paddle import exports OMP_NUM_THREADS=1 to its processes: not a user's choice ...
    assert probe(PADDLE_LOCAL_SIZE="1", OMP_NUM_THREADS="1")[0] == str(cores)
    # ... while outside the launcher an exported 1 is
    assert probe(OMP_NUM_THREADS="1")[0] == "1"


def test_explicit_thread_requests_win_flag_first():
    assert probe("--cpu_threads=3", CPU_NUM_THREADS="4", OMP_NUM_THREADS="5")[:2] == ["3", "3"]
    assert probe(CPU_NUM_THREADS="4", OMP_NUM_THREADS="5", PADDLE_LOCAL_SIZE="2")[:2] == ["4", "4"]
    assert probe(OMP_NUM_THREADS="5", PADDLE_LOCAL_SIZE="2")[:2] == ["5", "5"]
    bad = run_python(PROBE, CPU_NUM_THREADS="all")
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        "error: CPU_NUM_THREADS=all must be a positive whole number of CPU threads (or unset it)"]


def test_threads_under_paddle_distributed_launch(tmp_path):
    script = tmp_path / "threads.py"
    script.write_text(f"import sys; sys.path.insert(0, {str(ROOT)!r})\n"
                      "from utils.runtime import prepare_cpu\nprint('threads', prepare_cpu(argv=[]))\n")
    cores = usable_cores()
    for processes in (1, 2):
        log_dir = tmp_path / f"log{processes}"
        proc = subprocess.run([sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node",
                               str(processes), "--log_dir", str(log_dir), str(script)], cwd=tmp_path,
                              env=clean_env(), capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr[-2000:]
        for rank in range(processes):
            log = (log_dir / f"workerlog.{rank}").read_text()
            assert f"threads {max(1, cores // processes)}\n" in log, log


def test_paddles_openmp_warning_shows_only_when_the_node_is_oversubscribed():
    cores = usable_cores()
    over = run_python(IMPORT, f"--cpu_threads={cores}", PADDLE_LOCAL_SIZE="2")
    assert over.returncode == 0, over.stderr
    assert (f"warning: 2 training process(es) on this node x {cores} CPU threads each > {cores} usable cores"
            in over.stderr)
    assert f"use --cpu_threads={max(1, cores // 2)}" in over.stderr
    assert "OMP_NUM_THREADS set to" in over.stderr  # Paddle's own warning is no longer hidden here
    shared = run_python(IMPORT)  # one process, every core: nothing to warn about
    assert shared.returncode == 0, shared.stderr
    assert "OMP_NUM_THREADS set to" not in shared.stderr and "oversubscribed" not in shared.stderr


def test_mkl_switch_only_on_amd():
    expected = "5" if cpu_vendor() == "AuthenticAMD" else "None"
    assert probe()[2] == expected


def test_flag_value_reads_both_spellings():
    assert flag_value(["--a", "--cpu_threads=4"], "--cpu_threads") == "4"
    assert flag_value(["--cpu_threads", "2"], "--cpu_threads") == "2"
    assert flag_value(["--cpu_threadsx=2"], "--cpu_threads") is None


class OpenCVThreads(Dataset):
    """Each sample is the OpenCV thread count of the process that produced it."""

    def __len__(self):
        return 4

    def __getitem__(self, index):
        return np.array([cv2.getNumThreads()], dtype="int64")


def opencv_threads_in_workers(init_fn):
    loader = DataLoader(OpenCVThreads(), batch_size=1, num_workers=2, worker_init_fn=init_fn)
    return {int(np.asarray(batch[0] if isinstance(batch, (list, tuple)) else batch).ravel()[0]) for batch in loader}


def test_reader_workers_run_opencv_on_one_thread():
    from utils.workers import one_opencv_thread_for_forked_workers

    cv2.resize(np.zeros((512, 512, 3), np.uint8), (300, 300))  # the parent has used OpenCV's thread pool
    before = cv2.getNumThreads()
    with one_opencv_thread_for_forked_workers():
        assert opencv_threads_in_workers(init_reader_worker) == {1}
    assert cv2.getNumThreads() == before  # the parent keeps its own threads
    if usable_cores() > 1:  # without it each worker would take every core (the test can fail)
        assert opencv_threads_in_workers(None) != {1}


def test_the_training_loader_starts_its_workers_with_one_opencv_thread():
    import cv2
    import numpy as np

    from reader import EpochBatchSampler, ImageListDataset, make_loader
    from utils.transforms import PreprocessConfig

    class ReportsThreads(ImageListDataset):
        def __getitem__(self, index):
            return np.full((2, 2, 3), cv2.getNumThreads(), np.uint8), 0, index, ""

    dataset = ReportsThreads([None] * 8, PreprocessConfig(crop_size=2), training=False, uint8_hwc=True)
    loader = make_loader(dataset, EpochBatchSampler(8, 2, shuffle=False), workers=2, prefetch=1)
    seen = {int(np.asarray(images).max()) for images, _labels, _indices, _bad in loader}
    assert seen == {1}
