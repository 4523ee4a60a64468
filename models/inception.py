"""Inception-v3 (Szegedy et al., "Rethinking the Inception Architecture for Computer Vision") and
Inception-v4 (Szegedy et al., "Inception-v4, Inception-ResNet and the Impact of Residual Connections").

Both are stacks of multi-branch modules whose branch outputs are concatenated; every convolution is
conv (no bias) -> BatchNorm -> ReLU. "valid" convs and pools (no padding) shrink the map as in the papers;
factorised 1xn / nx1 convs pad only along their long side.

As in the classic suite, whose published weights these layouts load: global average pool, then dropout 0.2
in "downscale_in_infer" mode (eval scales features by 0.8, the training-time keep rate), then the
classifier. Inception-v3's pooling branches average with the zero padding counted (``exclusive=False``).

State_dict keys (published PaddleClas weights):
- InceptionV3: ``inception_stem.conv_<id>`` and ``inception_block_list.<i>.branch*`` units, each
  ``.conv`` / ``.bn``; classifier ``fc``.
- InceptionV4: ``_inception_stem``, ``_inceptionA_1..4``, ``_reductionA``, ``_inceptionB_1..7``,
  ``_reductionB``, ``_inceptionC_1..3``, units ``_conv*`` each ``._conv`` / ``._batch_norm``; classifier
  ``out``.
"""
from __future__ import annotations

from typing import Union

import paddle
from paddle import nn

from models.base import ClassifierNet
from models.registry import ModelMeta, register_model

Kernel = Union[int, tuple[int, int]]

# InceptionV3 modules in order: (kind, argument). A: pool-branch width; C: 7x7 branch width (c7).
INCEPTION_V3_CONFIG: list[tuple[str, int | None]] = [
    ("A", 32), ("A", 64), ("A", 64),
    ("B", None),
    ("C", 128), ("C", 160), ("C", 160), ("C", 192),
    ("D", None),
    ("E", None), ("E", None),
]
# InceptionV4 module counts (paper figure 9): 4 x A, reduction A, 7 x B, reduction B, 3 x C.
INCEPTION_V4_CONFIG = {"A": 4, "B": 7, "C": 3}

DROPOUT = 0.2
INCEPTION_META = ModelMeta(input_size=299, resize_short=320, family="Inception")


def _pair(kernel: Kernel) -> tuple[int, int]:
    return (kernel, kernel) if isinstance(kernel, int) else kernel


def _same_padding(kernel: Kernel) -> tuple[int, int]:
    kh, kw = _pair(kernel)
    return (kh - 1) // 2, (kw - 1) // 2


def _classifier_attr(fan_in: int) -> paddle.ParamAttr:
    bound = 1.0 / fan_in**0.5
    return paddle.ParamAttr(initializer=nn.initializer.Uniform(-bound, bound))


class ConvBNReLU(nn.Layer):
    """conv (no bias) -> BatchNorm -> ReLU with keys ``conv`` / ``bn`` (InceptionV3's layout).
    ``valid=True`` drops the padding (the papers' "V" convs)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: Kernel, stride: int = 1,
                 valid: bool = False):
        super().__init__()
        padding = 0 if valid else _same_padding(kernel)
        self.conv = nn.Conv2D(in_channels, out_channels, kernel, stride=stride, padding=padding,
                              bias_attr=False)
        self.bn = nn.BatchNorm2D(out_channels)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return nn.functional.relu(self.bn(self.conv(x)))


class ConvBNReLUV4(nn.Layer):
    """The same unit with keys ``_conv`` / ``_batch_norm`` (InceptionV4's layout)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: Kernel, stride: int = 1,
                 valid: bool = False):
        super().__init__()
        padding = 0 if valid else _same_padding(kernel)
        self._conv = nn.Conv2D(in_channels, out_channels, kernel, stride=stride, padding=padding,
                               bias_attr=False)
        self._batch_norm = nn.BatchNorm2D(out_channels)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return nn.functional.relu(self._batch_norm(self._conv(x)))


def _v3_avg_pool() -> nn.AvgPool2D:
    return nn.AvgPool2D(3, stride=1, padding=1, exclusive=False)


# ---------------------------------------------------------------- Inception-v3 modules


