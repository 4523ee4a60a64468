"""MobileNetV1 (Howard et al. 2017): a 3x3 stem and 13 depthwise-separable blocks, width scaled by ``scale``.

PaddleClas key layout: ``conv``, ``blocks.N.depthwise_conv`` / ``blocks.N.pointwise_conv``, ``fc``.
"""
from __future__ import annotations

import paddle
from paddle import nn

from models.base import ClassifierNet
from models.registry import ModelMeta, register_model

MOBILENET_V1_META = ModelMeta(family="MobileNetV1", classifier=("fc",))

STEM_CHANNELS = 32
# (output channels of the pointwise conv, stride of the depthwise conv) per block, at scale 1.0
NET_CONFIG = (
    (64, 1),
    (128, 2),
    (128, 1),
    (256, 2),
    (256, 1),
    (512, 2),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (1024, 2),
    (1024, 1),
)
SCALES = {"x0_25": 0.25, "x0_5": 0.5, "x0_75": 0.75, "x1_0": 1.0}


class ConvBNReLU(nn.Layer):
    """conv (no bias) -> BatchNorm -> ReLU."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1):
        super().__init__()
        self.conv = nn.Conv2D(in_ch, out_ch, kernel, stride=stride, padding=(kernel - 1) // 2, groups=groups,
                              bias_attr=False)
        self.bn = nn.BatchNorm2D(out_ch)
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.bn(self.conv(x)))


class DepthwiseSeparable(nn.Layer):
    """3x3 depthwise conv (carries the stride) followed by a 1x1 conv that mixes channels."""

    def __init__(self, in_ch: int, out_ch: int, stride: int):
        super().__init__()
        self.depthwise_conv = ConvBNReLU(in_ch, in_ch, 3, stride=stride, groups=in_ch)
        self.pointwise_conv = ConvBNReLU(in_ch, out_ch, 1)

    def forward(self, x):
        return self.pointwise_conv(self.depthwise_conv(x))


class MobileNetV1(ClassifierNet):
    """Generic MobileNetV1; every channel count is ``int(channels * scale)``."""

    classifier_names = ("fc",)

    def __init__(self, scale: float = 1.0, class_dim: int = 1000):
        super().__init__()
        if scale <= 0:
            raise ValueError(f"MobileNetV1 scale must be > 0, got {scale}")
        in_ch = int(STEM_CHANNELS * scale)
        self.conv = ConvBNReLU(3, in_ch, 3, stride=2)
        blocks = []
        for channels, stride in NET_CONFIG:
            out_ch = int(channels * scale)
            blocks.append(DepthwiseSeparable(in_ch, out_ch, stride))
            in_ch = out_ch
        self.blocks = nn.Sequential(*blocks)
        self.avg_pool = nn.AdaptiveAvgPool2D(1)
        self.num_features = in_ch
        self.fc = nn.Linear(in_ch, class_dim)

    def forward_features(self, x):
        return self.blocks(self.conv(x))

    def forward_head(self, features):
        return self.fc(paddle.flatten(self.avg_pool(features), 1))


def _make(scale: float):
    def build(class_dim: int = 1000, **options):
        if options:
            raise TypeError(f"MobileNetV1 got unknown option(s): {', '.join(sorted(options))}")
        return MobileNetV1(scale=scale, class_dim=class_dim)

    return build


for _suffix, _scale in SCALES.items():
    register_model(f"MobileNetV1_{_suffix}", meta=MOBILENET_V1_META)(_make(_scale))
register_model("MobileNetV1", meta=MOBILENET_V1_META)(_make(1.0))
