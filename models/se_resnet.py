"""Squeeze-and-Excitation ResNets (Hu et al.) in the classic suite's naming; SE reduction ratio 16.

- ``SE_ResNet<depth>_vd``: ResNet vd (three-conv stem 32/32/64, average-pool shortcuts) + SE per block.
- ``SE_ResNeXt<depth>_32x4d``: ResNeXt 32x4d with the 7x7 stem and strided 1x1 shortcuts + SE. The 152-layer
  one is, despite its name, the classic suite's other network (se_resnext.py at 152 layers): three-conv stem
  64/64/128 and 64 groups of 2 channels (the same 128-256-512-1024 inner widths); PaddleClas has no such model.
- ``SE_ResNeXt<depth>_vd_32x4d``: ResNeXt 32x4d vd with a wider stem (64/64/128) + SE.
- ``SENet154_vd``: the SENet-154 of the paper: 64x4d grouped bottlenecks, 3-8-36-3 blocks, stem 64/64/128,
  dropout 0.2 before the classifier; vd average-pool shortcuts.

Blocks and network: models/resnet_legacy.py. SE sits on the residual branch, before the addition.
"""
from __future__ import annotations

from models.registry import ModelMeta, register_model
from models.resnet_legacy import LegacyResNet

SE_REDUCTION = 16
RESNET_VD_STEM = (32, 32, 64)
WIDE_VD_STEM = (64, 64, 128)  # the SE_ResNeXt_vd / SENet154 stem, and the classic SE_ResNeXt152_32x4d's

# Dropout before the classifier (training only), as the classic suite trained them.
SE_RESNEXT_DROPOUT = 0.5
SENET154_DROPOUT = 0.2

SE_RESNET_VD_META = ModelMeta(classifier=("out",), family="SE_ResNet_vd")
SE_RESNEXT_META = ModelMeta(classifier=("out",), family="SE_ResNeXt")
SE_RESNEXT_VD_META = ModelMeta(classifier=("out",), family="SE_ResNeXt_vd")


def se_resnet_vd(depth: int, class_dim: int = 1000, **options) -> LegacyResNet:
    return LegacyResNet(depth=depth, deep_stem=RESNET_VD_STEM, avg_down=True, se_reduction=SE_REDUCTION,
                        class_dim=class_dim, **options)


def se_resnext(depth: int, vd: bool, class_dim: int = 1000, **options) -> LegacyResNet:
    if not vd:
        options.setdefault("dropout", SE_RESNEXT_DROPOUT)
    return LegacyResNet(depth=depth, cardinality=32, group_width=4, deep_stem=WIDE_VD_STEM if vd else None,
                        avg_down=vd, se_reduction=SE_REDUCTION, class_dim=class_dim, **options)


def classic_se_resnext152(class_dim: int = 1000, **options) -> LegacyResNet:
    """se_resnext.py's 152-layer branch: 3x3 stem convs 64 (stride 2), 64, 128, then the max pool;
    cardinality 64 on the 32x4d inner widths (64 x 2 = 128 in the first stage); strided 1x1 shortcuts."""
    options.setdefault("dropout", SE_RESNEXT_DROPOUT)
    return LegacyResNet(depth=152, cardinality=64, group_width=2, deep_stem=WIDE_VD_STEM, avg_down=False,
                        se_reduction=SE_REDUCTION, class_dim=class_dim, **options)


@register_model("SE_ResNet18_vd", meta=SE_RESNET_VD_META)
def se_resnet18_vd(class_dim=1000, **options):
    return se_resnet_vd(18, class_dim=class_dim, **options)


@register_model("SE_ResNet34_vd", meta=SE_RESNET_VD_META)
def se_resnet34_vd(class_dim=1000, **options):
    return se_resnet_vd(34, class_dim=class_dim, **options)


@register_model("SE_ResNet50_vd", meta=SE_RESNET_VD_META)
def se_resnet50_vd(class_dim=1000, **options):
    return se_resnet_vd(50, class_dim=class_dim, **options)


@register_model("SE_ResNet101_vd", meta=SE_RESNET_VD_META)
def se_resnet101_vd(class_dim=1000, **options):
    return se_resnet_vd(101, class_dim=class_dim, **options)


@register_model("SE_ResNet152_vd", meta=SE_RESNET_VD_META)
def se_resnet152_vd(class_dim=1000, **options):
    return se_resnet_vd(152, class_dim=class_dim, **options)


@register_model("SE_ResNet200_vd", meta=SE_RESNET_VD_META)
def se_resnet200_vd(class_dim=1000, **options):
    return se_resnet_vd(200, class_dim=class_dim, **options)


@register_model("SE_ResNeXt50_32x4d", meta=SE_RESNEXT_META)
def se_resnext50_32x4d(class_dim=1000, **options):
    return se_resnext(50, vd=False, class_dim=class_dim, **options)


@register_model("SE_ResNeXt101_32x4d", meta=SE_RESNEXT_META)
def se_resnext101_32x4d(class_dim=1000, **options):
    return se_resnext(101, vd=False, class_dim=class_dim, **options)


@register_model("SE_ResNeXt152_32x4d", meta=SE_RESNEXT_META)
def se_resnext152_32x4d(class_dim=1000, **options):
    return classic_se_resnext152(class_dim=class_dim, **options)


@register_model("SE_ResNeXt50_vd_32x4d", meta=SE_RESNEXT_VD_META)
def se_resnext50_vd_32x4d(class_dim=1000, **options):
    return se_resnext(50, vd=True, class_dim=class_dim, **options)


@register_model("SE_ResNeXt101_vd_32x4d", meta=SE_RESNEXT_VD_META)
def se_resnext101_vd_32x4d(class_dim=1000, **options):
    return se_resnext(101, vd=True, class_dim=class_dim, **options)


@register_model("SENet154_vd", meta=SE_RESNEXT_VD_META)
def senet154_vd(class_dim=1000, **options):
    options.setdefault("dropout", SENET154_DROPOUT)
    return LegacyResNet(depth=152, cardinality=64, group_width=4, deep_stem=WIDE_VD_STEM, avg_down=True,
                        se_reduction=SE_REDUCTION, class_dim=class_dim, **options)
