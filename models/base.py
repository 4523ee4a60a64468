"""The one interface every zoo network offers (timm style).

- ``forward_features(x)``: NCHW image batch -> last feature map (before global pooling).
- ``forward_head(features)``: pooling, dropout and classifier -> logits.
- ``forward(x)`` = ``forward_head(forward_features(x))``; in training mode a network with auxiliary heads
  (GoogLeNet) may return ``(logits, aux1, aux2, ...)``; see :func:`main_logits`.
- ``get_classifier()`` / ``reset_classifier(class_dim)``: the final layer, and a fresh one for a new
  number of classes (used to fine-tune without hand-editing state_dicts).

Subclasses set ``classifier_names``: attribute paths of the final layer(s) (e.g. ``("fc",)``). It adds no
parameters, so state_dict keys stay exactly those of the published PaddleClas weights.
"""
from __future__ import annotations

import paddle
from paddle import nn


def _resolve(root: nn.Layer, path: str) -> tuple[nn.Layer, str]:
    parent = root
    *parents, leaf = path.split(".")
    for part in parents:
        parent = getattr(parent, part)
    return parent, leaf


def _fresh_like(layer: nn.Layer, class_dim: int) -> nn.Layer:
    if isinstance(layer, nn.Linear):
        return nn.Linear(layer.weight.shape[0], class_dim, bias_attr=layer.bias is not None)
    if isinstance(layer, nn.Conv2D):  # SqueezeNet-style 1x1 conv classifier
        w = layer.weight
        return nn.Conv2D(w.shape[1] * layer._groups, class_dim, w.shape[2:], bias_attr=layer.bias is not None)
    raise TypeError(f"cannot reset a classifier of type {type(layer).__name__}")


class ClassifierNet(nn.Layer):
    classifier_names: tuple[str, ...] = ("fc",)

    def forward_features(self, x: paddle.Tensor) -> paddle.Tensor:
        raise NotImplementedError

    def forward_head(self, features: paddle.Tensor) -> paddle.Tensor:
        raise NotImplementedError

    def forward(self, x: paddle.Tensor):
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Layer:
        parent, leaf = _resolve(self, self.classifier_names[0])
        return getattr(parent, leaf)

    def reset_classifier(self, class_dim: int) -> None:
        for path in self.classifier_names:
            parent, leaf = _resolve(self, path)
            setattr(parent, leaf, _fresh_like(getattr(parent, leaf), class_dim))


def main_logits(output):
    """The classification logits of a forward pass (the first output when auxiliary heads are present)."""
    return output[0] if isinstance(output, (tuple, list)) else output
