"""Run under Paddle 2.x (static graph): build a network laid out and named as the classic suite's model
definitions do (PaddlePaddle/models, PaddleCV/image_classification/models/: resnet.py, resnet_vd.py,
resnext.py, resnext_vd.py, mobilenet_v1.py, mobilenet_v2.py, se_resnext.py), fill every parameter and BatchNorm
statistic with random values, write them as a classic per-parameter directory (paddle.static.save_vars, one file
per variable) and the network's logits on a given input; optionally the classic inference export (model + params).

    python tests/classic_fluid_nets.py --model ResNet50_vd --class_dim 10 --input x.npy --out_dir D --logits y.npy \
        [--export_dir E]

The classic ResNets' classifier is an unnamed fc, so its names are the ones Paddle generates. The classic
SE_ResNeXt applies fluid.layers.dropout(p=0.5) before its classifier in the default downgrade_in_infer mode
(inference multiplies by 1 - p), as it is built here.
This is the independent side of tests/test_classic_compat.py: no name here comes from utils/fluid_weights.py.
"""
import argparse
import os

import numpy as np
import paddle
from paddle import ParamAttr
from paddle.static import nn

DEPTHS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}


def conv_bn(x, filters, size, stride, name, act=None, groups=1, bn_name=None):
    x = nn.conv2d(x, filters, size, stride=stride, padding=(size - 1) // 2, groups=groups,
                  param_attr=ParamAttr(name=name + "_weights"), bias_attr=False)
    bn_name = bn_name or ("bn_conv1" if name == "conv1" else "bn" + name[3:])
    return nn.batch_norm(x, act=act, is_test=True, param_attr=ParamAttr(name=bn_name + "_scale"),
                         bias_attr=ParamAttr(name=bn_name + "_offset"), moving_mean_name=bn_name + "_mean",
                         moving_variance_name=bn_name + "_variance")


def resnet(x, depth, vd, class_dim):
    if vd:
        x = conv_bn(x, 32, 3, 2, "conv1_1", "relu")
        x = conv_bn(x, 32, 3, 1, "conv1_2", "relu")
        x = conv_bn(x, 64, 3, 1, "conv1_3", "relu")
    else:
        x = conv_bn(x, 64, 7, 2, "conv1", "relu")
    x = paddle.nn.functional.max_pool2d(x, 3, 2, padding=1)
    channels = 64
    for stage, count in enumerate(DEPTHS[depth]):
        width = (64, 128, 256, 512)[stage]
        for i in range(count):
            name = f"res{stage + 2}" + (("a" if i == 0 else f"b{i}") if depth >= 101 and stage == 2
                                        else chr(97 + i))
            stride = 2 if i == 0 and stage > 0 else 1
            first = stage == 0 and i == 0
            if depth >= 50:
                out = conv_bn(x, width, 1, 1, name + "_branch2a", "relu")
                out = conv_bn(out, width, 3, stride, name + "_branch2b", "relu")
                out = conv_bn(out, width * 4, 1, 1, name + "_branch2c")
                out_channels = width * 4
            else:
                out = conv_bn(x, width, 3, stride, name + "_branch2a", "relu")
                out = conv_bn(out, width, 3, 1, name + "_branch2b")
                out_channels = width
            if channels != out_channels or stride != 1 or first:
                short_in = x
                if vd and not first:  # the vd shortcut: 2x2 average pool, then a stride-1 1x1 conv
                    short_in = paddle.nn.functional.avg_pool2d(x, 2, 2, ceil_mode=True)
                    stride = 1
                short = conv_bn(short_in, out_channels, 1, stride, name + "_branch1")
            else:
                short = x
            x = paddle.nn.functional.relu(out + short)
            channels = out_channels
    x = paddle.flatten(paddle.nn.functional.adaptive_avg_pool2d(x, 1), 1)
    return nn.fc(x, class_dim)


def resnext(x, depth, vd, cardinality, class_dim):
    if vd:
        x = conv_bn(x, 32, 3, 2, "conv1_1", "relu")
        x = conv_bn(x, 32, 3, 1, "conv1_2", "relu")
        x = conv_bn(x, 64, 3, 1, "conv1_3", "relu")
    else:
        x = conv_bn(x, 64, 7, 2, "res_conv1", "relu")
    x = paddle.nn.functional.max_pool2d(x, 3, 2, padding=1)
    widths = (256, 512, 1024, 2048) if cardinality == 64 else (128, 256, 512, 1024)
    channels = 64
    for stage, count in enumerate(DEPTHS[depth]):
        width = widths[stage]
        out_channels = width if cardinality == 64 else width * 2
        for i in range(count):
            name = f"res{stage + 2}" + (("a" if i == 0 else f"b{i}") if depth >= 101 and stage == 2
                                        else chr(97 + i))
            stride = 2 if i == 0 and stage > 0 else 1
            out = conv_bn(x, width, 1, 1, name + "_branch2a", "relu")
            out = conv_bn(out, width, 3, stride, name + "_branch2b", "relu", groups=cardinality)
            out = conv_bn(out, out_channels, 1, 1, name + "_branch2c")
            if channels != out_channels or stride != 1:
                short_in = x
                if vd and stage != 0:  # resnext_vd.py: the first stage projects without pooling
                    short_in = paddle.nn.functional.avg_pool2d(x, 2, 2, ceil_mode=True)
                    stride = 1
                short = conv_bn(short_in, out_channels, 1, stride, name + "_branch1")
            else:
                short = x
            x = paddle.nn.functional.relu(out + short)
            channels = out_channels
    x = paddle.flatten(paddle.nn.functional.adaptive_avg_pool2d(x, 1), 1)
    return nn.fc(x, class_dim, weight_attr=ParamAttr(name="fc_weights"), bias_attr=ParamAttr(name="fc_offset"))


