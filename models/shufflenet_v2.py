"""ShuffleNetV2 (Ma et al. 2018): channel split, two cheap branches, concat and channel shuffle.

PaddleClas key layout: ``_conv1`` stem, blocks registered directly on the network as ``{stage}_{index}``
(``2_1`` .. ``4_4``), ``_last_conv`` and the classifier ``_fc``. The ``*_swish`` variants use swish
wherever the others use ReLU; their keys are those of the matching ReLU network.
"""
from __future__ import annotations

import paddle
from paddle import nn

from models.base import ClassifierNet
from models.registry import ModelMeta, register_model

SHUFFLENET_V2_META = ModelMeta(family="ShuffleNetV2", classifier=("_fc",))

STEM_CHANNELS = 24
STAGE_REPEATS = (4, 8, 4)  # stages 2, 3, 4
# scale -> (output channels of stages 2-4, width of the last 1x1 conv), the paper's Table 5 plus the
# small widths of the classic suite
NET_CONFIG = {
    0.25: ((24, 48, 96), 512),
    0.33: ((32, 64, 128), 512),
    0.5: ((48, 96, 192), 1024),
    1.0: ((116, 232, 464), 1024),
    1.5: ((176, 352, 704), 1024),
    2.0: ((244, 488, 976), 2048),
}
SCALES = {"x0_25": 0.25, "x0_33": 0.33, "x0_5": 0.5, "x1_0": 1.0, "x1_5": 1.5, "x2_0": 2.0}
SWISH_SCALES = {"x0_5": 0.5, "x1_0": 1.0, "x1_5": 1.5, "x2_0": 2.0}
ACTIVATIONS = {"relu": nn.ReLU, "swish": nn.Swish}


def channel_shuffle(x: paddle.Tensor, groups: int) -> paddle.Tensor:
    """Interleave the channels of ``groups`` equal groups so the next split mixes both branches."""
    _, channels, height, width = x.shape
    x = paddle.reshape(x, [-1, groups, channels // groups, height, width])
    x = paddle.transpose(x, [0, 2, 1, 3, 4])
    return paddle.reshape(x, [-1, channels, height, width])


class ConvBN(nn.Layer):
    """conv (no bias) -> BatchNorm -> optional activation ("relu" | "swish" | None)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1,
                 act: str | None = None):
        super().__init__()
        self._conv = nn.Conv2D(in_ch, out_ch, kernel, stride=stride, padding=(kernel - 1) // 2, groups=groups,
                               bias_attr=False)
        self._batch_norm = nn.BatchNorm2D(out_ch)
        self.act = ACTIVATIONS[act]() if act else None

    def forward(self, x):
        x = self._batch_norm(self._conv(x))
        return self.act(x) if self.act is not None else x


class ShuffleUnit(nn.Layer):
    """Stride-1 unit: half the channels pass through, the other half go 1x1 -> 3x3 depthwise -> 1x1."""

    def __init__(self, channels: int, act: str):
        super().__init__()
        half = channels // 2
        self._conv_pw = ConvBN(half, half, 1, act=act)
        self._conv_dw = ConvBN(half, half, 3, groups=half)
        self._conv_linear = ConvBN(half, half, 1, act=act)

    def forward(self, x):
        passthrough, branch = paddle.split(x, 2, axis=1)
        branch = self._conv_linear(self._conv_dw(self._conv_pw(branch)))
        return channel_shuffle(paddle.concat([passthrough, branch], axis=1), 2)


class ShuffleDownUnit(nn.Layer):
    """Stride-2 unit: both branches see the whole input and halve the resolution; widths add up to out_ch."""

    def __init__(self, in_ch: int, out_ch: int, act: str):
        super().__init__()
        half = out_ch // 2
        self._conv_dw_1 = ConvBN(in_ch, in_ch, 3, stride=2, groups=in_ch)
        self._conv_linear_1 = ConvBN(in_ch, half, 1, act=act)
        self._conv_pw_2 = ConvBN(in_ch, half, 1, act=act)
        self._conv_dw_2 = ConvBN(half, half, 3, stride=2, groups=half)
        self._conv_linear_2 = ConvBN(half, half, 1, act=act)

    def forward(self, x):
        left = self._conv_linear_1(self._conv_dw_1(x))
        right = self._conv_linear_2(self._conv_dw_2(self._conv_pw_2(x)))
        return channel_shuffle(paddle.concat([left, right], axis=1), 2)


class ShuffleNetV2(ClassifierNet):
    """Generic ShuffleNetV2; ``scale`` is one of NET_CONFIG's keys, ``act`` is "relu" or "swish"."""

    classifier_names = ("_fc",)

    def __init__(self, scale: float = 1.0, act: str = "relu", class_dim: int = 1000):
        super().__init__()
        if scale not in NET_CONFIG:
            raise ValueError(f"ShuffleNetV2 scale {scale} is not one of {sorted(NET_CONFIG)}")
        if act not in ACTIVATIONS:
            raise ValueError(f"ShuffleNetV2 act {act!r} is not one of {sorted(ACTIVATIONS)}")
        stage_channels, last_channels = NET_CONFIG[scale]
        self._conv1 = ConvBN(3, STEM_CHANNELS, 3, stride=2, act=act)
        self.max_pool = nn.MaxPool2D(3, 2, padding=1)
        self.block_names = []
        in_ch = STEM_CHANNELS
        for stage, (repeats, out_ch) in enumerate(zip(STAGE_REPEATS, stage_channels), start=2):
            for index in range(1, repeats + 1):
                block = ShuffleDownUnit(in_ch, out_ch, act) if index == 1 else ShuffleUnit(out_ch, act)
                # names start with a digit, so they can only be registered with add_sublayer
                self.add_sublayer(f"{stage}_{index}", block)
                self.block_names.append(f"{stage}_{index}")
                in_ch = out_ch
        self._last_conv = ConvBN(in_ch, last_channels, 1, act=act)
        self.avg_pool = nn.AdaptiveAvgPool2D(1)
        self.num_features = last_channels
        self._fc = nn.Linear(last_channels, class_dim)

    def forward_features(self, x):
        x = self.max_pool(self._conv1(x))
        for name in self.block_names:
            x = getattr(self, name)(x)
        return self._last_conv(x)

    def forward_head(self, features):
        return self._fc(paddle.flatten(self.avg_pool(features), 1))


def _make(scale: float, act: str = "relu"):
    def build(class_dim: int = 1000, **options):
        if options:
            raise TypeError(f"ShuffleNetV2 got unknown option(s): {', '.join(sorted(options))}")
        return ShuffleNetV2(scale=scale, act=act, class_dim=class_dim)

    return build


for _suffix, _scale in SCALES.items():
    register_model(f"ShuffleNetV2_{_suffix}", meta=SHUFFLENET_V2_META)(_make(_scale))
register_model("ShuffleNetV2", meta=SHUFFLENET_V2_META)(_make(1.0))
for _suffix, _scale in SWISH_SCALES.items():
    register_model(f"ShuffleNetV2_{_suffix}_swish", meta=SHUFFLENET_V2_META)(_make(_scale, "swish"))
register_model("ShuffleNetV2_swish", meta=SHUFFLENET_V2_META)(_make(1.0, "swish"))
