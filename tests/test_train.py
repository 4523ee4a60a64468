"""train.py / eval.py / ema_clean.py end to end, as a user runs them, on the small digits data set."""
import json
import os

import numpy as np
import paddle
import pytest

from tests.conftest import IMAGENETTE, run_script, subset_list

SMALL = ["--model=ResNet18", "--image_shape", "3", "32", "32", "--resize_short_size=32", "--reader_thread=0"]


@pytest.fixture(scope="module")
def small_data(digits_dir, tmp_path_factory):
    """64 training and 40 validation digits: 4 steps per epoch at batch 16."""
    root = digits_dir
    subset_list(root / "train_list.txt", root / "train_small.txt", 64)
    subset_list(root / "val_list.txt", root / "val_small.txt", 40)
    return root


def train(data, out, *extra, check=True):
    return run_script("train.py", *SMALL, f"--data_dir={data}", "--train_list=train_small.txt",
                      "--val_list=val_small.txt", "--batch_size=16", "--test_batch_size=20", "--print_step=1",
                      "--random_seed=7", f"--model_save_dir={out}", *extra, check=check)


def weights(path):
    return {k: np.asarray(v) for k, v in paddle.load(str(path)).items()}


RECIPE = ["--num_epochs=2", "--lr=0.05", "--lr_strategy=cosine_decay_warmup", "--warm_up_epochs=1",
          "--use_mixup=True", "--use_label_smoothing=True", "--use_ema=True", "--ema_decay=0.9"]


@pytest.mark.smoke
def test_resume_mid_epoch_and_at_epoch_end_equals_uninterrupted_run(small_data, tmp_path):
    full = train(small_data, tmp_path / "full", *RECIPE)
    assert "[val] epoch 1 top1" in full.stdout and "ema_top1" in full.stdout
    assert "img/s" in full.stdout and "ETA" in full.stdout
    # stop after 3 of the 4 steps of epoch 0 (saves 0_step3), resume, stop at the end of epoch 0 ...
    part = tmp_path / "part"
    train(small_data, part, *RECIPE, "--max_iter=3")
    assert (part / "ResNet18" / "0_step3" / "model.pdparams").exists()
    train(small_data, part, *RECIPE, "--resume=auto", "--max_iter=4")
    assert (part / "ResNet18" / "0" / "model.pdparams").exists()
    # ... and finish from the epoch checkpoint
    resumed = train(small_data, part, *RECIPE, "--checkpoint", part / "ResNet18" / "0")
    assert "continuing at epoch 1 step 0" in resumed.stdout
    expected = weights(tmp_path / "full" / "ResNet18" / "1" / "model.pdparams")
    got = weights(part / "ResNet18" / "1" / "model.pdparams")
    assert expected.keys() == got.keys()
    for key in expected:
        assert np.array_equal(expected[key], got[key]), key
    ema_a = weights(tmp_path / "full" / "ResNet18" / "1" / "ema.pdparams")
    ema_b = weights(part / "ResNet18" / "1" / "ema.pdparams")
    assert all(np.array_equal(ema_a[k], ema_b[k]) for k in ema_a)


@pytest.mark.smoke
def test_finetune_from_1000_classes_skips_the_head_and_eval_reports_json(small_data, tmp_path):
    import models

    paddle.seed(1)
    big = models.build_model("ResNet18", class_dim=1000)
    paddle.save(big.state_dict(), str(tmp_path / "ResNet18_pretrained.pdparams"))
    out = train(small_data, tmp_path / "ft", "--num_epochs=1", "--lr=0.01",
                f"--pretrained_model={tmp_path / 'ResNet18_pretrained'}")
    assert "skipped 2 with a different shape (new head / class_dim): fc.weight, fc.bias" in out.stdout
    trained = weights(tmp_path / "ft" / "ResNet18" / "0" / "model.pdparams")
    assert trained["fc.weight"].shape == (512, 10)
    val_top1 = float(out.stdout.split("[val] epoch 0 top1 ")[1].split()[0])
    json_path = tmp_path / "eval.json"
    run_script("eval.py", *SMALL, f"--data_dir={small_data}", "--val_list=val_small.txt",
               f"--pretrained_model={tmp_path / 'ft' / 'ResNet18' / '0'}", f"--save_json_path={json_path}")
    result = json.loads(json_path.read_text())
    assert result["samples"] == 40 and result["model"] == "ResNet18" and result["skipped"] == 0
    assert result["top1"] == pytest.approx(val_top1, abs=1e-4)
    assert 0.0 <= result["top1"] <= result["top5"] <= 1.0


