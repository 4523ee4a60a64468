"""Every registered model runs a forward pass on a small batch and gives (N, class_dim) finite logits."""
import numpy as np
import paddle
import pytest

import models
from models.base import main_logits

# Building (random init) the largest wsl ResNeXts takes minutes on 2 cores; their block types are the
# same as ResNeXt101_32x8d_wsl's, which runs here, and their shapes are checked lazily by the manifest test.
TOO_SLOW_TO_INIT = {
    "ResNeXt101_32x32d_wsl": "466M parameters: random init alone takes minutes on a 2-core CI machine",
    "ResNeXt101_32x48d_wsl": "829M parameters: random init alone takes minutes on a 2-core CI machine",
    "Fix_ResNeXt101_32x48d_wsl": "829M parameters: random init alone takes minutes on a 2-core CI machine",
}


@pytest.mark.parametrize("name", models.list_models())
def test_forward_small_batch(name):
    if name in TOO_SLOW_TO_INIT:
        pytest.skip(TOO_SLOW_TO_INIT[name])
    meta = models.get_model_meta(name)
    size = max(64, meta.min_input_size)
    paddle.seed(0)
    model = models.build_model(name, class_dim=7)
    model.eval()
    x = paddle.to_tensor(np.random.RandomState(0).rand(2, 3, size, size).astype("float32"))
    with paddle.no_grad():
        out = main_logits(model(x))
    assert tuple(out.shape) == (2, 7)
    assert np.isfinite(out.numpy()).all()


@pytest.mark.parametrize("name", ["ResNet18", "MobileNetV2_x0_25"])
def test_reset_classifier_changes_class_dim(name):
    if name not in models.list_models():
        pytest.skip(f"{name} not registered yet")
    model = models.build_model(name, class_dim=1000)
    model.reset_classifier(5)
    model.eval()
    with paddle.no_grad():
        out = main_logits(model(paddle.rand([1, 3, 64, 64])))
    assert tuple(out.shape) == (1, 5)
