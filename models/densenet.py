"""DenseNet (Huang et al., "Densely Connected Convolutional Networks"): DenseNet121/161/169/201/264.

Each dense layer is a pre-activation bottleneck (BN-ReLU-1x1 conv to ``bn_size * growth`` channels,
BN-ReLU-3x3 conv to ``growth`` channels) whose output is concatenated to its input; transitions between
blocks halve the channels (BN-ReLU-1x1 conv) and the resolution (2x2 average pool).

State_dict keys (published PaddleClas weights): stem ``conv1_func`` (conv then BN); dense blocks
``db_conv_<n>.conv<n>_<i>`` (n = 2..5, i from 1) with ``bn_ac_func1`` / ``bn_ac_func2``; transitions
``tr_conv<n>_blk.conv_ac_func``; pre-activation units list ``_batch_norm`` before ``_conv``; the final
``batch_norm`` and the classifier ``out``.
"""
from __future__ import annotations

from dataclasses import dataclass

import paddle
from paddle import nn

from models.base import ClassifierNet
from models.registry import ModelMeta, register_model


@dataclass(frozen=True)
class DenseNetConfig:
    stem_channels: int
    growth_rate: int
    block_layers: tuple[int, int, int, int]


# The paper's Table 1 (DenseNet-161 is the wide k=48 model); 264 is from the classic suite.
NET_CONFIG: dict[int, DenseNetConfig] = {
    121: DenseNetConfig(64, 32, (6, 12, 24, 16)),
    161: DenseNetConfig(96, 48, (6, 12, 36, 24)),
    169: DenseNetConfig(64, 32, (6, 12, 32, 32)),
    201: DenseNetConfig(64, 32, (6, 12, 48, 32)),
    264: DenseNetConfig(64, 32, (6, 12, 64, 48)),
}
BOTTLENECK_WIDTH = 4  # the 1x1 conv outputs bn_size * growth_rate channels

DENSENET_META = ModelMeta(classifier=("out",), family="DenseNet")


class ConvBNReLU(nn.Layer):
    """conv (no bias) -> BatchNorm -> ReLU (the stem)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1):
        super().__init__()
        self._conv = nn.Conv2D(in_channels, out_channels, kernel_size, stride=stride,
                               padding=(kernel_size - 1) // 2, bias_attr=False)
        self._batch_norm = nn.BatchNorm2D(out_channels)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return nn.functional.relu(self._batch_norm(self._conv(x)))


class BNReLUConv(nn.Layer):
    """Pre-activation unit: BatchNorm + ReLU on the input, then a conv (no bias)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int):
        super().__init__()
        self._batch_norm = nn.BatchNorm2D(in_channels)
        self._conv = nn.Conv2D(in_channels, out_channels, kernel_size, padding=(kernel_size - 1) // 2,
                               bias_attr=False)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self._conv(nn.functional.relu(self._batch_norm(x)))


class DenseLayer(nn.Layer):
    """x -> concat(x, BN-ReLU-1x1 -> BN-ReLU-3x3 (growth_rate channels))."""

    def __init__(self, in_channels: int, growth_rate: int, dropout: float):
        super().__init__()
        self.bn_ac_func1 = BNReLUConv(in_channels, BOTTLENECK_WIDTH * growth_rate, 1)
        self.bn_ac_func2 = BNReLUConv(BOTTLENECK_WIDTH * growth_rate, growth_rate, 3)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else None

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        new_features = self.bn_ac_func2(self.bn_ac_func1(x))
        if self.dropout is not None:
            new_features = self.dropout(new_features)
        return paddle.concat([x, new_features], axis=1)


class DenseBlock(nn.Sequential):
    """``num_layers`` dense layers named ``conv<stage>_<i>`` (the published key names)."""

    def __init__(self, stage: int, num_layers: int, in_channels: int, growth_rate: int, dropout: float):
        super().__init__()
        for index in range(num_layers):
            self.add_sublayer(f"conv{stage}_{index + 1}",
                              DenseLayer(in_channels + index * growth_rate, growth_rate, dropout))


class Transition(nn.Layer):
    """BN-ReLU-1x1 conv (compresses channels) then 2x2 average pool (halves the resolution)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv_ac_func = BNReLUConv(in_channels, out_channels, 1)
        self.pool = nn.AvgPool2D(2, stride=2)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.pool(self.conv_ac_func(x))


class DenseNet(ClassifierNet):
    classifier_names = ("out",)

    def __init__(self, layers: int = 121, class_dim: int = 1000, dropout: float = 0.0):
        super().__init__()
        if layers not in NET_CONFIG:
            raise ValueError(f"DenseNet layers {layers} is not one of {sorted(NET_CONFIG)}")
        config = NET_CONFIG[layers]
        self.conv1_func = ConvBNReLU(3, config.stem_channels, 7, stride=2)
        self.pool1 = nn.MaxPool2D(3, stride=2, padding=1)
        channels = config.stem_channels
        stages = []
        last = len(config.block_layers) - 1
        for index, num_layers in enumerate(config.block_layers):
            stage = index + 2  # published names count stages from 2 (conv1 is the stem)
            block = DenseBlock(stage, num_layers, channels, config.growth_rate, dropout)
            self.add_sublayer(f"db_conv_{stage}", block)
            stages.append(block)
            channels += num_layers * config.growth_rate
            if index != last:
                transition = Transition(channels, channels // 2)
                self.add_sublayer(f"tr_conv{stage}_blk", transition)
                stages.append(transition)
                channels //= 2
        self._stages = stages  # plain list: the layers are already registered under their published names
        self.batch_norm = nn.BatchNorm2D(channels)
        self.num_features = channels
        self.avg_pool = nn.AdaptiveAvgPool2D(1)
        stdv = 1.0 / channels**0.5
        self.out = nn.Linear(channels, class_dim,
                             weight_attr=paddle.ParamAttr(initializer=nn.initializer.Uniform(-stdv, stdv)))

    def forward_features(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self.pool1(self.conv1_func(x))
        for stage in self._stages:
            x = stage(x)
        return nn.functional.relu(self.batch_norm(x))

    def forward_head(self, features: paddle.Tensor) -> paddle.Tensor:
        return self.out(paddle.flatten(self.avg_pool(features), 1))


def _densenet(layers: int, class_dim: int, options: dict) -> DenseNet:
    unknown = set(options) - {"dropout"}
    if unknown:
        raise TypeError(f"DenseNet got unknown option(s): {', '.join(sorted(unknown))}")
    return DenseNet(layers, class_dim, **options)


@register_model("DenseNet121", meta=DENSENET_META)
def densenet121(class_dim: int = 1000, **options) -> DenseNet:
    return _densenet(121, class_dim, options)


@register_model("DenseNet161", meta=DENSENET_META)
def densenet161(class_dim: int = 1000, **options) -> DenseNet:
    return _densenet(161, class_dim, options)


@register_model("DenseNet169", meta=DENSENET_META)
def densenet169(class_dim: int = 1000, **options) -> DenseNet:
    return _densenet(169, class_dim, options)


@register_model("DenseNet201", meta=DENSENET_META)
def densenet201(class_dim: int = 1000, **options) -> DenseNet:
    return _densenet(201, class_dim, options)


@register_model("DenseNet264", meta=DENSENET_META)
def densenet264(class_dim: int = 1000, **options) -> DenseNet:
    return _densenet(264, class_dim, options)
