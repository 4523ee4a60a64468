"""HRNet for classification (Wang et al., "Deep High-Resolution Representation Learning", 2019).

A 4x-downsampling stem and one bottleneck stage feed three multi-resolution stages. Each stage keeps parallel
branches at 1/4, 1/8, 1/16 and 1/32 resolution (widths W, 2W, 4W, 8W), runs basic residual blocks in every
branch, and then fuses them: each output branch sums all inputs, upsampled by a 1x1 conv + nearest
interpolation or downsampled by a chain of strided 3x3 convs. The classification head turns every branch
into a bottleneck output of 128/256/512/1024 channels, merges them from high to low resolution with strided
3x3 convs, and lifts the result to 2048 channels before pooling and the fully connected layer.

``SE_HRNet_*`` add squeeze-excitation to every residual block (option ``has_se``).
Attribute names follow the published PaddleClas weights (``conv_layer1_1`` ... ``conv_last``, ``fc``).
"""
from __future__ import annotations

import paddle
import paddle.nn.functional as F
from paddle import nn

from models.base import ClassifierNet
from models.registry import ModelMeta, register_model

HRNET_META = ModelMeta(family="HRNet", classifier=("fc",))

# Network width W -> channels of the four resolution branches.
NET_CONFIG = {width: (width, 2 * width, 4 * width, 8 * width) for width in (18, 30, 32, 40, 44, 48, 60, 64)}
# (number of high-resolution modules, number of branches) of stages 2, 3 and 4; 4 basic blocks per branch.
STAGES = ((1, 2), (4, 3), (3, 4))
BLOCKS_PER_BRANCH = 4
# Bottleneck widths of the classification head per branch (outputs are 4x these).
HEAD_WIDTHS = (32, 64, 128, 256)
HEAD_CHANNELS = 2048
SE_REDUCTION = 16


