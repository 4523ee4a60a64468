"""EfficientNet (Tan & Le, "Rethinking Model Scaling for CNNs", 2019) B0-B7, the SE-free B0_small, and
EfficientNet-Lite0 (the TF "lite" variant: no squeeze-excite, ReLU6 for swish).

B0 is a stack of MBConv blocks (1x1 expand -> depthwise kxk -> squeeze-excite -> 1x1 project, residual with
stochastic depth when the shape is kept); B1-B7 scale its width, depth and input resolution together
(compound scaling). Key layout of the published PaddleClas weights: ``_ef._conv_stem``, blocks registered
under the literal names ``_blocks.N.`` (first block of a stage) and ``block.N.`` (its repeats), each with
``_ecn`` / ``_dcn`` / ``_se`` / ``_pcn``; then the head conv ``_conv`` and the classifier ``_fc``.

Padding (option ``padding_type``): 'DYNAMIC' pads (k - 1) // 2 on every side; 'VALID' does not pad; 'SAME'
follows the rule the variant's weights were trained with, a property of the variant rather than an option:
- EfficientNetB0-B7 (and 'SAME' on B0_small): PaddleClas's rule, which the published PaddleClas weights
  expect. Each conv's pads are fixed when the network is built, from TensorFlow's 'SAME' pads for the size
  its stage has at the variant's native resolution (PaddleClas tabulates these sizes); where those pads are
  uneven it pads (before + stride) on every side and crops the first output row and column. At the native
  resolution this gives TensorFlow's windows; at other sizes the pads stay those of the native size.
- EfficientNetLite0: TensorFlow's rule (pads from the actual input size, the odd pixel at the bottom/right),
  which its TF-trained weights expect; built with PaddleClas's rule its logits differ by 15%.
EfficientNetB0_small defaults to 'DYNAMIC', as PaddleClas builds it (the classic suite used 'SAME'); its
published weights were trained that way.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

import paddle
import paddle.nn.functional as F
from paddle import nn

from models.base import ClassifierNet
from models.registry import ModelMeta, register_model

PADDING_TYPES = ("SAME", "DYNAMIC", "VALID")
SAME_RULES = ("paddleclas", "tensorflow")  # what 'SAME' means; fixed per variant by its weights
ACTIVATIONS = {"swish": nn.Swish, "relu6": nn.ReLU6}


@dataclass(frozen=True)
class StageArgs:
    """One stage of the B0 baseline (before scaling)."""

    kernel: int
    repeats: int
    stride: int
    expand_ratio: int
    in_channels: int
    out_channels: int


# The EfficientNet-B0 baseline (paper, Table 1); every block uses squeeze-excite ratio 0.25.
B0_STAGES = (
    StageArgs(3, 1, 1, 1, 32, 16),
    StageArgs(3, 2, 2, 6, 16, 24),
    StageArgs(5, 2, 2, 6, 24, 40),
    StageArgs(3, 3, 2, 6, 40, 80),
    StageArgs(5, 3, 1, 6, 80, 112),
    StageArgs(5, 4, 2, 6, 112, 192),
    StageArgs(3, 1, 1, 6, 192, 320),
)
SE_RATIO = 0.25
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280


@dataclass(frozen=True)
class GlobalParams:
    """Network-wide hyper-parameters; ``override_params`` may replace any of them."""

    width_coefficient: float = 1.0
    depth_coefficient: float = 1.0
    resolution: int = 224
    dropout_rate: float = 0.2
    drop_connect_rate: float = 0.2
    batch_norm_momentum: float = 0.99  # the TF reference's moving-average decay
    batch_norm_epsilon: float = 1e-3
    depth_divisor: int = 8
    min_depth: int | None = None


# variant -> (width coefficient, depth coefficient, resolution, dropout rate), paper Sec. 4.2 / reference code.
NET_CONFIG = {
    "b0": (1.0, 1.0, 224, 0.2),
    "b1": (1.0, 1.1, 240, 0.2),
    "b2": (1.1, 1.2, 260, 0.3),
    "b3": (1.2, 1.4, 300, 0.3),
    "b4": (1.4, 1.8, 380, 0.4),
    "b5": (1.6, 2.2, 456, 0.4),
    "b6": (1.8, 2.6, 528, 0.5),
    "b7": (2.0, 3.1, 600, 0.5),
}


def round_filters(channels: int, params: GlobalParams) -> int:
    """Scale a channel count by the width coefficient, rounded to the depth divisor (never down by >10%)."""
    divisor = params.depth_divisor
    scaled = channels * params.width_coefficient
    rounded = max(params.min_depth or divisor, int(scaled + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * scaled else rounded


def round_repeats(repeats: int, params: GlobalParams) -> int:
    return int(math.ceil(params.depth_coefficient * repeats))


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow 'SAME' padding of one spatial dimension: (before, after), the odd pixel after."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def paddleclas_same_padding(planned_size: int, kernel: int, stride: int) -> tuple[int, bool]:
    """PaddleClas's 'SAME' for a conv planned for ``planned_size`` inputs: (padding on every side, whether
    the first output row and column are cropped). Uneven TF pads (before < after) become before + stride on
    every side plus the crop, which gives TF's windows at the planned size."""
    before, after = same_padding(planned_size, kernel, stride)
    if before == after:
        return before, False
    return before + stride, True


