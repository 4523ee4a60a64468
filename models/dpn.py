"""Dual Path Networks (Chen et al., "Dual Path Networks"): DPN68, DPN92, DPN98, DPN107, DPN131.

Every block carries two paths: a residual path (fixed width, features re-used by addition, as in ResNeXt)
and a densely connected path (grows by ``dense_inc`` channels per block, new features explored by
concatenation, as in DenseNet). A block sees the concatenation of both, runs a pre-activation
(BN-ReLU-conv) 1x1 -> grouped 3x3 -> 1x1 bottleneck, adds the first ``res_channels`` outputs to the residual
path and appends the remaining ``dense_inc`` to the dense path. A stage's first block first projects its
input (``c1x1_w``, strided in stages 2-4) into a fresh residual path and a dense path of 2 * ``dense_inc``.

State_dict keys (published PaddleClas weights): stem ``conv1_x_1_func`` (conv then BN); blocks ``dpn<n>``
numbered 1.. across stages, with ``c1x1_w_func`` (first block of a stage), ``c1x1_a_func``, ``c3x3_b_func``,
``c1x1_c_func``, each ``._batch_norm`` (on the conv's input) then ``._conv``; final ``conv5_x_x_bn``;
classifier ``out``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import paddle
from paddle import nn

from models.base import ClassifierNet
from models.registry import ModelMeta, register_model
from models.resnet_legacy import ConvBNLayer


@dataclass(frozen=True)
class DPNConfig:
    stem_channels: int
    stem_kernel: int
    width: int  # bottleneck width of the first stage; doubles every stage
    groups: int  # of the 3x3 conv, the same in every stage
    res_channels: int  # residual path width of the first stage; doubles every stage
    depths: tuple[int, int, int, int]
    dense_incs: tuple[int, int, int, int]  # dense path growth per block, per stage


# From the paper's Table 1 and the classic suite (DPN68 is the small, 3x3-stem model).
NET_CONFIG: dict[str, DPNConfig] = {
    "DPN68": DPNConfig(10, 3, 128, 32, 64, (3, 4, 12, 3), (16, 32, 32, 64)),
    "DPN92": DPNConfig(64, 7, 96, 32, 256, (3, 4, 20, 3), (16, 32, 24, 128)),
    "DPN98": DPNConfig(96, 7, 160, 40, 256, (3, 6, 20, 3), (16, 32, 32, 128)),
    "DPN107": DPNConfig(128, 7, 200, 50, 256, (4, 8, 20, 3), (20, 64, 64, 128)),
    "DPN131": DPNConfig(128, 7, 160, 40, 256, (4, 8, 28, 3), (16, 32, 32, 128)),
}

DPN_META = ModelMeta(classifier=("out",), family="DPN")


class BNReLUConv(nn.Layer):
    """Pre-activation unit: BatchNorm + ReLU on the input, then a conv (no bias)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 groups: int = 1):
        super().__init__()
        self._batch_norm = nn.BatchNorm2D(in_channels)
        self._conv = nn.Conv2D(in_channels, out_channels, kernel_size, stride=stride,
                               padding=(kernel_size - 1) // 2, groups=groups, bias_attr=False)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self._conv(nn.functional.relu(self._batch_norm(x)))


class DualPathBlock(nn.Layer):
    """(residual, dense) -> (residual + new residual, dense ++ new dense)."""

    def __init__(self, in_channels: int, width: int, groups: int, res_channels: int, dense_inc: int,
                 stride: int, project: bool):
        super().__init__()
        self.res_channels = res_channels
        self.dense_inc = dense_inc
        if project:
            self.c1x1_w_func = BNReLUConv(in_channels, res_channels + 2 * dense_inc, 1, stride=stride)
        else:
            self.c1x1_w_func = None
        self.c1x1_a_func = BNReLUConv(in_channels, width, 1)
        self.c3x3_b_func = BNReLUConv(width, width, 3, stride=stride, groups=groups)
        self.c1x1_c_func = BNReLUConv(width, res_channels + dense_inc, 1)

    def forward(self, paths: tuple[paddle.Tensor, paddle.Tensor]) -> tuple[paddle.Tensor, paddle.Tensor]:
        x = paddle.concat(paths, axis=1)
        if self.c1x1_w_func is not None:
            residual, dense = paddle.split(self.c1x1_w_func(x), [self.res_channels, 2 * self.dense_inc], axis=1)
        else:
            residual, dense = paths
        y = self.c1x1_c_func(self.c3x3_b_func(self.c1x1_a_func(x)))
        new_residual, new_dense = paddle.split(y, [self.res_channels, self.dense_inc], axis=1)
        return residual + new_residual, paddle.concat([dense, new_dense], axis=1)


class DPN(ClassifierNet):
    """Dual Path Network with the classic suite's parameter names.

    Args:
        config: one of :data:`NET_CONFIG`.
        dropout: drop probability before the classifier (training only).
    """

    classifier_names = ("out",)

    def __init__(self, config: DPNConfig, dropout: float = 0.0, class_dim: int = 1000):
        super().__init__()
        self.conv1_x_1_func = ConvBNLayer(3, config.stem_channels, config.stem_kernel, stride=2)
        self.pool = nn.MaxPool2D(3, stride=2, padding=1)
        self.block_names, self.num_features = self._build_stages(config)
        self.conv5_x_x_bn = nn.BatchNorm2D(self.num_features)
        self.global_pool = nn.AdaptiveAvgPool2D(1)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else None
        bound = 1.0 / math.sqrt(self.num_features)  # the classic suite's U(-1/sqrt(fan_in), ..) FC init
        self.out = nn.Linear(self.num_features, class_dim,
                             weight_attr=paddle.ParamAttr(initializer=nn.initializer.Uniform(-bound, bound)))

    def _build_stages(self, config: DPNConfig) -> tuple[list[str], int]:
        """Adds the ``dpn<n>`` blocks; returns their names and the final (residual + dense) channel count."""
        names = []
        in_channels, dense_channels = config.stem_channels, 0
        for stage, (count, dense_inc) in enumerate(zip(config.depths, config.dense_incs)):
            res_channels = config.res_channels * 2**stage
            for index in range(count):
                block = DualPathBlock(in_channels, config.width * 2**stage, config.groups, res_channels,
                                      dense_inc, stride=2 if index == 0 and stage > 0 else 1,
                                      project=index == 0)
                name = f"dpn{len(names) + 1}"
                self.add_sublayer(name, block)
                names.append(name)
                # A stage's first block restarts the dense path at 2 * dense_inc; every block appends dense_inc.
                dense_channels = (2 * dense_inc if index == 0 else dense_channels) + dense_inc
                in_channels = res_channels + dense_channels
        return names, in_channels

    def forward_features(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self.pool(self.conv1_x_1_func(x))
        paths = (x,)
        for name in self.block_names:
            paths = getattr(self, name)(paths)
        return nn.functional.relu(self.conv5_x_x_bn(paddle.concat(paths, axis=1)))

    def forward_head(self, features: paddle.Tensor) -> paddle.Tensor:
        x = self.global_pool(features).flatten(1)
        if self.dropout is not None:
            x = self.dropout(x)
        return self.out(x)


@register_model("DPN68", meta=DPN_META)
def dpn68(class_dim=1000, **options):
    return DPN(NET_CONFIG["DPN68"], class_dim=class_dim, **options)


@register_model("DPN92", meta=DPN_META)
def dpn92(class_dim=1000, **options):
    return DPN(NET_CONFIG["DPN92"], class_dim=class_dim, **options)


@register_model("DPN98", meta=DPN_META)
def dpn98(class_dim=1000, **options):
    return DPN(NET_CONFIG["DPN98"], class_dim=class_dim, **options)


@register_model("DPN107", meta=DPN_META)
def dpn107(class_dim=1000, **options):
    return DPN(NET_CONFIG["DPN107"], class_dim=class_dim, **options)


@register_model("DPN131", meta=DPN_META)
def dpn131(class_dim=1000, **options):
    return DPN(NET_CONFIG["DPN131"], class_dim=class_dim, **options)
