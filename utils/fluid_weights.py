"""The classic suite's pretrained weights: Fluid per-parameter directories (one file per parameter, named by
its Fluid parameter name, e.g. ``res2a_branch2a_weights``, ``bn2a_branch2a_scale``, ``fc_0.w_0``).

Paddle reads such a directory itself (``paddle.load(directory)``: name -> array); what this module adds is
the name map from this zoo's state_dict keys to the Fluid names. The names are those the classic model
definitions (PaddlePaddle/models, PaddleCV/image_classification/models/) give their ParamAttrs: one table
per family below. Convert a directory once into a ``.pdparams`` file:

    python -m utils.fluid_weights --model ResNet50_vd --fluid_dir ResNet50_vd_pretrained --output ResNet50_vd.pdparams

or pass the directory itself to ``--pretrained_model`` (train.py, eval.py, infer.py).

Families with a map: ResNet (18-152), ResNet_vd (18-200, ResNet50_vd_v2), ResNeXt and ResNeXt_vd (50/101/152,
32x4d/64x4d), MobileNetV1 and MobileNetV2 (all scales). tests/test_classic_compat.py checks them against
networks built under Paddle 2.x with the classic layout and names (tests/classic_fluid_nets.py): same logits.
"""
from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass

from utils.errors import UsageError

# BatchNorm: this zoo's parameter -> the classic suffix after the BatchNorm's Fluid name
FLUID_BN_SUFFIX = {"weight": "_scale", "bias": "_offset", "_mean": "_mean", "_variance": "_variance"}
CONV_PARTS, BN_PARTS = ("conv", "_conv"), ("bn", "_batch_norm")  # this zoo's two conv+BN unit layouts
CHECKPOINT_WEIGHTS = "model.pdparams"  # a directory holding this is one of this suite's checkpoints


@dataclass(frozen=True)
class FluidFamily:
    """How one classic family names its parameters: each conv+BN unit of ours (a ``.conv``/``.bn`` pair under
    a key prefix) has a Fluid conv name; the BatchNorm's name derives from it; the classifier is a table."""
    units: object  # model name -> {our unit prefix: Fluid conv name}
    bn_name: object  # Fluid conv name -> Fluid BatchNorm name
    head: dict  # our classifier key -> Fluid name


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


# ---------------------------------------------------------------- ResNeXt and ResNeXt_vd (resnext.py, resnext_vd.py)

# the plain ResNeXt's 7x7 stem is "res_conv1" (so its BatchNorm is "bn_conv1"); the vd stem is three 3x3 convs
RESNEXT_STEMS = {"": {"conv": "res_conv1"}, "vd": {"conv1_1": "conv1_1", "conv1_2": "conv1_2", "conv1_3": "conv1_3"}}
RESNEXT_NAME = re.compile(r"ResNeXt(\d+)(?:_(vd))?_\d+x4d$")


def _resnext_units(model_name: str) -> dict[str, str]:
    depth_text, variant = RESNEXT_NAME.match(model_name).groups()
    units = dict(RESNEXT_STEMS[variant or ""])
    # ResNeXt has ResNet's bottleneck block counts per depth
    units.update(_residual_units(int(depth_text), lambda _block, stage, index: f"bb_{stage}_{index}"))
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


# ---------------------------------------------------------------- the families with a map

# an unnamed fluid.layers.fc in a fresh program gets the generated names fc_0.w_0 / fc_0.b_0
GENERATED_FC = {"fc.weight": "fc_0.w_0", "fc.bias": "fc_0.b_0"}
RESNET = FluidFamily(_resnet_units, _resnet_bn_name, GENERATED_FC)
RESNEXT = FluidFamily(_resnext_units, _resnet_bn_name, {"out.weight": "fc_weights", "out.bias": "fc_offset"})
MOBILENET_V1 = FluidFamily(_mobilenet_v1_units, lambda conv: conv + "_bn",
                           {"fc.weight": "fc7_weights", "fc.bias": "fc7_offset"})
MOBILENET_V2 = FluidFamily(_mobilenet_v2_units, lambda conv: conv + "_bn",
                           {"out.weight": "fc10_weights", "out.bias": "fc10_offset"})
