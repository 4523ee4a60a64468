"""eval.py's report (issue 14): per-class figures, confusion matrix, ECE, temperature, mistakes, plots; and the
same report from 2 processes under paddle.distributed.launch as from one."""
import csv
import json
import os
import subprocess
import sys
from collections import Counter

import cv2
import numpy as np
import paddle
import pytest

from tests.conftest import IMAGENETTE, ROOT, SHARED, run_script, subset_list
from utils import report

LITE0_WEIGHTS = SHARED / "weights" / "EfficientNetLite0_pretrained.pdparams"
SMALL = ["--image_shape", "3", "32", "32", "--resize_short_size=32", "--reader_thread=0"]
NO_MATPLOTLIB = __import__("importlib").util.find_spec("matplotlib") is None

# ---------------------------------------------------------------- a hand-computed example
# 12 images of classes 0-2 among 6 classes; the predictions below give (rows true, columns predicted):
#   true 0: 3 right, 1 as class 1        precision/recall by hand:
#   true 1: 2 right, 1 as 0, 1 as 2        class 0: P 3/4  R 3/4  F1 3/4
#   true 2: 3 right, 1 as class 3          class 1: P 2/3  R 2/4  F1 4/7
#   class 3: no images, predicted once     class 2: P 3/4  R 3/4  F1 3/4;  class 3: P 0/1, R 0 (no support)
LABELS = np.array([0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2])
PREDICTED = np.array([0, 0, 0, 1, 1, 1, 2, 0, 2, 2, 2, 3])


def example_logits():
    logits = np.tile(np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6]), (12, 1))
    logits[np.arange(12), PREDICTED] = 5.0
    wrong = PREDICTED != LABELS
    logits[np.flatnonzero(wrong), LABELS[wrong]] = 3.0
    logits[7, 1] = -5.0  # image 7 (true 1, predicted 0): its class is the 6th of 6, outside the top 5
    return logits


def test_per_class_figures_match_the_hand_computed_example():
    counts = report.ClassCounts(6)
    counts.add(example_logits()[:5], LABELS[:5])  # in two batches, as evaluate() feeds them
    counts.add(example_logits()[5:], LABELS[5:])
    assert counts.confusion[:4, :4].tolist() == [[3, 1, 0, 0], [1, 2, 1, 0], [0, 0, 3, 1], [0, 0, 0, 0]]
    assert counts.confusion.sum() == 12
    rows = report.per_class_summary(counts.confusion, ["zero", "one", "two", "three", "four", "five"],
                                    counts.top5_hits)
    assert [row["class_id"] for row in rows] == [0, 1, 2, 3]  # 4 and 5: no images and never predicted
    by_id = {row["class_id"]: row for row in rows}
    assert by_id[1]["name"] == "one"
    assert [by_id[c]["support"] for c in range(4)] == [4, 4, 4, 0]
    assert [by_id[c]["precision"] for c in range(4)] == pytest.approx([3 / 4, 2 / 3, 3 / 4, 0])
    assert [by_id[c]["recall"] for c in range(4)] == pytest.approx([3 / 4, 2 / 4, 3 / 4, 0])
    assert [by_id[c]["f1"] for c in range(4)] == pytest.approx([3 / 4, 4 / 7, 3 / 4, 0])
    assert [by_id[c]["top5_recall"] for c in range(3)] == pytest.approx([1, 3 / 4, 1])
    means = report.averages(rows)
    # macro: the classes with images (0-2) alike; class 3 (only predicted) is left out
    assert means["macro"]["precision"] == pytest.approx((3 / 4 + 2 / 3 + 3 / 4) / 3)
    assert means["macro"]["recall"] == pytest.approx((3 / 4 + 2 / 4 + 3 / 4) / 3)
    assert means["macro"]["f1"] == pytest.approx((3 / 4 + 4 / 7 + 3 / 4) / 3)
    assert means["weighted"]["precision"] == pytest.approx(13 / 18)
    assert means["weighted"]["recall"] == pytest.approx(8 / 12)  # the weighted recall is top-1 accuracy


