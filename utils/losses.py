"""Training losses: cross entropy with optional label smoothing, mixup, and auxiliary heads."""
from __future__ import annotations

import numpy as np
import paddle
import paddle.nn.functional as F


def smoothed_cross_entropy(logits: paddle.Tensor, labels: paddle.Tensor, epsilon: float) -> paddle.Tensor:
    """Mean cross entropy against (1 - eps) * one_hot + eps / K."""
    log_probs = F.log_softmax(logits, axis=-1)
    nll = -paddle.take_along_axis(log_probs, labels.reshape([-1, 1]), axis=1).squeeze(1)
    if epsilon <= 0:
        return nll.mean()
    uniform = -log_probs.mean(axis=-1)
    return ((1 - epsilon) * nll + epsilon * uniform).mean()


class MixupBatch:
    """Mixes a batch with a permutation of itself: x = lam * x + (1 - lam) * x[perm] (Zhang et al. 2018)."""

    def __init__(self, alpha: float, rng: np.random.Generator):
        self.alpha, self.rng = alpha, rng

    def __call__(self, images: paddle.Tensor, labels: paddle.Tensor):
        lam = float(self.rng.beta(self.alpha, self.alpha)) if self.alpha > 0 else 1.0
        perm = paddle.to_tensor(self.rng.permutation(images.shape[0]))
        mixed = lam * images + (1 - lam) * paddle.gather(images, perm)
        return mixed, labels, paddle.gather(labels, perm), lam


class ClassificationLoss:
    """Cross entropy (label smoothing optional) over the main and auxiliary outputs, mixup aware."""

    AUX_WEIGHT = 0.3  # GoogLeNet's auxiliary classifiers

    def __init__(self, smoothing: float = 0.0):
        self.smoothing = smoothing

    def _single(self, logits, labels, labels_b=None, lam=1.0):
        loss = smoothed_cross_entropy(logits, labels, self.smoothing)
        if labels_b is not None and lam < 1.0:
            loss = lam * loss + (1 - lam) * smoothed_cross_entropy(logits, labels_b, self.smoothing)
        return loss

    def __call__(self, output, labels, labels_b=None, lam=1.0):
        if isinstance(output, (tuple, list)):
            main, *aux = output
            loss = self._single(main, labels, labels_b, lam)
            for extra in aux:
                loss = loss + self.AUX_WEIGHT * self._single(extra, labels, labels_b, lam)
            return loss
        return self._single(output, labels, labels_b, lam)
