"""Mixed-precision plumbing on CPU (Paddle's CPU build runs fp32): flags, the O2 decoration path, the
loss-scaler entry in checkpoints, and the one-line note. The real fp16/bf16 runs (live loss scale saved and
restored) are in test_amp_gpu.py, which needs a GPU."""
import argparse
import json

import numpy as np
import paddle
import pytest

from tests.conftest import run_script, subset_list
from utils.amp import AmpSettings
from utils.args import UsageError


def amp_args(**overrides):
    base = dict(use_amp=False, use_pure_fp16=False, amp_dtype="float16", scale_loss=1.0,
                use_dynamic_loss_scaling=True)
    return argparse.Namespace(**{**base, **overrides})


def test_flags_map_to_levels_dtypes_and_scales():
    o1 = AmpSettings.from_args(amp_args(use_amp=True), "gpu")
    assert (o1.enabled, o1.active, o1.level, o1.dtype, o1.init_scale) == (True, True, "O1", "float16", 32768.0)
    o2 = AmpSettings.from_args(amp_args(use_pure_fp16=True, amp_dtype="bfloat16", scale_loss=128.0,
                                        use_dynamic_loss_scaling=False), "gpu")
    assert (o2.level, o2.dtype, o2.init_scale, o2.dynamic) == ("O2", "bfloat16", 128.0, False)
    cpu = AmpSettings.from_args(amp_args(use_amp=True), "cpu")
    assert cpu.enabled and not cpu.active and "training stays fp32" in cpu.note()
    assert AmpSettings.from_args(amp_args(), "cpu").note() is None
    with pytest.raises(UsageError, match="--amp_dtype"):
        AmpSettings.from_args(amp_args(amp_dtype="int8"), "gpu")


def test_o2_decoration_path_keeps_fp32_master_weights_and_saves_fp32():
    settings = AmpSettings(enabled=True, active=True, level="O2", dtype="bfloat16", init_scale=1.0, dynamic=False)
    model = paddle.nn.Sequential(paddle.nn.Linear(4, 8), paddle.nn.BatchNorm1D(8), paddle.nn.Linear(8, 3))
    optimizer = paddle.optimizer.Momentum(learning_rate=0.1, parameters=model.parameters())
    model, optimizer = settings.decorate(model, optimizer)
    assert all(v.dtype == paddle.float32 for v in model.state_dict().values())


def test_use_amp_on_cpu_trains_fp32_notes_once_and_checkpoints_the_scaler(digits_dir, tmp_path):
    subset_list(digits_dir / "train_list.txt", tmp_path / "t.txt", 32)
    common = ["--model=ResNet18", f"--data_dir={digits_dir}", f"--train_list={tmp_path / 't.txt'}",
              "--validate=False", "--image_shape", "3", "32", "32", "--resize_short_size=32", "--batch_size=16",
              "--reader_thread=0", "--random_seed=1", f"--model_save_dir={tmp_path}", "--use_amp=True",
              "--scale_loss=256", "--use_dynamic_loss_scaling=False"]
    out = run_script("train.py", *common, "--num_epochs=1")
    assert out.stdout.count("needs a GPU") == 1
    meta = json.loads((tmp_path / "ResNet18" / "0" / "meta.json").read_text())
    assert "scaler" in meta and meta["args"]["use_amp"] is True
    weights = paddle.load(str(tmp_path / "ResNet18" / "0" / "model.pdparams"))
    assert all(np.asarray(v).dtype == np.float32 for k, v in weights.items() if not k.endswith("@@"))
    resumed = run_script("train.py", *common, "--num_epochs=2", "--resume=auto")
    assert "continuing at epoch 1" in resumed.stdout
