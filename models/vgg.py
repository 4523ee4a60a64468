"""VGG (Simonyan & Zisserman, 2015) configurations A (VGG11), B (VGG13), D (VGG16) and E (VGG19).

Five blocks of 3x3 convs + ReLU, each closed by 2x2 max-pooling, then three fully connected layers with
dropout. Key layout of the PaddleClas weights: ``conv_block_N.convK`` (bias-free convs, no BatchNorm) and
``fc1`` .. ``fc3``. fc1 takes the flattened 512x7x7 map, so the network needs 224x224 inputs.

Dropout follows the published PaddleClas weights, which were trained with "downscale_in_infer" dropout
(kept activations unscaled in training, all activations scaled by 1 - p in eval), not the classic
``nn.Dropout`` default (upscale_in_train): with those weights the default gives other logits in eval,
and fine-tuning under it would change the scale the later layers were trained for.
"""
from __future__ import annotations

import paddle
import paddle.nn.functional as F
from paddle import nn

from models.alexnet import check_feature_map
from models.base import ClassifierNet
from models.registry import ModelMeta, register_model

VGG_META = ModelMeta(classifier=("fc3",), family="VGG", min_input_size=224)

# depth -> convs per block; block widths are fixed
NET_CONFIG = {
    11: (1, 1, 2, 2, 2),
    13: (2, 2, 2, 2, 2),
    16: (2, 2, 3, 3, 3),
    19: (2, 2, 4, 4, 4),
}
BLOCK_WIDTHS = (64, 128, 256, 512, 512)
FEATURE_MAP = (512, 7, 7)
HIDDEN = 4096
DROPOUT = 0.5


class ConvBlock(nn.Layer):
    """``num_convs`` 3x3 convs (ReLU after each), then 2x2 stride-2 max-pooling."""

    def __init__(self, in_channels: int, out_channels: int, num_convs: int):
        super().__init__()
        self.num_convs = num_convs
        for index in range(1, num_convs + 1):
            conv = nn.Conv2D(in_channels if index == 1 else out_channels, out_channels, 3, padding=1,
                             bias_attr=False)
            setattr(self, f"conv{index}", conv)
        self.pool = nn.MaxPool2D(2, 2)

    def forward(self, x):
        for index in range(1, self.num_convs + 1):
            x = F.relu(getattr(self, f"conv{index}")(x))
        return self.pool(x)


class VGG(ClassifierNet):
    classifier_names = ("fc3",)

    def __init__(self, depth: int = 16, class_dim: int = 1000):
        super().__init__()
        if depth not in NET_CONFIG:
            raise ValueError(f"VGG depth {depth} is not one of {sorted(NET_CONFIG)}")
        in_channels = 3
        for index, (num_convs, width) in enumerate(zip(NET_CONFIG[depth], BLOCK_WIDTHS), start=1):
            setattr(self, f"conv_block_{index}", ConvBlock(in_channels, width, num_convs))
            in_channels = width
        self.fc1 = nn.Linear(FEATURE_MAP[0] * FEATURE_MAP[1] * FEATURE_MAP[2], HIDDEN)
        self.drop1 = nn.Dropout(DROPOUT, mode="downscale_in_infer")
        self.fc2 = nn.Linear(HIDDEN, HIDDEN)
        self.drop2 = nn.Dropout(DROPOUT, mode="downscale_in_infer")
        self.fc3 = nn.Linear(HIDDEN, class_dim)
        self.num_features = HIDDEN

    def forward_features(self, x):
        for index in range(1, len(BLOCK_WIDTHS) + 1):
            x = getattr(self, f"conv_block_{index}")(x)
        return x

    def forward_head(self, features):
        check_feature_map(features, FEATURE_MAP, "VGG", 224)
        x = self.drop1(F.relu(self.fc1(paddle.flatten(features, 1))))
        x = self.drop2(F.relu(self.fc2(x)))
        return self.fc3(x)


def _make(depth: int):
    def build(class_dim: int = 1000, **options):
        if options:
            raise TypeError(f"VGG got unknown option(s): {', '.join(sorted(options))}")
        return VGG(depth, class_dim)

    return build


for _depth in NET_CONFIG:
    register_model(f"VGG{_depth}", meta=VGG_META)(_make(_depth))
