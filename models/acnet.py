"""ACNet (Ding et al. 2019, "ACNet: Strengthening the Kernel Skeletons ... Asymmetric Convolution Blocks")
on ResNet: every kxk conv with k > 1 (the 7x7 stem too) trains as kxk + kx1 + 1xk convs, each with its own
BatchNorm, summed before the activation. For deployment the three fuse into one kxk conv with bias.

    python -m models.convert --model ResNet50_ACNet --pretrained_model trained.pdparams --output deploy.pdparams

writes weights for ``build_model("ResNet50_ACNet", deploy=True)`` (the classic utils/acnet/convert_model.sh).
"""
from __future__ import annotations

import paddle
from paddle import nn

from models.registry import ModelMeta, build_model, register_model
from models.resnet import ConvBN, ResNet

ACNET_META = ModelMeta(family="ResNet_ACNet", classifier=("fc",))


class ConvBNBranch(nn.Layer):
    def __init__(self, in_ch, out_ch, kernel: tuple[int, int], stride, padding: tuple[int, int]):
        super().__init__()
        self.conv = nn.Conv2D(in_ch, out_ch, kernel, stride=stride, padding=padding, bias_attr=False)
        self.bn = nn.BatchNorm2D(out_ch)

    def forward(self, x):
        return self.bn(self.conv(x))

    def fused(self) -> tuple[paddle.Tensor, paddle.Tensor]:
        """The conv kernel and bias that equal conv + BatchNorm (inference statistics)."""
        scale = self.bn.weight / paddle.sqrt(self.bn._variance + self.bn._epsilon)
        kernel = self.conv.weight * scale.reshape([-1, 1, 1, 1])
        bias = self.bn.bias - self.bn._mean * scale
        return kernel, bias


class ACConvBN(nn.Layer):
    """Asymmetric convolution block, a drop-in for ConvBN with kernel k > 1."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, act: bool = True,
                 deploy: bool = False):
        super().__init__()
        pad = kernel // 2
        self.deploy = deploy
        if deploy:
            self.fused_conv = nn.Conv2D(in_ch, out_ch, kernel, stride=stride, padding=pad)
        else:
            self.square = ConvBNBranch(in_ch, out_ch, (kernel, kernel), stride, (pad, pad))
            self.ver = ConvBNBranch(in_ch, out_ch, (kernel, 1), stride, (pad, 0))
            self.hor = ConvBNBranch(in_ch, out_ch, (1, kernel), stride, (0, pad))
        self.act = nn.ReLU() if act else None

    def forward(self, x):
        out = self.fused_conv(x) if self.deploy else self.square(x) + self.ver(x) + self.hor(x)
        return self.act(out) if self.act is not None else out

    @paddle.no_grad()
    def fused(self) -> tuple[paddle.Tensor, paddle.Tensor]:
        kernel, bias = self.square.fused()
        ver_kernel, ver_bias = self.ver.fused()
        hor_kernel, hor_bias = self.hor.fused()
        centre = kernel.shape[2] // 2
        kernel = kernel.clone()
        kernel[:, :, :, centre] += ver_kernel[:, :, :, 0]  # kx1 is the centre column
        kernel[:, :, centre, :] += hor_kernel[:, :, 0, :]  # 1xk is the centre row
        return kernel, bias + ver_bias + hor_bias


def _asymmetrize(model: nn.Layer, deploy: bool) -> nn.Layer:
    """Replace every ConvBN with a kernel > 1 by an ACConvBN of the same shape."""
    for _name, parent in list(model.named_sublayers(include_self=True)):
        for child_name, child in list(parent.named_children()):
            if type(child) is ConvBN and child.conv.weight.shape[2] > 1:
                weight = child.conv.weight
                replacement = ACConvBN(weight.shape[1], weight.shape[0], weight.shape[2], child.conv._stride[0],
                                       act=child.act is not None, deploy=deploy)
                setattr(parent, child_name, replacement)
    return model


def _make(depth: int):
    def build(class_dim: int = 1000, deploy: bool = False, **options):
        if options:
            raise TypeError(f"ResNet_ACNet got unknown option(s): {', '.join(sorted(options))}")
        return _asymmetrize(ResNet(depth, "", class_dim), deploy)

    return build


for _depth in (18, 34, 50, 101, 152):
    register_model(f"ResNet{_depth}_ACNet", meta=ACNET_META)(_make(_depth))


@paddle.no_grad()
def convert_acnet_to_deploy(model: nn.Layer, name: str, class_dim: int) -> nn.Layer:
    """A deploy-form copy of a trained ACNet: each block's three branches fused into one conv."""
    deploy = build_model(name, class_dim=class_dim, deploy=True)
    deploy_layers = dict(deploy.named_sublayers())
    state = {}
    for layer_name, layer in model.named_sublayers():
        if isinstance(layer, ACConvBN):
            kernel, bias = layer.fused()
            state[f"{layer_name}.fused_conv.weight"] = kernel
            state[f"{layer_name}.fused_conv.bias"] = bias
    prefixes = tuple(n + "." for n, layer in model.named_sublayers() if isinstance(layer, ACConvBN))
    for key, value in model.state_dict().items():
        if not key.startswith(prefixes):
            state[key] = value
    missing = [k for k in deploy.state_dict() if k not in state]
    if missing or not deploy_layers:
        raise ValueError(f"deploy conversion left {len(missing)} tensors unset, e.g. {missing[:3]}")
    deploy.set_state_dict(state)
    return deploy
