"""Xception (Chollet, "Xception: Deep Learning with Depthwise Separable Convolutions") in two layouts.

Xception41/65/71 (the classic suite's): entry flow (two 3x3 convs, then residual blocks of two separable
convs + a 3x3/stride max pool, with a strided 1x1 conv shortcut), middle flow (residual blocks of three
ReLU-separable conv units, identity shortcut), exit flow (one more pooling block, two separable convs,
global pool, classifier). Here a separable conv is pointwise 1x1 + BN, then depthwise 3x3 + BN, with no
activation inside (ReLUs sit between the units), as in the classic suite. 41/65/71 differ in the number
of entry blocks (3, 3, 5) and middle blocks (8, 16, 16).

Xception*_deeplab (the "aligned" Xception of DeepLabv3+, Chen et al. 2018): every max pool is replaced by
a strided depthwise conv; each block is three separable units (depthwise 3x3 + BN, pointwise 1x1 + BN),
each preceded by a ReLU, plus a 1x1 conv + BN shortcut (entry, exit block 1), an identity shortcut
(middle) or none (exit block 2, which puts its ReLUs inside the separable units). BatchNorm uses
epsilon 1e-3. As in the classic suite, whose published weights this layout loads: exit block 2 uses
dilation 2, and the head is dropout 0.5 ("downscale_in_infer") -> global pool -> classifier.

State_dict keys (published PaddleClas weights):
- classic: ``_entry_flow`` (``_conv1``, ``_conv2``, ``_conv_<i>`` with ``_short``, ``_conv1``, ``_conv2``),
  ``_middle_flow._conv_<i>._conv_<0..2>``, ``_exit_flow`` (``_conv_0`` with ``_short``, ``_conv_1``,
  ``_conv_2``; then ``_conv_1``, ``_conv_2``, classifier ``_out``); separable units hold
  ``_pointwise_conv`` / ``_depthwise_conv``, each ``._conv`` / ``._batch_norm``.
- deeplab: ``_conv1``, ``_conv2`` (``._conv`` / ``._bn``), ``xception_<d>/entry_flow/block<i>``,
  ``xception_<d>/middle_flow/block<i>``, ``_exit_flow_1``, ``_exit_flow_2`` (units ``_conv1..3`` with
  ``_conv1``/``_bn1`` depthwise and ``_conv2``/``_bn2`` pointwise, then ``_short``), classifier ``_fc``.
"""
from __future__ import annotations

from dataclasses import dataclass

import paddle
from paddle import nn

from models.base import ClassifierNet
from models.registry import ModelMeta, register_model

ENTRY_STEM = (32, 64)  # the two 3x3 convs (the first strided)
MIDDLE_CHANNELS = 728


@dataclass(frozen=True)
class XceptionConfig:
    entry_blocks: tuple[tuple[int, int], ...]  # (out channels, stride) per entry-flow block
    middle_blocks: int


# The paper's Xception is 41 here (3 entry, 8 middle blocks); 65 and 71 are DeepLab's deeper variants.
NET_CONFIG: dict[int, XceptionConfig] = {
    41: XceptionConfig(((128, 2), (256, 2), (728, 2)), 8),
    65: XceptionConfig(((128, 2), (256, 2), (728, 2)), 16),
    71: XceptionConfig(((128, 2), (256, 1), (256, 2), (728, 1), (728, 2)), 16),
}
EXIT_BLOCK = (728, 1024)  # the exit flow's pooling block: separable widths
EXIT_CONVS = (1536, 2048)  # the exit flow's final separable convs

# DeepLab exit flow: block 1 (strided, conv shortcut), block 2 (no shortcut, dilated, ReLU inside).
DEEPLAB_EXIT_1 = (728, 1024, 1024)
DEEPLAB_EXIT_2 = (1536, 1536, 2048)
DEEPLAB_EXIT_2_DILATION = 2
DEEPLAB_BN = {"epsilon": 1e-3, "momentum": 0.99}
DEEPLAB_DROPOUT = 0.5

XCEPTION_META = ModelMeta(input_size=299, resize_short=320, classifier=("_exit_flow._out",), family="Xception")
XCEPTION_DEEPLAB_META = XCEPTION_META.updated(classifier=("_fc",))


