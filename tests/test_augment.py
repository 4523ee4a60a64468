"""CutMix, RandAugment and random erasing: each checked on fixed images for the effect its paper documents,
then all of them together through train.py."""
import argparse
import math

import cv2
import numpy as np
import paddle
import pytest

from tests.conftest import IMAGENETTE, run_script, subset_list
from utils import randaugment as ra
from utils.args import add_train_args
from utils.losses import ClassificationLoss, RandomErasing, batch_augmentation
from utils.transforms import PreprocessConfig, read_image, train_transform


def train_flags(*argv):
    parser = argparse.ArgumentParser()
    add_train_args(parser)
    return parser.parse_args(list(argv))


def constant_batch(size, height=15, width=17):
    """Image i is filled with the value i + 1 (distinct per image); label i."""
    values = np.arange(1, size + 1, dtype=np.float32).reshape(size, 1, 1, 1)
    images = np.broadcast_to(values, (size, 3, height, width)).copy()
    return paddle.to_tensor(images), paddle.to_tensor(np.arange(size))


def is_cutmix(before, after):
    """CutMix copies pixels (every value is one of the batch's); mixup blends them."""
    return np.isin(after, before).all()


# ---------------------------------------------------------------- CutMix


@pytest.mark.smoke
def test_cutmix_label_weight_equals_the_pasted_area():
    images, labels = constant_batch(6)
    before = images.numpy()
    checked = 0
    for seed in range(40):
        augment = batch_augmentation(train_flags("--cutmix_alpha=1.0"), np.random.default_rng(seed))
        mixed, y_a, y_b, lam = augment(images, labels)
        out, y_a, y_b = mixed.numpy(), y_a.numpy(), y_b.numpy()
        assert np.array_equal(y_a, labels.numpy()) and 0 <= lam <= 1
        for i in range(6):
            if y_b[i] == y_a[i]:  # paired with itself: nothing visible changes
                continue
            changed = (out[i] != before[i]).any(axis=0)
            # the changed pixels form one rectangle filled with the partner's pixels
            rows, cols = np.nonzero(changed)
            if rows.size:
                box = np.zeros_like(changed)
                box[rows.min():rows.max() + 1, cols.min():cols.max() + 1] = True
                assert np.array_equal(changed, box)
                assert (out[i][:, changed] == before[y_b[i]][:, changed]).all()
            assert changed.sum() == pytest.approx((1 - lam) * 15 * 17, abs=1e-6)
            checked += 1
    assert checked > 100


def test_mixup_switch_probability_picks_cutmix_that_often():
    images, labels = constant_batch(8)  # 8 images: mixup almost never draws the identity permutation
    before = images.numpy()
    for prob, low, high in (("0.3", 0.22, 0.38), ("0", 0, 0), ("1", 1, 1)):
        flags = train_flags("--use_mixup=True", "--mixup_alpha=0.4", "--cutmix_alpha=1.0",
                            f"--mixup_switch_prob={prob}")
        draws = 300
        outputs = (batch_augmentation(flags, np.random.default_rng(seed))(images, labels)[0] for seed in range(draws))
        cutmix = sum(is_cutmix(before, out.numpy()) for out in outputs)
        assert low <= cutmix / draws <= high, (prob, cutmix)


@pytest.mark.parametrize("size", [1, 3, 7])
def test_batch_of_one_and_odd_sizes_with_label_smoothing(size):
    images, labels = constant_batch(size)
    flags = train_flags("--use_mixup=True", "--cutmix_alpha=1.0", "--random_erasing_prob=0.5")
    loss_fn = ClassificationLoss(0.1)
    logits = paddle.to_tensor(np.random.default_rng(0).standard_normal((size, 10)).astype(np.float32))
    for seed in range(10):
        mixed, y_a, y_b, lam = batch_augmentation(flags, np.random.default_rng(seed))(images, labels)
        assert mixed.shape == images.shape and y_b.shape == y_a.shape and 0 <= lam <= 1
        if size == 1:
            assert y_b.numpy()[0] == y_a.numpy()[0]  # its own partner
        loss = float(loss_fn(logits, y_a, y_b, lam))
        assert math.isfinite(loss) and loss > 0


