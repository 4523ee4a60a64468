"""MobileNetV3 large/small (Howard et al. 2019): inverted residuals with optional squeeze-excite,
ReLU or hard-swish, channel counts rounded with ``make_divisible(channels * scale, 8)``.

PaddleClas key layout: ``conv`` stem, ``blocks.N.{expand_conv,bottleneck_conv,mid_se,linear_conv}``,
``last_second_conv``, ``last_conv`` (1x1, no bias, after pooling) and the classifier ``fc``.
"""
from __future__ import annotations

import paddle
from paddle import nn
from paddle.nn import functional as F

from models.base import ClassifierNet
from models.registry import ModelMeta, register_model

MOBILENET_V3_META = ModelMeta(family="MobileNetV3", classifier=("fc",))

STEM_CHANNELS = 16
HEAD_CHANNELS = 1280  # width of ``last_conv``; not scaled
SE_REDUCTION = 4
# Per block: (kernel, expanded channels, output channels, squeeze-excite, activation, stride), the
# paper's Tables 1 and 2; the second item is the width of ``last_second_conv``.
NET_CONFIG = {
    "large": (
        (
            (3, 16, 16, False, "relu", 1),
            (3, 64, 24, False, "relu", 2),
            (3, 72, 24, False, "relu", 1),
            (5, 72, 40, True, "relu", 2),
            (5, 120, 40, True, "relu", 1),
            (5, 120, 40, True, "relu", 1),
            (3, 240, 80, False, "hardswish", 2),
            (3, 200, 80, False, "hardswish", 1),
            (3, 184, 80, False, "hardswish", 1),
            (3, 184, 80, False, "hardswish", 1),
            (3, 480, 112, True, "hardswish", 1),
            (3, 672, 112, True, "hardswish", 1),
            (5, 672, 160, True, "hardswish", 2),
            (5, 960, 160, True, "hardswish", 1),
            (5, 960, 160, True, "hardswish", 1),
        ),
        960,
    ),
    "small": (
        (
            (3, 16, 16, True, "relu", 2),
            (3, 72, 24, False, "relu", 2),
            (3, 88, 24, False, "relu", 1),
            (5, 96, 40, True, "hardswish", 2),
            (5, 240, 40, True, "hardswish", 1),
            (5, 240, 40, True, "hardswish", 1),
            (5, 120, 48, True, "hardswish", 1),
            (5, 144, 48, True, "hardswish", 1),
            (5, 288, 96, True, "hardswish", 2),
            (5, 576, 96, True, "hardswish", 1),
            (5, 576, 96, True, "hardswish", 1),
        ),
        576,
    ),
}
SCALES = {"x0_25": 0.25, "x0_5": 0.5, "x0_75": 0.75, "x1_0": 1.0, "x1_25": 1.25}
ACTIVATIONS = {"relu": nn.ReLU, "hardswish": nn.Hardswish}


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round to the nearest multiple of ``divisor`` (at least ``divisor``), never more than 10% below."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