MOBILENET_V1 = [("conv2_1", 32, 64, 1), ("conv2_2", 64, 128, 2), ("conv3_1", 128, 128, 1),
                ("conv3_2", 128, 256, 2), ("conv4_1", 256, 256, 1), ("conv4_2", 256, 512, 2)] + \
               [(f"conv5_{i}", 512, 512, 1) for i in range(1, 6)] + \
               [("conv5_6", 512, 1024, 2), ("conv6", 1024, 1024, 1)]


def mobilenet_v1(x, class_dim):
    x = conv_bn(x, 32, 3, 2, "conv1", "relu", bn_name="conv1_bn")
    for name, channels_in, channels_out, stride in MOBILENET_V1:
        x = conv_bn(x, channels_in, 3, stride, name + "_dw", "relu", groups=channels_in, bn_name=name + "_dw_bn")
        x = conv_bn(x, channels_out, 1, 1, name + "_sep", "relu", bn_name=name + "_sep_bn")
    x = paddle.flatten(paddle.nn.functional.adaptive_avg_pool2d(x, 1), 1)
    return nn.fc(x, class_dim, weight_attr=ParamAttr(name="fc7_weights"), bias_attr=ParamAttr(name="fc7_offset"))


MOBILENET_V2 = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                (6, 320, 1, 1)]  # expansion, channels, units, first stride


def mobilenet_v2(x, class_dim):
    relu6 = paddle.nn.functional.relu6
    x = relu6(conv_bn(x, 32, 3, 2, "conv1_1", bn_name="conv1_1_bn"))
    channels_in = 32
    for stage, (expansion, channels, units, first_stride) in enumerate(MOBILENET_V2, start=2):
        for unit in range(1, units + 1):
            name = f"conv{stage}_{unit}"
            hidden = int(round(channels_in * expansion))
            out = relu6(conv_bn(x, hidden, 1, 1, name + "_expand", bn_name=name + "_expand_bn"))
            out = relu6(conv_bn(out, hidden, 3, first_stride if unit == 1 else 1, name + "_dwise", groups=hidden,
                                bn_name=name + "_dwise_bn"))
            out = conv_bn(out, channels, 1, 1, name + "_linear", bn_name=name + "_linear_bn")
            x = out if unit == 1 else x + out
            channels_in = channels
    x = relu6(conv_bn(x, 1280, 1, 1, "conv9", bn_name="conv9_bn"))
    x = paddle.flatten(paddle.nn.functional.adaptive_avg_pool2d(x, 1), 1)
    return nn.fc(x, class_dim, weight_attr=ParamAttr(name="fc10_weights"), bias_attr=ParamAttr(name="fc10_offset"))


def squeeze_excitation(x, channels, reduction, name):
    pooled = paddle.flatten(paddle.nn.functional.adaptive_avg_pool2d(x, 1), 1)
    squeeze = nn.fc(pooled, channels // reduction, activation="relu", weight_attr=ParamAttr(name=name + "_sqz_weights"),
                    bias_attr=ParamAttr(name=name + "_sqz_offset"))
    excitation = nn.fc(squeeze, channels, activation="sigmoid", weight_attr=ParamAttr(name=name + "_exc_weights"),
                       bias_attr=ParamAttr(name=name + "_exc_offset"))
    # paddle.multiply / paddle.add, not * / +: on a batch of unknown size the operators' transitional warning
    # walks the Python stack (inspect.stack) on every call, seconds for the 152-layer net
    return paddle.multiply(x, paddle.unsqueeze(excitation, [2, 3]))


