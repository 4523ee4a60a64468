"""Zoo numerics equal PaddleClas 2.6: the same deterministic weights and input give PaddleClas's logits.

tests/oracle/paddleclas_logits.npz holds the logits PaddleClas 2.6's own networks give (written by
tools/oracle/make_logits.py in a separate virtual environment; this suite never imports PaddleClas) for
every manifest model at its native input size, plus "<model>@<size>" entries at other sizes. The weights
are a function of each state_dict key and shape and of a per-model gain the file records (the largest
under which that network does not amplify float rounding; tools/oracle/deterministic.py), so they are the
same tensors on both sides (keys and shapes are checked equal to PaddleClas's by test_zoo_manifest.py).
All 112 models take about 2 minutes on 2 cores; the three largest wsl ResNeXts run with ZOO_ORACLE_LARGE=1.
"""
import os
from pathlib import Path

import numpy as np
import paddle
import pytest
from paddle import nn

import models
from models.base import main_logits
from tools.oracle.deterministic import dequantize_logits, fixed_input, relative_max_error, weight_for

ORACLE_PATH = Path(__file__).resolve().parent / "oracle" / "paddleclas_logits.npz"

# Same arithmetic as PaddleClas (same Paddle ops in the same order) agrees to float32 rounding of the stored
# logits (1.5e-5) plus kernel differences between CPUs.
TOLERANCE = 1e-4

LARGE_MODELS_FLAG = "ZOO_ORACLE_LARGE"
LARGE_MODELS = {
    "ResNeXt101_32x32d_wsl": "469M parameters",
    "ResNeXt101_32x48d_wsl": "829M parameters",
    "Fix_ResNeXt101_32x48d_wsl": "829M parameters at 320x320",
}


def _oracle() -> dict:
    """name -> (input size, weight gain) of every model in the oracle file."""
    if not ORACLE_PATH.exists():
        return {}
    with np.load(ORACLE_PATH) as stored:
        return {str(name): (int(size), float(gain))
                for name, size, gain in zip(stored["names"], stored["input_sizes"], stored["gains"])}


def _reference_logits(entry: str) -> np.ndarray:
    with np.load(ORACLE_PATH) as stored:
        scale = dict(zip(map(str, stored["names"]), stored["scales"]))[entry]
        return dequantize_logits(stored[entry], scale)


def deterministic_model(name: str, gain: float):
    """``name`` at class_dim 1000 with the oracle's weights, in eval mode. Built lazily: every tensor is
    then assigned, so Paddle's own random initialisation would be wasted time."""
    with paddle.LazyGuard():
        model = models.build_model(name, class_dim=1000)
    for key, tensor in model.state_dict().items():
        # set_value, not set_state_dict: Paddle 2.6's set_state_dict skips lazily built tensors
        tensor.set_value(weight_for(key, tensor.shape, gain))
    model.eval()
    return model


@pytest.mark.parametrize("entry", sorted(_oracle()))
def test_logits_equal_paddleclas(entry):
    """``entry`` is a model name (at its native input size) or "<model>@<size>" (at another size)."""
    name, _, off_size = entry.partition("@")
    if name in LARGE_MODELS and not os.environ.get(LARGE_MODELS_FLAG):
        pytest.skip(f"{LARGE_MODELS[name]}: minutes and 4-7 GB on a 2-core machine; set {LARGE_MODELS_FLAG}=1")
    size, gain = _oracle()[entry]
    if not off_size:
        assert models.get_model_meta(name).input_size == size, "the native input size is not PaddleClas's"
    model = deterministic_model(name, gain)
    with paddle.no_grad():
        ours = main_logits(model(paddle.to_tensor(fixed_input(size)))).numpy()
    error = relative_max_error(ours, _reference_logits(entry))
    assert error < TOLERANCE, f"{entry}: relative max error {error:.3g} vs PaddleClas 2.6"


def test_oracle_covers_every_manifest_name():
    manifest = Path(__file__).resolve().parents[2] / "shared" / "zoo" / "state_dict_manifest.json"
    if not manifest.exists():
        pytest.skip(f"{manifest} not present")
    import json

    assert sorted({entry.partition("@")[0] for entry in _oracle()}) == sorted(json.loads(manifest.read_text()))


@pytest.mark.parametrize("name", ["AlexNet", "VGG11", "GoogLeNet"])
def test_training_dropout_keeps_the_published_weights_scale(name):
    """PaddleClas trained these with "downscale_in_infer" dropout: in training the kept activations pass
    unscaled (not times 1 / (1 - p)), so fine-tuning sees the scale the later layers were trained with."""
    model = models.build_model(name, class_dim=10)
    model.train()
    seen = []
    for layer in model.sublayers():
        if isinstance(layer, nn.Dropout):
            layer.register_forward_post_hook(lambda _, inputs, output: seen.append((inputs[0].numpy(), output.numpy())))
    model(paddle.rand([2, 3, 224, 224]))
    assert seen, f"{name} ran no dropout in training"
    for before, after in seen:
        kept = after != 0
        assert kept.any() and (~kept).any()
        np.testing.assert_array_equal(after[kept], before[kept])
