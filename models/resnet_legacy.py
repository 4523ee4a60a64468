"""Legacy-named ResNet relatives: the "conv1_1 / bb_x_y / out" key pattern of the classic suite.

One generic network, :class:`LegacyResNet`, covers ResNet*_vc, ResNeXt*, ResNeXt*_vd, SE_ResNet*_vd,
SE_ResNeXt* and SENet154_vd; they differ only in stem, block type, cardinality, shortcut style and
squeeze-excite. State_dict keys follow the published PaddleClas weights:

- stem: ``conv`` (one 7x7) or ``conv1_1``..``conv1_3`` (three 3x3, "Bag of Tricks" ResNet-C);
- block ``bb_<stage>_<index>`` with ``conv0``, ``conv1`` [, ``conv2``] [, ``scale``] [, ``short``];
  each conv is ``<name>._conv`` + ``<name>._batch_norm``; ``scale`` holds ``squeeze``/``excitation``;
- classifier ``out`` (Linear).

This module also registers ResNet50/101/152_vc (three-conv stem, plain strided 1x1 shortcut).
"""
from __future__ import annotations

import math

import paddle
from paddle import nn

from models.base import ClassifierNet
from models.registry import ModelMeta, register_model

STAGE_DEPTHS: dict[int, tuple[int, int, int, int]] = {
    18: (2, 2, 2, 2),
    34: (3, 4, 6, 3),
    50: (3, 4, 6, 3),
    101: (3, 4, 23, 3),
    152: (3, 8, 36, 3),
    200: (3, 12, 48, 3),
}
BASIC_BLOCK_DEPTHS = (18, 34)


def stage_depths(depth: int) -> tuple[int, int, int, int]:
    if depth not in STAGE_DEPTHS:
        raise ValueError(f"unsupported depth {depth}; choose one of {sorted(STAGE_DEPTHS)}")
    return STAGE_DEPTHS[depth]


def _uniform_fan_in(fan_in: int) -> paddle.ParamAttr:
    # The classic suite initialises fully connected layers with U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    bound = 1.0 / math.sqrt(fan_in)
    return paddle.ParamAttr(initializer=nn.initializer.Uniform(-bound, bound))