class ConvBN(nn.Layer):
    """Bias-free conv + BatchNorm, optionally followed by ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 relu: bool = True):
        super().__init__()
        self.conv = nn.Conv2D(in_channels, out_channels, kernel_size, stride=stride,
                              padding=(kernel_size - 1) // 2, bias_attr=False)
        self.bn = nn.BatchNorm2D(out_channels)
        self.relu = relu

    def forward(self, x):
        x = self.bn(self.conv(x))
        return F.relu(x) if self.relu else x


class SqueezeExcite(nn.Layer):
    """Channel gating: global average pool -> FC reduce + ReLU -> FC expand + sigmoid -> rescale."""

    def __init__(self, channels: int, reduction: int = SE_REDUCTION):
        super().__init__()
        hidden = max(1, channels // reduction)
        self.squeeze = nn.Linear(channels, hidden)
        self.excitation = nn.Linear(hidden, channels)

    def forward(self, x):
        gate = F.adaptive_avg_pool2d(x, 1).flatten(1)
        gate = F.sigmoid(self.excitation(F.relu(self.squeeze(gate))))
        return x * gate.unsqueeze([2, 3])


class BasicBlock(nn.Layer):
    """Two 3x3 convs with an identity shortcut (branch widths never change inside a stage)."""

    def __init__(self, channels: int, has_se: bool = False):
        super().__init__()
        self.conv1 = ConvBN(channels, channels, 3)
        self.conv2 = ConvBN(channels, channels, 3, relu=False)
        self.se = SqueezeExcite(channels) if has_se else None

    def forward(self, x):
        out = self.conv2(self.conv1(x))
        if self.se is not None:
            out = self.se(out)
        return F.relu(out + x)


class Bottleneck(nn.Layer):
    """1x1 -> 3x3 -> 1x1 (4x expansion); ``conv_down`` projects the shortcut when the width changes."""

    expansion = 4

    def __init__(self, in_channels: int, width: int, has_se: bool = False):
        super().__init__()
        out_channels = width * self.expansion
        self.conv1 = ConvBN(in_channels, width, 1)
        self.conv2 = ConvBN(width, width, 3)
        self.conv3 = ConvBN(width, out_channels, 1, relu=False)
        self.conv_down = ConvBN(in_channels, out_channels, 1, relu=False) if in_channels != out_channels else None
        self.se = SqueezeExcite(out_channels) if has_se else None

    def forward(self, x):
        out = self.conv3(self.conv2(self.conv1(x)))
        if self.se is not None:
            out = self.se(out)
        shortcut = self.conv_down(x) if self.conv_down is not None else x
        return F.relu(out + shortcut)


class FuseLayer(nn.Layer):
    """Exchange information across resolutions: output i = ReLU(sum over j of branch j resized to i).

    ``residual_func_list`` holds, in (i, j) order, one 1x1 conv for every lower-resolution input (j > i,
    upsampled afterwards) and i - j strided 3x3 convs for every higher-resolution input (j < i).
    """

    def __init__(self, channels: tuple[int, ...]):
        super().__init__()
        self.residual_func_list = nn.LayerList()
        self.plan: list[tuple[int, int, int]] = []  # (output i, input j, number of convs on the path)
        for i, out_channels in enumerate(channels):
            for j, in_channels in enumerate(channels):
                if j > i:
                    self.residual_func_list.append(ConvBN(in_channels, out_channels, 1, relu=False))
                    self.plan.append((i, j, 1))
                elif j < i:
                    for step in range(i - j):
                        last = step == i - j - 1
                        self.residual_func_list.append(ConvBN(
                            in_channels, out_channels if last else in_channels, 3, stride=2, relu=not last))
                    self.plan.append((i, j, i - j))

    def forward(self, inputs: list[paddle.Tensor]) -> list[paddle.Tensor]:
        outputs = list(inputs)
        position = 0
        for i, j, steps in self.plan:
            y = inputs[j]
            for conv in self.residual_func_list[position:position + steps]:
                y = conv(y)
            position += steps
            if j > i:  # size of the target branch, so inputs not divisible by 32 still line up
                y = F.interpolate(y, size=inputs[i].shape[2:], mode="nearest")
            outputs[i] = outputs[i] + y
        return [F.relu(y) for y in outputs]


class HighResolutionModule(nn.Layer):
    """Basic blocks in every branch, then a full fusion across branches."""

    def __init__(self, channels: tuple[int, ...], has_se: bool = False):
        super().__init__()
        self.basic_block_list = nn.LayerList([
            nn.Sequential(*[BasicBlock(width, has_se) for _ in range(BLOCKS_PER_BRANCH)]) for width in channels
        ])
        self.fuse_func = FuseLayer(channels)

    def forward(self, inputs: list[paddle.Tensor]) -> list[paddle.Tensor]:
        return self.fuse_func([blocks(x) for blocks, x in zip(self.basic_block_list, inputs)])


class Stage(nn.Layer):
    def __init__(self, num_modules: int, channels: tuple[int, ...], has_se: bool = False):
        super().__init__()
        self.stage_func_list = nn.LayerList([HighResolutionModule(channels, has_se) for _ in range(num_modules)])

    def forward(self, inputs: list[paddle.Tensor]) -> list[paddle.Tensor]:
        for module in self.stage_func_list:
            inputs = module(inputs)
        return inputs


class BranchBottlenecks(nn.Layer):
    """First part of the classification head: one bottleneck per branch (128/256/512/1024 channels)."""

    def __init__(self, channels: tuple[int, ...], has_se: bool = False):
        super().__init__()
        self.func_list = nn.LayerList([
            Bottleneck(in_channels, width, has_se) for in_channels, width in zip(channels, HEAD_WIDTHS)
        ])

    def forward(self, inputs: list[paddle.Tensor]) -> list[paddle.Tensor]:
        return [block(x) for block, x in zip(self.func_list, inputs)]


class HRNet(ClassifierNet):
    classifier_names = ("fc",)

    def __init__(self, width: int = 18, has_se: bool = False, class_dim: int = 1000):
        super().__init__()
        if width not in NET_CONFIG:
            raise ValueError(f"HRNet width must be one of {sorted(NET_CONFIG)}, got {width}")
        channels = NET_CONFIG[width]
        (modules2, branches2), (modules3, branches3), (modules4, branches4) = STAGES

        self.conv_layer1_1 = ConvBN(3, 64, 3, stride=2)
        self.conv_layer1_2 = ConvBN(64, 64, 3, stride=2)
        self.layer1 = nn.Sequential(*[Bottleneck(64 if i == 0 else 256, 64, has_se) for i in range(4)])

        # Transitions: stage 1 output feeds two new branches; later stages add one branch each,
        # derived from the lowest-resolution branch by a strided 3x3 conv.
        self.conv_tr1_1 = ConvBN(256, channels[0], 3)
        self.conv_tr1_2 = ConvBN(256, channels[1], 3, stride=2)
        self.st2 = Stage(modules2, channels[:branches2], has_se)
        self.conv_tr2 = ConvBN(channels[1], channels[2], 3, stride=2)
        self.st3 = Stage(modules3, channels[:branches3], has_se)
        self.conv_tr3 = ConvBN(channels[2], channels[3], 3, stride=2)
        self.st4 = Stage(modules4, channels[:branches4], has_se)

        head_channels = [w * Bottleneck.expansion for w in HEAD_WIDTHS]
        self.last_cls = BranchBottlenecks(channels, has_se)
        self.cls_head_conv_list = nn.LayerList([
            ConvBN(head_channels[i], head_channels[i + 1], 3, stride=2) for i in range(len(head_channels) - 1)
        ])
        self.conv_last = ConvBN(head_channels[-1], HEAD_CHANNELS, 1)
        self.fc = nn.Linear(HEAD_CHANNELS, class_dim)

    def forward_features(self, x):
        x = self.layer1(self.conv_layer1_2(self.conv_layer1_1(x)))
        branches = self.st2([self.conv_tr1_1(x), self.conv_tr1_2(x)])
        branches = self.st3(branches + [self.conv_tr2(branches[-1])])
        branches = self.st4(branches + [self.conv_tr3(branches[-1])])
        heads = self.last_cls(branches)
        y = heads[0]
        for downsample, head in zip(self.cls_head_conv_list, heads[1:]):
            y = downsample(y) + head
        return self.conv_last(y)

    def forward_head(self, features):
        return self.fc(F.adaptive_avg_pool2d(features, 1).flatten(1))


@register_model("HRNet_W18_C", meta=HRNET_META)
def hrnet_w18_c(class_dim=1000, **options):
    return HRNet(width=18, class_dim=class_dim, **options)


@register_model("HRNet_W30_C", meta=HRNET_META)
def hrnet_w30_c(class_dim=1000, **options):
    return HRNet(width=30, class_dim=class_dim, **options)


@register_model("HRNet_W32_C", meta=HRNET_META)
def hrnet_w32_c(class_dim=1000, **options):
    return HRNet(width=32, class_dim=class_dim, **options)


@register_model("HRNet_W40_C", meta=HRNET_META)
def hrnet_w40_c(class_dim=1000, **options):
    return HRNet(width=40, class_dim=class_dim, **options)


@register_model("HRNet_W44_C", meta=HRNET_META)
def hrnet_w44_c(class_dim=1000, **options):
    return HRNet(width=44, class_dim=class_dim, **options)


@register_model("HRNet_W48_C", meta=HRNET_META)
def hrnet_w48_c(class_dim=1000, **options):
    return HRNet(width=48, class_dim=class_dim, **options)


@register_model("HRNet_W60_C", meta=HRNET_META)
def hrnet_w60_c(class_dim=1000, **options):
    return HRNet(width=60, class_dim=class_dim, **options)


@register_model("HRNet_W64_C", meta=HRNET_META)
def hrnet_w64_c(class_dim=1000, **options):
    return HRNet(width=64, class_dim=class_dim, **options)


@register_model("SE_HRNet_W18_C", meta=HRNET_META)
def se_hrnet_w18_c(class_dim=1000, **options):
    return HRNet(width=18, has_se=True, class_dim=class_dim, **options)


@register_model("SE_HRNet_W30_C", meta=HRNET_META)
def se_hrnet_w30_c(class_dim=1000, **options):
    return HRNet(width=30, has_se=True, class_dim=class_dim, **options)


@register_model("SE_HRNet_W32_C", meta=HRNET_META)
def se_hrnet_w32_c(class_dim=1000, **options):
    return HRNet(width=32, has_se=True, class_dim=class_dim, **options)


@register_model("SE_HRNet_W40_C", meta=HRNET_META)
def se_hrnet_w40_c(class_dim=1000, **options):
    return HRNet(width=40, has_se=True, class_dim=class_dim, **options)


@register_model("SE_HRNet_W44_C", meta=HRNET_META)
def se_hrnet_w44_c(class_dim=1000, **options):
    return HRNet(width=44, has_se=True, class_dim=class_dim, **options)


@register_model("SE_HRNet_W48_C", meta=HRNET_META)
def se_hrnet_w48_c(class_dim=1000, **options):
    return HRNet(width=48, has_se=True, class_dim=class_dim, **options)


@register_model("SE_HRNet_W60_C", meta=HRNET_META)
def se_hrnet_w60_c(class_dim=1000, **options):
    return HRNet(width=60, has_se=True, class_dim=class_dim, **options)


@register_model("SE_HRNet_W64_C", meta=HRNET_META)
def se_hrnet_w64_c(class_dim=1000, **options):
    return HRNet(width=64, has_se=True, class_dim=class_dim, **options)
