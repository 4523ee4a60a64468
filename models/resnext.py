"""ResNeXt (Xie et al., "Aggregated Residual Transformations") in the classic suite's naming.

- ``ResNeXt<depth>_<C>x4d``: 7x7 stem ``conv``, strided 1x1 projection shortcuts.
- ``ResNeXt<depth>_vd_<C>x4d``: "Bag of Tricks" vd variant: three-conv stem ``conv1_1..3`` (32, 32, 64) and
  average-pool-then-1x1 shortcuts.

C is the cardinality (groups of the 3x3 conv), each group 4 channels wide in the first stage; the block
output is 256 * 2**stage channels for both 32x4d and 64x4d. Blocks and network: models/resnet_legacy.py.
"""
from __future__ import annotations

from models.registry import ModelMeta, register_model
from models.resnet_legacy import LegacyResNet

GROUP_WIDTH = 4  # the "4d" of 32x4d / 64x4d
VD_STEM = (32, 32, 64)

RESNEXT_META = ModelMeta(classifier=("out",), family="ResNeXt")
RESNEXT_VD_META = ModelMeta(classifier=("out",), family="ResNeXt_vd")


def resnext(depth: int, cardinality: int, vd: bool, class_dim: int = 1000, **options) -> LegacyResNet:
    return LegacyResNet(depth=depth, cardinality=cardinality, group_width=GROUP_WIDTH,
                        deep_stem=VD_STEM if vd else None, avg_down=vd, class_dim=class_dim, **options)


@register_model("ResNeXt50_32x4d", meta=RESNEXT_META)
def resnext50_32x4d(class_dim=1000, **options):
    return resnext(50, 32, vd=False, class_dim=class_dim, **options)


@register_model("ResNeXt101_32x4d", meta=RESNEXT_META)
def resnext101_32x4d(class_dim=1000, **options):
    return resnext(101, 32, vd=False, class_dim=class_dim, **options)


@register_model("ResNeXt152_32x4d", meta=RESNEXT_META)
def resnext152_32x4d(class_dim=1000, **options):
    return resnext(152, 32, vd=False, class_dim=class_dim, **options)


@register_model("ResNeXt50_64x4d", meta=RESNEXT_META)
def resnext50_64x4d(class_dim=1000, **options):
    return resnext(50, 64, vd=False, class_dim=class_dim, **options)


@register_model("ResNeXt101_64x4d", meta=RESNEXT_META)
def resnext101_64x4d(class_dim=1000, **options):
    return resnext(101, 64, vd=False, class_dim=class_dim, **options)


@register_model("ResNeXt152_64x4d", meta=RESNEXT_META)
def resnext152_64x4d(class_dim=1000, **options):
    return resnext(152, 64, vd=False, class_dim=class_dim, **options)


@register_model("ResNeXt50_vd_32x4d", meta=RESNEXT_VD_META)
def resnext50_vd_32x4d(class_dim=1000, **options):
    return resnext(50, 32, vd=True, class_dim=class_dim, **options)


@register_model("ResNeXt101_vd_32x4d", meta=RESNEXT_VD_META)
def resnext101_vd_32x4d(class_dim=1000, **options):
    return resnext(101, 32, vd=True, class_dim=class_dim, **options)


@register_model("ResNeXt152_vd_32x4d", meta=RESNEXT_VD_META)
def resnext152_vd_32x4d(class_dim=1000, **options):
    return resnext(152, 32, vd=True, class_dim=class_dim, **options)


@register_model("ResNeXt50_vd_64x4d", meta=RESNEXT_VD_META)
def resnext50_vd_64x4d(class_dim=1000, **options):
    return resnext(50, 64, vd=True, class_dim=class_dim, **options)


@register_model("ResNeXt101_vd_64x4d", meta=RESNEXT_VD_META)
def resnext101_vd_64x4d(class_dim=1000, **options):
    return resnext(101, 64, vd=True, class_dim=class_dim, **options)


@register_model("ResNeXt152_vd_64x4d", meta=RESNEXT_VD_META)
def resnext152_vd_64x4d(class_dim=1000, **options):
    return resnext(152, 64, vd=True, class_dim=class_dim, **options)
