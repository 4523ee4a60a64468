"""ResNeXt101 32xCd "WSL" (Mahajan et al., "Exploring the Limits of Weakly Supervised Pretraining").

The networks are plain ResNeXt-101 (Xie et al.) with cardinality 32 and C = 8, 16, 32 or 48 channels per group
in the first stage, pretrained on 940M hashtagged Instagram images and fine-tuned on ImageNet-1k. As in the
original release the stride of a stage's first block sits on the grouped 3x3 conv. ``Fix_ResNeXt101_32x48d_wsl``
is the same network with the FixRes recipe (Touvron et al.): fine-tuned to be evaluated at 320 px.

State_dict keys (published PaddleClas weights): stem ``_conv_stem``; blocks ``_conv<stage+1>_<index>`` with
``_conv0``, ``_conv1``, ``_conv2`` and, in a stage's first block, ``_short._conv``; each conv is
``<name>._conv`` + ``<name>._bn``; classifier ``_out``.
"""
from __future__ import annotations

import math

import paddle
from paddle import nn

from models.base import ClassifierNet
from models.registry import ModelMeta, register_model

STAGE_DEPTHS_101 = (3, 4, 23, 3)
CARDINALITY = 32

RESNEXT_WSL_META = ModelMeta(classifier=("_out",), family="ResNeXt_wsl")
# FixRes: trained at 224 but fine-tuned for (and evaluated at) a larger test resolution.
FIX_RESNEXT_WSL_META = RESNEXT_WSL_META.updated(input_size=320, resize_short=320)


class ConvBN(nn.Layer):
    """Conv (no bias) + BatchNorm + optional ReLU, with the wsl models' ``_conv`` / ``_bn`` names."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 groups: int = 1, act: bool = True):
        super().__init__()
        self._conv = nn.Conv2D(in_channels, out_channels, kernel_size, stride=stride,
                               padding=(kernel_size - 1) // 2, groups=groups, bias_attr=False)
        self._bn = nn.BatchNorm2D(out_channels)
        self.act = nn.ReLU() if act else None

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self._bn(self._conv(x))
        return self.act(x) if self.act is not None else x


class Shortcut(nn.Layer):
    """Strided 1x1 projection; a wrapper only because the published keys nest it as ``_short._conv``."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self._conv = ConvBN(in_channels, out_channels, 1, stride=stride, act=False)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self._conv(x)


class BottleneckBlock(nn.Layer):
    """1x1 reduce -> grouped 3x3 (carries the stride) -> 1x1 expand, + shortcut."""

    def __init__(self, in_channels: int, width: int, out_channels: int, stride: int, project: bool):
        super().__init__()
        self._conv0 = ConvBN(in_channels, width, 1)
        self._conv1 = ConvBN(width, width, 3, stride=stride, groups=CARDINALITY)
        self._conv2 = ConvBN(width, out_channels, 1, act=False)
        self._short = Shortcut(in_channels, out_channels, stride) if project else None

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        y = self._conv2(self._conv1(self._conv0(x)))
        identity = self._short(x) if self._short is not None else x
        return nn.functional.relu(y + identity)


class ResNeXtWSL(ClassifierNet):
    """ResNeXt-101 32x``group_width``d with the wsl models' parameter names.

    Args:
        group_width: channels per group of the 3x3 conv in the first stage (the "d" of 32x48d); doubles
            every stage.
        dropout: drop probability before the classifier (training only).
    """

    classifier_names = ("_out",)

    def __init__(self, group_width: int, dropout: float = 0.0, class_dim: int = 1000):
        super().__init__()
        self._conv_stem = ConvBN(3, 64, 7, stride=2)
        self._pool = nn.MaxPool2D(3, stride=2, padding=1)
        self.block_names = []
        in_channels = 64
        for stage, count in enumerate(STAGE_DEPTHS_101):
            out_channels = 256 * 2**stage
            for index in range(count):
                block = BottleneckBlock(in_channels, CARDINALITY * group_width * 2**stage, out_channels,
                                        stride=2 if index == 0 and stage > 0 else 1, project=index == 0)
                name = f"_conv{stage + 1}_{index}"
                self.add_sublayer(name, block)
                self.block_names.append(name)
                in_channels = out_channels
        self.num_features = in_channels
        self._avg_pool = nn.AdaptiveAvgPool2D(1)
        self._dropout = nn.Dropout(dropout) if dropout > 0 else None
        bound = 1.0 / math.sqrt(in_channels)  # the classic suite's U(-1/sqrt(fan_in), ..) FC init
        self._out = nn.Linear(in_channels, class_dim,
                              weight_attr=paddle.ParamAttr(initializer=nn.initializer.Uniform(-bound, bound)))

    def forward_features(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self._pool(self._conv_stem(x))
        for name in self.block_names:
            x = getattr(self, name)(x)
        return x

    def forward_head(self, features: paddle.Tensor) -> paddle.Tensor:
        x = self._avg_pool(features).flatten(1)
        if self._dropout is not None:
            x = self._dropout(x)
        return self._out(x)


@register_model("ResNeXt101_32x8d_wsl", meta=RESNEXT_WSL_META)
def resnext101_32x8d_wsl(class_dim=1000, **options):
    return ResNeXtWSL(group_width=8, class_dim=class_dim, **options)


@register_model("ResNeXt101_32x16d_wsl", meta=RESNEXT_WSL_META)
def resnext101_32x16d_wsl(class_dim=1000, **options):
    return ResNeXtWSL(group_width=16, class_dim=class_dim, **options)


@register_model("ResNeXt101_32x32d_wsl", meta=RESNEXT_WSL_META)
def resnext101_32x32d_wsl(class_dim=1000, **options):
    return ResNeXtWSL(group_width=32, class_dim=class_dim, **options)


@register_model("ResNeXt101_32x48d_wsl", meta=RESNEXT_WSL_META)
def resnext101_32x48d_wsl(class_dim=1000, **options):
    return ResNeXtWSL(group_width=48, class_dim=class_dim, **options)


@register_model("Fix_ResNeXt101_32x48d_wsl", meta=FIX_RESNEXT_WSL_META)
def fix_resnext101_32x48d_wsl(class_dim=1000, **options):
    return ResNeXtWSL(group_width=48, class_dim=class_dim, **options)
