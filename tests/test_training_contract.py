"""train.py's side of "no silent wrong result, no lost work": unreadable data, the run directory (lock,
another run's checkpoints, changed flags, unwritable), weights of another architecture, file modes."""
import os
import signal
import stat
import subprocess
import sys

import pytest

from tests.conftest import ROOT, run_script, subset_list

SMALL = ["--model=ResNet18", "--image_shape", "3", "32", "32", "--resize_short_size=32", "--reader_thread=0",
         "--print_step=1", "--random_seed=4", "--validate=False"]


@pytest.fixture(scope="module")
def data(digits_dir):
    subset_list(digits_dir / "train_list.txt", digits_dir / "contract_train.txt", 32)
    return [f"--data_dir={digits_dir}", "--train_list=contract_train.txt", "--batch_size=8"]


def mixed_list(digits_dir, tmp_path, good: int, bad: int, name="mixed.txt"):
    """``good`` readable digits and ``bad`` files that do not decode, interleaved, paths inside data_dir."""
    lines = [line for line in (digits_dir / "train_list.txt").read_text().splitlines() if line.strip()]
    picked = lines[:: len(lines) // good][:good]
    folder = digits_dir / f"unreadable-{tmp_path.name}"
    folder.mkdir(exist_ok=True)
    for i in range(bad):
        (folder / f"b{i}.png").write_bytes(b"not an image at all")
        picked.insert((i * 3) % (len(picked) + 1), f"{folder.name}/b{i}.png {i % 10}")
    (digits_dir / name).write_text("\n".join(picked) + "\n")
    return name


def test_batches_with_unreadable_images_train_on_without_nan(digits_dir, tmp_path):
    # 90 good + 30 unreadable at batch 2 (on today's main: "loss is nan at step 18"): batches left with one
    # image are refilled from their good rows (one image gives BatchNorm a single value per channel and the
    # loss turns NaN); all-bad ones are skipped by every rank alike, and counted.
    name = mixed_list(digits_dir, tmp_path, 90, 30)
    proc = run_script("train.py", *SMALL, f"--data_dir={digits_dir}", f"--train_list={name}", "--batch_size=2",
                      "--num_epochs=1", "--lr=0.1", f"--model_save_dir={tmp_path}")
    assert "epoch 0: 30 unreadable images skipped (all ranks)" in proc.stdout
    assert "nan" not in proc.stdout.lower()
    assert "skipped on every rank" in proc.stdout
    assert "saved checkpoint" in proc.stdout


def test_an_epoch_of_unreadable_images_is_an_error_with_the_likely_cause(digits_dir, tmp_path):
    wrong_root = tmp_path / "elsewhere"
    wrong_root.mkdir()
    proc = run_script("train.py", *SMALL, f"--data_dir={wrong_root}", f"--train_list={digits_dir / 'train_list.txt'}",
                      "--batch_size=8", "--num_epochs=1", f"--model_save_dir={tmp_path / 'out'}", check=False)
    assert proc.returncode == 2, proc.stdout[-2000:]
    assert "more than --max_bad_image_fraction 0.5" in proc.stderr
    assert "Likely cause: the list paths are relative to the list's folder" in proc.stderr
    assert f"pass --data_dir={digits_dir}" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_more_unreadable_than_the_allowed_fraction_stops_and_keeps_the_work_done(digits_dir, tmp_path):
    name = mixed_list(digits_dir, tmp_path, 16, 16, "half.txt")
    args = [*SMALL, f"--data_dir={digits_dir}", f"--train_list={name}", "--batch_size=4", "--num_epochs=1",
            f"--model_save_dir={tmp_path}"]
    proc = run_script("train.py", *args, "--max_bad_image_fraction=0.2", check=False)
    assert proc.returncode == 2 and "more than --max_bad_image_fraction 0.2" in proc.stderr
    assert "do not decode as images" in proc.stderr
    if "the work so far is saved in" in proc.stderr:  # stopped after some steps: nothing trained is lost
        assert any("_step" in n for n in os.listdir(tmp_path / "ResNet18"))
    run_script("train.py", *args, "--max_bad_image_fraction=0.6", "--overwrite_checkpoints=True")


def test_two_runs_into_one_directory_the_second_is_refused_and_a_dead_run_holds_nothing(data, tmp_path):
    command = [sys.executable, "train.py", *SMALL, *data, "--num_epochs=50", f"--model_save_dir={tmp_path}"]
    first = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        while "[train]" not in (first.stdout.readline() or "[train]"):
            pass
        second = run_script("train.py", *SMALL, *data, "--num_epochs=1", f"--model_save_dir={tmp_path}",
                            "--resume=auto", check=False)
        assert second.returncode == 2
        assert "in use by another training run (pid" in second.stderr and "--model_save_dir" in second.stderr
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    # the killed run's lock died with it
    run_script("train.py", *SMALL, *data, "--num_epochs=1", f"--model_save_dir={tmp_path}", "--resume=auto")


def test_a_new_run_does_not_mix_with_another_runs_checkpoints(data, tmp_path):
    run_script("train.py", *SMALL, *data, "--num_epochs=1", f"--model_save_dir={tmp_path}")
    again = run_script("train.py", *SMALL, *data, "--num_epochs=1", f"--model_save_dir={tmp_path}", check=False)
    assert again.returncode == 2
    assert "holds another run's checkpoints" in again.stderr
    assert "--resume auto" in again.stderr and "--model_save_dir" in again.stderr
    over = run_script("train.py", *SMALL, *data, "--num_epochs=1", f"--model_save_dir={tmp_path}",
                      "--overwrite_checkpoints=True")
    assert "moved to" in over.stdout
    kept = [n for n in os.listdir(tmp_path / "ResNet18") if n.startswith(".replaced-")]
    assert kept and os.listdir(tmp_path / "ResNet18" / kept[0]) == ["0"]  # the old run's work is kept
    changed = run_script("train.py", *SMALL, *data, "--num_epochs=2", f"--model_save_dir={tmp_path}",
                         "--resume=auto", "--lr=0.05", "--l2_decay=0.001")
    assert "flags that differ from its run: --l2_decay 0.0001 -> 0.001; --lr 0.1 -> 0.05" in changed.stdout


def test_an_unwritable_model_save_dir_is_refused_before_training(data, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    proc = run_script("train.py", *SMALL, *data, "--num_epochs=1", f"--model_save_dir={blocker}", check=False)
    assert proc.returncode == 2 and "--model_save_dir" in proc.stderr and "is a file, not a directory" in proc.stderr
    assert "[train]" not in proc.stdout


def test_weights_of_another_architecture_are_refused_unless_partial_loading_is_asked(data, tmp_path):
    import paddle

    import models

    weights = tmp_path / "other.pdparams"
    paddle.save(models.build_model("ResNet34", class_dim=10).state_dict(), str(weights))
    proc = run_script("train.py", *SMALL, *data, "--num_epochs=1", f"--pretrained_model={weights}",
                      f"--model_save_dir={tmp_path / 'a'}", check=False)
    assert proc.returncode == 2
    assert "weights of another architecture than --model=ResNet18" in proc.stderr
    assert "--allow_partial_pretrained=True" in proc.stderr
    ok = run_script("train.py", *SMALL, *data, "--num_epochs=1", f"--pretrained_model={weights}",
                    "--allow_partial_pretrained=True", f"--model_save_dir={tmp_path / 'b'}")
    assert "loaded" in ok.stdout and "Skip loading" not in ok.stdout + ok.stderr


def test_checkpoint_directories_follow_the_umask(data, tmp_path):
    old = os.umask(0o022)
    try:
        run_script("train.py", *SMALL, *data, "--num_epochs=1", f"--model_save_dir={tmp_path}")
    finally:
        os.umask(old)
    mode = stat.S_IMODE(os.stat(tmp_path / "ResNet18" / "0").st_mode)
    assert mode == 0o755, oct(mode)


def test_device_normalisation_of_uint8_batches_equals_the_cpu_path_bit_for_bit():
    import numpy as np
    import paddle

    from utils.transforms import DeviceNormalizer, normalize_to_chw

    rng = np.random.default_rng(0)
    batch = rng.integers(0, 256, size=(3, 17, 19, 3), dtype=np.uint8)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    expected = np.stack([normalize_to_chw(image, mean, std) for image in batch])
    normalize = DeviceNormalizer(mean, std)
    for given in (batch, paddle.to_tensor(batch)):
        got = normalize(given)
        assert got.dtype == paddle.float32 and got.shape == [3, 3, 17, 19]
        np.testing.assert_array_equal(got.numpy(), expected)
    # the Paddle-op path a GPU batch takes, run here on the CPU: the same float32 operations
    np.testing.assert_array_equal(normalize.on_device(paddle.to_tensor(batch)).numpy(), expected)
    floating = paddle.to_tensor(expected)  # already normalised (the DALI reader): passed through
    assert normalize(floating) is floating


def test_too_little_shared_memory_for_the_loader_is_one_line_naming_dev_shm(data, tmp_path):
    if not os.path.isdir("/dev/shm"):
        pytest.skip("no /dev/shm on this system")
    proc = run_script("train.py", *[a for a in SMALL if a != "--reader_thread=0"], *data, "--reader_thread=2",
                      "--prefetch_batches=100000000", "--num_epochs=1", f"--model_save_dir={tmp_path}", check=False)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "/dev/shm has" in proc.stderr and "--prefetch_batches" in proc.stderr and "Traceback" not in proc.stderr


def test_use_gpu_false_on_gpus_assigned_by_the_launcher_is_one_line(monkeypatch):
    """On a GPU build, `paddle.distributed.launch --devices 0,1 train.py --use_gpu=False` would otherwise end
    in init_parallel_env tracebacks (a CPU build's launcher refuses --devices itself, before train.py)."""
    import paddle

    from utils import distributed
    from utils.errors import UsageError

    monkeypatch.setenv("PADDLE_TRAINERS_NUM", "2")
    monkeypatch.setenv("FLAGS_selected_gpus", "0")
    monkeypatch.setattr(paddle.device, "is_compiled_with_cuda", lambda: True)
    with pytest.raises(UsageError, match="--use_gpu=False, but paddle.distributed.launch started 2 processes"):
        distributed.init("cpu")
