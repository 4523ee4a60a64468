"""Classic Fluid parameter names of every classic model (issue 12 item 2): utils.fluid_weights.fluid_names.

- Against PaddleClas 2.6, whose ports of the classic networks keep the classic names as their parameters'
  names (tests/oracle/fluid_names.json.gz, written by tools/oracle/fluid_names.py): every key of every model
  PaddleClas names, exactly. The keys come from that file, so no network is built here.
- The families PaddleClas does not name (its newer ports: HRNet, InceptionV3, MobileNetV3, VGG) or does not
  have (ResNet_ACNet, ResNet_vc beyond 50, SE_HRNet, the deeper SE nets, ...): every key of a representative
  model gets a distinct name, and the names below, transcribed from the classic model definitions
  (PaddlePaddle/models, PaddleCV/image_classification/models/<file>), match. ResNet(_vd), ResNeXt(_vd),
  MobileNetV1/V2 and SE_ResNeXt50/152_32x4d are checked end to end by tests/test_classic_compat.py against
  networks built with the classic names.
"""
import gzip
import json

import numpy as np
import paddle
import pytest

from tests.conftest import ROOT
from utils import fluid_weights
from utils.fluid_weights import family_of, fluid_names, fluid_state_dict

ORACLE = ROOT / "tests" / "oracle" / "fluid_names.json.gz"
PADDLECLAS_NAMES = json.loads(gzip.decompress(ORACLE.read_bytes()))


@pytest.mark.parametrize("model", sorted(PADDLECLAS_NAMES))
def test_names_equal_paddleclas_classic_names(model):
    pairs = PADDLECLAS_NAMES[model]
    expected = dict(pairs)
    got = fluid_names(model, [key for key, _ in pairs])
    assert got is not None, f"no Fluid name map for {model}"
    wrong = [f"{key}: {got[key]} != {name}" for key, name in expected.items() if got[key] != name]
    assert not wrong, f"{len(wrong)} of {len(expected)} names differ, e.g. {wrong[:3]}"


def test_plain_efficientnet_is_b0():
    pairs = PADDLECLAS_NAMES["EfficientNetB0"]
    assert fluid_names("EfficientNet", [key for key, _ in pairs]) == dict(pairs)