class InceptionV3Stem(nn.Layer):
    """299 -> 35x35x192: three 3x3 convs, max pool, 1x1 and 3x3 convs, max pool."""

    out_channels = 192

    def __init__(self):
        super().__init__()
        self.conv_1a_3x3 = ConvBNReLU(3, 32, 3, stride=2, valid=True)
        self.conv_2a_3x3 = ConvBNReLU(32, 32, 3, valid=True)
        self.conv_2b_3x3 = ConvBNReLU(32, 64, 3)
        self.max_pool = nn.MaxPool2D(3, stride=2)
        self.conv_3b_1x1 = ConvBNReLU(64, 80, 1)
        self.conv_4a_3x3 = ConvBNReLU(80, 192, 3, valid=True)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self.max_pool(self.conv_2b_3x3(self.conv_2a_3x3(self.conv_1a_3x3(x))))
        return self.max_pool(self.conv_4a_3x3(self.conv_3b_1x1(x)))


class InceptionV3A(nn.Layer):
    """35x35 module: 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | avg pool-1x1."""

    def __init__(self, in_channels: int, pool_features: int):
        super().__init__()
        self.branch1x1 = ConvBNReLU(in_channels, 64, 1)
        self.branch5x5_1 = ConvBNReLU(in_channels, 48, 1)
        self.branch5x5_2 = ConvBNReLU(48, 64, 5)
        self.branch3x3dbl_1 = ConvBNReLU(in_channels, 64, 1)
        self.branch3x3dbl_2 = ConvBNReLU(64, 96, 3)
        self.branch3x3dbl_3 = ConvBNReLU(96, 96, 3)
        self.branch_pool = _v3_avg_pool()
        self.branch_pool_conv = ConvBNReLU(in_channels, pool_features, 1)
        self.out_channels = 64 + 64 + 96 + pool_features

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return paddle.concat([
            self.branch1x1(x),
            self.branch5x5_2(self.branch5x5_1(x)),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            self.branch_pool_conv(self.branch_pool(x)),
        ], axis=1)


class InceptionV3B(nn.Layer):
    """35 -> 17 reduction: 3x3/2 | 1x1-3x3-3x3/2 | max pool/2."""

    def __init__(self, in_channels: int):
        super().__init__()
        self.branch3x3 = ConvBNReLU(in_channels, 384, 3, stride=2, valid=True)
        self.branch3x3dbl_1 = ConvBNReLU(in_channels, 64, 1)
        self.branch3x3dbl_2 = ConvBNReLU(64, 96, 3)
        self.branch3x3dbl_3 = ConvBNReLU(96, 96, 3, stride=2, valid=True)
        self.branch_pool = nn.MaxPool2D(3, stride=2)
        self.out_channels = 384 + 96 + in_channels

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return paddle.concat([
            self.branch3x3(x),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            self.branch_pool(x),
        ], axis=1)


class InceptionV3C(nn.Layer):
    """17x17 module with factorised 7x7 convs: 1x1 | 1x1-1x7-7x1 | 1x1-7x1-1x7-7x1-1x7 | avg pool-1x1."""

    def __init__(self, in_channels: int, c7: int):
        super().__init__()
        self.branch1x1 = ConvBNReLU(in_channels, 192, 1)
        self.branch7x7_1 = ConvBNReLU(in_channels, c7, 1)
        self.branch7x7_2 = ConvBNReLU(c7, c7, (1, 7))
        self.branch7x7_3 = ConvBNReLU(c7, 192, (7, 1))
        self.branch7x7dbl_1 = ConvBNReLU(in_channels, c7, 1)
        self.branch7x7dbl_2 = ConvBNReLU(c7, c7, (7, 1))
        self.branch7x7dbl_3 = ConvBNReLU(c7, c7, (1, 7))
        self.branch7x7dbl_4 = ConvBNReLU(c7, c7, (7, 1))
        self.branch7x7dbl_5 = ConvBNReLU(c7, 192, (1, 7))
        self.branch_pool = _v3_avg_pool()
        self.branch_pool_conv = ConvBNReLU(in_channels, 192, 1)
        self.out_channels = 4 * 192

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        double = x
        for unit in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4,
                     self.branch7x7dbl_5):
            double = unit(double)
        return paddle.concat([
            self.branch1x1(x),
            self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x))),
            double,
            self.branch_pool_conv(self.branch_pool(x)),
        ], axis=1)


