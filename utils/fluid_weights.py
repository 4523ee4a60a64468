"""The classic suite's pretrained weights: Fluid per-parameter directories (one file per parameter, named by
its Fluid parameter name, e.g. ``res2a_branch2a_weights``, ``bn2a_branch2a_scale``, ``fc_0.w_0``).

Paddle reads such a directory itself (``paddle.load(directory)``: name -> array); what this module adds is
the name map from this zoo's state_dict keys to the Fluid names. The names are those the classic model
definitions (PaddlePaddle/models, PaddleCV/image_classification/models/) give their ParamAttrs: one table
per family below. Convert a directory once into a ``.pdparams`` file:

    python -m utils.fluid_weights --model ResNet50_vd --fluid_dir ResNet50_vd_pretrained --output ResNet50_vd.pdparams

or pass the directory itself to ``--pretrained_model`` (train.py, eval.py, infer.py).

Every classic model of the zoo has a map (EfficientNetLite0 is no classic model). A family is one
``FluidFamily``: a unit table for the model (ResNet, ResNet_vd/vc, ResNeXt(_vd), Res2Net(_vd), SE_ResNet_vd,
SE_ResNeXt(_vd), SENet154_vd, ResNet_ACNet, FastImageNet, DARTS, MobileNetV1/V2, HRNet/SE_HRNet,
Xception_deeplab) and/or regex rules on our keys (AlexNet, VGG, SqueezeNet, GoogLeNet, InceptionV3/V4,
DenseNet, DPN, DarkNet53, EfficientNet, MobileNetV3, ShuffleNetV2(_swish), Xception, ResNeXt101_wsl /
Fix_ResNeXt101_32x48d_wsl). Names Paddle generated (an unnamed layer: ``conv2d_<n>.w_0``, ``fc_0.w_0``) follow
the classic program's creation order (FastImageNet, DARTS, the ResNet classifiers). Where the classic
network computes differently from ours with the same weights, the family says so as data (``dropout_scale``:
SE_ResNeXt and SENet154_vd scale their classifier input at inference) and conversion folds it in.

Checked: tests/test_fluid_maps.py against PaddleClas 2.6's ports, which keep the classic names (every key of
the 75 models it names), and against names transcribed from the classic files for the rest;
tests/test_classic_compat.py against networks built under Paddle 2.x with the classic layout and names
(tests/classic_fluid_nets.py: ResNet, ResNet_vd, ResNeXt(_vd), MobileNetV1/V2, SE_ResNeXt50/152_32x4d): same
logits.
"""
from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np

from utils.errors import UsageError

# a layer's parameter -> the classic suffix after its Fluid name (conv / fc; BatchNorm)
LAYER_SUFFIX = {"weight": "_weights", "bias": "_offset"}
BN_SUFFIX = {"weight": "_scale", "bias": "_offset", "_mean": "_mean", "_variance": "_variance"}
TORCH_BN_SUFFIX = {"weight": ".weight", "bias": ".bias", "_mean": ".running_mean", "_variance": ".running_var"}
# this zoo's conv+BN units hold their conv and BatchNorm under one of these sub-layer names
CONV_PARTS, BN_PARTS = ("conv", "_conv"), ("bn", "_bn", "_batch_norm")
CHECKPOINT_WEIGHTS = "model.pdparams"  # a directory holding this is one of this suite's checkpoints


def _with_bn(conv_name: str) -> str:
    return conv_name + "_bn"


@dataclass(frozen=True)
class FluidFamily:
    """How one classic family names its parameters. A key of ours is ``<layer>.<param>``; a layer that is the
    conv or BatchNorm part of a unit (``<unit>.conv``, ``<unit>._batch_norm``, ...) is named through its unit,
    any other layer is a unit itself. The unit's Fluid name comes from ``units(model)`` (an exact table) or else
    from the first of ``rules`` (regex on the unit -> ``re.Match.expand`` template) that matches it; a
    BatchNorm's name is ``bn_name`` of it. ``head`` names whole keys (the classifier)."""
    units: Callable[[str], dict] = lambda _model: {}  # model name -> {our unit: Fluid conv name}
    rules: tuple = ()  # ((regex on our unit, template), ...), tried after units
    bn_name: Callable[[str], str] = _with_bn  # Fluid conv name -> Fluid BatchNorm name
    head: dict = field(default_factory=dict)  # our key -> Fluid name
    key_names: Callable[[str], dict] = lambda _model: {}  # model name -> {our key: Fluid name}, tried first
    suffix: dict = field(default_factory=lambda: LAYER_SUFFIX)
    bn_suffix: dict = field(default_factory=lambda: BN_SUFFIX)
    # our key -> p of a classic fluid.layers.dropout(p) (mode downgrade_in_infer: x (1 - p) at inference)
    # right before that layer, which this zoo's network does not apply: conversion folds (1 - p) into it
    dropout_scale: dict = field(default_factory=dict)

    def classifier_name(self, key: str) -> str | None:
        """The Fluid name of a classifier weight key, known without the model's unit table."""
        layer = key.rpartition(".")[0]
        unit = self.unit_name(layer, {})
        return self.head.get(key) or (unit + self.suffix["weight"] if unit is not None else None)

    def unit_name(self, unit: str, table: dict) -> str | None:
        if unit in table:
            return table[unit]
        for pattern, template in self.rules:
            match = re.fullmatch(pattern, unit)
            if match:
                return match.expand(template) if isinstance(template, str) else template(match)
        return None


# ---------------------------------------------------------------- ResNet and ResNet_vd (resnet.py, resnet_vd.py)

# our sub-layer of a residual block -> the classic branch suffix
RESNET_BRANCHES = {"conv0": "_branch2a", "conv1": "_branch2b", "conv2": "_branch2c", "short": "_branch1"}
RESNET_STEMS = {"": {"stem.0": "conv1"}, "vd": {"stem.0": "conv1_1", "stem.1": "conv1_2", "stem.2": "conv1_3"}}
RESNET_NAME = re.compile(r"ResNet(\d+)(?:_(vd))?(?:_v2)?$")