def test_per_class_figures_agree_with_scikit_learn_on_random_predictions():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 7, 300)
    predicted = np.where(rng.random(300) < 0.6, labels, rng.integers(0, 9, 300))
    counts = report.ClassCounts(9)
    counts.add(np.eye(9)[predicted], labels)
    rows = report.per_class_summary(counts.confusion, None)
    present = [row["class_id"] for row in rows]
    precision, recall, f1, support = metrics.precision_recall_fscore_support(labels, predicted, labels=present,
                                                                             zero_division=0)
    assert [row["precision"] for row in rows] == pytest.approx(precision)
    assert [row["recall"] for row in rows] == pytest.approx(recall)
    assert [row["f1"] for row in rows] == pytest.approx(f1)
    assert [row["support"] for row in rows] == support.tolist()
    with_images = sorted(set(labels.tolist()))
    macro = metrics.precision_recall_fscore_support(labels, predicted, labels=with_images, average="macro",
                                                    zero_division=0)
    weighted = metrics.precision_recall_fscore_support(labels, predicted, labels=with_images, average="weighted",
                                                       zero_division=0)
    means = report.averages(rows)
    assert [means["macro"][k] for k in ("precision", "recall", "f1")] == pytest.approx(macro[:3])
    assert [means["weighted"][k] for k in ("precision", "recall", "f1")] == pytest.approx(weighted[:3])
    assert rows[0]["name"] == "class 0"
    np.testing.assert_array_equal(counts.confusion, metrics.confusion_matrix(labels, predicted, labels=range(9)))


def test_ece_of_hand_placed_confidences():
    # 15 bins of width 1/15: 0.95 falls in the last bin, 0.5 in bin 7 (7/15 < 0.5 <= 8/15)
    bins = report.reliability_bins(np.array([0.95, 0.95, 0.5, 0.5]), np.array([True, False, True, True]))
    assert bins.counts[14] == 2 and bins.counts[7] == 2 and bins.counts.sum() == 4
    # last bin: accuracy 1/2 at confidence 0.95; bin 7: accuracy 1 at confidence 0.5
    assert bins.ece == pytest.approx(0.45 * 2 / 4 + 0.5 * 2 / 4)
    edges = report.reliability_bins(np.array([1.0, 1 / 15]), np.array([True, True]))
    assert edges.counts[14] == 1 and edges.counts[0] == 1  # (lower, upper] bins


def test_a_fitted_temperature_recovers_the_one_that_made_the_labels_and_lowers_ece():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (6000, 5))
    probs = report.softmax(logits, 2.0)  # labels drawn from softmax(z / 2): the calibrated temperature is 2
    labels = (rng.random((6000, 1)) > probs.cumsum(axis=1)).sum(axis=1)
    fitted = report.fit_temperature(logits, labels)
    assert fitted == pytest.approx(2.0, abs=0.1)
    nll = report.negative_log_likelihood
    assert nll(logits, labels, fitted) < min(nll(logits, labels, fitted * 0.9), nll(logits, labels, fitted * 1.1))
    assert report.calibration(logits, labels, fitted).ece < report.calibration(logits, labels).ece / 2


def test_mistakes_are_listed_most_confident_first():
    logits = example_logits()
    logits[3, 1] = 9.0  # image 3's mistake is now the most confident one
    mistakes = report.misclassified([f"img{i}" for i in range(12)], LABELS, logits)
    assert [m[0] for m in mistakes][0] == "img3"
    assert sorted(m[0] for m in mistakes) == sorted(f"img{i}" for i in np.flatnonzero(PREDICTED != LABELS))
    scores = [m[3] for m in mistakes]
    assert scores == sorted(scores, reverse=True)
    assert mistakes[0][1:3] == (0, 1)


@pytest.mark.skipif(NO_MATPLOTLIB, reason="matplotlib is not installed (requirements.txt)")
def test_a_1000_class_confusion_picture_shows_the_30_most_confused_classes():
    confusion = np.diag(np.full(1000, 5))
    confused = np.arange(0, 1000, 25)[:40]  # 40 classes with mistakes, of different sizes
    for rank, c in enumerate(confused):
        confusion[c, (c + 1) % 1000] = 40 - rank
    chosen = report.most_confused_classes(confusion)
    assert len(chosen) == 30
    # the 30 largest mistakes involve confused[:30] as true classes and their neighbours as predictions;
    # each true class counts its mistake once and so does its neighbour: the top 15 pairs make the 30
    pairs = sorted(set(confused[:15].tolist()) | {(c + 1) % 1000 for c in confused[:15]})
    assert chosen.tolist() == pairs
    image = report.render_confusion_matrix(confusion, None)
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert 800 <= image.shape[0] <= 2000 and 800 <= image.shape[1] <= 2000


@pytest.fixture(scope="module")
def random_weights(tmp_path_factory):
    import models

    out = tmp_path_factory.mktemp("report_weights") / "r18.pdparams"
    paddle.seed(0)
    paddle.save(models.build_model("ResNet18", class_dim=10).state_dict(), str(out))
    return out


def read_csv(path):
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.reader(handle))


