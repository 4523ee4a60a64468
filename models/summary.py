"""Parameter count and FLOPs of a zoo model, without allocating its weights.

    python -m models.summary --model ResNet50 [--class_dim 1000] [--input_size 224]
    python -m models.summary --list

The model is built under ``paddle.LazyGuard`` (parameters get shapes but no memory) and traced once with
``paddle.jit.to_static`` on a 1x3xSxS input spec. Tracing only infers shapes: no kernel runs and no weight
is initialised, so even the 829M-parameter wsl ResNeXts are summarised in seconds and little memory.

FLOPs are reported as multiply-accumulates (MACs) of convolutions and matrix products (linear layers) for
one image: a conv contributes output elements x (input channels / groups) x kernel area, a matmul output
elements x the contracted size. BatchNorm, activations, pooling, additions and biases are not counted.
This is the convention of the published figures (ResNet50: ~4.1 G).
"""
from __future__ import annotations

import argparse
import math
from collections import Counter

MAC_CONVENTION = ("multiply-accumulates of conv and matmul/linear ops for one image "
                  "(BatchNorm, activations, pooling, additions and biases not counted)")

_CONV_OPS = {"pd_op.conv2d", "pd_op.depthwise_conv2d", "pd_op.conv3d"}
_TRANSPOSED_CONV_OPS = {"pd_op.conv2d_transpose", "pd_op.depthwise_conv2d_transpose", "pd_op.conv3d_transpose"}
_MATMUL_OPS = {"pd_op.matmul", "pd_op.bmm"}


def count_parameters(model) -> tuple[int, int]:
    """(trainable, non-trainable) element counts; shapes only, so lazily built models work."""
    trainable = frozen = 0
    for param in model.parameters():
        size = math.prod(param.shape)
        if param.trainable:
            trainable += size
        else:
            frozen += size  # e.g. BatchNorm running mean/variance
    return trainable, frozen


def _shape(value) -> list[int]:
    shape = list(value.shape)
    if any(dim < 0 for dim in shape):
        raise ValueError(f"shape {shape} is not fully known after tracing; cannot count FLOPs")
    return shape


def _op_macs(op) -> tuple[str, int] | None:
    """("conv" | "matmul", MACs) of one traced op, or None for ops that are not counted."""
    name = op.name()
    operands = op.operands_source()
    if name in _CONV_OPS:  # weight: [out, in / groups, *kernel]
        return "conv", math.prod(_shape(op.results()[0])) * math.prod(_shape(operands[1])[1:])
    if name in _TRANSPOSED_CONV_OPS:  # weight: [in, out / groups, *kernel]; every input scatters to it
        return "conv", math.prod(_shape(operands[0])) * math.prod(_shape(operands[1])[1:])
    if name in _MATMUL_OPS:
        x_shape = _shape(operands[0])
        transposed = name == "pd_op.matmul" and op.attrs().get("transpose_x", False)
        contracted = x_shape[0] if len(x_shape) == 1 else x_shape[-2] if transposed else x_shape[-1]
        return "matmul", math.prod(_shape(op.results()[0])) * contracted
    return None


def count_macs(model, input_size: int) -> Counter:
    """MACs per op kind ("conv", "matmul") of ``model`` on one 3 x input_size x input_size image."""
    import paddle
    from paddle.static import InputSpec

    model.eval()  # networks with auxiliary heads return only the main logits
    spec = InputSpec([1, 3, input_size, input_size], "float32", name="image")
    traced = paddle.jit.to_static(model.forward, input_spec=[spec], full_graph=True)
    program = traced.concrete_program.main_program
    macs: Counter = Counter()
    for op in program.global_block().ops:
        counted = _op_macs(op)
        if counted is not None:
            macs[counted[0]] += counted[1]
    return macs


def lazy_build(name: str, class_dim: int = 1000):
    import paddle

    import models

    with paddle.LazyGuard():
        return models.build_model(name, class_dim=class_dim)


def _human(count: float, unit: str = "") -> str:
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if count >= scale:
            return f"{count / scale:.3f} {suffix}{unit}"
    return f"{count:.0f} {unit}".rstrip()


def summarize(name: str, class_dim: int = 1000, input_size: int | None = None) -> dict:
    import models

    meta = models.get_model_meta(name)
    size = input_size or meta.input_size
    model = lazy_build(name, class_dim)
    trainable, frozen = count_parameters(model)
    macs = count_macs(model, size)
    return {"model": name, "class_dim": class_dim, "input_size": size, "params": trainable,
            "non_trainable": frozen, "macs": sum(macs.values()), "macs_by_kind": dict(macs)}


def format_summary(info: dict) -> str:
    by_kind = ", ".join(f"{kind} {_human(value, 'MACs')}" for kind, value in sorted(info["macs_by_kind"].items()))
    return "\n".join([
        f"model:      {info['model']} (class_dim {info['class_dim']}, input 3x{info['input_size']}x"
        f"{info['input_size']})",
        f"params:     {info['params']} ({_human(info['params'])}; trainable)",
        f"non-trainable: {info['non_trainable']} (BatchNorm running statistics; a .pdparams file holds "
        f"{info['params'] + info['non_trainable']} values)",
        f"MACs:       {info['macs']} ({_human(info['macs'])}; {by_kind})",
        f"FLOPs convention: {MAC_CONVENTION}; 1 MAC = 1 multiply + 1 add, so 2x MACs if you count both",
    ])


def format_model_list() -> str:
    import models

    names = models.list_models()
    width = max((len(name) for name in names), default=5)
    lines = [f"{'model':<{width}}  input  resize  interpolation  family"]
    for name in names:
        meta = models.get_model_meta(name)
        lines.append(f"{name:<{width}}  {meta.input_size:>5}  {meta.resize_short:>6}  "
                     f"{meta.interpolation:<13}  {meta.family}")
    lines.append(f"{len(names)} models")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m models.summary", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=str, help="registered model name")
    parser.add_argument("--class_dim", type=int, default=1000, help="number of classes (default 1000)")
    parser.add_argument("--input_size", type=int, default=None,
                        help="square input side (default: the model's metadata input_size)")
    parser.add_argument("--list", action="store_true", help="list all registered models with their metadata")
    parser.add_argument("--debug", type=str, default="False", help="True: full tracebacks on errors")
    return parser


def main(argv: list[str]) -> int:
    import models
    from utils.args import UsageError

    args = build_parser().parse_args(argv)
    if args.list:
        print(format_model_list())
        return 0
    if not args.model:
        raise UsageError("give --model NAME (or --list to see the names)")
    if args.class_dim < 1:
        raise UsageError(f"--class_dim must be >= 1, got {args.class_dim}")
    meta = models.get_model_meta(args.model)
    if args.input_size is not None and args.input_size < meta.min_input_size:
        raise UsageError(f"--input_size {args.input_size} is below {args.model}'s minimum {meta.min_input_size}")
    print(format_summary(summarize(args.model, args.class_dim, args.input_size)))
    return 0


if __name__ == "__main__":
    from utils.cli import run

    run(main)