def _resnet_units(model_name: str) -> dict[str, str]:
    depth_text, variant = RESNET_NAME.match(model_name).groups()
    units = dict(RESNET_STEMS[variant or ""])
    units.update(_residual_units(int(depth_text), lambda block, _stage, _index: f"blocks.{block}"))
    return units


def _residual_units(depth: int, our_block) -> dict[str, str]:
    """Our residual-block sub-layers -> classic names (res<stage+2><suffix>_branch..), for the ResNet block
    counts of ``depth``; ``our_block(block, stage, index)`` names our block."""
    from models.resnet import NET_CONFIG

    units, block = {}, 0
    for stage, count in enumerate(NET_CONFIG[depth][1]):
        for index in range(count):
            suffix = _block_suffix(depth, stage, index)
            for ours, branch in RESNET_BRANCHES.items():
                units[f"{our_block(block, stage, index)}.{ours}"] = f"res{stage + 2}{suffix}{branch}"
            block += 1
    return units


def _block_suffix(depth: int, stage: int, index: int) -> str:
    """res<stage+2><suffix>: the classic 101/152/200-layer nets number their long third stage res4a, res4b1,
    res4b2, ...; every other stage, and the shallower nets, use letters."""
    if depth >= 101 and stage == 2:
        return "a" if index == 0 else f"b{index}"
    return chr(ord("a") + index)


def _resnet_bn_name(conv_name: str) -> str:
    return "bn_conv1" if conv_name == "conv1" else "bn" + conv_name[len("res"):]


# ---------------------------------------------------------------- ResNet_ACNet (resnet_acnet.py)

# our asymmetric branch (models.acnet.ACConvBN) -> the classic suffix on its conv's and BatchNorm's names;
# the deploy form's fused conv is the square one with a bias (<conv>_acsquare_weights / _acsquare_bias)
ACNET_BRANCHES = {"square": "_acsquare", "ver": "_acver", "hor": "_achor", "fused_conv": "_acsquare"}


def _acnet_units(model_name: str) -> dict[str, str]:
    units = _resnet_units(model_name.replace("_ACNet", ""))
    units.update({f"{ours}.{branch}": fluid + suffix for ours, fluid in list(units.items())
                  for branch, suffix in ACNET_BRANCHES.items()})
    return units


def _acnet_bn_name(conv_name: str) -> str:
    base, ac, branch = conv_name.partition("_ac")
    return _resnet_bn_name(base) + ac + branch


# ---------------------------------------------------------------- FastImageNet (fast_imagenet.py)
# Nothing is named there, so every parameter has the name Paddle generates, numbered per layer type in the
# order the program creates the layers: the stem, then per block conv0, conv1, conv2 and the shortcut.
# (paddle LayerHelper.create_parameter: <type>_<n>.w_0; batch_norm: .w_0 scale, .b_0 bias, .w_1 mean, .w_2 var)
GENERATED_BN_SUFFIX = {"weight": ".w_0", "bias": ".b_0", "_mean": ".w_1", "_variance": ".w_2"}


def _fast_imagenet_units(_model_name: str) -> dict[str, str]:
    from models.resnet import NET_CONFIG

    order = ["stem.0"]
    block = 0
    for count in NET_CONFIG[50][1]:
        for index in range(count):
            order += [f"blocks.{block}.conv0", f"blocks.{block}.conv1", f"blocks.{block}.conv2"]
            order += [f"blocks.{block}.short"] if index == 0 else []  # width or stride changes: a projection
            block += 1
    return {ours: f"conv2d_{n}" for n, ours in enumerate(order)}


# ---------------------------------------------------------------- DARTS_4M / DARTS_6M (autodl.py)
# BatchNorms and the classifier are named (stem0.1, cells.<i>._ops.<k>.op.3, ... .weight/.bias/.running_mean/
# .running_var; classifier.weight); the convolutions are not, except FactorizedReduce's conv_1/conv_2, so they
# carry Paddle's generated names in creation order: stem, then per cell preprocess0, preprocess1 and the
# operations in genotype order. A depthwise conv built with use_cudnn=False is a "depthwise_conv2d" layer with
# its own counter (paddle.static.nn.conv2d: l_type); a named FactorizedReduce conv still takes a conv2d number.
DARTS_OP_BNS = {"sep_conv": {"first": "op.3", "second": "op.7"}, "dil_conv": {"": "op.3"}}