@pytest.mark.skipif(NO_MATPLOTLIB, reason="matplotlib is not installed (requirements.txt)")
def test_eval_writes_the_report_files_and_the_json_figures(random_weights, digits_dir, tmp_path):
    val = subset_list(digits_dir / "val_list.txt", tmp_path / "val64.txt", 64)
    names = tmp_path / "names.txt"
    names.write_text("".join(f"digit {i}\n" for i in range(10)))
    out = tmp_path / "report"
    run_script("eval.py", "--model=ResNet18", f"--pretrained_model={random_weights}", f"--data_dir={digits_dir}",
               f"--val_list={val}", *SMALL, f"--save_report_dir={out}", "--save_report_images=12",
               f"--class_map_path={names}", f"--save_json_path={tmp_path / 'eval.json'}")
    result = json.loads((tmp_path / "eval.json").read_text())
    assert result == json.loads((out / "report.json").read_text())
    assert result["samples"] == 64
    confusion = read_csv(out / "confusion_matrix.csv")
    header = [int(cell.split()[0]) for cell in confusion[0][1:]]
    assert confusion[0][1:] == [f"{i} digit {i}" for i in header]
    assert [row[0] for row in confusion[1:]] == confusion[0][1:]
    matrix = np.array([[int(v) for v in row[1:]] for row in confusion[1:]])
    assert matrix.sum() == 64 and np.trace(matrix) == round(result["top1"] * 64)
    listed = Counter(int(line.split()[1]) for line in val.read_text().splitlines() if line.strip())
    assert {c: n for c, n in zip(header, matrix.sum(axis=1)) if n} == dict(listed)  # rows: the true classes
    per_class = result["per_class"]
    assert sum(row["support"] for row in per_class) == 64
    assert sum(row["recall"] * row["support"] for row in per_class) == pytest.approx(result["top1"] * 64)
    assert sum(row["top5_recall"] * row["support"] for row in per_class) == pytest.approx(result["top5"] * 64)
    assert {row["name"] for row in per_class} <= {f"digit {i}" for i in range(10)}
    assert 0 <= result["ece"] <= 1 and result["temperature"] > 0
    assert set(result["averages"]) == {"macro", "weighted"}
    mistakes = read_csv(out / "misclassified.csv")
    assert mistakes[0] == ["path", "true", "true_name", "predicted", "predicted_name", "score"]
    assert len(mistakes) - 1 == 64 - np.trace(matrix)
    scores = [float(row[5]) for row in mistakes[1:]]
    assert scores == sorted(scores, reverse=True)
    assert all(os.path.isfile(row[0]) for row in mistakes[1:])
    for name, least in (("confusion_matrix.png", (450, 450)), ("reliability.png", (450, 500))):
        image = cv2.imread(str(out / name))
        assert image is not None and image.shape[0] >= least[0] and image.shape[1] >= least[1], name
        assert image.std() > 10, f"{name} is blank"
    sheet = cv2.imread(str(out / "misclassified.png"))
    assert sheet.shape[0] >= 2 * 160 and sheet.shape[1] >= 6 * 160 and sheet.std() > 10


def test_report_flags_are_checked_before_any_work(tmp_path):
    common = ["eval.py", "--model=ResNet18", f"--data_dir={tmp_path}"]
    proc = run_script(*common, "--save_report_images=5", check=False)
    assert proc.returncode == 2 and "error: --save_report_images needs --save_report_dir" in proc.stderr
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    proc = run_script(*common, f"--save_report_dir={blocker / 'report'}", check=False)
    assert proc.returncode == 2 and f"error: --save_report_dir {blocker / 'report'}" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.skipif(not LITE0_WEIGHTS.exists() or NO_MATPLOTLIB,
                    reason="needs ../shared (Imagenette, EfficientNetLite0 weights) and matplotlib")
