"""What happens when...: kills, signals, NaN, a full disk, odd files and bad flags (the README table)."""
import os
import signal
import subprocess
import sys

import cv2
import numpy as np
import pytest

from reader import ImageListDataset, parse_list_file
from tests.conftest import ROOT, run_script, subset_list
from utils.transforms import PreprocessConfig

SMALL = ["--model=ResNet18", "--image_shape", "3", "32", "32", "--resize_short_size=32", "--reader_thread=0",
         "--batch_size=16", "--print_step=1", "--random_seed=2"]


@pytest.fixture(scope="module")
def data(digits_dir):
    subset_list(digits_dir / "train_list.txt", digits_dir / "rel_train.txt", 64)
    subset_list(digits_dir / "val_list.txt", digits_dir / "rel_val.txt", 20)
    return [f"--data_dir={digits_dir}", "--train_list=rel_train.txt", "--val_list=rel_val.txt"]


def test_random_sigkills_then_resume_auto_end_with_identical_weights(tmp_path):
    out = run_script("scripts/chaos_train.py", "--kills", "2", "--max_delay", "8", "--workdir", tmp_path,
                     timeout=900)
    assert "final weights EQUAL" in out.stdout, out.stdout


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_sigterm_and_sigint_save_a_checkpoint_before_exiting(data, tmp_path, sig, code):
    command = [sys.executable, "train.py", *SMALL, *data, "--num_epochs=40", f"--model_save_dir={tmp_path}"]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = ""
    while "[train] epoch 1" not in seen:  # let it train past the first epoch
        line = proc.stdout.readline()
        assert line, proc.stderr.read()[-2000:]
        seen += line
    proc.send_signal(sig)
    rest, _ = proc.communicate(timeout=120)
    assert proc.returncode == code
    assert "saving a checkpoint before exiting" in rest
    saved = [n for n in os.listdir(tmp_path / "ResNet18") if "_step" in n]
    assert len(saved) == 1
    resumed = run_script("train.py", *SMALL, *data, "--num_epochs=2", f"--model_save_dir={tmp_path}",
                         "--resume=auto")
    assert f"resumed from {tmp_path / 'ResNet18' / saved[0]}" in resumed.stdout


def test_nan_loss_stops_naming_the_step_and_last_checkpoint(data, tmp_path):
    proc = run_script("train.py", *SMALL, *data, "--num_epochs=3", "--lr=1e12", f"--model_save_dir={tmp_path}",
                      check=False)
    assert proc.returncode == 3
    assert "error: loss is" in proc.stdout and "at step" in proc.stdout and "last good checkpoint" in proc.stdout


def test_full_disk_keeps_the_previous_checkpoint_and_says_so(data, tmp_path):
    mount = tmp_path / "tiny"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=300k", "tmpfs", str(mount)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root and mount permission)")
    try:
        # ResNet18 weights (~45 MB) cannot fit in 300 KB: the very first save fails
        proc = run_script("train.py", *SMALL, *data, "--num_epochs=1", f"--model_save_dir={mount}", check=False)
        assert proc.returncode == 2
        assert "saving checkpoint" in proc.stderr and "No space left" in proc.stderr
        assert "Traceback" not in proc.stderr
        assert not [n for n in os.listdir(mount / "ResNet18") if n.startswith(".")]  # no staging debris
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True)


def test_checkpoint_of_another_model_is_refused(data, tmp_path):
    run_script("train.py", *SMALL, *data, "--num_epochs=1", "--max_iter=1", f"--model_save_dir={tmp_path}")
    checkpoint = next((tmp_path / "ResNet18").iterdir())
    proc = run_script("train.py", *[a.replace("ResNet18", "ResNet34") for a in SMALL], *data,
                      f"--checkpoint={checkpoint}", f"--model_save_dir={tmp_path}", check=False)
    assert proc.returncode == 2 and "saved from --model=ResNet18, not ResNet34" in proc.stderr


@pytest.mark.parametrize("flags, message", [
    (["--batch_size=0"], "--batch_size 0"),
    (["--pretrained_model=README.md"], "not Paddle weights"),
    (["--resume=latest"], "only 'auto'"),
    (["--interpolation=fancy"], "--interpolation 'fancy'"),
])
def test_more_bad_flags_are_one_line_errors(data, tmp_path, flags, message):
    proc = run_script("train.py", *SMALL, *data, f"--model_save_dir={tmp_path}", *flags, check=False)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr


def test_debug_flag_shows_the_traceback(data, tmp_path):
    proc = run_script("train.py", *SMALL, *data, "--resume=latest", "--debug=True", check=False)
    assert proc.returncode == 2 and "Traceback" in proc.stderr


def test_odd_but_valid_images_load(tmp_path):
    folder = tmp_path / "dir with spaces ü"
    folder.mkdir()
    cv2.imwrite(str(folder / "one pixel é.png"), np.full((1, 1, 3), 200, np.uint8))
    cv2.imwrite(str(folder / "wide.png"), np.zeros((5, 300), np.uint8))
    (tmp_path / "list.txt").write_text("dir with spaces ü/one pixel é.png 0\ndir with spaces ü/wide.png 1\n",
                                       encoding="utf-8")
    samples = parse_list_file(str(tmp_path / "list.txt"), str(tmp_path)).samples
    for training in (False, True):
        dataset = ImageListDataset(samples, PreprocessConfig(crop_size=16, resize_short=18), training=training)
        for index in range(2):
            image, label, _, error = dataset[index]
            assert error == "" and image.shape == (3, 16, 16) and label == index