class InceptionV3D(nn.Layer):
    """17 -> 8 reduction: 1x1-3x3/2 | 1x1-1x7-7x1-3x3/2 | max pool/2."""

    def __init__(self, in_channels: int):
        super().__init__()
        self.branch3x3_1 = ConvBNReLU(in_channels, 192, 1)
        self.branch3x3_2 = ConvBNReLU(192, 320, 3, stride=2, valid=True)
        self.branch7x7x3_1 = ConvBNReLU(in_channels, 192, 1)
        self.branch7x7x3_2 = ConvBNReLU(192, 192, (1, 7))
        self.branch7x7x3_3 = ConvBNReLU(192, 192, (7, 1))
        self.branch7x7x3_4 = ConvBNReLU(192, 192, 3, stride=2, valid=True)
        self.branch_pool = nn.MaxPool2D(3, stride=2)
        self.out_channels = 320 + 192 + in_channels

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        seven = self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x)))
        return paddle.concat([
            self.branch3x3_2(self.branch3x3_1(x)),
            self.branch7x7x3_4(seven),
            self.branch_pool(x),
        ], axis=1)


class InceptionV3E(nn.Layer):
    """8x8 module with expanded (split 1x3 / 3x1) outputs: 1x1 | 1x1-{1x3,3x1} | 1x1-3x3-{1x3,3x1} |
    avg pool-1x1."""

    def __init__(self, in_channels: int):
        super().__init__()
        self.branch1x1 = ConvBNReLU(in_channels, 320, 1)
        self.branch3x3_1 = ConvBNReLU(in_channels, 384, 1)
        self.branch3x3_2a = ConvBNReLU(384, 384, (1, 3))
        self.branch3x3_2b = ConvBNReLU(384, 384, (3, 1))
        self.branch3x3dbl_1 = ConvBNReLU(in_channels, 448, 1)
        self.branch3x3dbl_2 = ConvBNReLU(448, 384, 3)
        self.branch3x3dbl_3a = ConvBNReLU(384, 384, (1, 3))
        self.branch3x3dbl_3b = ConvBNReLU(384, 384, (3, 1))
        self.branch_pool = _v3_avg_pool()
        self.branch_pool_conv = ConvBNReLU(in_channels, 192, 1)
        self.out_channels = 320 + 2 * 384 + 2 * 384 + 192

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        single = self.branch3x3_1(x)
        double = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        return paddle.concat([
            self.branch1x1(x),
            self.branch3x3_2a(single), self.branch3x3_2b(single),
            self.branch3x3dbl_3a(double), self.branch3x3dbl_3b(double),
            self.branch_pool_conv(self.branch_pool(x)),
        ], axis=1)


V3_MODULES = {"A": InceptionV3A, "B": InceptionV3B, "C": InceptionV3C, "D": InceptionV3D, "E": InceptionV3E}