def test_ema_clean_writes_weights_eval_loads_and_visualdl_logs(small_data, tmp_path):
    out = train(small_data, tmp_path / "o", "--num_epochs=1", "--use_ema=True", f"--vdl_log_dir={tmp_path / 'vdl'}")
    from visualdl import LogReader

    records = [f for f in os.listdir(tmp_path / "vdl") if "vdlrecords" in f]
    assert records
    reader = LogReader(file_path=str(tmp_path / "vdl" / records[0]))
    assert len(reader.get_data("scalar", "train/loss")) == 4  # one per step (print_step=1)
    assert reader.get_data("scalar", "val/top1")
    assert len(reader.get_data("image", "val/confusion_matrix")) == 1  # one per validation
    # the final validation's per-class recall: in the log, and in the checkpoint's meta.json
    assert "[val] epoch 0 per-class recall: class " in out.stdout
    meta = json.loads((tmp_path / "o" / "ResNet18" / "0" / "meta.json").read_text())
    top1 = float(out.stdout.split("[val] epoch 0 top1 ")[1].split()[0])
    per_class = meta["val_per_class"]
    assert sum(row["support"] for row in per_class) == 40
    assert sum(row["recall"] * row["support"] for row in per_class) == pytest.approx(top1 * 40, abs=1e-3)
    run_script("ema_clean.py", f"--ema_model_dir={tmp_path / 'o' / 'ResNet18' / '0'}",
               f"--cleaned_model_dir={tmp_path / 'clean'}")
    ema = weights(tmp_path / "o" / "ResNet18" / "0" / "ema.pdparams")
    clean = weights(tmp_path / "clean" / "model.pdparams")
    assert all(np.array_equal(ema[k], clean[k]) for k in ema)
    out = run_script("eval.py", *SMALL, f"--data_dir={small_data}", "--val_list=val_small.txt",
                     f"--pretrained_model={tmp_path / 'clean'}")
    assert "top1" in out.stdout


def test_bad_images_in_training_and_eval_are_skipped_and_counted(small_data, tmp_path):
    lines = open(small_data / "train_small.txt").read().splitlines()[:30]
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (tmp_path / "empty.jpg").write_bytes(b"")
    import shutil

    shutil.copytree(small_data / "train", tmp_path / "train")
    bad = ["broken.png 1", "empty.jpg 2", "missing.jpg 3"]
    (tmp_path / "train_list.txt").write_text("\n".join(lines + bad) + "\n")
    (tmp_path / "val_list.txt").write_text("\n".join(lines[:10] + bad) + "\n")
    out = run_script("train.py", *SMALL, f"--data_dir={tmp_path}", "--batch_size=11", "--num_epochs=1",
                     "--class_dim=10", f"--model_save_dir={tmp_path / 'o'}", "--random_seed=1")
    assert out.stdout.count("skipped bad image:") == 3  # each path logged once
    assert "samples 10 skipped 3" in out.stdout
    ev = run_script("eval.py", *SMALL, f"--data_dir={tmp_path}", "--class_dim=10",
                    f"--pretrained_model={tmp_path / 'o' / 'ResNet18' / '0'}")
    assert "samples 10 skipped 3" in ev.stdout


@pytest.mark.parametrize("flags, message", [
    (["--model=ResNet50vd"], "Did you mean: ResNet50_vd"),
    (["--lr_strategy=cosine"], "choose one of: piecewise_decay, cosine_decay"),
    (["--class_dim=3"], "train_small.txt:"),
    (["--image_shape", "224", "224"], "--image_shape needs 3 values"),
    (["--pretrained_model=/nonexistent/w"], "--pretrained_model /nonexistent/w: not found"),
    (["--batch_size=16", "--use_gpu=True"], "no usable CUDA GPU"),
])
def test_user_errors_are_one_line_with_exit_code_2(small_data, tmp_path, flags, message):
    proc = train(small_data, tmp_path, *flags, check=False)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.skipif(not (IMAGENETTE / "train_list.txt").exists(), reason=f"{IMAGENETTE} not present")
