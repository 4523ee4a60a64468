"""List files (every refusal names file:line) and the dataset's bad-image handling."""
import os

import cv2
import numpy as np
import pytest

from reader import (
    BAD_LABEL,
    BadImageLog,
    EpochBatchSampler,
    ImageListDataset,
    ListFileError,
    collate_skip_bad,
    make_loader,
    parse_list_file,
)
from utils.transforms import PreprocessConfig


def write(path, text, newline="\n"):
    with open(path, "w", encoding="utf-8", newline="") as handle:
        handle.write(text.replace("\n", newline))
    return str(path)


def make_images(root, count=6, size=20):
    os.makedirs(root / "img", exist_ok=True)
    lines = []
    for i in range(count):
        image = np.full((size, size + 4, 3), i * 30, np.uint8)
        cv2.imwrite(str(root / "img" / f"{i}.png"), image)
        lines.append(f"img/{i}.png {i % 3}")
    return lines


def test_parses_lines_counts_classes_and_duplicates(tmp_path):
    lst = write(tmp_path / "l.txt", "a.jpg 0\nb c.jpg 2\n\na.jpg 0\n", newline="\r\n")
    summary = parse_list_file(lst, str(tmp_path))
    assert [s.label for s in summary.samples] == [0, 2, 0]
    assert summary.samples[1].path.endswith("b c.jpg")  # paths with spaces, CRLF endings
    assert summary.num_classes == 3 and summary.duplicates == 1


@pytest.mark.parametrize("text, message", [
    ("", "empty list"),
    ("a.jpg\n", ":1: expected 'relative/path label'"),
    ("a.jpg 0\nb.jpg x\n", ":2: label 'x' is not an integer"),
    ("a.jpg -1\n", ":1: negative label"),
    ("a.jpg 5\n", ":1: label 5 >= class_dim 5"),
    ("../outside.jpg 0\n", ":1: path '../outside.jpg' escapes --data_dir"),
    ("a/../../outside.jpg 0\n", ":1: path 'a/../../outside.jpg' escapes --data_dir"),
    ("/etc/passwd 0\n", ":1: path '/etc/passwd' escapes --data_dir"),
])
def test_bad_lists_are_refused_with_file_and_line(tmp_path, text, message):
    lst = write(tmp_path / "l.txt", text)
    with pytest.raises(ListFileError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_list_file(lst, str(tmp_path), class_dim=5)


def test_missing_list_names_the_flags(tmp_path):
    with pytest.raises(ListFileError, match="--data_dir"):
        parse_list_file(str(tmp_path / "nope.txt"), str(tmp_path))


def test_trailing_spaces_are_fine(tmp_path):
    lst = write(tmp_path / "l.txt", "a.jpg 1   \n")
    assert parse_list_file(lst, str(tmp_path)).samples[0].label == 1


def test_bad_images_are_skipped_counted_and_logged_once(tmp_path):
    lines = make_images(tmp_path, 4)
    (tmp_path / "img" / "empty.jpg").write_bytes(b"")
    (tmp_path / "img" / "junk.jpg").write_bytes(os.urandom(300))
    lines += ["img/empty.jpg 0", "img/junk.jpg 1", "img/missing.jpg 2"]
    lst = write(tmp_path / "l.txt", "\n".join(lines) + "\n")
    samples = parse_list_file(lst, str(tmp_path)).samples
    dataset = ImageListDataset(samples, PreprocessConfig(crop_size=16, resize_short=18), training=False)
    assert dataset[4][1] == BAD_LABEL
    logged = []
    bad_log = BadImageLog(log=logged.append)
    seen = 0
    for _ in range(2):  # two epochs: counted twice, logged once per file
        loader = make_loader(dataset, EpochBatchSampler(len(dataset), 3, shuffle=False), workers=2, prefetch=2)
        for images, labels, _idx, bad in loader:
            bad_log.add(bad)
            seen += len(labels)
            assert images.shape[1:] == (3, 16, 16)
    assert seen == 8 and bad_log.count == 6 and len(logged) == 3
    assert any("missing.jpg" in m for m in logged)


def test_collate_of_an_all_bad_batch_is_a_placeholder_row():
    batch = [(np.zeros((3, 4, 4), np.float32), BAD_LABEL, 0, "x: bad")]
    images, labels, _, bad = collate_skip_bad(batch)
    assert images.shape == (1, 3, 4, 4) and labels.tolist() == [BAD_LABEL] and bad == ["x: bad"]


def test_sampler_shards_exactly_for_eval_and_evenly_for_training():
    eval_parts = [list(EpochBatchSampler(10, 3, shuffle=False, rank=r, world_size=3)) for r in range(3)]
    flat = sorted(i for part in eval_parts for batch in part for i in batch)
    assert flat == list(range(10))
    train_parts = [[i for b in EpochBatchSampler(10, 2, shuffle=True, seed=1, rank=r, world_size=3) for i in b]
                   for r in range(3)]
    assert len({len(p) for p in train_parts}) == 1
    assert not set(train_parts[0]) & set(train_parts[1])


def test_sampler_order_depends_on_seed_and_epoch_only():
    a = EpochBatchSampler(20, 4, shuffle=True, seed=3)
    b = EpochBatchSampler(20, 4, shuffle=True, seed=3)
    a.set_epoch(2)
    b.set_epoch(2)
    assert list(a) == list(b)
    b.set_epoch(2, start_batch=2)
    assert list(b) == list(a)[2:]
    a.set_epoch(3)
    assert list(a) != list(b)
