"""Training losses: cross entropy with optional label smoothing, auxiliary heads, and the batch-level
augmentations whose labels the loss mixes (mixup, CutMix) plus random erasing, all on the normalised batch."""
from __future__ import annotations

import math
from dataclasses import dataclass

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


class CutMixBatch:
    """Pastes a box of a permutation of the batch into each image (Yun et al. 2019, "CutMix").

    lam ~ Beta(alpha, alpha) sets the box's area, (1 - lam) * H * W, centred uniformly on the image and clipped
    to it; the returned lam is the label weight of the unchanged part: 1 - pasted area / (H * W)."""

    def __init__(self, alpha: float, rng: np.random.Generator):
        self.alpha, self.rng = alpha, rng

    def __call__(self, images: paddle.Tensor, labels: paddle.Tensor):
        height, width = images.shape[2], images.shape[3]
        top, bottom, left, right = cutmix_box(height, width, float(self.rng.beta(self.alpha, self.alpha)), self.rng)
        perm = paddle.to_tensor(self.rng.permutation(images.shape[0]))
        mixed = images.clone()
        if bottom > top and right > left:
            mixed[:, :, top:bottom, left:right] = paddle.gather(images[:, :, top:bottom, left:right], perm)
        lam = 1.0 - (bottom - top) * (right - left) / (height * width)
        return mixed, labels, paddle.gather(labels, perm), lam


def cutmix_box(height: int, width: int, lam: float, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """``(top, bottom, left, right)``: sides sqrt(1 - lam) of the image's, centre uniform, clipped to the image."""
    cut = math.sqrt(1.0 - lam)
    cut_h, cut_w = int(height * cut), int(width * cut)
    centre_y, centre_x = int(rng.integers(height)), int(rng.integers(width))
    top, left = centre_y - cut_h // 2, centre_x - cut_w // 2
    return max(top, 0), min(top + cut_h, height), max(left, 0), min(left + cut_w, width)


# Random erasing's ranges (Zhong et al. 2020, "Random Erasing Data Augmentation", the ImageNet settings)
ERASE_AREA = (0.02, 0.4)
ERASE_ASPECT = (0.3, 1 / 0.3)
ERASE_ATTEMPTS = 100


def erasing_box(height: int, width: int, rng: np.random.Generator) -> tuple[int, int, int, int] | None:
    """The paper's rectangle ``(top, left, h, w)``: area fraction and aspect ratio (h / w) uniform in their
    ranges, top-left corner uniform over the image, redrawn until it fits; None after 100 misses."""
    for _ in range(ERASE_ATTEMPTS):
        area = rng.uniform(*ERASE_AREA) * height * width
        aspect = rng.uniform(*ERASE_ASPECT)
        box_h, box_w = int(round(math.sqrt(area * aspect))), int(round(math.sqrt(area / aspect)))
        top, left = int(rng.integers(height)), int(rng.integers(width))
        if box_h >= 1 and box_w >= 1 and top + box_h <= height and left + box_w <= width:
            return top, left, box_h, box_w
    return None


class RandomErasing:
    """Per image, with probability ``prob``, replaces a rectangle of the normalised NCHW batch by standard
    normal noise (the paper's random-value fill; normalised pixels have about unit variance)."""

    def __init__(self, prob: float, rng: np.random.Generator):
        self.prob, self.rng = prob, rng

    def __call__(self, images: paddle.Tensor) -> paddle.Tensor:
        channels, height, width = images.shape[1:]
        erased = None
        for index in range(images.shape[0]):
            if self.rng.random() >= self.prob:
                continue
            box = erasing_box(height, width, self.rng)
            if box is None:
                continue
            top, left, box_h, box_w = box
            noise = self.rng.standard_normal((channels, box_h, box_w), dtype=np.float32)
            if erased is None:
                erased = images.clone()  # the caller's batch may be reused (--same_feed_batches)
            erased[index, :, top : top + box_h, left : left + box_w] = paddle.to_tensor(noise).astype(images.dtype)
        return images if erased is None else erased


@dataclass
class BatchAugmentOptions:
    mixup_alpha: float = 0.0  # 0: no mixup
    cutmix_alpha: float = 0.0  # 0: no CutMix
    cutmix_prob: float = 0.5  # with both on: the probability that a batch gets CutMix rather than mixup
    erasing_prob: float = 0.0

    @property
    def enabled(self) -> bool:
        return self.mixup_alpha > 0 or self.cutmix_alpha > 0 or self.erasing_prob > 0


class BatchAugmentation:
    """One step's batch augmentation: mixup or CutMix (one of the two when both are on), then random erasing.
    Every draw comes from ``rng``, so a resumed run repeats it."""

    def __init__(self, options: BatchAugmentOptions, rng: np.random.Generator):
        self.options, self.rng = options, rng

    def _mixer(self):
        mixup, cutmix = self.options.mixup_alpha > 0, self.options.cutmix_alpha > 0
        if mixup and cutmix:
            cutmix = self.rng.random() < self.options.cutmix_prob
            mixup = not cutmix
        if cutmix:
            return CutMixBatch(self.options.cutmix_alpha, self.rng)
        return MixupBatch(self.options.mixup_alpha, self.rng) if mixup else None

    def __call__(self, images: paddle.Tensor, labels: paddle.Tensor):
        mixer = self._mixer()
        labels_b, lam = None, 1.0
        if mixer is not None:
            images, labels, labels_b, lam = mixer(images, labels)
        if self.options.erasing_prob > 0:
            images = RandomErasing(self.options.erasing_prob, self.rng)(images)
        return images, labels, labels_b, lam


def batch_augmentation(args, rng: np.random.Generator):
    """None when no batch-level augmentation is on; else a callable f(x, y) -> (x, y_a, y_b, lam):
    mixup or CutMix (one of the two per batch when both are on, --mixup_switch_prob), then random erasing.
    With erasing only: (x_erased, y, None, 1.0)."""
    options = BatchAugmentOptions(
        mixup_alpha=args.mixup_alpha if args.use_mixup else 0.0,
        cutmix_alpha=args.cutmix_alpha,
        cutmix_prob=args.mixup_switch_prob,
        erasing_prob=args.random_erasing_prob,
    )
    return BatchAugmentation(options, rng) if options.enabled else None


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