# model -> {our key: its name in the classic definition (file named in the comment)}
CLASSIC_NAMES = {
    # hrnet.py: layer1_<k>, layer2_<i>_conv<k>, tr<s>_layer_<b>, st<s>_<m>_branch_layer_<b>_<j>_conv<k>,
    # fusions st<s>_<m>_layer_<i>_<j>[_<k>] (our list: i, then j, then step), cls_headconv_<i>, cls_head_add<i>
    "HRNet_W18_C": {
        "conv_layer1_1.conv.weight": "layer1_1_weights",
        "layer1.0.conv_down.bn._mean": "layer2_1_downsample_bn_mean",
        "conv_tr1_2.bn.weight": "tr1_layer_2_bn_scale",
        "conv_tr3.conv.weight": "tr3_layer_4_weights",
        "st4.stage_func_list.2.basic_block_list.3.3.conv2.conv.weight": "st4_3_branch_layer_4_4_conv2_weights",
        "st3.stage_func_list.0.fuse_func.residual_func_list.0.conv.weight": "st3_1_layer_1_2_weights",
        "st3.stage_func_list.3.fuse_func.residual_func_list.5.bn._variance": "st3_4_layer_3_1_2_bn_variance",
        "st3.stage_func_list.3.fuse_func.residual_func_list.6.bn.bias": "st3_4_layer_3_2_1_bn_offset",
        "last_cls.func_list.3.conv_down.conv.weight": "cls_headconv_4_downsample_weights",
        "cls_head_conv_list.2.conv.weight": "cls_head_add3_weights",
        "conv_last.bn.bias": "cls_head_last_conv_bn_offset",
        "fc.weight": "fc_weights", "fc.bias": "fc_offset",
    },
    "SE_HRNet_W64_C": {  # squeeze_excitation(name=<block>_fc): <block>_fc_sqz_weights / _exc_offset
        "st2.stage_func_list.0.basic_block_list.1.2.se.squeeze.weight": "st2_1_branch_layer_2_3_fc_sqz_weights",
        "layer1.3.se.excitation.bias": "layer2_4_fc_exc_offset",
        "last_cls.func_list.0.se.squeeze.bias": "cls_headconv_1_fc_sqz_offset",
    },
    "InceptionV3": {  # inception_v3.py: inception_<a..e>_<branch>_<n>, stem conv_<..>, bn <conv>_bn
        "inception_stem.conv_3b_1x1.bn._mean": "conv_3b_1x1_bn_mean",
        "inception_block_list.2.branch_pool_conv.conv.weight": "inception_a_branch_pool_3_weights",
        "inception_block_list.3.branch3x3.conv.weight": "inception_b_branch3x3_1_weights",
        "inception_block_list.7.branch7x7dbl_5.bn.weight": "inception_c_branch7x7dbl_5_4_bn_scale",
        "inception_block_list.8.branch7x7x3_4.conv.weight": "inception_d_branch7x7x3_4_1_weights",
        "inception_block_list.10.branch3x3dbl_3b.bn.bias": "inception_e_branch3x3dbl_3b_2_bn_offset",
        "fc.weight": "fc_weights", "fc.bias": "fc_offset",
    },
    "MobileNetV3_large_x1_0": {  # mobilenet_v3.py: conv1, conv<i+2>_expand/_depthwise/_se_1/_se_2/_linear
        "conv.bn._variance": "conv1_bn_variance",
        "blocks.1.bottleneck_conv.conv.weight": "conv3_depthwise_weights",
        "blocks.3.mid_se.conv1.weight": "conv5_se_1_weights",
        "blocks.3.mid_se.conv2.bias": "conv5_se_2_offset",
        "blocks.14.linear_conv.bn.weight": "conv16_linear_bn_scale",
        "last_second_conv.conv.weight": "conv_last_weights",
        "last_conv.weight": "last_1x1_conv_weights",
        "fc.bias": "fc_offset",
    },
    "MobileNetV3_small_x0_25": {"blocks.10.expand_conv.bn._mean": "conv12_expand_bn_mean"},
    "VGG19": {"conv_block_3.conv4.weight": "conv3_4_weights", "fc1.weight": "fc6_weights", "fc3.bias": "fc8_offset"},
    "ResNet18_ACNet": {  # resnet_acnet.py: <conv>_acsquare/_acver/_achor_weights, bn<..>_ac*_scale; 1x1 plain
        "stem.0.ver.bn._mean": "bn_conv1_acver_mean",
        "blocks.0.conv0.square.conv.weight": "res2a_branch2a_acsquare_weights",
        "blocks.7.conv1.hor.bn.weight": "bn5b_branch2b_achor_scale",
        "blocks.2.short.conv.weight": "res3a_branch1_weights",
        "blocks.2.short.bn.weight": "bn3a_branch1_scale",
        "fc.weight": "fc_0.w_0",
    },
    "ResNet152_vc": {  # resnet_vc.py: bn_name = "bn" + name[3:], so conv1_3 -> bnv1_3; unnamed fc
        "conv1_3._batch_norm._mean": "bnv1_3_mean",
        "bb_2_35.conv2._conv.weight": "res4b35_branch2c_weights",
        "out.weight": "fc_0.w_0",
    },
    "SE_ResNet200_vd": {  # se_resnet_vd.py: squeeze-excite name "fc_" + block name
        "bb_2_47.scale.squeeze.weight": "fc_res4b47_sqz_weights",
        "bb_3_0.short._batch_norm._mean": "bn5a_branch1_mean",
        "out.bias": "fc6_offset",
    },
    "SE_ResNeXt101_vd_32x4d": {  # se_resnext_vd.py: block <n>_<i>, n = stage + 2
        "bb_2_22.conv1._conv.weight": "conv4_23_x2_weights",
        "bb_0_0.short._batch_norm.weight": "conv2_1_prj_bn_scale",
        "bb_3_2.scale.excitation.bias": "fc5_3_exc_offset",
    },
    "SE_ResNeXt152_32x4d": {  # se_resnext.py at 152: 3x3 stem conv1, conv2, conv3; block <n>_<i>, n from 4
        "conv1_1._conv.weight": "conv1_weights",
        "conv1_2._batch_norm._mean": "conv2_bn_mean",
        "conv1_3._batch_norm.weight": "conv3_bn_scale",
        "bb_0_0.conv0._conv.weight": "conv4_1_x1_weights",
        "bb_0_0.short._conv.weight": "conv4_1_prj_weights",
        "bb_1_7.conv1._batch_norm.bias": "conv5_8_x2_bn_offset",
        "bb_2_35.scale.squeeze.weight": "fc6_36_sqz_weights",
        "bb_3_0.short._batch_norm._variance": "conv7_1_prj_bn_variance",
        "bb_3_2.scale.excitation.bias": "fc7_3_exc_offset",
        "out.weight": "fc6_weights",
    },
    "Res2Net152_vd_26w_4s": {"bb_2_35.conv2._batch_norm._variance": "bn4b35_branch2c_variance"},
    "ShuffleNetV2_x2_0_swish": {  # shufflenet_v2_swish.py: stage_<s>_<i>_conv<k>, conv5, fc6
        "4_1._conv_dw_1._batch_norm.weight": "stage_4_1_conv4_bn_scale",
        "_last_conv._conv.weight": "conv5_weights",
        "_fc.weight": "fc6_weights",
    },
    "FastImageNet": {  # fast_imagenet.py names nothing: Paddle's <type>_<n> in creation order (stem, then per
        # block conv0, conv1, conv2, shortcut); batch_norm .w_0 scale, .b_0 bias, .w_1 mean, .w_2 variance
        "stem.0.conv.weight": "conv2d_0.w_0",
        "blocks.0.short.bn._variance": "batch_norm_4.w_2",
        "blocks.1.conv0.conv.weight": "conv2d_5.w_0",
        "blocks.3.short.conv.weight": "conv2d_14.w_0",
        "blocks.3.conv2.bn.bias": "batch_norm_13.b_0",
        "blocks.15.conv2.bn._mean": "batch_norm_52.w_1",
        "fc.bias": "fc_0.b_0",
    },
    "DARTS_4M": {  # autodl.py: named BatchNorms and classifier; unnamed convs numbered in creation order (stem 0-2,
        # cell 0: preprocess0 FactorizedReduce (named conv_1/conv_2, numbers 3-4), preprocess1 5, then the ops in
        # genotype order); use_cudnn=False depthwise convs count separately as depthwise_conv2d
        "stem0.4._mean": "stem0.3.running_mean",
        "stem1.1.weight": "conv2d_2.w_0",
        "cells.0.preprocess0.conv_odd.weight": "cells.0.preprocess0.conv_2.weight",
        "cells.0.preprocess1.conv.weight": "conv2d_5.w_0",
        "cells.0.preprocess1.bn.bias": "cells.0.preprocess1.op.2.bias",
        "cells.0.ops.0.second.bn._variance": "cells.0._ops.0.op.7.running_var",
        "cells.0.ops.7.depthwise.weight": "depthwise_conv2d_10.w_0",
        "cells.0.ops.7.pointwise.weight": "conv2d_16.w_0",
        "cells.1.preprocess0.conv.weight": "conv2d_17.w_0",
        "cells.1.ops.0.first.depthwise.weight": "depthwise_conv2d_11.w_0",
        "fc.weight": "classifier.weight",
    },
    "Xception71_deeplab": {  # xception_deeplab.py + model_libs.py scopes
        "xception_71/middle_flow/block16._conv3._bn2._mean":
            "xception_71/middle_flow/block16/separable_conv3/pointwise/BatchNorm/moving_mean",
        "_exit_flow_2._conv1._conv1.weight": "xception_71/exit_flow/block2/separable_conv1/depthwise/weights",
        "_fc.bias": "fc_bias",
    },
}