def se_resnext(x, depth, class_dim):
    """se_resnext.py: at 50/101 layers a 7x7 stem conv1 and 32 groups, block <n>_<i> with stage n from 2; at 152
    a 3x3 stem conv1 (64, stride 2), conv2 (64), conv3 (128) and 64 groups, stage n from 4. Convs
    conv<n>_<i>_x1..x3 (inner widths 128-256-512-1024 at every depth), shortcut conv<n>_<i>_prj where the shape
    changes, squeeze-excite fc<n>_<i>_sqz/_exc (reduction 16); BatchNorms <conv>_bn; classifier fc6."""
    if depth == 152:
        cardinality, first_stage = 64, 4
        x = conv_bn(x, 64, 3, 2, "conv1", "relu", bn_name="conv1_bn")
        x = conv_bn(x, 64, 3, 1, "conv2", "relu", bn_name="conv2_bn")
        x = conv_bn(x, 128, 3, 1, "conv3", "relu", bn_name="conv3_bn")
    else:
        cardinality, first_stage = 32, 2
        x = conv_bn(x, 64, 7, 2, "conv1", "relu", bn_name="conv1_bn")
    x = paddle.nn.functional.max_pool2d(x, 3, 2, padding=1)
    channels = x.shape[1]
    for stage, (count, width) in enumerate(zip(DEPTHS[depth], (128, 256, 512, 1024))):
        for i in range(count):
            name = f"{stage + first_stage}_{i + 1}"
            stride = 2 if i == 0 and stage > 0 else 1
            out = conv_bn(x, width, 1, 1, f"conv{name}_x1", "relu", bn_name=f"conv{name}_x1_bn")
            out = conv_bn(out, width, 3, stride, f"conv{name}_x2", "relu", groups=cardinality,
                          bn_name=f"conv{name}_x2_bn")
            out = conv_bn(out, width * 2, 1, 1, f"conv{name}_x3", bn_name=f"conv{name}_x3_bn")
            out = squeeze_excitation(out, width * 2, 16, f"fc{name}")
            if channels != width * 2 or stride != 1:
                x = conv_bn(x, width * 2, 1, stride, f"conv{name}_prj", bn_name=f"conv{name}_prj_bn")
            x = paddle.nn.functional.relu(paddle.add(x, out))
            channels = width * 2
    x = paddle.flatten(paddle.nn.functional.adaptive_avg_pool2d(x, 1), 1)
    # fluid.layers.dropout's default mode at inference: x * (1 - p)
    x = paddle.nn.functional.dropout(x, p=0.5, training=False, mode="downscale_in_infer")
    return nn.fc(x, class_dim, weight_attr=ParamAttr(name="fc6_weights"), bias_attr=ParamAttr(name="fc6_offset"))


def build(model, x, class_dim):
    if model.startswith("SE_ResNeXt"):  # SE_ResNeXt50_32x4d, SE_ResNeXt152_32x4d, ...
        return se_resnext(x, int(model[len("SE_ResNeXt"):].split("_")[0]), class_dim)
    if model == "MobileNetV1":
        return mobilenet_v1(x, class_dim)
    if model == "MobileNetV2":
        return mobilenet_v2(x, class_dim)
    if model.startswith("ResNeXt"):  # ResNeXt50_32x4d, ResNeXt50_vd_64x4d, ...
        parts = model[len("ResNeXt"):].split("_")
        return resnext(x, int(parts[0]), "vd" in parts, int(parts[-1].split("x")[0]), class_dim)
    depth, _, variant = model[len("ResNet"):].partition("_")
    return resnet(x, int(depth), variant == "vd", class_dim)


def random_values(name, shape, rng):
    if name.endswith("_variance") or name.endswith("_scale"):
        return rng.uniform(0.5, 1.5, shape)
    if name.endswith("_mean") or name.endswith("_offset") or name.endswith(".b_0"):
        return rng.normal(0, 0.1, shape)
    fan_in = int(np.prod(shape[1:])) if len(shape) == 4 else shape[0]
    return rng.normal(0, (1.0 / fan_in) ** 0.5, shape)


def main():
    parser = argparse.ArgumentParser()
    for flag in ("--model", "--input", "--out_dir", "--logits"):
        parser.add_argument(flag, required=True)
    parser.add_argument("--class_dim", type=int, required=True)
    parser.add_argument("--export_dir", help="also write the classic inference export: model + params")
    args = parser.parse_args()
    paddle.enable_static()
    image = np.load(args.input)
    main_program, startup = paddle.static.Program(), paddle.static.Program()
    with paddle.static.program_guard(main_program, startup):
        x = paddle.static.data("x", [None, *image.shape[1:]], "float32")
        logits = build(args.model, x, args.class_dim)
    exe = paddle.static.Executor(paddle.CPUPlace())  # no startup run: every persistable is set below
    rng = np.random.default_rng(0)
    scope = paddle.static.global_scope()
    persistables = [v for v in main_program.list_vars() if v.persistable and v.name not in ("feed", "fetch")]
    for var in persistables:
        scope.var(var.name).get_tensor().set(random_values(var.name, var.shape, rng).astype("float32"),
                                             paddle.CPUPlace())
    paddle.static.save_vars(exe, args.out_dir, main_program=main_program, vars=persistables)
    (result,) = exe.run(main_program, feed={"x": image}, fetch_list=[logits])
    np.save(args.logits, result)
    if args.export_dir:
        # the classic layout (fluid.io.save_inference_model with model_filename="model",
        # params_filename="params"): the same ProgramDesc + combined parameters, under those names
        prefix = os.path.join(args.export_dir, "inference")
        paddle.static.save_inference_model(prefix, [x], [logits], exe, program=main_program)
        os.replace(prefix + ".pdmodel", os.path.join(args.export_dir, "model"))
        os.replace(prefix + ".pdiparams", os.path.join(args.export_dir, "params"))


if __name__ == "__main__":
    main()
