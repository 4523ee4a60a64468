"""Mixed precision for real (fp16 O1/O2, bf16): needs a CUDA build of Paddle and a GPU; skipped otherwise."""
import json

import numpy as np
import paddle
import pytest

from tests.conftest import run_script, subset_list

HAS_GPU = paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0
pytestmark = pytest.mark.skipif(not HAS_GPU, reason="needs paddlepaddle-gpu and a CUDA GPU: Paddle's CPU build has "
                                "no fp16/bf16 conv kernels and disables GradScaler")


@pytest.mark.parametrize("flags", [["--use_amp=True"], ["--use_pure_fp16=True"],
                                   ["--use_amp=True", "--amp_dtype=bfloat16"]])
def test_mixed_precision_trains_saves_fp32_and_resumes_the_scaler(digits_dir, tmp_path, flags):
    subset_list(digits_dir / "train_list.txt", tmp_path / "t.txt", 64)
    common = ["--model=ResNet18", f"--data_dir={digits_dir}", f"--train_list={tmp_path / 't.txt'}",
              "--validate=False", "--image_shape", "3", "32", "32", "--resize_short_size=32", "--batch_size=16",
              "--reader_thread=2", "--random_seed=1", f"--model_save_dir={tmp_path}", "--use_gpu=True", *flags]
    out = run_script("train.py", *common, "--num_epochs=1")
    assert "needs a GPU" not in out.stdout
    meta = json.loads((tmp_path / "ResNet18" / "0" / "meta.json").read_text())
    if "--amp_dtype=bfloat16" not in flags:
        assert meta["scaler"].get("scale", 0) > 0  # fp16: dynamic loss scaling is live
    weights = paddle.load(str(tmp_path / "ResNet18" / "0" / "model.pdparams"))
    assert all(np.asarray(v).dtype == np.float32 for k, v in weights.items() if not k.endswith("@@"))
    resumed = run_script("train.py", *common, "--num_epochs=2", "--resume=auto")
    assert "continuing at epoch 1" in resumed.stdout