class InceptionV3(ClassifierNet):
    classifier_names = ("fc",)

    def __init__(self, class_dim: int = 1000, dropout: float = DROPOUT):
        super().__init__()
        self.inception_stem = InceptionV3Stem()
        channels, modules = InceptionV3Stem.out_channels, []
        for kind, argument in INCEPTION_V3_CONFIG:
            module = V3_MODULES[kind](channels) if argument is None else V3_MODULES[kind](channels, argument)
            modules.append(module)
            channels = module.out_channels
        self.inception_block_list = nn.Sequential(*modules)
        self.num_features = channels
        self.avg_pool = nn.AdaptiveAvgPool2D(1)
        self.dropout = nn.Dropout(dropout, mode="downscale_in_infer")
        self.fc = nn.Linear(channels, class_dim, weight_attr=_classifier_attr(channels))

    def forward_features(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.inception_block_list(self.inception_stem(x))

    def forward_head(self, features: paddle.Tensor) -> paddle.Tensor:
        return self.fc(self.dropout(paddle.flatten(self.avg_pool(features), 1)))


# ---------------------------------------------------------------- Inception-v4 modules


class InceptionV4Stem(nn.Layer):
    """299 -> 35x35x384 (paper figure 3); each split is concatenated."""

    out_channels = 384

    def __init__(self):
        super().__init__()
        self._conv_1 = ConvBNReLUV4(3, 32, 3, stride=2, valid=True)
        self._conv_2 = ConvBNReLUV4(32, 32, 3, valid=True)
        self._conv_3 = ConvBNReLUV4(32, 64, 3)
        self._pool = nn.MaxPool2D(3, stride=2)
        self._conv2 = ConvBNReLUV4(64, 96, 3, stride=2, valid=True)
        self._conv1_1 = ConvBNReLUV4(160, 64, 1)
        self._conv1_2 = ConvBNReLUV4(64, 96, 3, valid=True)
        self._conv2_1 = ConvBNReLUV4(160, 64, 1)
        self._conv2_2 = ConvBNReLUV4(64, 64, (7, 1))
        self._conv2_3 = ConvBNReLUV4(64, 64, (1, 7))
        self._conv2_4 = ConvBNReLUV4(64, 96, 3, valid=True)
        self._conv3 = ConvBNReLUV4(192, 192, 3, stride=2, valid=True)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self._conv_3(self._conv_2(self._conv_1(x)))
        x = paddle.concat([self._pool(x), self._conv2(x)], axis=1)
        factorised = self._conv2_4(self._conv2_3(self._conv2_2(self._conv2_1(x))))
        x = paddle.concat([self._conv1_2(self._conv1_1(x)), factorised], axis=1)
        return paddle.concat([self._conv3(x), self._pool(x)], axis=1)


class InceptionV4A(nn.Layer):
    """35x35 module (figure 4): avg pool-1x1 | 1x1 | 1x1-3x3 | 1x1-3x3-3x3."""

    out_channels = 384

    def __init__(self, in_channels: int = 384):
        super().__init__()
        self._pool = nn.AvgPool2D(3, stride=1, padding=1)
        self._conv1 = ConvBNReLUV4(in_channels, 96, 1)
        self._conv2 = ConvBNReLUV4(in_channels, 96, 1)
        self._conv3_1 = ConvBNReLUV4(in_channels, 64, 1)
        self._conv3_2 = ConvBNReLUV4(64, 96, 3)
        self._conv4_1 = ConvBNReLUV4(in_channels, 64, 1)
        self._conv4_2 = ConvBNReLUV4(64, 96, 3)
        self._conv4_3 = ConvBNReLUV4(96, 96, 3)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return paddle.concat([
            self._conv1(self._pool(x)),
            self._conv2(x),
            self._conv3_2(self._conv3_1(x)),
            self._conv4_3(self._conv4_2(self._conv4_1(x))),
        ], axis=1)


class ReductionA(nn.Layer):
    """35 -> 17 (figure 7, k=192 l=224 m=256 n=384): max pool/2 | 3x3/2 | 1x1-3x3-3x3/2."""

    out_channels = 1024

    def __init__(self, in_channels: int = 384):
        super().__init__()
        self._pool = nn.MaxPool2D(3, stride=2)
        self._conv2 = ConvBNReLUV4(in_channels, 384, 3, stride=2, valid=True)
        self._conv3_1 = ConvBNReLUV4(in_channels, 192, 1)
        self._conv3_2 = ConvBNReLUV4(192, 224, 3)
        self._conv3_3 = ConvBNReLUV4(224, 256, 3, stride=2, valid=True)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return paddle.concat([
            self._pool(x),
            self._conv2(x),
            self._conv3_3(self._conv3_2(self._conv3_1(x))),
        ], axis=1)


class InceptionV4B(nn.Layer):
    """17x17 module (figure 5): avg pool-1x1 | 1x1 | 1x1-1x7-7x1 | 1x1-1x7-7x1-1x7-7x1."""

    out_channels = 1024

    def __init__(self, in_channels: int = 1024):
        super().__init__()
        self._pool = nn.AvgPool2D(3, stride=1, padding=1)
        self._conv1 = ConvBNReLUV4(in_channels, 128, 1)
        self._conv2 = ConvBNReLUV4(in_channels, 384, 1)
        self._conv3_1 = ConvBNReLUV4(in_channels, 192, 1)
        self._conv3_2 = ConvBNReLUV4(192, 224, (1, 7))
        self._conv3_3 = ConvBNReLUV4(224, 256, (7, 1))
        self._conv4_1 = ConvBNReLUV4(in_channels, 192, 1)
        self._conv4_2 = ConvBNReLUV4(192, 192, (1, 7))
        self._conv4_3 = ConvBNReLUV4(192, 224, (7, 1))
        self._conv4_4 = ConvBNReLUV4(224, 224, (1, 7))
        self._conv4_5 = ConvBNReLUV4(224, 256, (7, 1))

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        double = x
        for unit in (self._conv4_1, self._conv4_2, self._conv4_3, self._conv4_4, self._conv4_5):
            double = unit(double)
        return paddle.concat([
            self._conv1(self._pool(x)),
            self._conv2(x),
            self._conv3_3(self._conv3_2(self._conv3_1(x))),
            double,
        ], axis=1)


class ReductionB(nn.Layer):
    """17 -> 8 (figure 8): max pool/2 | 1x1-3x3/2 | 1x1-1x7-7x1-3x3/2."""

    out_channels = 1536

    def __init__(self, in_channels: int = 1024):
        super().__init__()
        self._pool = nn.MaxPool2D(3, stride=2)
        self._conv2_1 = ConvBNReLUV4(in_channels, 192, 1)
        self._conv2_2 = ConvBNReLUV4(192, 192, 3, stride=2, valid=True)
        self._conv3_1 = ConvBNReLUV4(in_channels, 256, 1)
        self._conv3_2 = ConvBNReLUV4(256, 256, (1, 7))
        self._conv3_3 = ConvBNReLUV4(256, 320, (7, 1))
        self._conv3_4 = ConvBNReLUV4(320, 320, 3, stride=2, valid=True)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return paddle.concat([
            self._pool(x),
            self._conv2_2(self._conv2_1(x)),
            self._conv3_4(self._conv3_3(self._conv3_2(self._conv3_1(x)))),
        ], axis=1)


class InceptionV4C(nn.Layer):
    """8x8 module (figure 6): avg pool-1x1 | 1x1 | 1x1-{1x3,3x1} | 1x1-1x3-3x1-{1x3,3x1}."""

    out_channels = 1536

    def __init__(self, in_channels: int = 1536):
        super().__init__()
        self._pool = nn.AvgPool2D(3, stride=1, padding=1)
        self._conv1 = ConvBNReLUV4(in_channels, 256, 1)
        self._conv2 = ConvBNReLUV4(in_channels, 256, 1)
        self._conv3_0 = ConvBNReLUV4(in_channels, 384, 1)
        self._conv3_1 = ConvBNReLUV4(384, 256, (1, 3))
        self._conv3_2 = ConvBNReLUV4(384, 256, (3, 1))
        self._conv4_0 = ConvBNReLUV4(in_channels, 384, 1)
        self._conv4_00 = ConvBNReLUV4(384, 448, (1, 3))
        self._conv4_000 = ConvBNReLUV4(448, 512, (3, 1))
        self._conv4_1 = ConvBNReLUV4(512, 256, (1, 3))
        self._conv4_2 = ConvBNReLUV4(512, 256, (3, 1))

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        single = self._conv3_0(x)
        double = self._conv4_000(self._conv4_00(self._conv4_0(x)))
        return paddle.concat([
            self._conv1(self._pool(x)),
            self._conv2(x),
            self._conv3_1(single), self._conv3_2(single),
            self._conv4_1(double), self._conv4_2(double),
        ], axis=1)


class InceptionV4(ClassifierNet):
    classifier_names = ("out",)

    def __init__(self, class_dim: int = 1000, dropout: float = DROPOUT):
        super().__init__()
        self._inception_stem = InceptionV4Stem()
        stages = [self._inception_stem]
        for kind, module, reduction in (("A", InceptionV4A, ReductionA), ("B", InceptionV4B, ReductionB),
                                        ("C", InceptionV4C, None)):
            for index in range(INCEPTION_V4_CONFIG[kind]):
                stages.append(self._add(f"_inception{kind}_{index + 1}", module()))
            if reduction is not None:
                stages.append(self._add(f"_reduction{kind}", reduction()))
        self._stages = stages  # plain list: each stage is registered under its published name
        channels = InceptionV4C.out_channels
        self.num_features = channels
        self.avg_pool = nn.AdaptiveAvgPool2D(1)
        self._drop = nn.Dropout(dropout, mode="downscale_in_infer")
        self.out = nn.Linear(channels, class_dim, weight_attr=_classifier_attr(channels))

    def _add(self, name: str, layer: nn.Layer) -> nn.Layer:
        self.add_sublayer(name, layer)
        return layer

    def forward_features(self, x: paddle.Tensor) -> paddle.Tensor:
        for stage in self._stages:
            x = stage(x)
        return x

    def forward_head(self, features: paddle.Tensor) -> paddle.Tensor:
        return self.out(self._drop(paddle.flatten(self.avg_pool(features), 1)))


def _check_options(family: str, options: dict) -> None:
    unknown = set(options) - {"dropout"}
    if unknown:
        raise TypeError(f"{family} got unknown option(s): {', '.join(sorted(unknown))}")


@register_model("InceptionV3", meta=INCEPTION_META.updated(classifier=("fc",), min_input_size=75))
def inception_v3(class_dim: int = 1000, **options) -> InceptionV3:
    _check_options("InceptionV3", options)
    return InceptionV3(class_dim, **options)


@register_model("InceptionV4", meta=INCEPTION_META.updated(classifier=("out",), min_input_size=75))
def inception_v4(class_dim: int = 1000, **options) -> InceptionV4:
    _check_options("InceptionV4", options)
    return InceptionV4(class_dim, **options)
