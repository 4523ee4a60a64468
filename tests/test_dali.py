"""The DALI reader (CPU-only pipeline here): same label stream and crops as the cv2 reader, one pipeline for
every epoch, batches safe to keep, corrupt JPEGs skipped, all-bad batches in place, train.py --use_dali=True,
and a clear error when DALI is missing."""
import importlib.util
import sys

import cv2
import numpy as np
import pytest

from reader import EpochBatchSampler, ImageListDataset, Sample, make_loader, parse_list_file
from tests.conftest import IMAGENETTE, run_script, subset_list
from utils.errors import UsageError
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


def imagenette_jpegs(count):
    if not IMAGENETTE.is_dir():
        pytest.skip(f"{IMAGENETTE} absent (the shared Imagenette data)")
    lines = (IMAGENETTE / "val_list.txt").read_text().splitlines()[:count]
    return [(IMAGENETTE / line.rsplit(maxsplit=1)[0], int(line.rsplit(maxsplit=1)[1])) for line in lines]


def eval_loader(samples, batch_size, crop=32):
    cfg = PreprocessConfig(crop_size=crop, resize_short=crop)
    dataset = ImageListDataset(samples, cfg, training=False)
    return make_loader(dataset, EpochBatchSampler(len(samples), batch_size, shuffle=False), workers=1, prefetch=2,
                       use_dali=True)


@needs_dali
def test_dali_batches_stay_valid_after_later_batches_are_read():
    """--same_feed keeps batches across runs; DALI reuses its output buffers at each run."""
    samples = [Sample(str(path), label) for path, label in imagenette_jpegs(24)]
    loader = eval_loader(samples, batch_size=3)
    kept, copies = [], []
    for images, labels, _indices, _bad in loader:
        kept.append((images, labels))
        copies.append((np.array(images), np.array(labels)))
    assert len(kept) == 8
    for (images, labels), (image_copy, label_copy) in zip(kept, copies):
        assert np.array_equal(np.asarray(labels), label_copy)
        assert np.array_equal(np.asarray(images), image_copy)


@needs_dali
def test_dali_skips_truncated_and_corrupt_jpegs_and_names_them(tmp_path):
    jpegs = imagenette_jpegs(6)
    data = jpegs[0][0].read_bytes()
    truncated, corrupt = tmp_path / "truncated.jpg", tmp_path / "corrupt.jpg"
    truncated.write_bytes(data[: len(data) // 2])  # header intact, scan data cut (an interrupted copy)
    tables = bytearray(data)
    at = tables.find(b"\xff\xc4")  # the first Huffman table (DHT): its 16 code-length counts follow the class byte
    tables[at + 5 : at + 21] = b"\xff" * 16
    corrupt.write_bytes(bytes(tables))  # every marker and the end marker intact; the decoder refuses the table
    samples = [Sample(str(path), label) for path, label in jpegs]
    samples[1:1] = [Sample(str(truncated), 0)]
    samples[4:4] = [Sample(str(corrupt), 0)]
    loader = eval_loader(samples, batch_size=4)
    batches = list(loader)
    assert len(batches) == 2
    assert [np.asarray(b[2]).tolist() for b in batches] == [[0, 2, 3], [5, 6, 7]]
    messages = [m for b in batches for m in b[3]]
    assert len(messages) == 2
    assert str(truncated) in messages[0] and "truncated" in messages[0]
    assert str(corrupt) in messages[1] and "cannot decode its data" in messages[1]
    assert all(np.asarray(b[0]).shape == (3, 3, 32, 32) for b in batches)


@needs_dali
def test_dali_yields_an_all_bad_batch_empty_at_its_position(tmp_path):
    jpegs = imagenette_jpegs(4)
    (tmp_path / "empty.jpg").write_bytes(b"")
    samples = [Sample(str(path), label) for path, label in jpegs[:2]]
    samples += [Sample(str(tmp_path / "missing.jpg"), 1), Sample(str(tmp_path / "empty.jpg"), 1)]
    samples += [Sample(str(path), label) for path, label in jpegs[2:]]
    loader = eval_loader(samples, batch_size=2)
    batches = list(loader)
    assert len(batches) == len(loader.sampler) == 3
    images, labels, indices, bad = batches[1]
    assert np.asarray(images).shape == (0, 3, 32, 32) and len(labels) == 0 and len(indices) == 0
    assert len(bad) == 2 and "missing.jpg" in bad[0] and "empty.jpg" in bad[1]
    assert [np.asarray(b[2]).tolist() for b in (batches[0], batches[2])] == [[0, 1], [4, 5]]
    assert np.asarray(batches[2][1]).tolist() == [jpegs[2][1], jpegs[3][1]]


@needs_dali
def test_one_dali_pipeline_serves_every_epoch_with_the_cv2_readers_crops(tmp_path):
    """Crops come from the (seed, epoch, sample) generator the cv2 reader uses, so one pipeline serves all
    epochs, its batches are the cv2 reader's, and a resumed pass repeats the uninterrupted one."""
    list_file = ramp_images(tmp_path / "ramp", count=24)
    samples = parse_list_file(list_file, str(tmp_path)).samples
    cfg = PreprocessConfig(crop_size=32, lower_scale=0.3)
    dataset = ImageListDataset(samples, cfg, training=True, seed=7)
    sampler = EpochBatchSampler(len(dataset), 8, shuffle=True, seed=7)
    dali_loader = make_loader(dataset, sampler, workers=1, prefetch=2, use_dali=True)
    per_epoch = {}
    for epoch in range(3):
        sampler.set_epoch(epoch)
        dataset.epoch = epoch
        dali = [np.asarray(b[0]).copy() for b in dali_loader]
        cv2_batches = [np.asarray(b[0]) for b in make_loader(dataset, sampler, workers=0, prefetch=2)]
        assert len(dali) == len(cv2_batches) == 3
        for ours, theirs in zip(dali, cv2_batches):
            assert np.abs(ours - theirs).mean() < 0.05  # same box and flip; the resize filters differ slightly
        per_epoch[epoch] = dali
    assert dali_loader.builds == 1
    assert np.abs(per_epoch[0][0] - per_epoch[1][0]).mean() > 0.1  # epochs differ
    resumed_set = ImageListDataset(samples, cfg, training=True, seed=7)
    resumed_set.epoch = 1
    resumed_sampler = EpochBatchSampler(len(dataset), 8, shuffle=True, seed=7)
    resumed_sampler.set_epoch(1, start_batch=1)
    resumed = [np.asarray(b[0]) for b in make_loader(resumed_set, resumed_sampler, 1, 2, use_dali=True)]
    assert len(resumed) == 2
    for ours, uninterrupted in zip(resumed, per_epoch[1][1:]):
        assert np.array_equal(ours, uninterrupted)


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
