"""DarkNet-53 (Redmon & Farhadi, "YOLOv3", 2018) as an ImageNet classifier.

A 3x3 conv (32) and a strided 3x3 conv (64), then five stages of residual blocks (1, 2, 8, 8, 4 blocks of
1x1 halve -> 3x3 restore), each stage after the first opened by a strided 3x3 conv that doubles the width;
global average pooling and a fully connected layer. Key layout of the PaddleClas weights: ``_conv1``,
``_conv2``, ``_basic_block_<stage><n>`` (n from 1), ``_downsample_<stage>``, ``_out``.

Activation (option ``activation``): the PaddleClas weights were trained with ReLU after every BatchNorm, the
default here; the paper's leaky ReLU (slope 0.1) is ``activation="leaky_relu"``.
"""
from __future__ import annotations

import paddle
import paddle.nn.functional as F
from paddle import nn

from models.base import ClassifierNet
from models.registry import ModelMeta, register_model

# The classic suite trains and evaluates DarkNet53 at 256x256.
DARKNET_META = ModelMeta(input_size=256, resize_short=256, classifier=("_out",), family="DarkNet")

STAGE_BLOCKS = (1, 2, 8, 8, 4)
STAGE_WIDTHS = (64, 128, 256, 512, 1024)
LEAKY_SLOPE = 0.1
ACTIVATIONS = ("relu", "leaky_relu")


class ConvBN(nn.Layer):
    """Bias-free conv -> BatchNorm -> ReLU or leaky ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int = 1,
                 activation: str = "relu"):
        super().__init__()
        self._conv = nn.Conv2D(in_channels, out_channels, kernel, stride=stride, padding=(kernel - 1) // 2,
                               bias_attr=False)
        self._bn = nn.BatchNorm2D(out_channels)
        self.leaky = activation == "leaky_relu"

    def forward(self, x):
        x = self._bn(self._conv(x))
        return F.leaky_relu(x, LEAKY_SLOPE) if self.leaky else F.relu(x)


class ResidualBlock(nn.Layer):
    """1x1 conv to half the width -> 3x3 conv back to full width, added to the input."""

    def __init__(self, channels: int, activation: str):
        super().__init__()
        self._conv1 = ConvBN(channels, channels // 2, 1, activation=activation)
        self._conv2 = ConvBN(channels // 2, channels, 3, activation=activation)

    def forward(self, x):
        return x + self._conv2(self._conv1(x))


class DarkNet(ClassifierNet):
    classifier_names = ("_out",)

    def __init__(self, class_dim: int = 1000, activation: str = "relu"):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"DarkNet activation {activation!r} is not one of {ACTIVATIONS}")
        self._conv1 = ConvBN(3, 32, 3, activation=activation)
        self._conv2 = ConvBN(32, STAGE_WIDTHS[0], 3, stride=2, activation=activation)
        self.layer_names = []
        for stage, (blocks, width) in enumerate(zip(STAGE_BLOCKS, STAGE_WIDTHS)):
            for index in range(1, blocks + 1):
                self._add(f"_basic_block_{stage}{index}", ResidualBlock(width, activation))
            if stage + 1 < len(STAGE_WIDTHS):
                self._add(f"_downsample_{stage}",
                          ConvBN(width, STAGE_WIDTHS[stage + 1], 3, stride=2, activation=activation))
        self._pool = nn.AdaptiveAvgPool2D(1)
        self.num_features = STAGE_WIDTHS[-1]
        stdv = 1.0 / self.num_features**0.5
        self._out = nn.Linear(self.num_features, class_dim, weight_attr=paddle.ParamAttr(
            initializer=nn.initializer.Uniform(-stdv, stdv)))

    def _add(self, name: str, layer: nn.Layer) -> None:
        self.add_sublayer(name, layer)
        self.layer_names.append(name)

    def forward_features(self, x):
        x = self._conv2(self._conv1(x))
        for name in self.layer_names:
            x = getattr(self, name)(x)
        return x

    def forward_head(self, features):
        return self._out(paddle.flatten(self._pool(features), 1))


@register_model("DarkNet53", meta=DARKNET_META)
def darknet53(class_dim: int = 1000, **options):
    unknown = set(options) - {"activation"}
    if unknown:
        raise TypeError(f"DarkNet53 got unknown option(s): {', '.join(sorted(unknown))}")
    return DarkNet(class_dim, **options)