def test_no_flag_means_no_batch_augmentation_and_draws_repeat_per_seed():
    assert batch_augmentation(train_flags(), np.random.default_rng(0)) is None
    images, labels = constant_batch(5)
    flags = train_flags("--use_mixup=True", "--cutmix_alpha=1.0", "--random_erasing_prob=0.5")
    first = batch_augmentation(flags, np.random.default_rng([1, 2, 3]))(images, labels)
    again = batch_augmentation(flags, np.random.default_rng([1, 2, 3]))(images, labels)
    assert np.array_equal(first[0].numpy(), again[0].numpy()) and first[3] == again[3]


# ---------------------------------------------------------------- random erasing


@pytest.mark.smoke
def test_random_erasing_rectangle_area_aspect_and_fill():
    height, width, size = 60, 80, 300
    zeros = paddle.zeros([size, 3, height, width])
    out = RandomErasing(1.0, np.random.default_rng(0))(zeros).numpy()
    assert not zeros.numpy().any()  # the input batch is left alone
    erased_values = []
    for image in out:
        mask = (image != 0).any(axis=0)
        rows, cols = np.nonzero(mask)
        box_h, box_w = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
        assert mask.sum() == box_h * box_w  # one filled rectangle
        # the paper's ranges; +-0.5 px per side from rounding to whole pixels
        assert 0.02 * height * width <= (box_h + 0.5) * (box_w + 0.5)
        assert (box_h - 0.5) * (box_w - 0.5) <= 0.4 * height * width
        assert 0.3 <= (box_h + 0.5) / (box_w - 0.5) and (box_h - 0.5) / (box_w + 0.5) <= 1 / 0.3
        erased_values.append(image[:, mask].ravel())
    values = np.concatenate(erased_values)
    assert abs(values.mean()) < 0.02 and abs(values.std() - 1) < 0.02  # standard normal fill


def test_random_erasing_probability():
    batch = paddle.zeros([400, 1, 32, 32])
    erased = (RandomErasing(0.25, np.random.default_rng(1))(batch).numpy() != 0).any(axis=(1, 2, 3)).mean()
    assert 0.18 < erased < 0.32
    assert not RandomErasing(0.0, np.random.default_rng(1))(batch).numpy().any()


# ---------------------------------------------------------------- RandAugment


def ramp(size=16):
    """Every value 0-255 once per channel."""
    return np.repeat(np.arange(256, dtype=np.uint8).reshape(size, size, 1), 3, axis=2)


def apply(name, magnitude, image, seed=0):
    return ra.OPERATIONS[name](image, magnitude / ra.MAX_MAGNITUDE, np.random.default_rng(seed))


def test_randaugment_has_the_papers_fourteen_operations():
    assert set(ra.OPERATION_NAMES) == {
        "Identity", "AutoContrast", "Equalize", "Rotate", "Solarize", "Color", "Posterize", "Contrast",
        "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateX", "TranslateY"}
    assert len(ra.OPERATION_NAMES) == 14


@pytest.mark.parametrize("magnitude, degrees", [(30, 30.0), (15, 15.0), (6, 6.0)])
def test_rotate_turns_by_the_magnitudes_angle(magnitude, degrees):
    image = np.zeros((101, 101, 3), np.uint8)
    image[49:52, 5:96] = 255  # a horizontal bar through the centre
    for seed in range(4):  # either direction
        out = apply("Rotate", magnitude, image, seed)
        rows, cols = np.nonzero(out[..., 0] == 255)
        angle = math.degrees(math.atan2(2 * np.cov(cols, rows)[0, 1], cols.var() - rows.var()) / 2)
        assert abs(abs(angle) - degrees) < 1.0, (seed, angle)


@pytest.mark.parametrize("magnitude, threshold", [(0, 256), (15, 128), (30, 0)])
def test_solarize_inverts_the_values_above_the_magnitudes_threshold(magnitude, threshold):
    image = ramp()
    out = apply("Solarize", magnitude, image)
    values = image.astype(int)
    assert np.array_equal(out, np.where(values >= threshold, 255 - values, values))