class ConvBN(nn.Layer):
    """conv (no bias) -> BatchNorm -> optional activation ("relu" | "hardswish" | None)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1,
                 act: str | None = None):
        super().__init__()
        self.conv = nn.Conv2D(in_ch, out_ch, kernel, stride=stride, padding=(kernel - 1) // 2, groups=groups,
                              bias_attr=False)
        self.bn = nn.BatchNorm2D(out_ch)
        self.act = ACTIVATIONS[act]() if act else None

    def forward(self, x):
        x = self.bn(self.conv(x))
        return self.act(x) if self.act is not None else x


class SqueezeExcite(nn.Layer):
    """Channel gates from pooled features: 1x1 conv -> ReLU -> 1x1 conv -> hard-sigmoid."""

    def __init__(self, channels: int):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2D(1)
        self.conv1 = nn.Conv2D(channels, channels // SE_REDUCTION, 1)
        self.conv2 = nn.Conv2D(channels // SE_REDUCTION, channels, 1)

    def forward(self, x):
        gate = self.conv2(F.relu(self.conv1(self.avg_pool(x))))
        # slope 0.2 (not the paper's 1/6): the published Paddle weights were trained with this hard-sigmoid
        return x * F.hardsigmoid(gate, slope=0.2, offset=0.5)


class ResidualUnit(nn.Layer):
    """1x1 expand -> kxk depthwise -> optional SE -> 1x1 linear projection; identity shortcut when shapes
    allow. The expand conv exists even when it does not widen (PaddleClas keys)."""

    def __init__(self, in_ch: int, hidden: int, out_ch: int, kernel: int, stride: int, use_se: bool, act: str):
        super().__init__()
        self.expand_conv = ConvBN(in_ch, hidden, 1, act=act)
        self.bottleneck_conv = ConvBN(hidden, hidden, kernel, stride=stride, groups=hidden, act=act)
        self.mid_se = SqueezeExcite(hidden) if use_se else None
        self.linear_conv = ConvBN(hidden, out_ch, 1)
        self.use_shortcut = stride == 1 and in_ch == out_ch

    def forward(self, x):
        out = self.bottleneck_conv(self.expand_conv(x))
        if self.mid_se is not None:
            out = self.mid_se(out)
        out = self.linear_conv(out)
        return x + out if self.use_shortcut else out


class MobileNetV3(ClassifierNet):
    """Generic MobileNetV3; ``size`` is "large" or "small"."""

    classifier_names = ("fc",)

    def __init__(self, size: str = "large", scale: float = 1.0, class_dim: int = 1000, dropout_prob: float = 0.2):
        super().__init__()
        if size not in NET_CONFIG:
            raise ValueError(f"MobileNetV3 size {size!r} is not one of {sorted(NET_CONFIG)}")
        if scale <= 0:
            raise ValueError(f"MobileNetV3 scale must be > 0, got {scale}")
        rows, last_second_channels = NET_CONFIG[size]
        in_ch = make_divisible(STEM_CHANNELS * scale)
        self.conv = ConvBN(3, in_ch, 3, stride=2, act="hardswish")
        blocks = []
        for kernel, expanded, channels, use_se, act, stride in rows:
            out_ch = make_divisible(channels * scale)
            blocks.append(ResidualUnit(in_ch, make_divisible(expanded * scale), out_ch, kernel, stride, use_se, act))
            in_ch = out_ch
        self.blocks = nn.Sequential(*blocks)
        squeeze_ch = make_divisible(last_second_channels * scale)
        self.last_second_conv = ConvBN(in_ch, squeeze_ch, 1, act="hardswish")
        self.avg_pool = nn.AdaptiveAvgPool2D(1)
        self.last_conv = nn.Conv2D(squeeze_ch, HEAD_CHANNELS, 1, bias_attr=False)
        self.hardswish = nn.Hardswish()
        # scaled at inference, not in training: how the published weights were trained
        self.dropout = nn.Dropout(p=dropout_prob, mode="downscale_in_infer")
        self.num_features = HEAD_CHANNELS
        self.fc = nn.Linear(HEAD_CHANNELS, class_dim)

    def forward_features(self, x):
        return self.last_second_conv(self.blocks(self.conv(x)))

    def forward_head(self, features):
        x = self.hardswish(self.last_conv(self.avg_pool(features)))
        return self.fc(paddle.flatten(self.dropout(x), 1))


def _make(size: str, scale: float):
    def build(class_dim: int = 1000, **options):
        unknown = set(options) - {"dropout_prob"}
        if unknown:
            raise TypeError(f"MobileNetV3 got unknown option(s): {', '.join(sorted(unknown))}")
        return MobileNetV3(size=size, scale=scale, class_dim=class_dim, **options)

    return build


for _size in NET_CONFIG:
    for _suffix, _scale in SCALES.items():
        register_model(f"MobileNetV3_{_size}_{_suffix}", meta=MOBILENET_V3_META)(_make(_size, _scale))
