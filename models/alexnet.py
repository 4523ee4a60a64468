"""AlexNet (Krizhevsky et al., 2012), in the single-tower form of the classic suite: five convs (64-192-384-
256-256 channels, ReLU, max-pooling after conv1, conv2 and conv5) and three fully connected layers with
dropout. Key layout of the PaddleClas weights: ``_conv1`` / ``_conv2`` / ``_conv5`` are conv+pool units
(``_convN._conv``), ``_conv3`` / ``_conv4`` plain convs, ``_fc6`` .. ``_fc8``.

The first fully connected layer takes the flattened 256x6x6 map, so the network needs 224x224 inputs.

Dropout follows the published PaddleClas weights, which were trained with "downscale_in_infer" dropout
(kept activations unscaled in training, all activations scaled by 1 - p in eval), not the classic
``nn.Dropout`` default (upscale_in_train): with those weights the default gives other logits in eval,
and fine-tuning under it would change the scale the later layers were trained for.
"""
from __future__ import annotations

import paddle
import paddle.nn.functional as F
from paddle import nn

from models.base import ClassifierNet
from models.registry import ModelMeta, register_model

# 224 is the only input size that gives fc6 its 256x6x6 features
ALEXNET_META = ModelMeta(classifier=("_fc8",), family="AlexNet", min_input_size=224)
FEATURE_MAP = (256, 6, 6)
HIDDEN = 4096
DROPOUT = 0.5


class ConvPool(nn.Layer):
    """conv (with bias) -> ReLU -> 3x3 stride-2 max-pool."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int, padding: int):
        super().__init__()
        self._conv = nn.Conv2D(in_channels, out_channels, kernel, stride=stride, padding=padding)
        self._pool = nn.MaxPool2D(3, 2)

    def forward(self, x):
        return self._pool(F.relu(self._conv(x)))


def check_feature_map(features: paddle.Tensor, expected: tuple[int, ...], network: str, size: int) -> None:
    """Fail with a clear message rather than a matmul shape error when the input size is wrong."""
    got = tuple(features.shape[1:])
    if all(dim > 0 for dim in got) and got != expected:
        raise ValueError(f"{network} needs {size}x{size} inputs (a {expected} feature map), got a {got} map")


class AlexNet(ClassifierNet):
    classifier_names = ("_fc8",)

    def __init__(self, class_dim: int = 1000):
        super().__init__()
        self._conv1 = ConvPool(3, 64, 11, stride=4, padding=2)
        self._conv2 = ConvPool(64, 192, 5, stride=1, padding=2)
        self._conv3 = nn.Conv2D(192, 384, 3, padding=1)
        self._conv4 = nn.Conv2D(384, 256, 3, padding=1)
        self._conv5 = ConvPool(256, 256, 3, stride=1, padding=1)
        self._drop6 = nn.Dropout(DROPOUT, mode="downscale_in_infer")
        self._fc6 = nn.Linear(FEATURE_MAP[0] * FEATURE_MAP[1] * FEATURE_MAP[2], HIDDEN)
        self._drop7 = nn.Dropout(DROPOUT, mode="downscale_in_infer")
        self._fc7 = nn.Linear(HIDDEN, HIDDEN)
        self._fc8 = nn.Linear(HIDDEN, class_dim)
        self.num_features = HIDDEN

    def forward_features(self, x):
        x = self._conv2(self._conv1(x))
        x = F.relu(self._conv4(F.relu(self._conv3(x))))
        return self._conv5(x)

    def forward_head(self, features):
        check_feature_map(features, FEATURE_MAP, "AlexNet", 224)
        x = F.relu(self._fc6(self._drop6(paddle.flatten(features, 1))))
        x = F.relu(self._fc7(self._drop7(x)))
        return self._fc8(x)


@register_model("AlexNet", meta=ALEXNET_META)
def alexnet(class_dim: int = 1000, **options):
    if options:
        raise TypeError(f"AlexNet got unknown option(s): {', '.join(sorted(options))}")
    return AlexNet(class_dim)
