"""SqueezeNet 1.0 and 1.1 (Iandola et al. 2016): Fire modules (1x1 squeeze, then parallel 1x1 and 3x3
expands) and a 1x1 conv classifier followed by global average pooling.

PaddleClas key layout: ``_conv`` stem, Fire modules ``_conv1`` .. ``_conv8`` (each ``_conv``,
``_conv_path1``, ``_conv_path2``) and the classifier conv ``_conv9``. 1.1 has a 3x3 stem and pools
earlier: 2.4x less computation at the same accuracy.

Stems as PaddleClas builds them, which its published weights were trained with: 1.0's 7x7 stem is
unpadded; 1.1's 3x3 stem pads 1 pixel (the original Caffe SqueezeNet 1.1 does not pad), so at 224 its
map is 112x112, not 111x111.
"""
from __future__ import annotations

import paddle
from paddle import nn

from models.base import ClassifierNet
from models.registry import ModelMeta, register_model

# Fire modules (squeeze channels, expand channels per path), the paper's Table 1; shared by both versions
FIRE_CONFIG = ((16, 64), (16, 64), (32, 128), (32, 128), (48, 192), (48, 192), (64, 256), (64, 256))
# version -> (stem channels, stem kernel, stem padding, Fire modules (1-based) followed by a 3x3/2 max pool)
NET_CONFIG = {
    "1_0": (96, 7, 0, (3, 7)),
    "1_1": (64, 3, 1, (2, 4)),
}
# smallest input for which no max-pool window overhangs its input (pools without ceil mode)
MIN_INPUT_SIZE = {"1_0": 35, "1_1": 29}


def _meta(version: str) -> ModelMeta:
    return ModelMeta(family="SqueezeNet", classifier=("_conv9",), min_input_size=MIN_INPUT_SIZE[version])


class ConvReLU(nn.Layer):
    """conv (with bias, no BatchNorm in SqueezeNet) -> ReLU."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int):
        super().__init__()
        self._conv = nn.Conv2D(in_ch, out_ch, kernel, padding=(kernel - 1) // 2)
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self._conv(x))


class Fire(nn.Layer):
    """Squeeze to few channels, expand with 1x1 and 3x3 convs side by side, concatenate."""

    def __init__(self, in_ch: int, squeeze_ch: int, expand_ch: int):
        super().__init__()
        self._conv = ConvReLU(in_ch, squeeze_ch, 1)
        self._conv_path1 = ConvReLU(squeeze_ch, expand_ch, 1)
        self._conv_path2 = ConvReLU(squeeze_ch, expand_ch, 3)

    def forward(self, x):
        squeezed = self._conv(x)
        return paddle.concat([self._conv_path1(squeezed), self._conv_path2(squeezed)], axis=1)


class SqueezeNet(ClassifierNet):
    """Generic SqueezeNet; ``version`` is "1_0" or "1_1"."""

    classifier_names = ("_conv9",)

    def __init__(self, version: str = "1_0", class_dim: int = 1000, dropout_prob: float = 0.5):
        super().__init__()
        if version not in NET_CONFIG:
            raise ValueError(f"SqueezeNet version {version!r} is not one of {sorted(NET_CONFIG)}")
        stem_ch, stem_kernel, stem_padding, pool_after = NET_CONFIG[version]
        self._conv = nn.Conv2D(3, stem_ch, stem_kernel, stride=2, padding=stem_padding)
        self.relu = nn.ReLU()
        self.max_pool = nn.MaxPool2D(3, 2)
        self.pool_after = set(pool_after)
        in_ch = stem_ch
        for number, (squeeze_ch, expand_ch) in enumerate(FIRE_CONFIG, start=1):
            self.add_sublayer(f"_conv{number}", Fire(in_ch, squeeze_ch, expand_ch))
            in_ch = 2 * expand_ch
        self.num_features = in_ch
        # scaled at inference, not in training: how the published weights were trained
        self.dropout = nn.Dropout(p=dropout_prob, mode="downscale_in_infer")
        self._conv9 = nn.Conv2D(in_ch, class_dim, 1)
        self.avg_pool = nn.AdaptiveAvgPool2D(1)

    def forward_features(self, x):
        x = self.max_pool(self.relu(self._conv(x)))
        for number in range(1, len(FIRE_CONFIG) + 1):
            x = getattr(self, f"_conv{number}")(x)
            if number in self.pool_after:
                x = self.max_pool(x)
        return x

    def forward_head(self, features):
        logits = self.relu(self._conv9(self.dropout(features)))
        return paddle.flatten(self.avg_pool(logits), 1)


def _make(version: str):
    def build(class_dim: int = 1000, **options):
        unknown = set(options) - {"dropout_prob"}
        if unknown:
            raise TypeError(f"SqueezeNet got unknown option(s): {', '.join(sorted(unknown))}")
        return SqueezeNet(version=version, class_dim=class_dim, **options)

    return build


for _version in NET_CONFIG:
    register_model(f"SqueezeNet{_version}", meta=_meta(_version))(_make(_version))