@pytest.mark.parametrize("magnitude, bits", [(0, 8), (15, 6), (30, 4)])
def test_posterize_keeps_the_magnitudes_number_of_bits(magnitude, bits):
    out = apply("Posterize", magnitude, ramp())
    assert np.array_equal(out, ramp() & (0xFF << (8 - bits) & 0xFF))
    assert len(np.unique(out)) == 2 ** bits


def test_translate_brightness_and_identity_on_a_fixed_image():
    image = np.zeros((40, 100, 3), np.uint8)
    image[:, 50] = 255
    for seed in range(4):
        column = np.nonzero(apply("TranslateX", 15, image, seed)[20, :, 0] == 255)[0]
        assert len(column) == 1 and abs(abs(column[0] - 50) - 150 / 331 * 100 / 2) <= 1  # half the largest shift
    grey = np.full((8, 8, 3), 100, np.uint8)
    assert {int(apply("Brightness", 30, grey, seed)[0, 0, 0]) for seed in range(8)} == {10, 190}  # 1 -+ 0.9
    assert np.array_equal(apply("Identity", 30, ramp()), ramp())
    assert np.array_equal(apply("Color", 0, ramp()), ramp())


@pytest.mark.skipif(not (IMAGENETTE / "val_list.txt").exists(), reason=f"{IMAGENETTE} not present")
def test_photometric_operations_on_a_real_photo():
    first = (IMAGENETTE / "val_list.txt").read_text().split()[0]
    photo = read_image(str(IMAGENETTE / first))
    stretched = apply("AutoContrast", 30, photo)
    assert (stretched.reshape(-1, 3).min(axis=0) == 0).all() and (stretched.reshape(-1, 3).max(axis=0) == 255).all()
    equalized = apply("Equalize", 30, photo)[..., 1]
    cdf = np.cumsum(np.bincount(equalized.ravel(), minlength=256)) / equalized.size
    assert np.abs(cdf[32::32] - np.arange(33, 257, 32) / 256).max() < 0.05  # histogram spread evenly
    gray = cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY).astype(np.float32)
    spreads = {round(float(cv2.cvtColor(apply("Contrast", 30, photo, seed), cv2.COLOR_RGB2GRAY).std() / gray.std()), 1)
               for seed in range(8)}
    assert 0.1 in spreads and max(spreads) > 1.3  # contrast factor 1 -+ 0.9 (the stronger one clips)
    saturation = cv2.cvtColor(photo, cv2.COLOR_RGB2HSV)[..., 1].astype(np.float32).mean()
    ratios = [cv2.cvtColor(apply("Color", 30, photo, seed), cv2.COLOR_RGB2HSV)[..., 1].astype(np.float32).mean()
              / saturation for seed in range(8)]
    assert min(ratios) < 0.2 and max(ratios) > 1.3  # colour factor 1 -+ 0.9: towards grey or more saturated


def test_n_operations_per_image_uniformly_at_the_one_magnitude(monkeypatch):
    calls = []
    for name in ra.OPERATION_NAMES:
        monkeypatch.setitem(ra.OPERATIONS, name, lambda image, strength, rng, _name=name:
                            calls.append((_name, strength)) or image)
    rng = np.random.default_rng(0)
    for _ in range(700):
        ra.randaugment(ramp(), 3, 12, rng)
    assert len(calls) == 2100 and {strength for _, strength in calls} == {12 / 30}
    counts = np.array([sum(name == n for name, _ in calls) for n in ra.OPERATION_NAMES])
    assert counts.min() > 2100 / 14 * 0.7 and counts.max() < 2100 / 14 * 1.3


def test_randaugment_in_the_train_transform_is_seeded():
    cfg = PreprocessConfig(crop_size=32, use_randaugment=True, randaugment_n=2, randaugment_m=20)
    image = cv2.resize(ramp(), (64, 64), interpolation=cv2.INTER_NEAREST)
    plain = PreprocessConfig(crop_size=32)
    a = train_transform(image, cfg, np.random.default_rng([4, 5]))
    assert np.array_equal(a, train_transform(image, cfg, np.random.default_rng([4, 5])))
    assert not np.array_equal(a, train_transform(image, cfg, np.random.default_rng([4, 6])))
    differs = sum(not np.array_equal(train_transform(image, cfg, np.random.default_rng(s)),
                                     train_transform(image, plain, np.random.default_rng(s))) for s in range(20))
    assert differs >= 15  # applied (Identity, or a sign that changes nothing, can leave a few alike)