class ConvBNLayer(nn.Layer):
    """Conv (no bias) + BatchNorm + optional ReLU; ``avg_down`` prepends a 2x2 average pool (vd shortcut)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 groups: int = 1, act: bool = True, avg_down: bool = False):
        super().__init__()
        # vd shortcut: downsample by averaging, so the 1x1 conv sees every input pixel (ceil keeps odd sizes).
        self.avg_pool = nn.AvgPool2D(2, stride=2, ceil_mode=True) if avg_down else None
        self._conv = nn.Conv2D(in_channels, out_channels, kernel_size, stride=1 if avg_down else stride,
                               padding=(kernel_size - 1) // 2, groups=groups, bias_attr=False)
        self._batch_norm = nn.BatchNorm2D(out_channels)
        self.act = nn.ReLU() if act else None

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        if self.avg_pool is not None:
            x = self.avg_pool(x)
        x = self._batch_norm(self._conv(x))
        return self.act(x) if self.act is not None else x


class SqueezeExcite(nn.Layer):
    """Squeeze-and-Excitation: global pool -> FC (C/r) ReLU -> FC (C) sigmoid -> channel-wise rescale."""

    def __init__(self, channels: int, reduction: int):
        super().__init__()
        hidden = channels // reduction
        self.pool = nn.AdaptiveAvgPool2D(1)
        self.squeeze = nn.Linear(channels, hidden, weight_attr=_uniform_fan_in(channels))
        self.excitation = nn.Linear(hidden, channels, weight_attr=_uniform_fan_in(hidden))

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        weights = self.pool(x).flatten(1)
        weights = nn.functional.relu(self.squeeze(weights))
        weights = nn.functional.sigmoid(self.excitation(weights))
        return x * weights.unsqueeze([2, 3])


def _shortcut(in_channels: int, out_channels: int, stride: int, avg_down: bool) -> ConvBNLayer:
    return ConvBNLayer(in_channels, out_channels, 1, stride=stride, act=False,
                       avg_down=avg_down and stride > 1)


class BottleneckBlock(nn.Layer):
    """1x1 reduce -> 3x3 (grouped for ResNeXt, carries the stride) -> 1x1 expand [-> SE] + shortcut."""

    def __init__(self, in_channels: int, width: int, out_channels: int, stride: int, cardinality: int,
                 project: bool, avg_down: bool, se_reduction: int | None):
        super().__init__()
        self.conv0 = ConvBNLayer(in_channels, width, 1)
        self.conv1 = ConvBNLayer(width, width, 3, stride=stride, groups=cardinality)
        self.conv2 = ConvBNLayer(width, out_channels, 1, act=False)
        self.scale = SqueezeExcite(out_channels, se_reduction) if se_reduction else None
        self.short = _shortcut(in_channels, out_channels, stride, avg_down) if project else None

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        y = self.conv2(self.conv1(self.conv0(x)))
        if self.scale is not None:
            y = self.scale(y)
        identity = self.short(x) if self.short is not None else x
        return nn.functional.relu(y + identity)


class BasicBlock(nn.Layer):
    """3x3 (carries the stride) -> 3x3 [-> SE] + shortcut."""

    def __init__(self, in_channels: int, width: int, out_channels: int, stride: int, cardinality: int,
                 project: bool, avg_down: bool, se_reduction: int | None):
        super().__init__()
        if cardinality != 1:
            raise ValueError("basic blocks are not grouped; use a bottleneck depth for ResNeXt")
        self.conv0 = ConvBNLayer(in_channels, out_channels, 3, stride=stride)
        self.conv1 = ConvBNLayer(out_channels, out_channels, 3, act=False)
        self.scale = SqueezeExcite(out_channels, se_reduction) if se_reduction else None
        self.short = _shortcut(in_channels, out_channels, stride, avg_down) if project else None

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        y = self.conv1(self.conv0(x))
        if self.scale is not None:
            y = self.scale(y)
        identity = self.short(x) if self.short is not None else x
        return nn.functional.relu(y + identity)


class LegacyResNet(ClassifierNet):
    """ResNet / ResNeXt / SE-ResNe(X)t with the classic suite's parameter names.

    Args:
        depth: 18, 34 (basic blocks) or 50, 101, 152, 200 (bottlenecks).
        cardinality: groups of the 3x3 conv (1 = plain ResNet).
        group_width: channels per group in the first stage; the inner width doubles every stage.
        deep_stem: three-conv stem widths (``conv1_1..3``), or None for the single 7x7 ``conv``.
        avg_down: vd shortcut (2x2 average pool before the 1x1 projection) instead of a strided 1x1.
        se_reduction: squeeze-excite reduction ratio, or None for no SE.
        dropout: drop probability before the classifier (training only).
    """

    classifier_names = ("out",)

    def __init__(self, depth: int, cardinality: int = 1, group_width: int = 64,
                 deep_stem: tuple[int, int, int] | None = None, avg_down: bool = False,
                 se_reduction: int | None = None, dropout: float = 0.0, class_dim: int = 1000):
        super().__init__()
        if deep_stem is None:
            self.conv = ConvBNLayer(3, 64, 7, stride=2)
            stem_channels = 64
        else:
            # "Bag of Tricks" ResNet-C stem: three 3x3 convs (the first strided) replace the 7x7.
            self.conv1_1 = ConvBNLayer(3, deep_stem[0], 3, stride=2)
            self.conv1_2 = ConvBNLayer(deep_stem[0], deep_stem[1], 3)
            self.conv1_3 = ConvBNLayer(deep_stem[1], deep_stem[2], 3)
            stem_channels = deep_stem[2]
        self.uses_deep_stem = deep_stem is not None
        self.pool = nn.MaxPool2D(3, stride=2, padding=1)
        self.block_names, self.num_features = self._build_stages(
            depth, stem_channels, cardinality, group_width, avg_down, se_reduction)
        self.global_pool = nn.AdaptiveAvgPool2D(1)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else None
        self.out = nn.Linear(self.num_features, class_dim, weight_attr=_uniform_fan_in(self.num_features))

    def _build_stages(self, depth: int, in_channels: int, cardinality: int, group_width: int,
                      avg_down: bool, se_reduction: int | None) -> tuple[list[str], int]:
        """Adds the ``bb_<stage>_<index>`` blocks; returns their names and the final channel count."""
        basic = depth in BASIC_BLOCK_DEPTHS
        block_cls = BasicBlock if basic else BottleneckBlock
        names = []
        for stage, count in enumerate(stage_depths(depth)):
            width = cardinality * group_width * 2**stage
            out_channels = (64 if basic else 256) * 2**stage
            for index in range(count):
                stride = 2 if index == 0 and stage > 0 else 1
                # The classic suite projects the shortcut of every stage's first block, even when the
                # shapes already match (SE_ResNet18/34_vd bb_0_0), so the published weights include it.
                block = block_cls(in_channels, width, out_channels, stride, cardinality,
                                  project=index == 0, avg_down=avg_down, se_reduction=se_reduction)
                name = f"bb_{stage}_{index}"
                self.add_sublayer(name, block)
                names.append(name)
                in_channels = out_channels
        return names, in_channels

    def forward_features(self, x: paddle.Tensor) -> paddle.Tensor:
        if self.uses_deep_stem:
            x = self.conv1_3(self.conv1_2(self.conv1_1(x)))
        else:
            x = self.conv(x)
        x = self.pool(x)
        for name in self.block_names:
            x = getattr(self, name)(x)
        return x

    def forward_head(self, features: paddle.Tensor) -> paddle.Tensor:
        x = self.global_pool(features).flatten(1)
        if self.dropout is not None:
            x = self.dropout(x)
        return self.out(x)


# ---- ResNet*_vc: three-conv stem (32, 32, 64), plain strided 1x1 shortcut. ----

VC_STEM = (32, 32, 64)
RESNET_VC_META = ModelMeta(classifier=("out",), family="ResNet_vc")


def resnet_vc(depth: int, class_dim: int = 1000, **options) -> LegacyResNet:
    return LegacyResNet(depth=depth, deep_stem=VC_STEM, class_dim=class_dim, **options)


@register_model("ResNet50_vc", meta=RESNET_VC_META)
def resnet50_vc(class_dim=1000, **options):
    return resnet_vc(50, class_dim=class_dim, **options)


@register_model("ResNet101_vc", meta=RESNET_VC_META)
def resnet101_vc(class_dim=1000, **options):
    return resnet_vc(101, class_dim=class_dim, **options)


@register_model("ResNet152_vc", meta=RESNET_VC_META)
def resnet152_vc(class_dim=1000, **options):
    return resnet_vc(152, class_dim=class_dim, **options)