def _classifier_attr(fan_in: int) -> paddle.ParamAttr:
    bound = 1.0 / fan_in**0.5
    return paddle.ParamAttr(initializer=nn.initializer.Uniform(-bound, bound))


# ---------------------------------------------------------------- classic layout


class ConvBN(nn.Layer):
    """conv (no bias, "same" padding) -> BatchNorm -> optional ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 groups: int = 1, act: bool = False):
        super().__init__()
        self._conv = nn.Conv2D(in_channels, out_channels, kernel_size, stride=stride,
                               padding=(kernel_size - 1) // 2, groups=groups, bias_attr=False)
        self._batch_norm = nn.BatchNorm2D(out_channels)
        self.act = act

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self._batch_norm(self._conv(x))
        return nn.functional.relu(x) if self.act else x


class SeparableConv(nn.Layer):
    """Pointwise 1x1 + BN, then depthwise 3x3 + BN (the classic suite's order), no activation."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self._pointwise_conv = ConvBN(in_channels, out_channels, 1)
        self._depthwise_conv = ConvBN(out_channels, out_channels, 3, groups=out_channels)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self._depthwise_conv(self._pointwise_conv(x))


class PoolingBlock(nn.Layer):
    """[ReLU] sep conv, ReLU, sep conv, 3x3 max pool (stride s) + strided 1x1 conv shortcut.

    Entry and exit blocks differ only in their unit names (``_conv1`` vs ``_conv_1``) and in whether the
    input is ReLU'd first (not after the stem, whose last conv already ends in a ReLU)."""

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int, stride: int, relu_first: bool,
                 unit_names: tuple[str, str]):
        super().__init__()
        self._short = nn.Conv2D(in_channels, out_channels, 1, stride=stride, bias_attr=False)
        self.add_sublayer(unit_names[0], SeparableConv(in_channels, mid_channels))
        self.add_sublayer(unit_names[1], SeparableConv(mid_channels, out_channels))
        self._pool = nn.MaxPool2D(3, stride=stride, padding=1)
        self.unit_names = unit_names
        self.relu_first = relu_first

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        first, second = (getattr(self, name) for name in self.unit_names)
        residual = nn.functional.relu(x) if self.relu_first else x
        residual = second(nn.functional.relu(first(residual)))
        return self._short(x) + self._pool(residual)


class MiddleBlock(nn.Layer):
    """x + (ReLU, sep conv) x 3."""

    def __init__(self, channels: int):
        super().__init__()
        self._conv_0 = SeparableConv(channels, channels)
        self._conv_1 = SeparableConv(channels, channels)
        self._conv_2 = SeparableConv(channels, channels)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        residual = x
        for unit in (self._conv_0, self._conv_1, self._conv_2):
            residual = unit(nn.functional.relu(residual))
        return x + residual


class EntryFlow(nn.Layer):
    def __init__(self, blocks: tuple[tuple[int, int], ...]):
        super().__init__()
        self._conv1 = ConvBN(3, ENTRY_STEM[0], 3, stride=2, act=True)
        self._conv2 = ConvBN(ENTRY_STEM[0], ENTRY_STEM[1], 3, act=True)
        channels = ENTRY_STEM[1]
        self._blocks = []
        for index, (out_channels, stride) in enumerate(blocks):
            block = PoolingBlock(channels, out_channels, out_channels, stride, relu_first=index > 0,
                                 unit_names=("_conv1", "_conv2"))
            self._blocks.append(self.add_sublayer(f"_conv_{index}", block))
            channels = out_channels

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self._conv2(self._conv1(x))
        for block in self._blocks:
            x = block(x)
        return x


class MiddleFlow(nn.Sequential):
    def __init__(self, num_blocks: int, channels: int = MIDDLE_CHANNELS):
        super().__init__()
        for index in range(num_blocks):
            self.add_sublayer(f"_conv_{index}", MiddleBlock(channels))


