"""DARTS ImageNet networks (Liu et al., "DARTS: Differentiable Architecture Search", 2019).

A stack of searched cells: every cell takes the outputs of the two previous cells, builds four intermediate
nodes (each the sum of two operations on earlier nodes, as listed in its genotype) and concatenates them.
Reduction cells, at 1/3 and 2/3 of the depth, halve the resolution and double the width. The ImageNet stem
downsamples 8x with three strided 3x3 convs. Genotypes and network sizes are those of the classic PaddleCV
suite's DARTS_4M / DARTS_6M (``../shared/zoo/darts_genotypes.json`` records them; they are repeated here so
the model builds without the reference data).

Sizes (PaddleClas has no DARTS, so the check is against the paper): with the paper's own DARTS-V2 cells this
stem/cell/head code has exactly the paper's ImageNet size, 4,718,752 parameters ("4.7M"); the classic
DARTS_4M genotype's reduction cells hold a strided sep_conv_3x3 and a sep_conv_5x5 instead of pools and
skips, hence its 4.92M. "4M" is a nominal name, not a parameter count.
"""
from __future__ import annotations

from typing import NamedTuple

import paddle
import paddle.nn.functional as F
from paddle import nn

from models.base import ClassifierNet
from models.registry import ModelMeta, register_model

DARTS_META = ModelMeta(family="DARTS", classifier=("fc",))


class Genotype(NamedTuple):
    """Per cell type: (operation, input node) pairs, two per intermediate node, and the nodes concatenated."""

    normal: tuple[tuple[str, int], ...]
    normal_concat: tuple[int, ...]
    reduce: tuple[tuple[str, int], ...]
    reduce_concat: tuple[int, ...]


NET_CONFIG = {
    "DARTS_6M": Genotype(
        normal=(("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_5x5", 1), ("sep_conv_5x5", 0),
                ("sep_conv_3x3", 2), ("sep_conv_3x3", 1), ("skip_connect", 4), ("sep_conv_3x3", 3)),
        normal_concat=(2, 3, 4, 5),
        reduce=(("sep_conv_5x5", 0), ("max_pool_3x3", 1), ("dil_conv_5x5", 2), ("sep_conv_5x5", 0),
                ("sep_conv_3x3", 1), ("dil_conv_5x5", 3), ("dil_conv_3x3", 1), ("sep_conv_3x3", 2)),
        reduce_concat=(2, 3, 4, 5),
    ),
    "DARTS_4M": Genotype(
        normal=(("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_3x3", 1),
                ("sep_conv_3x3", 1), ("skip_connect", 0), ("skip_connect", 0), ("dil_conv_3x3", 1)),
        normal_concat=(2, 3, 4, 5),
        reduce=(("max_pool_3x3", 0), ("max_pool_3x3", 1), ("max_pool_3x3", 0), ("avg_pool_3x3", 1),
                ("skip_connect", 3), ("skip_connect", 2), ("sep_conv_3x3", 0), ("sep_conv_5x5", 2)),
        reduce_concat=(2, 3, 4, 5),
    ),
}
INIT_CHANNELS = 48
NUM_CELLS = 14


class ReLUConvBN(nn.Layer):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1):
        super().__init__()
        self.conv = nn.Conv2D(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias_attr=False)
        self.bn = nn.BatchNorm2D(out_channels)

    def forward(self, x):
        return self.bn(self.conv(F.relu(x)))


class FactorizedReduce(nn.Layer):
    """Halve the resolution without losing pixels: two stride-2 1x1 convs on grids offset by one pixel."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv_even = nn.Conv2D(in_channels, out_channels // 2, 1, stride=2, bias_attr=False)
        self.conv_odd = nn.Conv2D(in_channels, out_channels - out_channels // 2, 1, stride=2, bias_attr=False)
        self.bn = nn.BatchNorm2D(out_channels)

    def forward(self, x):
        x = F.relu(x)
        # Pad before shifting so both grids give ceil(H/2) rows even for odd sizes.
        shifted = F.pad(x, [0, 1, 0, 1])[:, :, 1:, 1:]
        return self.bn(paddle.concat([self.conv_even(x), self.conv_odd(shifted)], axis=1))


class DilConv(nn.Layer):
    """ReLU, depthwise kxk (optionally dilated), pointwise 1x1, BN."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int, dilation: int = 1):
        super().__init__()
        padding = dilation * (kernel_size - 1) // 2
        self.depthwise = nn.Conv2D(in_channels, in_channels, kernel_size, stride=stride, padding=padding,
                                   dilation=dilation, groups=in_channels, bias_attr=False)
        self.pointwise = nn.Conv2D(in_channels, out_channels, 1, bias_attr=False)
        self.bn = nn.BatchNorm2D(out_channels)

    def forward(self, x):
        return self.bn(self.pointwise(self.depthwise(F.relu(x))))


