"""GoogLeNet (Szegedy et al., "Going Deeper with Convolutions"), laid out as in the classic PaddleCV suite.

Inception modules run four parallel branches (1x1; 1x1 -> 3x3; 1x1 -> 5x5; 3x3 max pool -> 1x1
projection) and concatenate them. Two auxiliary classifiers (on inception 4a and 4d) help training; they
hold parameters in every mode but only run in training mode, where ``forward`` returns
``(logits, aux1_logits, aux2_logits)``.

As in the classic suite, whose published weights this layout loads: convolutions have no bias, no
BatchNorm and no activation of their own; a ReLU follows each Inception concat (the max pools keep the
stem non-linear). No local response normalisation.

Dropout (main head 0.4, auxiliary heads 0.7) follows the published PaddleClas weights, which were trained
with "downscale_in_infer" dropout (kept activations unscaled in training, all scaled by 1 - p in eval), not
the ``nn.Dropout`` default (upscale_in_train): with those weights the default gives other logits in eval,
and fine-tuning under it would change the scale the classifiers were trained for.

State_dict keys: stem ``_conv``, ``_conv_1``, ``_conv_2``; modules ``_ince3a`` .. ``_ince5b`` with
``_conv1``, ``_conv3r``, ``_conv3``, ``_conv5r``, ``_conv5``, ``_convprj`` (each ``._conv``); main
classifier ``_fc_out``; auxiliary heads ``_conv_o1``, ``_fc_o1``, ``_out1`` and ``_conv_o2``, ``_fc_o2``,
``_out2``.
"""
from __future__ import annotations

from typing import NamedTuple

import paddle
from paddle import nn

from models.base import ClassifierNet
from models.registry import ModelMeta, register_model


class InceptionConfig(NamedTuple):
    conv1: int
    conv3_reduce: int
    conv3: int
    conv5_reduce: int
    conv5: int
    pool_proj: int

    @property
    def out_channels(self) -> int:
        return self.conv1 + self.conv3 + self.conv5 + self.pool_proj


# The paper's Table 1; a 3x3/2 max pool follows 3b and 4e.
NET_CONFIG: dict[str, InceptionConfig] = {
    "3a": InceptionConfig(64, 96, 128, 16, 32, 32),
    "3b": InceptionConfig(128, 128, 192, 32, 96, 64),
    "4a": InceptionConfig(192, 96, 208, 16, 48, 64),
    "4b": InceptionConfig(160, 112, 224, 24, 64, 64),
    "4c": InceptionConfig(128, 128, 256, 24, 64, 64),
    "4d": InceptionConfig(112, 144, 288, 32, 64, 64),
    "4e": InceptionConfig(256, 160, 320, 32, 128, 128),
    "5a": InceptionConfig(256, 160, 320, 32, 128, 128),
    "5b": InceptionConfig(384, 192, 384, 48, 128, 128),
}
POOL_AFTER = ("3b", "4e")
AUX_AFTER = ("4a", "4d")  # modules whose output feeds auxiliary heads 1 and 2
AUX_CONV_CHANNELS = 128
AUX_GRID = 3  # the auxiliary 5x5/3 average pool leaves a 3x3 grid at 224 input
AUX_HIDDEN = 1024

GOOGLENET_META = ModelMeta(classifier=("_fc_out", "_out1", "_out2"), family="GoogLeNet", min_input_size=45)


def _uniform_fan_in(fan_in: int, gain: float = 1.0) -> paddle.ParamAttr:
    bound = gain / fan_in**0.5
    return paddle.ParamAttr(initializer=nn.initializer.Uniform(-bound, bound))


