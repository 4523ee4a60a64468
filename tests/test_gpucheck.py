"""scripts/gpucheck.py (``bash run.sh gpucheck``): without a GPU it prints its plan and exits 0; ``--cpu`` runs
its fp32 + cv2 rows for real (train, resume, export, predict) and prints the table; a failing run is a FAIL row
and exit 1."""
import re

import paddle
import pytest

from tests.conftest import run_script

HAS_GPU = paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0


@pytest.mark.skipif(HAS_GPU, reason="checks the plan printed on a machine without a GPU")
def test_without_a_gpu_it_prints_every_command_it_would_run_and_exits_0():
    proc = run_script("scripts/gpucheck.py")
    assert "No GPU visible to Paddle" in proc.stdout
    train = [line for line in proc.stdout.splitlines() if " train.py " in line]
    assert len(train) == 16  # 4 precisions x 2 readers, each trained then resumed
    for precision, flags in {"fp32": [], "fp16-O1": ["--use_amp=True"], "fp16-O2": ["--use_pure_fp16=True"],
                             "bf16": ["--use_amp=True", "--amp_dtype=bfloat16"]}.items():
        for reader in ("cv2", "dali"):
            rows = [line for line in train if f"[train+resume {precision}-{reader} " in line]
            assert len(rows) == 2, (precision, reader)
            assert all(flag in row for row in rows for flag in flags)
            assert all(f"--use_dali={reader == 'dali'}" in row for row in rows)
            assert "--resume=auto" in rows[1] and "--resume" not in rows[0]
            assert all(("--validate=True" in row) == (precision == "fp16-O2") for row in rows)
    assert re.search(r"infer\.py .*--save_inference=True", proc.stdout)
    predict = [line for line in proc.stdout.splitlines() if " predict.py " in line]
    assert len(predict) == 2 and "--use_tensorrt=True" in predict[1] and "--use_tensorrt" not in predict[0]


def test_cpu_mode_trains_resumes_exports_and_predicts_and_prints_the_table():
    proc = run_script("scripts/gpucheck.py", "--cpu", "--model=ResNet18", "--steps=3", timeout=300)
    table = proc.stdout.splitlines()
    assert table[0].split() == ["path", "result", "images/s"]
    train = re.search(r"^train\+resume fp32-cv2 x1 +pass +([0-9.]+)$", proc.stdout, re.M)
    assert train and float(train.group(1)) > 0
    assert re.search(r"^export \(infer\.py --save_inference\) +pass +-$", proc.stdout, re.M)
    assert re.search(r"^predict\.py \(Paddle Inference\) +pass +-$", proc.stdout, re.M)
    assert re.search(r"^predict\.py --use_tensorrt +skip +- +\(needs a GPU", proc.stdout, re.M)
    assert len(table) == 5


def test_cpu_mode_reports_a_failing_run_as_fail_and_exits_1(tmp_path):
    proc = run_script("scripts/gpucheck.py", "--cpu", "--model=ResNet18", f"--data_dir={tmp_path}", check=False,
                      timeout=300)
    assert proc.returncode == 1
    assert re.search(r"^train\+resume fp32-cv2 x1 +FAIL \(exit 2\)", proc.stdout, re.M)
    assert "train_list.txt: list file not found" in proc.stderr  # the failing run's own message is shown