class SepConv(nn.Layer):
    """Two undilated DilConv units; only the first one strides."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int):
        super().__init__()
        self.first = DilConv(in_channels, in_channels, kernel_size, stride)
        self.second = DilConv(in_channels, out_channels, kernel_size, 1)

    def forward(self, x):
        return self.second(self.first(x))


class Identity(nn.Layer):
    def forward(self, x):
        return x


def make_op(name: str, channels: int, stride: int) -> nn.Layer:
    if name == "skip_connect":
        return Identity() if stride == 1 else FactorizedReduce(channels, channels)
    if name == "max_pool_3x3":
        return nn.MaxPool2D(3, stride=stride, padding=1)
    if name == "avg_pool_3x3":
        return nn.AvgPool2D(3, stride=stride, padding=1, exclusive=True)  # padding not counted
    kind, size = name.rsplit("_", 1)  # e.g. "sep_conv", "5x5"
    kernel_size = int(size.split("x")[0])
    if kind == "sep_conv":
        return SepConv(channels, channels, kernel_size, stride)
    if kind == "dil_conv":
        return DilConv(channels, channels, kernel_size, stride, dilation=2)
    raise ValueError(f"unknown DARTS operation {name!r}")


class Cell(nn.Layer):
    """Nodes 0 and 1 are the preprocessed outputs of the two previous cells; nodes 2-5 are computed."""

    def __init__(self, genotype: Genotype, prev_prev_channels: int, prev_channels: int, channels: int,
                 reduction: bool, reduction_prev: bool):
        super().__init__()
        # The cell before last is at twice our input resolution when the last cell reduced.
        self.preprocess0 = (FactorizedReduce(prev_prev_channels, channels) if reduction_prev
                            else ReLUConvBN(prev_prev_channels, channels))
        self.preprocess1 = ReLUConvBN(prev_channels, channels)
        edges = genotype.reduce if reduction else genotype.normal
        self.concat = genotype.reduce_concat if reduction else genotype.normal_concat
        self.inputs = [node for _, node in edges]
        # Only edges leaving the cell inputs see the full resolution, so only they stride.
        self.ops = nn.LayerList([
            make_op(op, channels, 2 if reduction and node < 2 else 1) for op, node in edges
        ])
        self.out_channels = len(self.concat) * channels

    def forward(self, s0, s1):
        nodes = [self.preprocess0(s0), self.preprocess1(s1)]
        for first in range(0, len(self.ops), 2):
            nodes.append(self.ops[first](nodes[self.inputs[first]])
                         + self.ops[first + 1](nodes[self.inputs[first + 1]]))
        return paddle.concat([nodes[i] for i in self.concat], axis=1)


class DARTSNet(ClassifierNet):
    classifier_names = ("fc",)

    def __init__(self, genotype: Genotype, init_channels: int = INIT_CHANNELS, num_cells: int = NUM_CELLS,
                 class_dim: int = 1000):
        super().__init__()
        c = init_channels
        self.stem0 = nn.Sequential(
            nn.Conv2D(3, c // 2, 3, stride=2, padding=1, bias_attr=False), nn.BatchNorm2D(c // 2), nn.ReLU(),
            nn.Conv2D(c // 2, c, 3, stride=2, padding=1, bias_attr=False), nn.BatchNorm2D(c),
        )
        self.stem1 = nn.Sequential(
            nn.ReLU(), nn.Conv2D(c, c, 3, stride=2, padding=1, bias_attr=False), nn.BatchNorm2D(c),
        )
        self.cells = nn.LayerList()
        prev_prev, prev, channels = c, c, c
        reduction_prev = True  # stem1 halved the resolution of stem0's output
        for index in range(num_cells):
            reduction = index in (num_cells // 3, 2 * num_cells // 3)
            if reduction:
                channels *= 2
            cell = Cell(genotype, prev_prev, prev, channels, reduction, reduction_prev)
            self.cells.append(cell)
            prev_prev, prev, reduction_prev = prev, cell.out_channels, reduction
        self.fc = nn.Linear(prev, class_dim)

    def forward_features(self, x):
        s0 = self.stem0(x)
        s1 = self.stem1(s0)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1)
        return s1

    def forward_head(self, features):
        return self.fc(F.adaptive_avg_pool2d(features, 1).flatten(1))


@register_model("DARTS_4M", meta=DARTS_META)
def darts_4m(class_dim=1000, **options):
    return DARTSNet(NET_CONFIG["DARTS_4M"], class_dim=class_dim, **options)


@register_model("DARTS_6M", meta=DARTS_META)
def darts_6m(class_dim=1000, **options):
    return DARTSNet(NET_CONFIG["DARTS_6M"], class_dim=class_dim, **options)