def test_two_processes_give_the_one_process_report(tmp_path):
    val = subset_list(IMAGENETTE / "val_list_in1k.txt", tmp_path / "val40.txt", 40)
    common = ["--model=EfficientNetLite0", f"--pretrained_model={LITE0_WEIGHTS}", f"--data_dir={IMAGENETTE}",
              f"--val_list={val}", "--batch_size=8", "--reader_thread=0", "--engine=dygraph"]
    run_script("eval.py", *common, f"--save_report_dir={tmp_path / 'one'}", f"--save_json_path={tmp_path / '1.json'}")
    launch = [sys.executable, "-m", "paddle.distributed.launch", "--log_dir", str(tmp_path / "log"),
              "--nproc_per_node", "2", "eval.py", *common, f"--save_report_dir={tmp_path / 'two'}",
              f"--save_json_path={tmp_path / '2.json'}"]
    proc = subprocess.run(launch, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + (tmp_path / "log" / "workerlog.0").read_text()[-3000:]
    one, two = (json.loads((tmp_path / name).read_text()) for name in ("1.json", "2.json"))
    assert one["samples"] == two["samples"] == 40
    for key in ("top1", "top5", "per_class", "averages"):
        assert one[key] == two[key], key  # counts, and ratios of counts: exactly equal
    for key in ("ece", "temperature", "nll"):
        assert two[key] == pytest.approx(one[key], rel=1e-4, abs=1e-6), key
    assert read_csv(tmp_path / "one" / "confusion_matrix.csv") == read_csv(tmp_path / "two" / "confusion_matrix.csv")
    mistakes = [read_csv(tmp_path / run / "misclassified.csv") for run in ("one", "two")]
    assert [row[:5] for row in mistakes[0]] == [row[:5] for row in mistakes[1]]
    assert len(mistakes[0]) - 1 == round(40 * (1 - one["top1"]))
    # the real-weights figures hang together: 1000-way, 10 true classes
    assert sum(row["support"] for row in one["per_class"]) == 40
    assert sum(row["recall"] * row["support"] for row in one["per_class"]) == pytest.approx(one["top1"] * 40)
    assert one["top1"] >= 0.6 and 0 <= one["ece"] <= 1
    assert one["nll_at_temperature"] <= one["nll"]  # the fitted temperature is the best one on this set
    rank0 = (tmp_path / "log" / "workerlog.0").read_text()
    assert "3/3 batches" in rank0  # each rank read its interleaved 20 images (3 batches of <= 8), not all 40
    assert "[eval] report:" not in (tmp_path / "log" / "workerlog.1").read_text()  # rank 0 alone writes


def scores_by_class(proc):
    return [dict(zip(record["class_ids"], record["scores"])) for record in json.loads(proc.stdout)]


def test_a_temperature_given_to_infer_is_stored_in_the_export_and_applied_by_predict(random_weights, digits_dir,
                                                                                     tmp_path):
    image = next((digits_dir / "val").rglob("*.png"))
    proc = run_script("infer.py", "--model=ResNet18", f"--pretrained_model={random_weights}", *SMALL,
                      f"--image_path={image}", "--topk=10", "--temperature=2", "--save_inference=True",
                      f"--model_save_dir={tmp_path}")
    export = tmp_path / "ResNet18"
    assert json.loads((export / "preprocess.json").read_text())["temperature"] == 2
    at_two = scores_by_class(run_script("predict.py", f"--inference_model={export}", f"--image_path={image}",
                                        "--topk=10", "--engine=inference"))[0]
    plain = scores_by_class(run_script("predict.py", f"--inference_model={export}", f"--image_path={image}",
                                       "--topk=10", "--temperature=1", "--engine=inference"))[0]
    # softmax(z / 2) is proportional to sqrt(softmax(z)) over all 10 classes
    root = {c: np.sqrt(p) for c, p in plain.items()}
    expected = {c: v / sum(root.values()) for c, v in root.items()}
    assert at_two == pytest.approx(expected, abs=1e-6)
    assert scores_by_class(proc)[0] == pytest.approx(at_two, abs=1e-5)
    assert max(at_two.values()) < max(plain.values())  # T > 1 softens the scores
    bad = run_script("predict.py", f"--inference_model={export}", f"--image_path={image}", "--temperature=0",
                     check=False)
    assert bad.returncode == 2 and "error: --temperature 0.0: must be a positive number" in bad.stderr


@pytest.mark.skipif(NO_MATPLOTLIB, reason="the report's plots need matplotlib (requirements.txt)")
def test_the_report_of_every_engine_equals_the_dygraph_report(random_weights, digits_dir, tmp_path):
    """The same figures whichever engine scores the images: dygraph, Paddle Inference converted in memory,
    and an exported model (--inference_model)."""
    val = subset_list(digits_dir / "val_list.txt", tmp_path / "val40.txt", 40)
    run_script("infer.py", "--model=ResNet18", f"--pretrained_model={random_weights}", *SMALL[:-1],
               "--save_inference=True", f"--model_save_dir={tmp_path / 'export'}")
    sources = {"dygraph": ["--model=ResNet18", f"--pretrained_model={random_weights}", *SMALL, "--engine=dygraph"],
               "inference": ["--model=ResNet18", f"--pretrained_model={random_weights}", *SMALL,
                             "--engine=inference"],
               "export": [f"--inference_model={tmp_path / 'export' / 'ResNet18'}", "--reader_thread=0",
                          "--engine=inference", "--precision=fp32"]}
    reports = {}
    for name, flags in sources.items():
        out = tmp_path / name
        run_script("eval.py", *flags, f"--data_dir={digits_dir}", f"--val_list={val}", f"--save_report_dir={out}")
        reports[name] = json.loads((out / "report.json").read_text())
        assert (out / "confusion_matrix.png").is_file() and (out / "reliability.png").is_file()
        assert read_csv(out / "confusion_matrix.csv") == read_csv(tmp_path / "dygraph" / "confusion_matrix.csv")
    for name in ("inference", "export"):
        assert reports[name]["per_class"] == reports["dygraph"]["per_class"]
        assert reports[name]["ece"] == pytest.approx(reports["dygraph"]["ece"], abs=1e-4)