FAMILIES = {
    **{f"ResNet{d}": RESNET for d in (18, 34, 50, 101, 152)},
    **{f"ResNet{d}_vd": RESNET for d in (18, 34, 50, 101, 152, 200)},
    "ResNet50_vd_v2": RESNET,
    **{f"ResNeXt{d}{vd}_{c}x4d": RESNEXT for d in (50, 101, 152) for vd in ("", "_vd") for c in (32, 64)},
    **{name: MOBILENET_V1 for name in ("MobileNetV1", "MobileNetV1_x0_25", "MobileNetV1_x0_5", "MobileNetV1_x0_75",
                                       "MobileNetV1_x1_0")},
    **{name: MOBILENET_V2 for name in ("MobileNetV2", "MobileNetV2_x0_25", "MobileNetV2_x0_5", "MobileNetV2_x0_75",
                                       "MobileNetV2_x1_0", "MobileNetV2_x1_5", "MobileNetV2_x2_0")},
}


def fluid_names(model_name: str, keys) -> dict[str, str] | None:
    """Our state_dict key -> the classic Fluid parameter name, for every key; None when ``model_name`` has no
    map. A key the family's table does not name is a bug in the table, raised as such."""
    family = FAMILIES.get(model_name)
    if family is None:
        return None
    units = family.units(model_name)
    names = {}
    for key in keys:
        if key in family.head:
            names[key] = family.head[key]
            continue
        prefix, _, param = key.rpartition(".")
        unit, _, part = prefix.rpartition(".")
        if part in CONV_PARTS and param == "weight" and unit in units:
            names[key] = units[unit] + "_weights"
        elif part in BN_PARTS and param in FLUID_BN_SUFFIX and unit in units:
            names[key] = family.bn_name(units[unit]) + FLUID_BN_SUFFIX[param]
        else:
            raise KeyError(f"{model_name}: the Fluid name table has no entry for {key}")
    return names


# ---------------------------------------------------------------- reading a Fluid directory


def is_fluid_weights_dir(path: str) -> bool:
    """A directory that is not one of this suite's checkpoints (no model.pdparams): the classic layout."""
    return os.path.isdir(path) and not os.path.isfile(os.path.join(path, CHECKPOINT_WEIGHTS))


def read_fluid_dir(path: str, flag: str = "--pretrained_model") -> dict:
    """Fluid name -> numpy array for every file of the directory (Paddle's own reader of the format)."""
    import numpy as np
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
                         f"map for --model {model_name}; maps exist for: {', '.join(sorted(FAMILIES))}")
    state = {key: arrays[name] for key, name in names.items() if name in arrays}
    if not state:
        raise UsageError(f"{flag} {path}: none of its {len(arrays)} Fluid parameters is one of --model "
                         f"{model_name}'s (expected names such as {next(iter(names.values()))}): weights of another "
                         "model?")
    return state


def fluid_class_dim(path: str, flag: str = "--pretrained_model") -> int | None:
    """The classes of a Fluid directory's classifier (fc weight [in, out]), whichever family wrote it."""
    arrays = read_fluid_dir(path, flag)
    for family in {id(f): f for f in FAMILIES.values()}.values():
        weight = arrays.get(next(name for key, name in family.head.items() if key.endswith(".weight")))
        if weight is not None and weight.ndim == 2:
            return int(weight.shape[1])
    return None


def fluid_exclusions(model_name: str, keys, entries) -> dict[str, list[str]]:
    """``--finetune_exclude_pretrained_params`` entries given as Fluid names or prefixes (``fc_0.w_0``,
    ``res5``) -> the keys of ours they name (empty when the model has no map)."""
    names = fluid_names(model_name, keys) or {}
    return {entry: [key for key, name in names.items() if name.startswith(entry)] for entry in entries}


# ---------------------------------------------------------------- conversion command


def convert(model_name: str, fluid_dir: str, output: str) -> str:
    """Write the Fluid directory as a .pdparams file for ``model_name``; every tensor of the model must be
    found with its shape."""
    from models import build_model
    from utils.checkpoint import save_weights

    class_dim = fluid_class_dim(fluid_dir, "--fluid_dir") or 1000
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
    parser.add_argument("--model", required=True, help=f"one of: {', '.join(sorted(FAMILIES))}")
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