# ---------------------------------------------------------------- through the scripts


SMALL = ["--model=ResNet18", "--image_shape", "3", "32", "32", "--resize_short_size=32", "--reader_thread=0"]


def test_randaugment_with_dali_is_refused_in_one_line(tmp_path):
    proc = run_script("train.py", *SMALL, f"--data_dir={tmp_path}", f"--model_save_dir={tmp_path}",
                      "--use_randaugment=True", "--use_dali=True", check=False)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "--use_randaugment=True needs the cv2 reader: drop --use_dali=True" in lines[0], lines


@pytest.mark.parametrize("flags, message", [
    (["--use_randaugment=True", "--use_aa=True"], "--use_randaugment and --use_aa: give one"),
    (["--use_randaugment=True", "--randaugment_m=31"], "--randaugment_m 31: must be in [0, 30]"),
    (["--use_randaugment=True", "--randaugment_n=0"], "--randaugment_n 0: must be >= 1"),
    (["--cutmix_alpha=-1"], "--cutmix_alpha -1.0: must be > 0"),
    (["--random_erasing_prob=1.5"], "--random_erasing_prob 1.5: must be in [0, 1]"),
    (["--mixup_switch_prob=-0.1"], "--mixup_switch_prob -0.1: must be in [0, 1]"),
])
def test_bad_augmentation_flags_are_refused(flags, message):
    from train import build_parser
    from utils.args import parse
    from utils.errors import UsageError

    with pytest.raises(UsageError) as refused:
        parse(build_parser(), [*SMALL, *flags])
    assert message in str(refused.value) and "\n" not in str(refused.value), str(refused.value)


def test_train_with_every_augmentation_erases_only_training_batches_and_resumes_exactly(digits_dir, tmp_path,
                                                                                         monkeypatch, capsys):
    """train.py with mixup, CutMix, RandAugment, random erasing and label smoothing: 29 images at batch 10 are
    two steps (training drops the partial last batch of 9); validation (20 images) is never erased; a run
    stopped after one step and resumed ends with the uninterrupted run's weights, bit for bit."""
    import train
    import utils.losses

    subset_list(digits_dir / "train_list.txt", tmp_path / "t.txt", 29)
    subset_list(digits_dir / "val_list.txt", tmp_path / "v.txt", 20)
    seen = []
    original = utils.losses.RandomErasing.__call__
    monkeypatch.setattr(utils.losses.RandomErasing, "__call__",
                        lambda self, images: seen.append(images.shape[0]) or original(self, images))
    flags = [*SMALL, f"--data_dir={digits_dir}", f"--train_list={tmp_path / 't.txt'}",
             f"--val_list={tmp_path / 'v.txt'}", "--batch_size=10", "--test_batch_size=20", "--num_epochs=1",
             "--random_seed=3", "--lr=0.01", "--use_mixup=True", "--cutmix_alpha=1.0", "--mixup_switch_prob=0.5",
             "--use_label_smoothing=True", "--use_randaugment=True", "--randaugment_n=2", "--randaugment_m=9",
             "--random_erasing_prob=0.5"]
    assert train.main([*flags, f"--model_save_dir={tmp_path / 'full'}"]) == 0
    assert seen == [10, 10]  # the two training batches, no validation batch
    assert "[val] epoch 0 top1" in capsys.readouterr().out
    part = tmp_path / "part"
    assert train.main([*flags, f"--model_save_dir={part}", "--max_iter=1"]) == 0
    assert (part / "ResNet18" / "0_step1" / "model.pdparams").exists()
    assert train.main([*flags, f"--model_save_dir={part}", "--resume=auto"]) == 0
    full = paddle.load(str(tmp_path / "full" / "ResNet18" / "0" / "model.pdparams"))
    resumed = paddle.load(str(part / "ResNet18" / "0" / "model.pdparams"))
    assert full.keys() == resumed.keys()
    assert all(np.array_equal(np.asarray(full[k]), np.asarray(resumed[k])) for k in full)