class ConvLayer(nn.Layer):
    """A bare convolution (no bias, no BatchNorm, no activation), keyed ``_conv``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1):
        super().__init__()
        # no BatchNorm here, so keep each conv's output variance near its input's (bound sqrt(3 / fan_in))
        fan_in = in_channels * kernel_size * kernel_size
        self._conv = nn.Conv2D(in_channels, out_channels, kernel_size, stride=stride,
                               padding=(kernel_size - 1) // 2, bias_attr=False,
                               weight_attr=_uniform_fan_in(fan_in, gain=3**0.5))

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self._conv(x)


class Inception(nn.Layer):
    def __init__(self, in_channels: int, config: InceptionConfig):
        super().__init__()
        self._conv1 = ConvLayer(in_channels, config.conv1, 1)
        self._conv3r = ConvLayer(in_channels, config.conv3_reduce, 1)
        self._conv3 = ConvLayer(config.conv3_reduce, config.conv3, 3)
        self._conv5r = ConvLayer(in_channels, config.conv5_reduce, 1)
        self._conv5 = ConvLayer(config.conv5_reduce, config.conv5, 5)
        self._pool = nn.MaxPool2D(3, stride=1, padding=1)
        self._convprj = ConvLayer(in_channels, config.pool_proj, 1)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        branches = [
            self._conv1(x),
            self._conv3(self._conv3r(x)),
            self._conv5(self._conv5r(x)),
            self._convprj(self._pool(x)),
        ]
        return nn.functional.relu(paddle.concat(branches, axis=1))


def _aux_pool(x: paddle.Tensor) -> paddle.Tensor:
    """The paper's 5x5/3 average pool (exact at 224 input, where it gives the 3x3 grid the published
    weights expect); at other input sizes, adaptive pooling to the same grid so training still runs."""
    if min(x.shape[2:]) >= 5:
        pooled = nn.functional.avg_pool2d(x, 5, stride=3)
        if list(pooled.shape[2:]) == [AUX_GRID, AUX_GRID]:
            return pooled
    return nn.functional.adaptive_avg_pool2d(x, AUX_GRID)


class GoogLeNet(ClassifierNet):
    classifier_names = ("_fc_out", "_out1", "_out2")

    def __init__(self, class_dim: int = 1000, dropout: float = 0.4, aux_dropout: float = 0.7):
        super().__init__()
        self._conv = ConvLayer(3, 64, 7, stride=2)
        self._conv_1 = ConvLayer(64, 64, 1)
        self._conv_2 = ConvLayer(64, 192, 3)
        self._pool = nn.MaxPool2D(3, stride=2)
        channels, aux_channels = 192, []
        self._module_names = []
        for name, config in NET_CONFIG.items():
            self.add_sublayer(f"_ince{name}", Inception(channels, config))
            self._module_names.append(name)
            channels = config.out_channels
            if name in AUX_AFTER:
                aux_channels.append(channels)
        self.num_features = channels
        self._avg_pool = nn.AdaptiveAvgPool2D(1)
        self._drop = nn.Dropout(dropout, mode="downscale_in_infer")
        self._fc_out = nn.Linear(channels, class_dim, weight_attr=_uniform_fan_in(channels))
        aux_features = AUX_CONV_CHANNELS * AUX_GRID * AUX_GRID
        self._conv_o1 = ConvLayer(aux_channels[0], AUX_CONV_CHANNELS, 1)
        self._fc_o1 = nn.Linear(aux_features, AUX_HIDDEN, weight_attr=_uniform_fan_in(aux_features))
        self._out1 = nn.Linear(AUX_HIDDEN, class_dim, weight_attr=_uniform_fan_in(AUX_HIDDEN))
        self._conv_o2 = ConvLayer(aux_channels[1], AUX_CONV_CHANNELS, 1)
        self._fc_o2 = nn.Linear(aux_features, AUX_HIDDEN, weight_attr=_uniform_fan_in(aux_features))
        self._out2 = nn.Linear(AUX_HIDDEN, class_dim, weight_attr=_uniform_fan_in(AUX_HIDDEN))
        self._drop_aux = nn.Dropout(aux_dropout, mode="downscale_in_infer")

    def _trunk(self, x: paddle.Tensor) -> tuple[paddle.Tensor, list[paddle.Tensor]]:
        """Final feature map, plus the outputs of the modules that feed the auxiliary heads."""
        x = self._pool(self._conv_2(self._conv_1(self._pool(self._conv(x)))))
        taps = []
        for name in self._module_names:
            x = getattr(self, f"_ince{name}")(x)
            if name in AUX_AFTER:
                taps.append(x)
            if name in POOL_AFTER:
                x = self._pool(x)
        return x, taps

    def forward_features(self, x: paddle.Tensor) -> paddle.Tensor:
        return self._trunk(x)[0]

    def forward_head(self, features: paddle.Tensor) -> paddle.Tensor:
        return self._fc_out(self._drop(paddle.flatten(self._avg_pool(features), 1)))

    def _aux_head(self, x: paddle.Tensor, conv: nn.Layer, hidden: nn.Layer, out: nn.Layer) -> paddle.Tensor:
        x = paddle.flatten(conv(_aux_pool(x)), 1)
        return out(self._drop_aux(nn.functional.relu(hidden(x))))

    def forward(self, x: paddle.Tensor):
        features, (tap1, tap2) = self._trunk(x)
        logits = self.forward_head(features)
        if not self.training:
            return logits
        aux1 = self._aux_head(tap1, self._conv_o1, self._fc_o1, self._out1)
        aux2 = self._aux_head(tap2, self._conv_o2, self._fc_o2, self._out2)
        return logits, aux1, aux2


@register_model("GoogLeNet", meta=GOOGLENET_META)
def googlenet(class_dim: int = 1000, **options) -> GoogLeNet:
    unknown = set(options) - {"dropout", "aux_dropout"}
    if unknown:
        raise TypeError(f"GoogLeNet got unknown option(s): {', '.join(sorted(unknown))}")
    return GoogLeNet(class_dim, **options)