def stage_input_sizes(resolution: int) -> list[int]:
    """Input size of the stem (index 0) and of stages 1-7 at ``resolution``: PaddleClas's per-variant table."""
    size = -(-resolution // 2)  # after the stride-2 stem
    sizes = [resolution]
    for stage in B0_STAGES:
        sizes.append(size)
        size = -(-size // stage.stride)
    return sizes


class PaddedConv2D(nn.Layer):
    """A Conv2D with the suite's padding modes. 'SAME' with ``planned_size`` is PaddleClas's rule (fixed pads
    for that input size); without it TensorFlow's, computed from the actual input (only strided convs need
    that: with stride 1 and an odd kernel TF's 'SAME' is symmetric)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int = 1, groups: int = 1,
                 bias: bool = False, padding_type: str = "SAME", planned_size: int | None = None):
        super().__init__()
        self.kernel, self.stride = kernel, stride
        self.pad_dynamically = padding_type == "SAME" and planned_size is None and stride > 1
        self.crop_first = False
        if padding_type == "SAME" and planned_size is not None:
            static, self.crop_first = paddleclas_same_padding(planned_size, kernel, stride)
        elif padding_type == "VALID" or self.pad_dynamically:
            static = 0
        else:
            static = (kernel - 1) // 2
        self._conv = nn.Conv2D(in_channels, out_channels, kernel, stride=stride, padding=static, groups=groups,
                               bias_attr=None if bias else False)

    def forward(self, x):
        if self.pad_dynamically:
            top, bottom = same_padding(x.shape[2], self.kernel, self.stride)
            left, right = same_padding(x.shape[3], self.kernel, self.stride)
            x = F.pad(x, [left, right, top, bottom])
        x = self._conv(x)
        return x[:, :, 1:, 1:] if self.crop_first else x


class ConvBNAct(nn.Layer):
    """PaddedConv2D (no bias) -> BatchNorm -> optional activation."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, params: GlobalParams, stride: int = 1,
                 groups: int = 1, activation: str | None = "swish", padding_type: str = "SAME",
                 planned_size: int | None = None):
        super().__init__()
        self._conv = PaddedConv2D(in_channels, out_channels, kernel, stride, groups, padding_type=padding_type,
                                  planned_size=planned_size)
        self._bn = nn.BatchNorm2D(out_channels, momentum=params.batch_norm_momentum,
                                  epsilon=params.batch_norm_epsilon)
        self.act = ACTIVATIONS[activation]() if activation else None

    def forward(self, x):
        x = self._bn(self._conv(x))
        return self.act(x) if self.act is not None else x


class NestedConvBNAct(nn.Layer):
    """A ConvBNAct held as ``_conv``: the published weights nest the stem and every block conv one level
    deeper than the head conv (``_dcn._conv._conv._conv.weight``)."""

    def __init__(self, *args, **kwargs):
        super().__init__()
        self._conv = ConvBNAct(*args, **kwargs)

    def forward(self, x):
        return self._conv(x)


class SqueezeExcite(nn.Layer):
    """Channel gating: global average pool -> 1x1 reduce + activation -> 1x1 expand + sigmoid -> rescale."""

    def __init__(self, channels: int, squeezed: int, activation: str):
        super().__init__()
        self._conv1 = PaddedConv2D(channels, squeezed, 1, bias=True)
        self._conv2 = PaddedConv2D(squeezed, channels, 1, bias=True)
        self.act = ACTIVATIONS[activation]()

    def forward(self, x):
        gate = self.act(self._conv1(F.adaptive_avg_pool2d(x, 1)))
        return x * F.sigmoid(self._conv2(gate))


def drop_connect(x: paddle.Tensor, rate: float) -> paddle.Tensor:
    """Stochastic depth: drop the whole residual branch of random samples, rescale the kept ones."""
    keep = 1.0 - rate
    mask = paddle.floor(keep + paddle.rand([x.shape[0], 1, 1, 1], dtype=x.dtype))
    return x / keep * mask


class MBConv(nn.Layer):
    """Inverted residual block: [1x1 expand] -> depthwise kxk -> [squeeze-excite] -> 1x1 project."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int, expand_ratio: int,
                 params: GlobalParams, use_se: bool, activation: str, padding_type: str,
                 drop_connect_rate: float, planned_size: int | None = None):
        super().__init__()
        hidden = in_channels * expand_ratio
        if expand_ratio != 1:
            self._ecn = NestedConvBNAct(in_channels, hidden, 1, params, activation=activation,
                                        padding_type=padding_type)
        self.expand = expand_ratio != 1
        self._dcn = NestedConvBNAct(hidden, hidden, kernel, params, stride=stride, groups=hidden,
                                    activation=activation, padding_type=padding_type, planned_size=planned_size)
        if use_se:
            # squeezed width follows the block's input channels, not the expanded ones
            self._se = SqueezeExcite(hidden, max(1, int(in_channels * SE_RATIO)), activation)
        self.use_se = use_se
        self._pcn = NestedConvBNAct(hidden, out_channels, 1, params, activation=None, padding_type=padding_type)
        self.residual = stride == 1 and in_channels == out_channels
        self.drop_connect_rate = drop_connect_rate

    def forward(self, x):
        out = self._ecn(x) if self.expand else x
        out = self._dcn(out)
        if self.use_se:
            out = self._se(out)
        out = self._pcn(out)
        if not self.residual:
            return out
        if self.training and self.drop_connect_rate > 0:
            out = drop_connect(out, self.drop_connect_rate)
        return out + x


class FeatureExtractor(nn.Layer):
    """Stem and all MBConv blocks (``_ef`` in the published weights). ``planned_sizes`` (stem, stages 1-7)
    selects PaddleClas's 'SAME' rule; None TensorFlow's."""

    def __init__(self, params: GlobalParams, use_se: bool, activation: str, padding_type: str,
                 planned_sizes: list[int] | None = None):
        super().__init__()
        planned = planned_sizes or [None] * (len(B0_STAGES) + 1)
        self._conv_stem = NestedConvBNAct(3, round_filters(STEM_CHANNELS, params), 3, params, stride=2,
                                          activation=activation, padding_type=padding_type,
                                          planned_size=planned[0])
        plan = list(self._block_plan(params))
        self.block_names = []
        for index, (repeat, in_ch, out_ch, stage_index) in enumerate(plan):
            stage = B0_STAGES[stage_index]
            # the PaddleClas weights name blocks by these literal strings (dots included)
            name = f"block.{index}." if repeat else f"_blocks.{index}."
            # PaddleClas plans every block of a stage for the stage's input size, repeats included
            block = MBConv(in_ch, out_ch, stage.kernel, 1 if repeat else stage.stride, stage.expand_ratio,
                           params, use_se, activation, padding_type,
                           drop_connect_rate=params.drop_connect_rate * index / len(plan),
                           planned_size=planned[stage_index + 1])
            self.add_sublayer(name, block)
            self.block_names.append(name)

    @staticmethod
    def _block_plan(params: GlobalParams):
        """Yield (is_repeat, in_channels, out_channels, stage index) for every block of the scaled network."""
        for stage_index, stage in enumerate(B0_STAGES):
            in_ch, out_ch = round_filters(stage.in_channels, params), round_filters(stage.out_channels, params)
            for repeat in range(round_repeats(stage.repeats, params)):
                yield repeat > 0, out_ch if repeat else in_ch, out_ch, stage_index

    def forward(self, x):
        x = self._conv_stem(x)
        for name in self.block_names:
            x = self._sub_layers[name](x)
        return x


class EfficientNet(ClassifierNet):
    """Generic EfficientNet. ``variant`` is a NET_CONFIG key; ``use_se=False`` drops squeeze-excite (B0_small,
    Lite); ``activation`` is "swish" (EfficientNet) or "relu6" (Lite); ``same_rule`` is what 'SAME' padding
    means, "paddleclas" or "tensorflow" (see the module docstring)."""

    classifier_names = ("_fc",)

    def __init__(self, variant: str = "b0", class_dim: int = 1000, padding_type: str = "SAME", use_se: bool = True,
                 drop_connect_rate: float = 0.2, override_params: dict | None = None, activation: str = "swish",
                 same_rule: str = "paddleclas"):
        super().__init__()
        if padding_type not in PADDING_TYPES:
            raise ValueError(f"padding_type {padding_type!r} is not one of {PADDING_TYPES}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation {activation!r} is not one of {tuple(ACTIVATIONS)}")
        if same_rule not in SAME_RULES:
            raise ValueError(f"same_rule {same_rule!r} is not one of {SAME_RULES}")
        params = global_params(variant, drop_connect_rate, override_params)
        self.global_params = params
        # PaddleClas's table follows the variant's native resolution, not an overridden one
        planned = stage_input_sizes(NET_CONFIG[variant][2]) if same_rule == "paddleclas" else None
        self._ef = FeatureExtractor(params, use_se, activation, padding_type, planned)
        last_block = round_filters(B0_STAGES[-1].out_channels, params)
        self.num_features = round_filters(HEAD_CHANNELS, params)
        self._conv = ConvBNAct(last_block, self.num_features, 1, params, activation=activation,
                               padding_type=padding_type)
        self._pool = nn.AdaptiveAvgPool2D(1)
        self._drop = nn.Dropout(params.dropout_rate)
        self._fc = nn.Linear(self.num_features, class_dim)

    def forward_features(self, x):
        return self._conv(self._ef(x))

    def forward_head(self, features):
        return self._fc(self._drop(paddle.flatten(self._pool(features), 1)))


def global_params(variant: str, drop_connect_rate: float, override_params: dict | None) -> GlobalParams:
    if variant not in NET_CONFIG:
        raise ValueError(f"EfficientNet variant {variant!r} is not one of {sorted(NET_CONFIG)}")
    width, depth, resolution, dropout = NET_CONFIG[variant]
    params = GlobalParams(width, depth, resolution, dropout, drop_connect_rate)
    overrides = dict(override_params or {})
    unknown = set(overrides) - {f.name for f in fields(GlobalParams)}
    if unknown:
        raise TypeError(f"override_params has unknown key(s): {', '.join(sorted(unknown))}")
    return replace(params, **overrides)


EFFICIENTNET_OPTIONS = {"padding_type", "use_se", "drop_connect_rate", "override_params"}


def _meta(variant: str) -> ModelMeta:
    size = NET_CONFIG[variant][2]
    return ModelMeta(input_size=size, resize_short=size + 32, interpolation="bicubic", classifier=("_fc",),
                     family="EfficientNet")


def _make(variant: str, allowed=frozenset(EFFICIENTNET_OPTIONS), **defaults):
    def build(class_dim: int = 1000, **options):
        unknown = set(options) - allowed
        if unknown:
            raise TypeError(f"EfficientNet got unknown option(s): {', '.join(sorted(unknown))}")
        return EfficientNet(variant, class_dim, **{**defaults, **options})

    return build


register_model("EfficientNet", meta=_meta("b0"))(_make("b0"))
for _variant in NET_CONFIG:
    register_model(f"EfficientNet{_variant.upper()}", meta=_meta(_variant))(_make(_variant))
register_model("EfficientNetB0_small", meta=_meta("b0"))(_make("b0", use_se=False, padding_type="DYNAMIC"))

# EfficientNet-Lite0: B0 without squeeze-excite, ReLU6 (quantization friendly), TF's 'SAME' rule; its
# weights expect (x - 127) / 128 on 0-255 RGB, and were evaluated with the short side resized to 224 then a
# 224 centre crop (no 256 margin). The activation and SE are what the weights were trained with, so they are
# not options.
LITE_META = ModelMeta(input_size=224, resize_short=224, interpolation="bilinear", mean=(0.498, 0.498, 0.498),
                      std=(0.502, 0.502, 0.502), classifier=("_fc",), family="EfficientNetLite")
register_model("EfficientNetLite0", meta=LITE_META)(
    _make("b0", allowed=frozenset({"padding_type", "drop_connect_rate", "override_params"}),
          use_se=False, activation="relu6", same_rule="tensorflow"))