class ExitFlow(nn.Layer):
    """Pooling block, two separable convs (ReLU after each); the classifier ``_out`` lives here too."""

    def __init__(self, in_channels: int, class_dim: int):
        super().__init__()
        self._conv_0 = PoolingBlock(in_channels, EXIT_BLOCK[0], EXIT_BLOCK[1], 2, relu_first=True,
                                    unit_names=("_conv_1", "_conv_2"))
        self._conv_1 = SeparableConv(EXIT_BLOCK[1], EXIT_CONVS[0])
        self._conv_2 = SeparableConv(EXIT_CONVS[0], EXIT_CONVS[1])
        self._pool = nn.AdaptiveAvgPool2D(1)
        self._out = nn.Linear(EXIT_CONVS[1], class_dim, weight_attr=_classifier_attr(EXIT_CONVS[1]))

    def features(self, x: paddle.Tensor) -> paddle.Tensor:
        x = nn.functional.relu(self._conv_1(self._conv_0(x)))
        return nn.functional.relu(self._conv_2(x))

    def head(self, features: paddle.Tensor) -> paddle.Tensor:
        return self._out(paddle.flatten(self._pool(features), 1))


class Xception(ClassifierNet):
    classifier_names = ("_exit_flow._out",)

    def __init__(self, depth: int = 41, class_dim: int = 1000):
        super().__init__()
        if depth not in NET_CONFIG:
            raise ValueError(f"Xception depth {depth} is not one of {sorted(NET_CONFIG)}")
        config = NET_CONFIG[depth]
        self._entry_flow = EntryFlow(config.entry_blocks)
        self._middle_flow = MiddleFlow(config.middle_blocks)
        self._exit_flow = ExitFlow(MIDDLE_CHANNELS, class_dim)
        self.num_features = EXIT_CONVS[1]

    def forward_features(self, x: paddle.Tensor) -> paddle.Tensor:
        return self._exit_flow.features(self._middle_flow(self._entry_flow(x)))

    def forward_head(self, features: paddle.Tensor) -> paddle.Tensor:
        return self._exit_flow.head(features)


# ---------------------------------------------------------------- DeepLab ("aligned") layout


class DeeplabConvBN(nn.Layer):
    """conv (no bias) -> BatchNorm (eps 1e-3) -> optional ReLU, keys ``_conv`` / ``_bn``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 act: bool = False):
        super().__init__()
        self._conv = nn.Conv2D(in_channels, out_channels, kernel_size, stride=stride,
                               padding=(kernel_size - 1) // 2, bias_attr=False)
        self._bn = nn.BatchNorm2D(out_channels, **DEEPLAB_BN)
        self.act = act

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self._bn(self._conv(x))
        return nn.functional.relu(x) if self.act else x


class DeeplabSeparableConv(nn.Layer):
    """Depthwise 3x3 (stride, dilation) + BN, then pointwise 1x1 + BN; ``act`` adds a ReLU after each BN."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, dilation: int = 1,
                 act: bool = False):
        super().__init__()
        self._conv1 = nn.Conv2D(in_channels, in_channels, 3, stride=stride, padding=dilation, dilation=dilation,
                                groups=in_channels, bias_attr=False)
        self._bn1 = nn.BatchNorm2D(in_channels, **DEEPLAB_BN)
        self._conv2 = nn.Conv2D(in_channels, out_channels, 1, bias_attr=False)
        self._bn2 = nn.BatchNorm2D(out_channels, **DEEPLAB_BN)
        self.act = act

    def _activate(self, x: paddle.Tensor) -> paddle.Tensor:
        return nn.functional.relu(x) if self.act else x

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self._activate(self._bn1(self._conv1(x)))
        return self._activate(self._bn2(self._conv2(x)))


class DeeplabBlock(nn.Layer):
    """Three separable units (the last one strided) + shortcut: "conv" (1x1 conv + BN), "sum" (identity)
    or "none". ``act_inside``: ReLUs inside the units instead of before each one."""

    def __init__(self, in_channels: int, widths: tuple[int, int, int], stride: int = 1, shortcut: str = "conv",
                 dilation: int = 1, act_inside: bool = False):
        super().__init__()
        if shortcut not in ("conv", "sum", "none"):
            raise ValueError(f"shortcut {shortcut!r} is not 'conv', 'sum' or 'none'")
        channels = (in_channels, *widths)
        for index in range(3):
            unit = DeeplabSeparableConv(channels[index], channels[index + 1],
                                        stride=stride if index == 2 else 1, dilation=dilation, act=act_inside)
            self.add_sublayer(f"_conv{index + 1}", unit)
        if shortcut == "conv":
            self._short = DeeplabConvBN(in_channels, widths[-1], 1, stride=stride)
        self.shortcut = shortcut
        self.act_inside = act_inside

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        residual = x
        for unit in (self._conv1, self._conv2, self._conv3):
            residual = unit(residual if self.act_inside else nn.functional.relu(residual))
        if self.shortcut == "conv":
            return residual + self._short(x)
        if self.shortcut == "sum":
            return residual + x
        return residual


