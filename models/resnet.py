"""ResNet (He et al. 2016) and the "vd" variant of "Bag of Tricks" (He et al. 2019), PaddleClas key layout
(``stem.N``, ``blocks.N.convK``, ``blocks.N.short``, ``fc``).

vd: the 7x7 stem becomes three 3x3 convs, and a downsampling shortcut average-pools before its 1x1 conv.
"""
from __future__ import annotations

import paddle
from paddle import nn

from models.base import ClassifierNet
from models.registry import ModelMeta, register_model

RESNET_META = ModelMeta(family="ResNet", classifier=("fc",))

# depth -> (block type, blocks per stage)
NET_CONFIG = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
    200: ("bottleneck", (3, 12, 48, 3)),
}
STAGE_WIDTHS = (64, 128, 256, 512)


class ConvBN(nn.Layer):
    """conv (no bias) -> BatchNorm -> optional ReLU."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1, act: bool = True,
                 zero_gamma: bool = False):
        super().__init__()
        self.conv = nn.Conv2D(in_ch, out_ch, kernel, stride=stride, padding=(kernel - 1) // 2, groups=groups,
                              bias_attr=False)
        gamma = nn.initializer.Constant(0.0) if zero_gamma else None
        self.bn = nn.BatchNorm2D(out_ch, weight_attr=paddle.ParamAttr(initializer=gamma) if gamma else None)
        self.act = nn.ReLU() if act else None

    def forward(self, x):
        x = self.bn(self.conv(x))
        return self.act(x) if self.act is not None else x


class BasicBlock(nn.Layer):
    expansion = 1

    def __init__(self, in_ch, width, stride, projection, avg_down, zero_gamma=False):
        super().__init__()
        self.conv0 = ConvBN(in_ch, width, 3, stride)
        self.conv1 = ConvBN(width, width, 3, act=False, zero_gamma=zero_gamma)
        if projection:
            # keep PaddleClas' key names: the shortcut's conv/bn sit directly under "short"
            self.short = _flat_shortcut(in_ch, width, stride, avg_down)
        self.has_projection = projection

    def forward(self, x):
        out = self.conv1(self.conv0(x))
        identity = self.short(x) if self.has_projection else x
        return nn.functional.relu(out + identity)


class BottleneckBlock(nn.Layer):
    expansion = 4

    def __init__(self, in_ch, width, stride, projection, avg_down, zero_gamma=False):
        super().__init__()
        self.conv0 = ConvBN(in_ch, width, 1)
        self.conv1 = ConvBN(width, width, 3, stride)
        self.conv2 = ConvBN(width, width * 4, 1, act=False, zero_gamma=zero_gamma)
        if projection:
            self.short = _flat_shortcut(in_ch, width * 4, stride, avg_down)
        self.has_projection = projection

    def forward(self, x):
        out = self.conv2(self.conv1(self.conv0(x)))
        identity = self.short(x) if self.has_projection else x
        return nn.functional.relu(out + identity)


class _PooledConvBN(ConvBN):
    """A ConvBN whose input is first average-pooled (the vd shortcut); same keys as ConvBN."""

    def __init__(self, in_ch, out_ch):
        super().__init__(in_ch, out_ch, 1, act=False)
        self.pool = nn.AvgPool2D(2, 2, ceil_mode=True)

    def forward(self, x):
        return super().forward(self.pool(x))


def _flat_shortcut(in_ch: int, out_ch: int, stride: int, avg_down: bool) -> ConvBN:
    if avg_down and stride > 1:
        return _PooledConvBN(in_ch, out_ch)
    return ConvBN(in_ch, out_ch, 1, stride=stride, act=False)


class ResNet(ClassifierNet):
    """Generic ResNet; ``variant`` is "" (original) or "vd"; ``zero_init_residual`` zeroes each branch's
    last BatchNorm gamma (the "fast ImageNet" recipe)."""

    classifier_names = ("fc",)

    def __init__(self, depth: int = 50, variant: str = "", class_dim: int = 1000, zero_init_residual: bool = False):
        super().__init__()
        if depth not in NET_CONFIG:
            raise ValueError(f"ResNet depth {depth} is not one of {sorted(NET_CONFIG)}")
        if variant not in ("", "vd"):
            raise ValueError(f"ResNet variant {variant!r} is not '' or 'vd'")
        kind, counts = NET_CONFIG[depth]
        block = BasicBlock if kind == "basic" else BottleneckBlock
        vd = variant == "vd"
        if vd:
            self.stem = nn.Sequential(ConvBN(3, 32, 3, 2), ConvBN(32, 32, 3), ConvBN(32, 64, 3))
        else:
            self.stem = nn.Sequential(ConvBN(3, 64, 7, 2))
        self.max_pool = nn.MaxPool2D(3, 2, padding=1)
        layers, in_ch = [], 64
        for stage, (count, width) in enumerate(zip(counts, STAGE_WIDTHS)):
            for index in range(count):
                stride = 2 if index == 0 and stage > 0 else 1
                # PaddleClas' layout: every stage's first block projects (ResNet18/34's first one too)
                layers.append(block(in_ch, width, stride, projection=index == 0, avg_down=vd,
                                    zero_gamma=zero_init_residual))
                in_ch = width * block.expansion
        self.blocks = nn.Sequential(*layers)
        self.avg_pool = nn.AdaptiveAvgPool2D(1)
        self.num_features = in_ch
        stdv = 1.0 / (in_ch**0.5)
        self.fc = nn.Linear(in_ch, class_dim, weight_attr=paddle.ParamAttr(
            initializer=nn.initializer.Uniform(-stdv, stdv)))

    def forward_features(self, x):
        return self.blocks(self.max_pool(self.stem(x)))

    def forward_head(self, features):
        return self.fc(paddle.flatten(self.avg_pool(features), 1))


def _make(depth: int, variant: str = "", **fixed):
    def build(class_dim: int = 1000, **options):
        unknown = set(options) - {"zero_init_residual"}
        if unknown:
            raise TypeError(f"ResNet got unknown option(s): {', '.join(sorted(unknown))}")
        return ResNet(depth, variant, class_dim, **{**fixed, **options})

    return build


for _depth in (18, 34, 50, 101, 152):
    register_model(f"ResNet{_depth}", meta=RESNET_META)(_make(_depth))
for _depth in (18, 34, 50, 101, 152, 200):
    register_model(f"ResNet{_depth}_vd", meta=RESNET_META)(_make(_depth, "vd"))
# ResNet50_vd_v2: the same network, trained with a distillation recipe.
register_model("ResNet50_vd_v2", meta=RESNET_META)(_make(50, "vd"))
# FastImageNet: ResNet50 whose residual branches start as identities (last BN gamma 0).
register_model("FastImageNet", meta=RESNET_META.updated(family="FastImageNet"))(
    _make(50, zero_init_residual=True))
