"""The DALI reader (CPU-only pipeline here): same label stream as the cv2 reader, matching crop statistics,
train.py --use_dali=True, and a clear error when DALI is missing."""
import importlib.util
import sys

import cv2
import numpy as np
import pytest

from reader import EpochBatchSampler, ImageListDataset, make_loader, parse_list_file
from tests.conftest import run_script, subset_list
from utils.args import UsageError
from utils.transforms import PreprocessConfig

HAS_DALI = importlib.util.find_spec("nvidia") is not None and importlib.util.find_spec("nvidia.dali") is not None
needs_dali = pytest.mark.skipif(not HAS_DALI, reason="NVIDIA DALI not installed (pip install -r requirements-dali.txt)")


def ramp_images(folder, count=40, height=96, width=128):
    """JPEG-safe images whose red channel encodes x: a crop's red range tells its width; its slope, a flip."""
    folder.mkdir(exist_ok=True)
    x = np.linspace(0, 255, width).astype(np.uint8)
    image = np.stack([np.tile(x, (height, 1)), np.full((height, width), 90, np.uint8),
                      np.full((height, width), 30, np.uint8)], -1)
    lines = []
    for i in range(count):
        cv2.imwrite(str(folder / f"{i}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        lines.append(f"{folder.name}/{i}.png {i % 4}")
    (folder.parent / "ramp_list.txt").write_text("\n".join(lines) + "\n")
    return str(folder.parent / "ramp_list.txt")


def crop_stats(loader, std):
    widths, flips = [], []
    for images, _labels, _idx, bad in loader:
        assert not bad
        red = np.asarray(images)[:, 0] * std[0]  # back to a 0-1 scale (offset cancels in differences)
        span = red[:, :, -1].mean(axis=1) - red[:, :, 0].mean(axis=1)
        widths += list(np.abs(span))
        flips += list(span < 0)
    return np.asarray(widths), np.asarray(flips)


@needs_dali
def test_dali_and_cv2_give_the_same_label_stream_and_matching_crops(tmp_path):
    list_file = ramp_images(tmp_path / "ramp")
    samples = parse_list_file(list_file, str(tmp_path)).samples
    cfg = PreprocessConfig(crop_size=32, lower_scale=0.3)
    results = {}
    for use_dali in (False, True):
        dataset = ImageListDataset(samples * 5, cfg, training=True, seed=4)
        sampler = EpochBatchSampler(len(dataset), 20, shuffle=True, seed=4)
        sampler.set_epoch(1)
        loader = make_loader(dataset, sampler, workers=1, prefetch=2, use_dali=use_dali)
        labels = [np.asarray(batch[1]).tolist() for batch in loader]
        results[use_dali] = (labels, *crop_stats(loader, cfg.std))
    assert results[False][0] == results[True][0]  # identical label stream, batch by batch
    widths_cv2, widths_dali = results[False][1], results[True][1]
    assert abs(widths_cv2.mean() - widths_dali.mean()) < 0.06
    assert abs(widths_cv2.std() - widths_dali.std()) < 0.06
    for flips in (results[False][2], results[True][2]):
        assert 0.35 < flips.mean() < 0.65


@needs_dali
def test_dali_eval_matches_cv2_eval_closely(tmp_path):
    list_file = ramp_images(tmp_path / "ramp", count=8)
    samples = parse_list_file(list_file, str(tmp_path)).samples
    cfg = PreprocessConfig(crop_size=48, resize_short=56)
    batches = []
    for use_dali in (False, True):
        dataset = ImageListDataset(samples, cfg, training=False)
        loader = make_loader(dataset, EpochBatchSampler(8, 8, shuffle=False), workers=1, prefetch=2,
                             use_dali=use_dali)
        batches.append(np.asarray(next(iter(loader))[0]))
    assert batches[0].shape == batches[1].shape == (8, 3, 48, 48)
    assert np.abs(batches[0] - batches[1]).mean() < 0.05  # resize implementations differ slightly


@needs_dali
def test_train_py_with_use_dali_on_cpu(digits_dir, tmp_path):
    subset_list(digits_dir / "train_list.txt", tmp_path / "t.txt", 48)
    (tmp_path / "t.txt").write_text((tmp_path / "t.txt").read_text() + "missing.png 1\n")
    out = run_script("train.py", "--model=ResNet18", f"--data_dir={digits_dir}", f"--train_list={tmp_path / 't.txt'}",
                     f"--val_list={tmp_path / 't.txt'}", "--image_shape", "3", "32", "32", "--resize_short_size=32",
                     "--batch_size=16", "--num_epochs=1", "--use_dali=True", "--reader_thread=2",
                     f"--model_save_dir={tmp_path}", "--print_step=1")
    assert "[train] epoch 0 step 2/3" in out.stdout
    assert "samples 48 skipped 1" in out.stdout


def test_use_dali_without_dali_names_the_install_line(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "nvidia", None)
    monkeypatch.setitem(sys.modules, "nvidia.dali", None)
    dataset = ImageListDataset([], PreprocessConfig(), training=False)
    with pytest.raises(UsageError, match="requirements-dali.txt"):
        make_loader(dataset, EpochBatchSampler(0, 4, shuffle=False), 1, 2, use_dali=True)


def test_use_dali_refuses_augmentations_it_does_not_do():
    dataset = ImageListDataset([], PreprocessConfig(use_aa=True), training=True)
    with pytest.raises(UsageError, match="random crop and flip only"):
        make_loader(dataset, EpochBatchSampler(0, 4, shuffle=False), 1, 2, use_dali=True)