class XceptionDeeplab(ClassifierNet):
    classifier_names = ("_fc",)

    def __init__(self, depth: int = 65, class_dim: int = 1000, dropout: float = DEEPLAB_DROPOUT):
        super().__init__()
        if depth not in NET_CONFIG:
            raise ValueError(f"Xception depth {depth} is not one of {sorted(NET_CONFIG)}")
        config = NET_CONFIG[depth]
        self._conv1 = DeeplabConvBN(3, ENTRY_STEM[0], 3, stride=2, act=True)
        self._conv2 = DeeplabConvBN(ENTRY_STEM[0], ENTRY_STEM[1], 3, act=True)
        prefix = f"xception_{depth}"
        channels, self._blocks = ENTRY_STEM[1], []
        for index, (width, stride) in enumerate(config.entry_blocks):
            block = DeeplabBlock(channels, (width,) * 3, stride=stride)
            self._blocks.append(self.add_sublayer(f"{prefix}/entry_flow/block{index + 1}", block))
            channels = width
        for index in range(config.middle_blocks):
            block = DeeplabBlock(channels, (MIDDLE_CHANNELS,) * 3, shortcut="sum")
            self._blocks.append(self.add_sublayer(f"{prefix}/middle_flow/block{index + 1}", block))
        self._exit_flow_1 = DeeplabBlock(channels, DEEPLAB_EXIT_1, stride=2)
        self._exit_flow_2 = DeeplabBlock(DEEPLAB_EXIT_1[-1], DEEPLAB_EXIT_2, shortcut="none",
                                         dilation=DEEPLAB_EXIT_2_DILATION, act_inside=True)
        self.num_features = DEEPLAB_EXIT_2[-1]
        self._drop = nn.Dropout(dropout, mode="downscale_in_infer")
        self._pool = nn.AdaptiveAvgPool2D(1)
        self._fc = nn.Linear(self.num_features, class_dim, weight_attr=_classifier_attr(self.num_features))

    def forward_features(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self._conv2(self._conv1(x))
        for block in self._blocks:
            x = block(x)
        return self._exit_flow_2(self._exit_flow_1(x))

    def forward_head(self, features: paddle.Tensor) -> paddle.Tensor:
        return self._fc(paddle.flatten(self._pool(self._drop(features)), 1))


# ---------------------------------------------------------------- registered names


def _xception(depth: int, class_dim: int, options: dict) -> Xception:
    if options:
        raise TypeError(f"Xception{depth} got unknown option(s): {', '.join(sorted(options))}")
    return Xception(depth, class_dim)


def _xception_deeplab(depth: int, class_dim: int, options: dict) -> XceptionDeeplab:
    unknown = set(options) - {"dropout"}
    if unknown:
        raise TypeError(f"Xception{depth}_deeplab got unknown option(s): {', '.join(sorted(unknown))}")
    return XceptionDeeplab(depth, class_dim, **options)


@register_model("Xception41", meta=XCEPTION_META)
def xception41(class_dim: int = 1000, **options) -> Xception:
    return _xception(41, class_dim, options)


@register_model("Xception65", meta=XCEPTION_META)
def xception65(class_dim: int = 1000, **options) -> Xception:
    return _xception(65, class_dim, options)


@register_model("Xception71", meta=XCEPTION_META)
def xception71(class_dim: int = 1000, **options) -> Xception:
    return _xception(71, class_dim, options)


@register_model("Xception41_deeplab", meta=XCEPTION_DEEPLAB_META)
def xception41_deeplab(class_dim: int = 1000, **options) -> XceptionDeeplab:
    return _xception_deeplab(41, class_dim, options)


@register_model("Xception65_deeplab", meta=XCEPTION_DEEPLAB_META)
def xception65_deeplab(class_dim: int = 1000, **options) -> XceptionDeeplab:
    return _xception_deeplab(65, class_dim, options)


@register_model("Xception71_deeplab", meta=XCEPTION_DEEPLAB_META)
def xception71_deeplab(class_dim: int = 1000, **options) -> XceptionDeeplab:
    return _xception_deeplab(71, class_dim, options)
