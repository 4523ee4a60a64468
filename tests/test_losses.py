"""Label smoothing and mixup losses against hand computations."""
import numpy as np
import paddle
import pytest

from utils.losses import ClassificationLoss, MixupBatch, smoothed_cross_entropy


def log_softmax(x):
    x = x - x.max(axis=1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=1, keepdims=True))


LOGITS = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]], np.float32)
LABELS = np.array([0, 1])


def test_cross_entropy_without_smoothing():
    expected = -np.mean(log_softmax(LOGITS)[[0, 1], LABELS])
    got = float(smoothed_cross_entropy(paddle.to_tensor(LOGITS), paddle.to_tensor(LABELS), 0.0))
    assert got == pytest.approx(expected, rel=1e-5)


def test_label_smoothing_matches_soft_target_definition():
    eps = 0.1
    target = np.full((2, 3), eps / 3)
    target[[0, 1], LABELS] += 1 - eps
    expected = -np.mean((target * log_softmax(LOGITS)).sum(axis=1))
    got = float(smoothed_cross_entropy(paddle.to_tensor(LOGITS), paddle.to_tensor(LABELS), eps))
    assert got == pytest.approx(expected, rel=1e-5)


def test_mixup_mixes_images_and_loss_mixes_targets():
    images = paddle.to_tensor(np.arange(2 * 3 * 2 * 2, dtype=np.float32).reshape(2, 3, 2, 2))
    labels = paddle.to_tensor(LABELS)
    rng = np.random.default_rng(5)
    mixed, y_a, y_b, lam = MixupBatch(0.2, rng)(images, labels)
    check = np.random.default_rng(5)
    lam_expected = check.beta(0.2, 0.2)
    perm = check.permutation(2)
    assert lam == pytest.approx(lam_expected)
    assert np.allclose(mixed.numpy(), lam * images.numpy() + (1 - lam) * images.numpy()[perm], atol=1e-5)
    loss = ClassificationLoss(0.0)(paddle.to_tensor(LOGITS), y_a, y_b, lam)
    ce = -log_softmax(LOGITS)
    expected = lam * ce[[0, 1], LABELS].mean() + (1 - lam) * ce[[0, 1], LABELS[perm]].mean()
    assert float(loss) == pytest.approx(expected, rel=1e-5)


def test_auxiliary_heads_add_weighted_losses():
    logits = paddle.to_tensor(LOGITS)
    labels = paddle.to_tensor(LABELS)
    single = float(ClassificationLoss()(logits, labels))
    triple = float(ClassificationLoss()((logits, logits, logits), labels))
    assert triple == pytest.approx(single * 1.6, rel=1e-5)