def test_short_real_training_run_on_imagenette(tmp_path):
    subset_list(IMAGENETTE / "train_list.txt", tmp_path / "train.txt", 800)
    subset_list(IMAGENETTE / "val_list.txt", tmp_path / "val.txt", 300)
    out = run_script("train.py", "--model=ResNet18_vd", f"--data_dir={IMAGENETTE}",
                     f"--train_list={tmp_path / 'train.txt'}", f"--val_list={tmp_path / 'val.txt'}",
                     "--image_shape", "3", "48", "48", "--batch_size=32", "--num_epochs=3", "--lr=0.02",
                     "--lr_strategy=cosine_decay", "--lower_scale=0.35", "--reader_thread=2", "--random_seed=3",
                     f"--model_save_dir={tmp_path / 'o'}", "--print_step=5")
    losses = [float(line.split(" loss ")[1].split()[0]) for line in out.stdout.splitlines() if " loss " in line]
    top1 = float(out.stdout.split("[val] epoch 2 top1 ")[1].split()[0])
    assert np.mean(losses[-4:]) < np.mean(losses[:4])
    assert top1 > 0.2  # 10 classes: chance is 0.1


def test_nhwc_gives_the_same_outputs_and_trains(small_data, tmp_path):
    import models
    from models.layout import convert_to_nhwc

    paddle.seed(0)
    nchw = models.build_model("ResNet18_vd", class_dim=10)
    nhwc = convert_to_nhwc(models.build_model("ResNet18_vd", class_dim=10), "ResNet18_vd")
    nhwc.set_state_dict(nchw.state_dict())
    x = paddle.rand([2, 3, 64, 64])
    for mode in ("eval", "train"):
        getattr(nchw, mode)()
        getattr(nhwc, mode)()
        assert np.allclose(nchw(x).numpy(), nhwc(x).numpy(), atol=1e-4)
    out = train(small_data, tmp_path, "--num_epochs=1", "--max_iter=2", "--data_format=NHWC", "--validate=False")
    assert "step 1/4" in out.stdout
    refused = train(small_data, tmp_path, "--model=DenseNet121", "--data_format=NHWC", check=False)
    assert refused.returncode == 2 and "--data_format NHWC is supported for the" in refused.stderr


def test_training_reads_device_values_only_on_logged_steps(digits_dir, tmp_path, monkeypatch):
    """Each read of a tensor on the host waits for the device: the loop keeps loss and accuracy on the
    device and reads them once per logged step (8 steps, --print_step 4: steps 0, 4 and the last)."""
    import paddle

    from train import build_parser
    from utils.args import parse
    from utils.trainer import Trainer

    subset_list(digits_dir / "train_list.txt", tmp_path / "t.txt", 32)
    args = parse(build_parser(), [
        "--model=ResNet18", f"--data_dir={digits_dir}", f"--train_list={tmp_path / 't.txt'}", "--validate=False",
        "--image_shape", "3", "32", "32", "--resize_short_size=32", "--batch_size=4", "--reader_thread=0",
        "--random_seed=1", "--num_epochs=1", "--print_step=4", "--use_ema=True", f"--model_save_dir={tmp_path}"])
    trainer = Trainer(args)
    reads = []
    for name in ("numpy", "item", "tolist", "__float__", "__int__", "__bool__"):
        original = getattr(paddle.Tensor, name)

        def counting(self, *a, _original=original, _name=name, **k):
            if self.dtype != paddle.uint8:  # the loader's pixels are host memory on CPU; computed values count
                reads.append(_name)
            return _original(self, *a, **k)

        monkeypatch.setattr(paddle.Tensor, name, counting)
    trainer._train_epoch(0, 0, writer=None)
    monkeypatch.undo()
    trainer.close()
    assert trainer.global_step == 8
    assert len(reads) == 3, reads
