"""Res2Net (Gao et al., "Res2Net: A New Multi-scale Backbone Architecture") in the classic suite's naming.

The bottleneck's 3x3 conv is replaced by ``scales`` groups of ``width`` channels: split i (i < scales) gets its
own 3x3 conv, fed with split i plus the output of conv i-1 (hierarchical residual-like connections), so each
split sees a larger receptive field than the previous one; the last split passes through unchanged. In a
stage's strided first block there is no hierarchy (every conv takes its own split, with the stride) and the
last split is average-pooled to the new resolution instead.

- ``Res2Net<depth>_<w>w_<s>s``: 7x7 stem ``conv1``, strided 1x1 projection shortcuts.
- ``Res2Net<depth>_vd_<w>w_<s>s``: "Bag of Tricks" vd variant: three-conv stem ``conv1_1..3`` (32, 32, 64),
  average-pool-then-1x1 shortcuts.

State_dict keys (published PaddleClas weights): blocks ``bb_<stage>_<index>`` with ``conv0`` (1x1 reduce to
``width * scales``), ``res<stage+2><suffix>_branch2b_<i>`` (the 3x3 convs), ``conv2`` (1x1 expand) and, in a
stage's first block, ``short``; each conv is ``<name>._conv`` + ``<name>._batch_norm``; classifier ``out``.
"""
from __future__ import annotations

import math

import paddle
from paddle import nn

from models.base import ClassifierNet
from models.registry import ModelMeta, register_model
from models.resnet_legacy import ConvBNLayer, stage_depths

VD_STEM = (32, 32, 64)
DEEP_NAMING_DEPTHS = (101, 152, 200)  # their third stage names blocks res4a, res4b1, res4b2, ...

RES2NET_META = ModelMeta(classifier=("out",), family="Res2Net")
RES2NET_VD_META = ModelMeta(classifier=("out",), family="Res2Net_vd")


def _split_conv_prefix(depth: int, stage: int, index: int) -> str:
    """The classic suite's block name used in the 3x3 split convs' keys (``res2a``, ``res4b12``, ...)."""
    if depth in DEEP_NAMING_DEPTHS and stage == 2:
        suffix = "a" if index == 0 else f"b{index}"
    else:
        suffix = chr(ord("a") + index)
    return f"res{stage + 2}{suffix}"


class Res2NetBlock(nn.Layer):
    """1x1 reduce -> hierarchical 3x3 convs over ``scales`` splits -> 1x1 expand, + shortcut."""

    def __init__(self, in_channels: int, width: int, scales: int, out_channels: int, stride: int,
                 split_prefix: str, project: bool, avg_down: bool):
        super().__init__()
        if scales < 2:
            raise ValueError(f"Res2Net needs at least 2 scales, got {scales}")
        self.width = width
        self.stride = stride
        self.conv0 = ConvBNLayer(in_channels, width * scales, 1)
        self.split_conv_names = []
        for i in range(1, scales):
            name = f"{split_prefix}_branch2b_{i}"
            self.add_sublayer(name, ConvBNLayer(width, width, 3, stride=stride))
            self.split_conv_names.append(name)
        # The untouched last split must match the strided convs' output resolution.
        self.last_split_pool = nn.AvgPool2D(3, stride=stride, padding=1) if stride > 1 else None
        self.conv2 = ConvBNLayer(width * scales, out_channels, 1, act=False)
        self.short = (ConvBNLayer(in_channels, out_channels, 1, stride=stride, act=False,
                                  avg_down=avg_down and stride > 1) if project else None)

    def _multi_scale(self, x: paddle.Tensor) -> paddle.Tensor:
        splits = paddle.split(x, len(self.split_conv_names) + 1, axis=1)
        outputs = []
        for split, name in zip(splits[:-1], self.split_conv_names):
            # Strided blocks change resolution, so the previous split's output cannot be added.
            if outputs and self.stride == 1:
                split = split + outputs[-1]
            outputs.append(getattr(self, name)(split))
        last = splits[-1]
        outputs.append(self.last_split_pool(last) if self.last_split_pool is not None else last)
        return paddle.concat(outputs, axis=1)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        y = self.conv2(self._multi_scale(self.conv0(x)))
        identity = self.short(x) if self.short is not None else x
        return nn.functional.relu(y + identity)


