"""ResNet*_ACNet: the deploy form (one fused conv per block) computes what the trained form computes."""
import numpy as np
import paddle

import models
from models.acnet import ACConvBN, convert_acnet_to_deploy
from tests.conftest import run_script


def randomise_batchnorm(model):
    """Trained-looking BatchNorm statistics, so the fusion is tested on more than identities (scaled so
    activations stay O(1) through the depth and an absolute 1e-4 tolerance is meaningful)."""
    rng = np.random.default_rng(0)
    for layer in model.sublayers():
        if isinstance(layer, paddle.nn.BatchNorm2D):
            n = layer.weight.shape[0]
            layer.weight.set_value(rng.uniform(0.2, 0.5, n).astype("float32"))
            layer.bias.set_value(rng.normal(0, 0.2, n).astype("float32"))
            layer._mean.set_value(rng.normal(0, 0.3, n).astype("float32"))
            layer._variance.set_value(rng.uniform(1.0, 3.0, n).astype("float32"))


def test_every_large_kernel_is_asymmetric_and_deploy_equals_trained():
    paddle.seed(3)
    model = models.build_model("ResNet18_ACNet", class_dim=10)
    blocks = [layer for layer in model.sublayers() if isinstance(layer, ACConvBN)]
    assert len(blocks) == 1 + 16  # the 7x7 stem and every 3x3 of the 8 basic blocks
    assert blocks[0].square.conv.weight.shape[2:] == [7, 7] and blocks[0].ver.conv.weight.shape[2:] == [7, 1]
    randomise_batchnorm(model)
    model.eval()
    deploy = convert_acnet_to_deploy(model, "ResNet18_ACNet", 10)
    deploy.eval()
    x = paddle.rand([2, 3, 64, 64])
    trained, fused = model(x).numpy(), deploy(x).numpy()
    assert np.abs(trained).max() > 0.1  # not a vanishing signal
    assert np.allclose(trained, fused, atol=1e-4, rtol=0)
    count = lambda m: sum(int(np.prod(p.shape)) for p in m.parameters())  # noqa: E731
    assert count(deploy) < count(model)


def test_conversion_command_writes_weights_the_deploy_model_loads(tmp_path):
    paddle.seed(4)
    model = models.build_model("ResNet18_ACNet", class_dim=5)
    randomise_batchnorm(model)
    paddle.save(model.state_dict(), str(tmp_path / "trained.pdparams"))
    run_script("-m", "models.convert", "--model=ResNet18_ACNet", f"--pretrained_model={tmp_path / 'trained'}",
               f"--output={tmp_path / 'deploy.pdparams'}")
    deploy = models.build_model("ResNet18_ACNet", class_dim=5, deploy=True)
    deploy.set_state_dict(paddle.load(str(tmp_path / "deploy.pdparams")))
    model.eval()
    deploy.eval()
    x = paddle.rand([1, 3, 48, 48])
    assert np.allclose(model(x).numpy(), deploy(x).numpy(), atol=1e-4)
