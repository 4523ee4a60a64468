"""EfficientNet family: the real EfficientNet-Lite0 weights reproduce documented ImageNet answers, and the
TF 'SAME' padding / option handling behave as documented."""
import numpy as np
import paddle
import pytest

import models
from models.efficientnet import NET_CONFIG, same_padding, stage_input_sizes
from tests.conftest import SHARED
from utils.transforms import center_crop, normalize_to_chw, read_image, resize_short

LITE0_WEIGHTS = SHARED / "weights" / "EfficientNetLite0_pretrained.pdparams"
KNOWN_ANSWER = SHARED / "data" / "known_answer"
# file -> ImageNet-1k top-1 documented in known_answer/EXPECTED.txt
EXPECTED_TOP1 = {
    "ILSVRC2012_val_00000010.jpeg": 153,  # Maltese dog
    "ILSVRC2012_val_00020010.jpeg": 178,  # Weimaraner
    "ILSVRC2012_val_00030010.jpeg": 80,  # black grouse
    "coffee.png": 967,  # espresso
}


def _preprocess(path, meta) -> np.ndarray:
    """cv2 decode -> RGB, short side to 256 (bilinear), centre crop 224, /255, metadata mean/std, CHW."""
    image = resize_short(read_image(str(path)), 256, "bilinear")
    return normalize_to_chw(center_crop(image, meta.input_size), meta.mean, meta.std)


@pytest.mark.skipif(not LITE0_WEIGHTS.exists(), reason=f"{LITE0_WEIGHTS} not present")
def test_lite0_pretrained_known_answers():
    missing = [name for name in EXPECTED_TOP1 if not (KNOWN_ANSWER / name).exists()]
    if missing:
        pytest.skip(f"known-answer images not present: {missing}")
    meta = models.get_model_meta("EfficientNetLite0")
    model = models.build_model("EfficientNetLite0")
    missing_keys, unexpected_keys = model.set_state_dict(paddle.load(str(LITE0_WEIGHTS)))
    assert not missing_keys and not unexpected_keys
    model.eval()
    batch = np.stack([_preprocess(KNOWN_ANSWER / name, meta) for name in EXPECTED_TOP1])
    with paddle.no_grad():
        top1 = model(paddle.to_tensor(batch)).numpy().argmax(axis=1)
    assert dict(zip(EXPECTED_TOP1, top1.tolist())) == EXPECTED_TOP1


@pytest.mark.parametrize("size, kernel, stride, expected", [
    (224, 3, 2, (0, 1)),  # TF puts the odd pixel after
    (225, 3, 2, (1, 1)),
    (112, 5, 2, (1, 2)),
    (56, 5, 1, (2, 2)),
    (7, 1, 1, (0, 0)),
])
def test_same_padding_matches_tensorflow(size, kernel, stride, expected):
    assert same_padding(size, kernel, stride) == expected


@pytest.mark.parametrize("variant, table", [
    # PaddleClas 2.6 ppcls/arch/backbone/model_zoo/efficientnet.py, inp_shape: the sizes its 'SAME' rule
    # plans the stem and stages 1-7 for
    ("b0", [224, 112, 112, 56, 28, 14, 14, 7]),
    ("b2", [260, 130, 130, 65, 33, 17, 17, 9]),
    ("b5", [456, 228, 228, 114, 57, 29, 29, 15]),
    ("b7", [600, 300, 300, 150, 75, 38, 38, 19]),
])
def test_paddleclas_same_plan_is_paddleclas_table(variant, table):
    assert stage_input_sizes(NET_CONFIG[variant][2]) == table


@pytest.mark.parametrize("size", [64, 65])
def test_same_padding_output_size_is_ceil_of_input_over_stride(size):
    # Lite0 is the variant whose 'SAME' is TensorFlow's (PaddleClas's B0_small defaults to 'DYNAMIC')
    model = models.build_model("EfficientNetLite0", class_dim=3)
    model.eval()
    with paddle.no_grad():
        features = model.forward_features(paddle.rand([1, 3, size, size]))
    assert features.shape[2] == -(-size // 32)


def test_unknown_options_are_refused():
    with pytest.raises(TypeError, match="use_sse"):
        models.build_model("EfficientNetB0", use_sse=False)
    with pytest.raises(TypeError, match="width"):
        models.build_model("EfficientNetB0", override_params={"width": 2.0})
    with pytest.raises(TypeError, match="use_se"):  # Lite0's weights have no squeeze-excite
        models.build_model("EfficientNetLite0", use_se=True)
    with pytest.raises(ValueError, match="padding_type"):
        models.build_model("EfficientNetB0", padding_type="same")


def _two_passes(model, x, training: bool):
    model.train() if training else model.eval()
    with paddle.no_grad():
        return model(x).numpy(), model(x).numpy()


def test_drop_connect_is_random_in_training_only():
    paddle.seed(0)
    x = paddle.rand([4, 3, 64, 64])
    no_dropout = {"dropout_rate": 0.0}  # so any randomness comes from stochastic depth
    model = models.build_model("EfficientNetB0_small", class_dim=3, override_params=no_dropout)
    first, second = _two_passes(model, x, training=True)
    assert not np.allclose(first, second)
    np.testing.assert_array_equal(*_two_passes(model, x, training=False))
    plain = models.build_model("EfficientNetB0_small", class_dim=3, drop_connect_rate=0.0,
                               override_params=no_dropout)
    np.testing.assert_array_equal(*_two_passes(plain, x, training=True))
