"""MobileNetV2 (Sandler et al. 2018): inverted residuals with linear bottlenecks, ReLU6, width ``scale``.

PaddleClas key layout: ``conv1`` stem, groups ``conv2`` .. ``conv8`` (first block ``_first_block``, the
others ``convN_2``, ``convN_3``, ...), ``conv9`` (the last 1x1 conv) and the classifier ``out``.
"""
from __future__ import annotations

import paddle
from paddle import nn

from models.base import ClassifierNet
from models.registry import ModelMeta, register_model

MOBILENET_V2_META = ModelMeta(family="MobileNetV2", classifier=("out",))

STEM_CHANNELS = 32
LAST_CHANNELS = 1280
# (expansion t, output channels c, repeats n, first stride s) per group, the paper's Table 2
NET_CONFIG = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
SCALES = {"x0_25": 0.25, "x0_5": 0.5, "x0_75": 0.75, "x1_0": 1.0, "x1_5": 1.5, "x2_0": 2.0}


class ConvBN(nn.Layer):
    """conv (no bias) -> BatchNorm -> optional ReLU6."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1, act: bool = True):
        super().__init__()
        self._conv = nn.Conv2D(in_ch, out_ch, kernel, stride=stride, padding=(kernel - 1) // 2, groups=groups,
                               bias_attr=False)
        self._batch_norm = nn.BatchNorm2D(out_ch)
        self.act = nn.ReLU6() if act else None

    def forward(self, x):
        x = self._batch_norm(self._conv(x))
        return self.act(x) if self.act is not None else x


class InvertedResidual(nn.Layer):
    """1x1 expand -> 3x3 depthwise -> 1x1 linear projection; identity shortcut when shapes allow.

    The expand conv exists even at expansion 1 (PaddleClas keys), where it is a plain 1x1 conv.
    """

    def __init__(self, in_ch: int, out_ch: int, expansion: int, stride: int):
        super().__init__()
        hidden = in_ch * expansion
        self._expand_conv = ConvBN(in_ch, hidden, 1)
        self._bottleneck_conv = ConvBN(hidden, hidden, 3, stride=stride, groups=hidden)
        self._linear_conv = ConvBN(hidden, out_ch, 1, act=False)
        self.use_shortcut = stride == 1 and in_ch == out_ch

    def forward(self, x):
        out = self._linear_conv(self._bottleneck_conv(self._expand_conv(x)))
        return x + out if self.use_shortcut else out


class InvertedResidualGroup(nn.Layer):
    """``repeats`` inverted residuals; only the first changes stride and width."""

    def __init__(self, in_ch: int, out_ch: int, expansion: int, repeats: int, stride: int, name: str):
        super().__init__()
        self._first_block = InvertedResidual(in_ch, out_ch, expansion, stride)
        self.later_names = [f"{name}_{index}" for index in range(2, repeats + 1)]
        for block_name in self.later_names:
            self.add_sublayer(block_name, InvertedResidual(out_ch, out_ch, expansion, 1))

    def forward(self, x):
        x = self._first_block(x)
        for block_name in self.later_names:
            x = getattr(self, block_name)(x)
        return x


class MobileNetV2(ClassifierNet):
    """Generic MobileNetV2; block widths are ``int(channels * scale)``, the last conv widens only above 1.0."""

    classifier_names = ("out",)

    def __init__(self, scale: float = 1.0, class_dim: int = 1000):
        super().__init__()
        if scale <= 0:
            raise ValueError(f"MobileNetV2 scale must be > 0, got {scale}")
        in_ch = int(STEM_CHANNELS * scale)
        self.conv1 = ConvBN(3, in_ch, 3, stride=2)
        self.group_names = []
        for number, (expansion, channels, repeats, stride) in enumerate(NET_CONFIG, start=2):
            out_ch = int(channels * scale)
            name = f"conv{number}"
            self.add_sublayer(name, InvertedResidualGroup(in_ch, out_ch, expansion, repeats, stride, name))
            self.group_names.append(name)
            in_ch = out_ch
        self.num_features = int(LAST_CHANNELS * scale) if scale > 1.0 else LAST_CHANNELS
        self.conv9 = ConvBN(in_ch, self.num_features, 1)
        self.avg_pool = nn.AdaptiveAvgPool2D(1)
        self.out = nn.Linear(self.num_features, class_dim)

    def forward_features(self, x):
        x = self.conv1(x)
        for name in self.group_names:
            x = getattr(self, name)(x)
        return self.conv9(x)

    def forward_head(self, features):
        return self.out(paddle.flatten(self.avg_pool(features), 1))


def _make(scale: float):
    def build(class_dim: int = 1000, **options):
        if options:
            raise TypeError(f"MobileNetV2 got unknown option(s): {', '.join(sorted(options))}")
        return MobileNetV2(scale=scale, class_dim=class_dim)

    return build


for _suffix, _scale in SCALES.items():
    register_model(f"MobileNetV2_{_suffix}", meta=MOBILENET_V2_META)(_make(_scale))
register_model("MobileNetV2", meta=MOBILENET_V2_META)(_make(1.0))