def model_keys(model: str, **options) -> list[str]:
    from models import build_model

    with paddle.LazyGuard():  # parameters are never allocated
        return list(build_model(model, **options).state_dict())


@pytest.mark.parametrize("model", sorted(CLASSIC_NAMES))
def test_names_of_families_paddleclas_does_not_name(model):
    keys = model_keys(model)
    names = fluid_names(model, keys)
    assert names is not None, f"no Fluid name map for {model}"
    assert len(set(names.values())) == len(keys), "two tensors share a Fluid name"
    assert {key: names[key] for key in CLASSIC_NAMES[model]} == CLASSIC_NAMES[model]


def test_acnet_deploy_form_names_the_fused_conv_as_the_classic_deploy_export():
    names = fluid_names("ResNet50_ACNet", model_keys("ResNet50_ACNet", deploy=True))
    assert names["blocks.0.conv1.fused_conv.bias"] == "res2a_branch2b_acsquare_bias"
    assert names["blocks.0.conv1.fused_conv.weight"] == "res2a_branch2b_acsquare_weights"


def test_every_classic_model_of_the_zoo_has_a_map():
    from models import list_models

    classic = (ROOT.parent / "shared" / "zoo" / "model_names.txt")
    names = classic.read_text().split() if classic.is_file() else list_models()
    missing = [m for m in names if m in list_models() and family_of(m) is None
               and m != "EfficientNetLite0"]  # no classic model
    assert not missing


@pytest.mark.parametrize("model, factor", [("SE_ResNeXt50_32x4d", 0.5), ("SENet154_vd", 0.8),
                                           ("SE_ResNeXt50_vd_32x4d", 1.0), ("ResNeXt50_32x4d", 1.0)])
def test_conversion_folds_the_classic_inference_dropout_into_the_classifier_weight(model, factor, monkeypatch):
    """The classic SE_ResNeXt (p 0.5) and SENet154_vd (p 0.2) scale the classifier input by 1 - p at
    inference (fluid.layers.dropout, downgrade_in_infer); this zoo's networks do not."""
    keys = [key for key, _ in PADDLECLAS_NAMES[model]]
    names = fluid_names(model, keys)
    arrays = {name: np.full(3, 2.0, np.float32) for name in names.values()}
    monkeypatch.setattr(fluid_weights, "read_fluid_dir", lambda path, flag: arrays)
    state = fluid_state_dict("weights_dir", model, keys)
    np.testing.assert_allclose(state["out.weight"], 2.0 * factor, rtol=1e-6)
    assert np.all(state["out.bias"] == 2.0)
    assert all(np.all(state[key] == 2.0) for key in keys if key != "out.weight")