def _darts_walk(model_name: str):
    """(our unit, its classic unit, kind) in the classic creation order; kind is conv, depthwise, reduce
    (FactorizedReduce) or relu_conv_bn."""
    from models.darts import NET_CONFIG, NUM_CELLS

    genotype = NET_CONFIG[model_name]
    reduction_prev = True
    for cell in range(NUM_CELLS):
        reduction = cell in (NUM_CELLS // 3, 2 * NUM_CELLS // 3)
        ours, fluid = f"cells.{cell}", f"cells.{cell}."
        yield f"{ours}.preprocess0", fluid + "preprocess0.", "reduce" if reduction_prev else "relu_conv_bn"
        yield f"{ours}.preprocess1", fluid + "preprocess1.", "relu_conv_bn"
        for k, (op, node) in enumerate(genotype.reduce if reduction else genotype.normal):
            kind = op.rsplit("_", 1)[0]
            if op == "skip_connect" and reduction and node < 2:
                yield f"{ours}.ops.{k}", f"{fluid}_ops.{k}.", "reduce"
            for part in DARTS_OP_BNS.get(kind, {}):
                yield f"{ours}.ops.{k}" + (f".{part}" if part else ""), f"{fluid}_ops.{k}.", kind
        reduction_prev = reduction


def _darts_key_names(model_name: str) -> dict[str, str]:
    names = {"stem0.0.weight": "conv2d_0.w_0", "stem0.3.weight": "conv2d_1.w_0", "stem1.1.weight": "conv2d_2.w_0"}
    convs, depthwise = 3, 0
    for ours, fluid, kind in _darts_walk(model_name):
        if kind == "reduce":
            names.update({f"{ours}.conv_even.weight": fluid + "conv_1.weight",
                          f"{ours}.conv_odd.weight": fluid + "conv_2.weight"})
            convs += 2
        elif kind == "relu_conv_bn":
            names[f"{ours}.conv.weight"] = f"conv2d_{convs}.w_0"
            convs += 1
        else:  # a DilConv, or one half of a SepConv: depthwise then pointwise
            names[f"{ours}.depthwise.weight"] = f"depthwise_conv2d_{depthwise}.w_0"
            names[f"{ours}.pointwise.weight"] = f"conv2d_{convs}.w_0"
            depthwise, convs = depthwise + 1, convs + 1
    return names


def _darts_units(model_name: str) -> dict[str, str]:
    """Our BatchNorm units -> the classic BatchNorm names."""
    units = {"stem0.1": "stem0.1", "stem0.4": "stem0.3", "stem1.2": "stem1.1"}
    for ours, fluid, kind in _darts_walk(model_name):
        if kind in ("reduce", "relu_conv_bn"):
            units[ours] = fluid + ("bn" if kind == "reduce" else "op.2")
        else:
            units[ours] = fluid + DARTS_OP_BNS[kind][ours.rpartition(".")[2] if kind == "sep_conv" else ""]
    return units


# ---------------------------------------------------------------- MobileNetV1 (mobilenet_v1.py)

MOBILENET_V1_BLOCKS = ("conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv4_1", "conv4_2", "conv5_1", "conv5_2",
                       "conv5_3", "conv5_4", "conv5_5", "conv5_6", "conv6")
MOBILENET_V1_PARTS = {"depthwise_conv": "_dw", "pointwise_conv": "_sep"}


def _mobilenet_v1_units(_model_name: str) -> dict[str, str]:
    units = {"conv": "conv1"}
    for block, name in enumerate(MOBILENET_V1_BLOCKS):
        for ours, part in MOBILENET_V1_PARTS.items():
            units[f"blocks.{block}.{ours}"] = name + part
    return units


# ---------------------------------------------------------------- ResNeXt(_vd), ResNet_vc, Res2Net(_vd)
# (resnext.py, resnext_vd.py, resnet_vc.py, res2net.py, res2net_vd.py): ResNet's residual names on our
# models.resnet_legacy / models.res2net keys bb_<stage>_<index>

# the plain ResNeXt's 7x7 stem is "res_conv1" (so its BatchNorm is "bn_conv1"); the vd stem is three 3x3 convs
RESNEXT_STEMS = {"": {"conv": "res_conv1"}, "vd": {"conv1_1": "conv1_1", "conv1_2": "conv1_2", "conv1_3": "conv1_3"}}
RESNEXT_NAME = re.compile(r"ResNeXt(\d+)(?:_(vd))?_\d+x4d$")
RES2NET_NAME = re.compile(r"Res2Net(\d+)(?:_(vd))?_\d+w_\d+s$")


def _bb_units(depth: int, stem: dict[str, str]) -> dict[str, str]:
    return {**stem, **_residual_units(depth, lambda _block, stage, index: f"bb_{stage}_{index}")}


def _resnext_units(model_name: str) -> dict[str, str]:
    depth_text, variant = RESNEXT_NAME.match(model_name).groups()
    return _bb_units(int(depth_text), RESNEXT_STEMS[variant or ""])  # ResNet's block counts per depth


def _resnet_vc_units(model_name: str) -> dict[str, str]:
    return _bb_units(int(re.match(r"ResNet(\d+)_vc", model_name)[1]), RESNEXT_STEMS["vd"])


def _res2net_units(model_name: str) -> dict[str, str]:
    """The split 3x3 convs (res2a_branch2b_<k>) carry their classic names in our keys: a rule names them."""
    depth_text, variant = RES2NET_NAME.match(model_name).groups()
    return _bb_units(int(depth_text), RESNEXT_STEMS["vd"] if variant else {"conv1": "conv1"})


# ---------------------------------------------------------------- SE_ResNet_vd, SE_ResNeXt(_vd), SENet154_vd
# (se_resnet_vd.py, se_resnext.py, se_resnext_vd.py; our models.resnet_legacy keys bb_<stage>_<index>)

SE_NAME = re.compile(r"(?:SE_ResNeXt|SE_ResNet|SENet)(\d+)(?:_(vd))?(?:_32x4d)?$")
SENET154_DEPTH = 152  # SENet154_vd: the 152-layer block counts (3-8-36-3) of se_resnext_vd.py
# se_resnext.py's stems: one 7x7 conv1 at 50/101 layers; three 3x3 conv1..conv3 at 152 (our conv1_1..conv1_3)
SE_RESNEXT_STEM = {"conv": "conv1"}
SE_RESNEXT152_STEM = {"conv1_1": "conv1", "conv1_2": "conv2", "conv1_3": "conv3"}


def _se_resnet_vd_units(model_name: str) -> dict[str, str]:
    """ResNet_vd's names; the squeeze-excite FCs of block res<..> are fc_res<..>_sqz / _exc."""
    units = _bb_units(int(SE_NAME.match(model_name)[1]), RESNEXT_STEMS["vd"])
    for ours, fluid in list(units.items()):
        if ours.endswith(".conv0"):
            block, base = ours[:-len(".conv0")], fluid[:-len("_branch2a")]
            units.update({f"{block}.scale.squeeze": f"fc_{base}_sqz", f"{block}.scale.excitation": f"fc_{base}_exc"})
    return units


def _se_resnext_units(model_name: str) -> dict[str, str]:
    """Block <n>_<i> (n counts stages from 2, or from 4 in the 152-layer nets; i from 1): conv<n>_<i>_x1..x3,
    shortcut conv<n>_<i>_prj, squeeze-excite fc<n>_<i>_sqz / _exc."""
    from models.resnet_legacy import stage_depths

    depth_text, variant = SE_NAME.match(model_name).groups()
    depth = SENET154_DEPTH if model_name.startswith("SENet") else int(depth_text)
    if variant:
        units = dict(RESNEXT_STEMS["vd"])
    else:
        units = dict(SE_RESNEXT152_STEM if depth == 152 else SE_RESNEXT_STEM)
    first_stage = 4 if depth == 152 else 2
    for stage, count in enumerate(stage_depths(depth)):
        for index in range(count):
            ours, name = f"bb_{stage}_{index}", f"{stage + first_stage}_{index + 1}"
            units.update({f"{ours}.conv{k}": f"conv{name}_x{k + 1}" for k in range(3)})
            units.update({f"{ours}.short": f"conv{name}_prj", f"{ours}.scale.squeeze": f"fc{name}_sqz",
                          f"{ours}.scale.excitation": f"fc{name}_exc"})
    return units


# ---------------------------------------------------------------- MobileNetV2 (mobilenet_v2.py)

MOBILENET_V2_REPEATS = (1, 2, 3, 4, 3, 3, 1)  # inverted residual units of the stages conv2 .. conv8
MOBILENET_V2_PARTS = {"_expand_conv": "_expand", "_bottleneck_conv": "_dwise", "_linear_conv": "_linear"}


def _mobilenet_v2_units(_model_name: str) -> dict[str, str]:
    units = {"conv1": "conv1_1", "conv9": "conv9"}
    for stage, repeats in enumerate(MOBILENET_V2_REPEATS, start=2):
        for index in range(1, repeats + 1):
            ours = f"conv{stage}._first_block" if index == 1 else f"conv{stage}.conv{stage}_{index}"
            for part, suffix in MOBILENET_V2_PARTS.items():
                units[f"{ours}.{part}"] = f"conv{stage}_{index}{suffix}"
    return units


# ---------------------------------------------------------------- families named by rules on our keys
# (the unit's parts of our key carry the classic numbering; facts from each classic models/<file>.py)

ALEXNET = FluidFamily(rules=((r"_(conv\d|fc\d)", r"\1"),))  # alexnet.py: conv1..conv5, fc6..fc8, all biased

DARKNET = FluidFamily(  # darknet.py: "<name>.conv.weights", "<name>.bn.scale|offset|mean|var"
    rules=((r"_conv1", "yolo_input"), (r"_conv2", "yolo_input.downsample"),
           (r"_downsample_(\d)", r"stage.\1.downsample"),
           (r"_basic_block_(\d)(\d+)\._conv(\d)", lambda m: f"stage.{m[1]}.{int(m[2]) - 1}.{int(m[3]) - 1}"),
           (r"_out", "fc")),
    bn_name=lambda conv: conv, suffix={"weight": ".conv.weights"},
    bn_suffix={"weight": ".bn.scale", "bias": ".bn.offset", "_mean": ".bn.mean", "_variance": ".bn.var"},
    head={"_out.weight": "fc_weights", "_out.bias": "fc_offset"})

DENSENET = FluidFamily(rules=(  # densenet.py
    (r"conv1_func", "conv1"), (r"db_conv_\d+\.(conv\d+_\d+)\.bn_ac_func(\d)", r"\1_x\2"),
    (r"tr_(conv\d+_blk)\.conv_ac_func", r"\1"), (r"batch_norm", "conv5_blk"), (r"out", "fc")))

DPN = FluidFamily(rules=(  # dpn.py: dpn<global block number>_match / _conv1.._conv3
    (r"conv1_x_1_func", "conv1"), (r"(dpn\d+)\.c1x1_w_func", r"\1_match"), (r"(dpn\d+)\.c1x1_a_func", r"\1_conv1"),
    (r"(dpn\d+)\.c3x3_b_func", r"\1_conv2"), (r"(dpn\d+)\.c1x1_c_func", r"\1_conv3"),
    (r"conv5_x_x_bn", "final_concat"), (r"out", "fc")))

_EFFICIENT_BLOCK = r"_ef\.(?:_blocks|block)\.(\d+)\.\."
EFFICIENTNET = FluidFamily(  # efficientnet.py: each conv and BatchNorm named on its own (_bn0/_bn1/_bn2 per block)
    rules=((r"_ef\._conv_stem\._conv\._conv", "_conv_stem"), (r"_ef\._conv_stem\._conv", "_bn0"),
           *((_EFFICIENT_BLOCK + rf"_{ours}\._conv\._conv", rf"_blocks.\1._{conv}")
             for ours, conv in (("ecn", "expand_conv"), ("dcn", "depthwise_conv"), ("pcn", "project_conv"))),
           *((_EFFICIENT_BLOCK + rf"_{ours}\._conv", rf"_blocks.\1._{bn}")
             for ours, bn in (("ecn", "bn0"), ("dcn", "bn1"), ("pcn", "bn2"))),
           (_EFFICIENT_BLOCK + r"_se\._conv1", r"_blocks.\1._se_reduce"),
           (_EFFICIENT_BLOCK + r"_se\._conv2", r"_blocks.\1._se_expand"),
           (r"_conv\._conv", "_conv_head"), (r"_conv", "_bn1"), (r"_fc", "_fc")),
    bn_name=lambda bn: bn)

GOOGLENET_BRANCHES = {"1": "1x1", "3r": "3x3_reduce", "3": "3x3", "5r": "5x5_reduce", "5": "5x5", "prj": "3x3_proj"}
GOOGLENET = FluidFamily(rules=(  # googlenet.py: BatchNorm-free convs; aux heads fc_o1/out1, fc_o2/out2
    (r"_conv", "conv1"), (r"_conv_1", "conv2_1x1"), (r"_conv_2", "conv2_3x3"), (r"_conv_o(\d)", r"conv_o\1"),
    *((rf"_(ince\w+)\._conv{ours}", rf"inception_\1_{fluid}") for ours, fluid in GOOGLENET_BRANCHES.items()),
    (r"_fc_out", "out"), (r"_fc_o(\d)", r"fc_o\1"), (r"_out(\d)", r"out\1")))

# inception_v3.py: block list entry -> inception_<letter>_<branch>_<number>
INCEPTION_V3_BLOCKS = ("a_1", "a_2", "a_3", "b_1", "c_1", "c_2", "c_3", "c_4", "d_1", "e_1", "e_2")
INCEPTION_V3 = FluidFamily(rules=(
    (r"inception_stem\.(conv_\w+)", r"\1"), (r"fc", "fc"),
    (r"inception_block_list\.(\d+)\.(branch\w+?)(?:_conv)?",
     lambda m: "inception_{0}_{2}_{1}".format(*INCEPTION_V3_BLOCKS[int(m[1])].split("_"), m[2]))))

# inception_v4.py: our block -> {our conv: the classic name after the block's prefix}
INCEPTION_V4_BLOCKS = {
    r"_inception_stem": ("", {"_1": "conv1_3x3_s2", "_2": "conv2_3x3_s1", "_3": "conv3_3x3_s1",
                              "2": "inception_stem1_3x3_s2", "1_1": "inception_stem2_3x3_reduce",
                              "1_2": "inception_stem2_3x3", "2_1": "inception_stem2_1x7_reduce",
                              "2_2": "inception_stem2_1x7", "2_3": "inception_stem2_7x1",
                              "2_4": "inception_stem2_3x3_2", "3": "inception_stem3_3x3_s2"}),
    r"_inceptionA_(\d+)": (r"inception_a\1_", {"1": "1x1", "2": "1x1_2", "3_1": "3x3_reduce", "3_2": "3x3",
                                              "4_1": "3x3_2_reduce", "4_2": "3x3_2", "4_3": "3x3_3"}),
    r"_reductionA": ("reduction_a_", {"2": "3x3", "3_1": "3x3_2_reduce", "3_2": "3x3_2", "3_3": "3x3_3"}),
    r"_inceptionB_(\d+)": (r"inception_b\1_", {"1": "1x1", "2": "1x1_2", "3_1": "1x7_reduce", "3_2": "1x7",
                                              "3_3": "7x1", "4_1": "7x1_2_reduce", "4_2": "1x7_2", "4_3": "7x1_2",
                                              "4_4": "1x7_3", "4_5": "7x1_3"}),
    r"_reductionB": ("reduction_b_", {"2_1": "3x3_reduce", "2_2": "3x3", "3_1": "1x7_reduce", "3_2": "1x7",
                                      "3_3": "7x1", "3_4": "3x3_2"}),
    r"_inceptionC_(\d+)": (r"inception_c\1_", {"1": "1x1", "2": "1x1_2", "3_0": "1x1_3", "3_1": "1x3", "3_2": "3x1",
                                              "4_0": "1x1_4", "4_00": "1x3_2", "4_000": "3x1_2", "4_1": "1x3_3",
                                              "4_2": "3x1_3"}),
}
INCEPTION_V4 = FluidFamily(rules=(
    *((rf"{block}\._conv{ours}", prefix + fluid) for block, (prefix, convs) in INCEPTION_V4_BLOCKS.items()
      for ours, fluid in convs.items()),
    (r"out", "final_fc")))

SQUEEZENET = FluidFamily(rules=(  # squeezenet.py: biased convs without BatchNorm; our fire n is fire<n + 1>
    (r"_conv", "conv1"), (r"_conv9", "conv10"),
    *((rf"_conv(\d)\._conv{ours}", lambda m, part=fluid: f"fire{int(m[1]) + 1}_{part}")
      for ours, fluid in (("", "squeeze1x1"), ("_path1", "expand1x1"), ("_path2", "expand3x3")))))

# shufflenet_v2.py (and _swish): unit <stage>_<i> is stage_<stage>_<i>_conv1..conv5; the downsampling unit's
# second branch reuses conv1..conv3
SHUFFLENET_V2_PARTS = {"pw": "1", "dw": "2", "linear": "3", "dw_1": "4", "linear_1": "5", "pw_2": "1", "dw_2": "2",
                       "linear_2": "3"}
SHUFFLENET_V2 = FluidFamily(rules=(
    (r"_conv1", "stage1_conv"), (r"_last_conv", "conv5"), (r"_fc", "fc6"),
    *((rf"(\d_\d+)\._conv_{ours}", rf"stage_\1_conv{k}") for ours, k in SHUFFLENET_V2_PARTS.items())))

# xception.py: a separable conv named N is N_sep (pointwise) + N_dw (depthwise), where the blocks pass
# N = <block>_branch2<a|b|c>_weights; BatchNorms are bn_<conv>; block shortcuts are BatchNorm-free convs
_SEPARABLE = r"\._(?P<kind>pointwise|depthwise)_conv"


def _separable(name: str, match: re.Match) -> str:
    return f"{name}_{'sep' if match['kind'] == 'pointwise' else 'dw'}"


XCEPTION = FluidFamily(rules=(
    (r"_entry_flow\._conv([12])", r"entry_flow_conv\1"),
    (r"_entry_flow\._conv_(\d+)\._short", r"entry_flow_\1_branch1"),
    (r"_entry_flow\._conv_(?P<block>\d+)\._conv(?P<k>[12])" + _SEPARABLE,
     lambda m: _separable(f"entry_flow_{m['block']}_branch2{'ab'[int(m['k']) - 1]}_weights", m)),
    (r"_middle_flow\._conv_(?P<block>\d+)\._conv_(?P<k>[012])" + _SEPARABLE,
     lambda m: _separable(f"middle_flow_{m['block']}_branch2{'abc'[int(m['k'])]}_weights", m)),
    (r"_exit_flow\._conv_0\._short", "exit_flow_1_branch1"),
    (r"_exit_flow\._conv_0\._conv_(?P<k>[12])" + _SEPARABLE,
     lambda m: _separable(f"exit_flow_1_branch2{'ab'[int(m['k']) - 1]}_weights", m)),
    (r"_exit_flow\._conv_(?P<k>[12])" + _SEPARABLE,
     lambda m: _separable(f"exit_flow_{int(m['k']) + 1}", m)),
    (r"_exit_flow\._out", "fc")),
    bn_name=lambda conv: "bn_" + conv)

# xception_deeplab.py: TensorFlow-style scoped names <backbone>/<flow>/block<n>/separable_conv<i>/depthwise|
# pointwise/weights, .../BatchNorm/gamma|beta|moving_mean|moving_variance; our blocks under the entry and middle
# flows carry the scope in their keys; a separable conv's _conv1/_bn1 is its depthwise, _conv2/_bn2 its pointwise
_DEEPLAB_SEPARABLE = {"1": "depthwise", "2": "pointwise"}


def _xception_deeplab_units(model_name: str) -> dict[str, str]:
    scope = "xception_" + re.match(r"Xception(\d+)_deeplab", model_name)[1]
    units = {f"_conv{k}": f"{scope}/entry_flow/conv{k}" for k in (1, 2)}
    for block in (1, 2):
        ours, fluid = f"_exit_flow_{block}", f"{scope}/exit_flow/block{block}"
        units[f"{ours}._short"] = f"{fluid}/shortcut"
        units.update({f"{ours}._conv{i}.{layer}{k}": f"{fluid}/separable_conv{i}/{part}" for i in (1, 2, 3)
                      for k, part in _DEEPLAB_SEPARABLE.items() for layer in ("_conv", "_bn")})
    return units


XCEPTION_DEEPLAB = FluidFamily(
    _xception_deeplab_units,
    rules=((r"(xception_\d+/\w+_flow/block\d+)\._short", r"\1/shortcut"),
           (r"(xception_\d+/\w+_flow/block\d+)\._conv(\d)\._(?:conv|bn)(\d)",
            lambda m: f"{m[1]}/separable_conv{m[2]}/{_DEEPLAB_SEPARABLE[m[3]]}")),
    bn_name=lambda layer: layer + "/BatchNorm", head={"_fc.weight": "fc_weights", "_fc.bias": "fc_bias"},
    suffix={"weight": "/weights", "bias": "/biases"},
    bn_suffix={"weight": "/gamma", "bias": "/beta", "_mean": "/moving_mean", "_variance": "/moving_variance"})

VGG = FluidFamily(rules=(  # vgg.py: bias-free convs conv<block>_<k>, classifier fc6, fc7, fc8
    (r"conv_block_(\d)\.conv(\d)", r"conv\1_\2"), (r"fc(\d)", lambda m: f"fc{int(m[1]) + 5}")))

# resnext101_wsl.py keeps torchvision's names: conv1/bn1, layer<s>.<i>.conv<k>/bn<k>, .downsample.0/.1, fc
WSL = FluidFamily(
    rules=((r"_conv_stem", "conv1"),
           (r"_conv(\d)_(\d+)\._conv(\d)", lambda m: f"layer{m[1]}.{m[2]}.conv{int(m[3]) + 1}"),
           (r"_conv(\d)_(\d+)\._short\._conv", r"layer\1.\2.downsample.0"), (r"_out", "fc")),
    bn_name=lambda conv: conv[:-1] + "1" if conv.endswith("downsample.0") else re.sub(r"conv(\d)$", r"bn\1", conv),
    suffix={"weight": ".weight", "bias": ".bias"}, bn_suffix=TORCH_BN_SUFFIX)


# mobilenet_v3.py: unit i is conv<i + 2>_expand / _depthwise / _se_1, _se_2 / _linear
MOBILENET_V3_PARTS = {"expand_conv": "expand", "bottleneck_conv": "depthwise", "mid_se.conv1": "se_1",
                      "mid_se.conv2": "se_2", "linear_conv": "linear"}
MOBILENET_V3 = FluidFamily(rules=(
    (r"conv", "conv1"), (r"last_second_conv", "conv_last"), (r"last_conv", "last_1x1_conv"), (r"fc", "fc"),
    *((rf"blocks\.(\d+)\.{re.escape(ours)}", lambda m, part=fluid: f"conv{int(m[1]) + 2}_{part}")
      for ours, fluid in MOBILENET_V3_PARTS.items())))


# ---------------------------------------------------------------- HRNet and SE_HRNet (hrnet.py)


def _hrnet_units(_model_name: str) -> dict[str, str]:
    """hrnet.py names every conv+BN by its place: stem layer1_*, stage-1 bottlenecks layer2_<i>, transitions
    tr<s>_layer_<branch>, basic blocks st<s>_<module>_branch_layer_<branch>_<block>, fusions
    st<s>_<module>_layer_<i>_<j>[_<step>], head cls_headconv_<i> / cls_head_add<i> / cls_head_last_conv;
    squeeze-excite FCs <block>_fc_sqz / _fc_exc."""
    from models.hrnet import BLOCKS_PER_BRANCH, STAGES

    units = {"conv_layer1_1": "layer1_1", "conv_layer1_2": "layer1_2", "conv_tr1_1": "tr1_layer_1",
             "conv_tr1_2": "tr1_layer_2", "conv_tr2": "tr2_layer_3", "conv_tr3": "tr3_layer_4",
             "conv_last": "cls_head_last_conv", **{f"cls_head_conv_list.{i}": f"cls_head_add{i + 1}" for i in range(3)}}
    bottlenecks = {f"layer1.{i}": f"layer2_{i + 1}" for i in range(4)}
    bottlenecks.update({f"last_cls.func_list.{i}": f"cls_headconv_{i + 1}" for i in range(4)})
    for ours, fluid in bottlenecks.items():
        units.update({f"{ours}.conv{k}": f"{fluid}_conv{k}" for k in (1, 2, 3)})
        units.update({f"{ours}.conv_down": f"{fluid}_downsample", **_se_units(ours, fluid)})
    for stage, (modules, branches) in enumerate(STAGES, start=2):
        for module in range(modules):
            ours, fluid = f"st{stage}.stage_func_list.{module}", f"st{stage}_{module + 1}"
            for branch in range(branches):
                for block in range(BLOCKS_PER_BRANCH):
                    block_ours = f"{ours}.basic_block_list.{branch}.{block}"
                    block_fluid = f"{fluid}_branch_layer_{branch + 1}_{block + 1}"
                    units.update({f"{block_ours}.conv{k}": f"{block_fluid}_conv{k}" for k in (1, 2)})
                    units.update(_se_units(block_ours, block_fluid))
            # models.hrnet.FuseLayer's order: output i, input j, then each strided step
            fusions = [f"{fluid}_layer_{i + 1}_{j + 1}" + (f"_{step + 1}" if j < i else "")
                       for i in range(branches) for j in range(branches) if j != i
                       for step in range(max(1, i - j))]
            units.update({f"{ours}.fuse_func.residual_func_list.{n}": name for n, name in enumerate(fusions)})
    return units


def _se_units(ours: str, fluid: str) -> dict[str, str]:
    return {f"{ours}.se.squeeze": f"{fluid}_fc_sqz", f"{ours}.se.excitation": f"{fluid}_fc_exc"}


# ---------------------------------------------------------------- the families with a map

# an unnamed fluid.layers.fc in a fresh program gets the generated names fc_0.w_0 / fc_0.b_0
GENERATED_FC = {"fc.weight": "fc_0.w_0", "fc.bias": "fc_0.b_0"}
OUT_FC = {"out.weight": "fc_weights", "out.bias": "fc_offset"}
RESNET = FluidFamily(_resnet_units, bn_name=_resnet_bn_name, head=GENERATED_FC)
RESNEXT = FluidFamily(_resnext_units, bn_name=_resnet_bn_name, head=OUT_FC)
MOBILENET_V1 = FluidFamily(_mobilenet_v1_units, head={"fc.weight": "fc7_weights", "fc.bias": "fc7_offset"})
MOBILENET_V2 = FluidFamily(_mobilenet_v2_units, head={"out.weight": "fc10_weights", "out.bias": "fc10_offset"})
ACNET = FluidFamily(_acnet_units, bn_name=_acnet_bn_name, head=GENERATED_FC,
                    suffix={"weight": "_weights", "bias": "_bias"})
FAST_IMAGENET = FluidFamily(_fast_imagenet_units, bn_name=lambda conv: conv.replace("conv2d_", "batch_norm_"),
                            head=GENERATED_FC, suffix={"weight": ".w_0"}, bn_suffix=GENERATED_BN_SUFFIX)
DARTS = FluidFamily(_darts_units, bn_name=lambda bn: bn, key_names=_darts_key_names, bn_suffix=TORCH_BN_SUFFIX,
                    head={"fc.weight": "classifier.weight", "fc.bias": "classifier.bias"})
RESNET_VC = FluidFamily(_resnet_vc_units, bn_name=_resnet_bn_name,
                        head={"out.weight": "fc_0.w_0", "out.bias": "fc_0.b_0"})
RES2NET = FluidFamily(_res2net_units, rules=((r"bb_\d+_\d+\.(res\w+)", r"\1"),), bn_name=_resnet_bn_name,
                      head=OUT_FC)
FC6 = {"out.weight": "fc6_weights", "out.bias": "fc6_offset"}
SE_RESNET_VD = FluidFamily(_se_resnet_vd_units, bn_name=_resnet_bn_name, head=FC6)
SE_RESNEXT_VD = FluidFamily(_se_resnext_units, head=FC6)
# the classic SE_ResNeXt and SENet154_vd apply fluid.layers.dropout (downgrade_in_infer) before the classifier
SE_RESNEXT = replace(SE_RESNEXT_VD, dropout_scale={"out.weight": 0.5})
SENET154_VD = replace(SE_RESNEXT_VD, dropout_scale={"out.weight": 0.2})
HRNET = FluidFamily(_hrnet_units, head={"fc.weight": "fc_weights", "fc.bias": "fc_offset"})

# (model-name pattern of the registry, family): the first full match names a model's family
MODEL_FAMILIES = (
    (r"ResNet\d+(_vd)?(_v2)?", RESNET),
    (r"ResNeXt\d+(_vd)?_\d+x4d", RESNEXT),
    (r"MobileNetV1(_x\d_\d+)?", MOBILENET_V1),
    (r"Res2Net\d+(_vd)?_\d+w_\d+s", RES2NET),
    (r"ResNet\d+_ACNet", ACNET),
    (r"ResNet\d+_vc", RESNET_VC),
    (r"FastImageNet", FAST_IMAGENET),
    (r"DARTS_[46]M", DARTS),
    (r"SE_ResNet\d+_vd", SE_RESNET_VD),
    (r"SE_ResNeXt\d+_32x4d", SE_RESNEXT),
    (r"SE_ResNeXt\d+_vd_32x4d", SE_RESNEXT_VD),
    (r"SENet154_vd", SENET154_VD),
    (r"MobileNetV2(_x\d_\d+)?", MOBILENET_V2),
    (r"AlexNet", ALEXNET),
    (r"DarkNet53", DARKNET),
    (r"DenseNet\d+", DENSENET),
    (r"DPN\d+", DPN),
    (r"EfficientNet(B\d(_small)?)?", EFFICIENTNET),
    (r"GoogLeNet", GOOGLENET),
    (r"InceptionV3", INCEPTION_V3),
    (r"InceptionV4", INCEPTION_V4),
    (r"SqueezeNet1_[01]", SQUEEZENET),
    (r"VGG\d+", VGG),
    (r"Xception(41|65|71)", XCEPTION),
    (r"Xception(41|65|71)_deeplab", XCEPTION_DEEPLAB),
    (r"ShuffleNetV2(_x\d_\d+)?(_swish)?", SHUFFLENET_V2),
    (r"(SE_)?HRNet_W\d+_C", HRNET),
    (r"MobileNetV3_(large|small)_x\d_\d+", MOBILENET_V3),
    (r"(Fix_)?ResNeXt101_32x\d+d_wsl", WSL),
)


def family_of(model_name: str) -> FluidFamily | None:
    return next((family for pattern, family in MODEL_FAMILIES if re.fullmatch(pattern, model_name)), None)


def mapped_models() -> str:
    from models import list_models

    return "every model of the zoo but " + ", ".join(m for m in list_models() if family_of(m) is None)


def fluid_names(model_name: str, keys) -> dict[str, str] | None:
    """Our state_dict key -> the classic Fluid parameter name, for every key; None when ``model_name`` has no
    map. A key the family's table does not name is a bug in the table, raised as such."""
    family = family_of(model_name)
    if family is None:
        return None
    keys = list(keys)
    key_set, table = set(keys), family.units(model_name)
    whole_keys = {**family.head, **family.key_names(model_name)}
    names = {}
    for key in keys:
        if key in whole_keys:
            names[key] = whole_keys[key]
            continue
        layer, _, param = key.rpartition(".")
        unit, _, part = layer.rpartition(".")
        is_bn = part in BN_PARTS or f"{layer}._mean" in key_set
        if not unit or part not in CONV_PARTS + BN_PARTS:
            unit = layer
        name = family.unit_name(unit, table)
        suffix = (family.bn_suffix if is_bn else family.suffix).get(param)
        if name is None or suffix is None:
            raise KeyError(f"{model_name}: the Fluid name table has no entry for {key}")
        names[key] = (family.bn_name(name) if is_bn else name) + suffix
    return names


# ---------------------------------------------------------------- reading a Fluid directory


def is_fluid_weights_dir(path: str) -> bool:
    """A directory that is not one of this suite's checkpoints (no model.pdparams): the classic layout."""
    return os.path.isdir(path) and not os.path.isfile(os.path.join(path, CHECKPOINT_WEIGHTS))


def read_fluid_dir(path: str, flag: str = "--pretrained_model") -> dict:
    """Fluid name -> numpy array for every file of the directory (Paddle's own reader of the format)."""
    import paddle

    files = [f for f in os.listdir(path) if os.path.isfile(os.path.join(path, f))]
    if not files:
        raise UsageError(f"{flag} {path}: an empty directory; give a .pdparams file, a checkpoint directory or "
                         "a classic per-parameter weights directory")
    try:
        # paddle.framework.io.load: a directory is read as one tensor file per parameter, keyed by file name
        state = paddle.load(path)
    except Exception as err:  # a foreign file in the folder raises from deep inside the load op
        raise UsageError(f"{flag} {path}: a directory without {CHECKPOINT_WEIGHTS}, and not a classic Fluid "
                         f"per-parameter directory either: {type(err).__name__}: {str(err).strip()[:200]}") from None
    return {name: np.asarray(value) for name, value in state.items()}


def fluid_state_dict(path: str, model_name: str, keys, flag: str = "--pretrained_model") -> dict:
    """The Fluid directory's arrays under our state_dict keys (keys whose Fluid name is absent are left out,
    and reported by the caller as missing)."""
    arrays = read_fluid_dir(path, flag)
    names = fluid_names(model_name, keys)
    if names is None:
        raise UsageError(f"{flag} {path} is a classic Fluid per-parameter directory, but there is no Fluid name "
                         f"map for --model {model_name}; maps exist for {mapped_models()}")
    state = {key: arrays[name] for key, name in names.items() if name in arrays}
    if not state:
        raise UsageError(f"{flag} {path}: none of its {len(arrays)} Fluid parameters is one of --model "
                         f"{model_name}'s (expected names such as {next(iter(names.values()))}): weights of another "
                         "model?")
    # the classic network scaled this layer's input by (1 - p) at inference (dropout downgrade_in_infer);
    # W (x (1 - p)) + b = ((1 - p) W) x + b, so the weight (not the bias) carries the factor here
    for key, p in family_of(model_name).dropout_scale.items():
        if key in state:
            state[key] = state[key] * np.float32(1 - p)
    return state


def fluid_class_dim(path: str, flag: str = "--pretrained_model", classifier: tuple[str, ...] = ()) -> int | None:
    """The classes of a Fluid directory's classifier, whichever family wrote it: the first present Fluid name
    any family gives our classifier weight ``<prefix>.weight`` (fc [in, out]; 1x1 conv [out, in, 1, 1])."""
    arrays = read_fluid_dir(path, flag)
    for _, family in MODEL_FAMILIES:
        for key in [f"{prefix}.weight" for prefix in classifier] or [k for k in family.head if k.endswith(".weight")]:
            weight = arrays.get(family.classifier_name(key) or "")
            if weight is not None and weight.ndim in (2, 4):
                return int(weight.shape[1] if weight.ndim == 2 else weight.shape[0])
    return None


def fluid_exclusions(model_name: str, keys, entries) -> dict[str, list[str]]:
    """``--finetune_exclude_pretrained_params`` entries given as Fluid names or prefixes (``fc_0.w_0``,
    ``res5``) -> the keys of ours they name (empty when the model has no map)."""
    names = (fluid_names(model_name, keys) or {}) if entries else {}  # loading without exclusions needs no map
    return {entry: [key for key, name in names.items() if name.startswith(entry)] for entry in entries}


# ---------------------------------------------------------------- conversion command


def convert(model_name: str, fluid_dir: str, output: str) -> str:
    """Write the Fluid directory as a .pdparams file for ``model_name``; every tensor of the model must be
    found with its shape."""
    from models import build_model, get_model_meta
    from utils.checkpoint import save_weights

    class_dim = fluid_class_dim(fluid_dir, "--fluid_dir", get_model_meta(model_name).classifier) or 1000
    model = build_model(model_name, class_dim=class_dim)
    own = model.state_dict()
    state = fluid_state_dict(fluid_dir, model_name, list(own), "--fluid_dir")
    names = fluid_names(model_name, list(own))
    missing = [names[k] for k in own if k not in state]
    wrong = [f"{names[k]} {list(state[k].shape)} (expected {list(own[k].shape)})" for k in state
             if list(state[k].shape) != list(own[k].shape)]
    if missing or wrong:
        raise UsageError(f"--fluid_dir {fluid_dir} does not fit --model {model_name}: "
                         + "; ".join(filter(None, [f"{len(missing)} parameters missing ({', '.join(missing[:4])})"
                                                   if missing else "",
                                                   f"shape differs: {', '.join(wrong[:4])}" if wrong else ""])))
    save_weights(state, output)
    return f"wrote {len(state)} tensors of {model_name} ({class_dim} classes) to {output}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help=f"the model; maps exist for {mapped_models()}")
    parser.add_argument("--fluid_dir", required=True, help="the classic per-parameter weights directory")
    parser.add_argument("--output", required=True, help="the .pdparams file to write")
    args = parser.parse_args(argv)
    from models import get_model_meta

    get_model_meta(args.model)  # an unknown name fails first, suggesting the nearest ones
    if not os.path.isdir(args.fluid_dir):
        raise UsageError(f"--fluid_dir {args.fluid_dir}: not a directory")
    print(convert(args.model, args.fluid_dir, args.output))
    return 0


if __name__ == "__main__":
    from utils.cli import run

    run(main)