class Res2Net(ClassifierNet):
    """Res2Net / Res2Net_vd with the classic suite's parameter names.

    Args:
        depth: 50, 101, 152 or 200 (bottleneck stage depths as in ResNet).
        width: channels per split in the first stage; doubles every stage.
        scales: number of splits (the "s" of 26w_4s).
        vd: three-conv stem and average-pool shortcuts ("Bag of Tricks" ResNet-C/D).
        dropout: drop probability before the classifier (training only).
    """

    classifier_names = ("out",)

    def __init__(self, depth: int, width: int, scales: int, vd: bool = False, dropout: float = 0.0,
                 class_dim: int = 1000):
        super().__init__()
        self.vd = vd
        if vd:
            self.conv1_1 = ConvBNLayer(3, VD_STEM[0], 3, stride=2)
            self.conv1_2 = ConvBNLayer(VD_STEM[0], VD_STEM[1], 3)
            self.conv1_3 = ConvBNLayer(VD_STEM[1], VD_STEM[2], 3)
        else:
            self.conv1 = ConvBNLayer(3, 64, 7, stride=2)
        self.pool = nn.MaxPool2D(3, stride=2, padding=1)
        self.block_names, self.num_features = self._build_stages(depth, 64, width, scales, vd)
        self.global_pool = nn.AdaptiveAvgPool2D(1)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else None
        bound = 1.0 / math.sqrt(self.num_features)  # the classic suite's U(-1/sqrt(fan_in), ..) FC init
        self.out = nn.Linear(self.num_features, class_dim,
                             weight_attr=paddle.ParamAttr(initializer=nn.initializer.Uniform(-bound, bound)))

    def _build_stages(self, depth: int, in_channels: int, width: int, scales: int,
                      vd: bool) -> tuple[list[str], int]:
        names = []
        for stage, count in enumerate(stage_depths(depth)):
            out_channels = 256 * 2**stage
            for index in range(count):
                block = Res2NetBlock(in_channels, width * 2**stage, scales, out_channels,
                                     stride=2 if index == 0 and stage > 0 else 1,
                                     split_prefix=_split_conv_prefix(depth, stage, index),
                                     project=index == 0, avg_down=vd)
                name = f"bb_{stage}_{index}"
                self.add_sublayer(name, block)
                names.append(name)
                in_channels = out_channels
        return names, in_channels

    def forward_features(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self.conv1_3(self.conv1_2(self.conv1_1(x))) if self.vd else self.conv1(x)
        x = self.pool(x)
        for name in self.block_names:
            x = getattr(self, name)(x)
        return x

    def forward_head(self, features: paddle.Tensor) -> paddle.Tensor:
        x = self.global_pool(features).flatten(1)
        if self.dropout is not None:
            x = self.dropout(x)
        return self.out(x)


@register_model("Res2Net50_48w_2s", meta=RES2NET_META)
def res2net50_48w_2s(class_dim=1000, **options):
    return Res2Net(depth=50, width=48, scales=2, class_dim=class_dim, **options)


@register_model("Res2Net50_26w_4s", meta=RES2NET_META)
def res2net50_26w_4s(class_dim=1000, **options):
    return Res2Net(depth=50, width=26, scales=4, class_dim=class_dim, **options)


@register_model("Res2Net50_14w_8s", meta=RES2NET_META)
def res2net50_14w_8s(class_dim=1000, **options):
    return Res2Net(depth=50, width=14, scales=8, class_dim=class_dim, **options)


@register_model("Res2Net50_26w_6s", meta=RES2NET_META)
def res2net50_26w_6s(class_dim=1000, **options):
    return Res2Net(depth=50, width=26, scales=6, class_dim=class_dim, **options)


@register_model("Res2Net50_26w_8s", meta=RES2NET_META)
def res2net50_26w_8s(class_dim=1000, **options):
    return Res2Net(depth=50, width=26, scales=8, class_dim=class_dim, **options)


@register_model("Res2Net101_26w_4s", meta=RES2NET_META)
def res2net101_26w_4s(class_dim=1000, **options):
    return Res2Net(depth=101, width=26, scales=4, class_dim=class_dim, **options)


@register_model("Res2Net152_26w_4s", meta=RES2NET_META)
def res2net152_26w_4s(class_dim=1000, **options):
    return Res2Net(depth=152, width=26, scales=4, class_dim=class_dim, **options)


@register_model("Res2Net50_vd_48w_2s", meta=RES2NET_VD_META)
def res2net50_vd_48w_2s(class_dim=1000, **options):
    return Res2Net(depth=50, width=48, scales=2, vd=True, class_dim=class_dim, **options)


@register_model("Res2Net50_vd_26w_4s", meta=RES2NET_VD_META)
def res2net50_vd_26w_4s(class_dim=1000, **options):
    return Res2Net(depth=50, width=26, scales=4, vd=True, class_dim=class_dim, **options)


@register_model("Res2Net50_vd_14w_8s", meta=RES2NET_VD_META)
def res2net50_vd_14w_8s(class_dim=1000, **options):
    return Res2Net(depth=50, width=14, scales=8, vd=True, class_dim=class_dim, **options)


@register_model("Res2Net50_vd_26w_6s", meta=RES2NET_VD_META)
def res2net50_vd_26w_6s(class_dim=1000, **options):
    return Res2Net(depth=50, width=26, scales=6, vd=True, class_dim=class_dim, **options)


@register_model("Res2Net50_vd_26w_8s", meta=RES2NET_VD_META)
def res2net50_vd_26w_8s(class_dim=1000, **options):
    return Res2Net(depth=50, width=26, scales=8, vd=True, class_dim=class_dim, **options)


@register_model("Res2Net101_vd_26w_4s", meta=RES2NET_VD_META)
def res2net101_vd_26w_4s(class_dim=1000, **options):
    return Res2Net(depth=101, width=26, scales=4, vd=True, class_dim=class_dim, **options)


@register_model("Res2Net152_vd_26w_4s", meta=RES2NET_VD_META)
def res2net152_vd_26w_4s(class_dim=1000, **options):
    return Res2Net(depth=152, width=26, scales=4, vd=True, class_dim=class_dim, **options)


@register_model("Res2Net200_vd_26w_4s", meta=RES2NET_VD_META)
def res2net200_vd_26w_4s(class_dim=1000, **options):
    return Res2Net(depth=200, width=26, scales=4, vd=True, class_dim=class_dim, **options)
