"""The evaluation report: per-class figures, confusion matrix, calibration (ECE, a fitted temperature),
the most confident mistakes, and their plots.

The numbers need only numpy; the plots import matplotlib (Agg, headless) when first drawn, so evaluation
without a report runs where matplotlib is not installed.
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass

import numpy as np

ECE_BINS = 15
TOP5 = 5
MOST_CONFUSED = 30  # the confusion-matrix picture shows at most this many classes
# the fitted temperature is kept inside this range: outside it, scores are all ~uniform or all ~one-hot
TEMPERATURE_RANGE = (0.01, 100.0)


# ---------------------------------------------------------------- counts (summed over ranks)


class ClassCounts:
    """Exact per-class counts: the confusion matrix (rows true, columns predicted) and top-5 hits per class."""

    def __init__(self, num_classes: int):
        self.confusion = np.zeros((num_classes, num_classes), np.int64)
        self.top5_hits = np.zeros(num_classes, np.int64)

    def add(self, logits: np.ndarray, labels: np.ndarray) -> None:
        labels = np.asarray(labels).reshape(-1).astype(np.int64)
        logits = np.asarray(logits)
        predicted = logits.argmax(axis=1)
        np.add.at(self.confusion, (labels, predicted), 1)
        k = min(TOP5, logits.shape[1])
        top = np.argsort(-logits, axis=1, kind="stable")[:, :k]
        hit = (top == labels[:, None]).any(axis=1)
        np.add.at(self.top5_hits, labels[hit], 1)


def all_reduce_class_counts(counts: ClassCounts) -> ClassCounts:
    """Sum the counts over ranks (the counts themselves in a single process)."""
    import paddle
    import paddle.distributed as dist

    if dist.get_world_size() <= 1:
        return counts
    confusion = paddle.to_tensor(counts.confusion)
    hits = paddle.to_tensor(counts.top5_hits)
    dist.all_reduce(confusion)
    dist.all_reduce(hits)
    total = ClassCounts(counts.confusion.shape[0])
    total.confusion, total.top5_hits = confusion.numpy().astype(np.int64), hits.numpy().astype(np.int64)
    return total


# ---------------------------------------------------------------- per-image rows (gathered over ranks)


class PredictionLog:
    """Per-image rows of one rank: dataset index, true label and logits."""

    def __init__(self):
        self._indices, self._labels, self._logits = [], [], []

    def add(self, indices, labels, logits: np.ndarray) -> None:
        self._indices.append(np.asarray(indices, np.int64).reshape(-1))
        self._labels.append(np.asarray(labels, np.int64).reshape(-1))
        self._logits.append(np.asarray(logits, np.float32))

    def local(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if not self._indices:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 0), np.float32)
        return np.concatenate(self._indices), np.concatenate(self._labels), np.concatenate(self._logits)

    def gather(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every rank's rows, in list order (rank 0's first batch and rank 1's interleave back)."""
        import paddle.distributed as dist

        indices, labels, logits = self.local()
        if dist.get_world_size() > 1:
            parts = []
            dist.all_gather_object(parts, (indices, labels, logits))
            parts = [part for part in parts if len(part[0])]
            if not parts:
                return indices, labels, logits
            indices, labels, logits = (np.concatenate(column) for column in zip(*parts))
        order = np.argsort(indices, kind="stable")
        return indices[order], labels[order], logits[order]


# ---------------------------------------------------------------- per-class figures


def per_class_summary(confusion: np.ndarray, names, top5_hits: np.ndarray | None = None) -> list[dict]:
    """``{class_id, name, support, precision, recall, f1[, top5_recall]}`` for every class with support or
    predictions. An undefined ratio (no predictions, no support) is 0, as scikit-learn's zero_division=0."""
    confusion = np.asarray(confusion)
    support = confusion.sum(axis=1)
    predicted = confusion.sum(axis=0)
    correct = np.diag(confusion)
    rows = []
    for class_id in np.flatnonzero((support > 0) | (predicted > 0)):
        precision = _ratio(correct[class_id], predicted[class_id])
        recall = _ratio(correct[class_id], support[class_id])
        f1 = _ratio(2 * precision * recall, precision + recall)
        row = {"class_id": int(class_id), "name": class_name(names, class_id), "support": int(support[class_id]),
               "precision": precision, "recall": recall, "f1": f1}
        if top5_hits is not None:
            row["top5_recall"] = _ratio(top5_hits[class_id], support[class_id])
        rows.append(row)
    return rows


def averages(per_class: list[dict]) -> dict:
    """Macro (every class with images alike) and support-weighted means of precision, recall and F1.

    Classes that are only predicted (a 1000-class model on a 10-class set) are left out of the macro mean:
    their zero recall and precision would say nothing about the classes the set holds."""
    result = {}
    per_class = [row for row in per_class if row["support"]]
    weights = np.array([row["support"] for row in per_class], np.float64)
    for kind in ("macro", "weighted"):
        result[kind] = {}
        for key in ("precision", "recall", "f1"):
            values = np.array([row[key] for row in per_class], np.float64)
            if kind == "macro":
                result[kind][key] = float(values.mean()) if len(values) else 0.0
            else:
                result[kind][key] = float((values * weights).sum() / weights.sum()) if weights.sum() else 0.0
    return result


def _ratio(numerator, denominator) -> float:
    return float(numerator) / float(denominator) if denominator else 0.0


def class_name(names, class_id: int) -> str:
    return names[class_id] if names else f"class {class_id}"


# ---------------------------------------------------------------- calibration


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    scaled = np.asarray(logits, np.float64) / temperature
    scaled -= scaled.max(axis=1, keepdims=True)
    exp = np.exp(scaled)
    return exp / exp.sum(axis=1, keepdims=True)


@dataclass
class ReliabilityBins:
    """Equal-width confidence bins over (0, 1]: images, mean confidence and accuracy per bin."""

    counts: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray

    @property
    def ece(self) -> float:
        """Expected calibration error: sum over bins of |accuracy - confidence| x the bin's share."""
        total = self.counts.sum()
        return float((np.abs(self.accuracy - self.confidence) * self.counts).sum() / total) if total else 0.0


def reliability_bins(confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> ReliabilityBins:
    # bin b holds confidences in (b/bins, (b+1)/bins]
    which = np.clip(np.ceil(np.asarray(confidence, np.float64) * bins).astype(np.int64) - 1, 0, bins - 1)
    counts = np.bincount(which, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.where(counts > 0, np.bincount(which, confidence, bins) / counts, 0.0)
        accuracy = np.where(counts > 0, np.bincount(which, np.asarray(correct, np.float64), bins) / counts, 0.0)
    return ReliabilityBins(counts, mean_conf, accuracy)


def calibration(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0,
                bins: int = ECE_BINS) -> ReliabilityBins:
    probs = softmax(logits, temperature)
    return reliability_bins(probs.max(axis=1), probs.argmax(axis=1) == np.asarray(labels), bins)


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature T minimising the mean negative log-likelihood of softmax(logits / T).

    The NLL is convex in 1/T (a log-sum-exp of linear functions minus a linear one), so its derivative in
    1/T is increasing and bisection finds the minimum; T is kept within TEMPERATURE_RANGE.
    """
    z = np.asarray(logits, np.float64)
    true_logit = z[np.arange(len(z)), np.asarray(labels)]

    def slope(inverse_t: float) -> float:  # d NLL / d(1/T) = mean(E_softmax[z] - z_true)
        return float(((softmax(z * inverse_t) * z).sum(axis=1) - true_logit).mean())

    low, high = 1.0 / TEMPERATURE_RANGE[1], 1.0 / TEMPERATURE_RANGE[0]
    if slope(low) >= 0:
        return TEMPERATURE_RANGE[1]
    if slope(high) <= 0:
        return TEMPERATURE_RANGE[0]
    for _ in range(60):
        middle = 0.5 * (low + high)
        low, high = (middle, high) if slope(middle) < 0 else (low, middle)
    return 1.0 / (0.5 * (low + high))


def negative_log_likelihood(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    probs = softmax(logits, temperature)
    return float(-np.log(np.maximum(probs[np.arange(len(probs)), np.asarray(labels)], 1e-300)).mean())


# ---------------------------------------------------------------- mistakes and files


def misclassified(paths: list[str], labels: np.ndarray, logits: np.ndarray) -> list[tuple[str, int, int, float]]:
    """``(path, true, predicted, score)`` of every wrong top-1, the most confident first."""
    probs = softmax(logits)
    predicted = probs.argmax(axis=1)
    score = probs.max(axis=1)
    wrong = np.flatnonzero(predicted != labels)
    wrong = wrong[np.argsort(-score[wrong], kind="stable")]
    return [(paths[i], int(labels[i]), int(predicted[i]), float(score[i])) for i in wrong]


def present_classes(confusion: np.ndarray) -> np.ndarray:
    """The classes with images or predictions (a 1000-class model on a 10-class set: a few dozen)."""
    return np.flatnonzero((confusion.sum(axis=0) > 0) | (confusion.sum(axis=1) > 0))


def write_confusion_csv(path: str, confusion: np.ndarray, names) -> None:
    """Rows: true class, columns: predicted class, over the classes with images or predictions; the header
    and the first column give ``id name``."""
    classes = present_classes(confusion)
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["true \\ predicted", *(f"{c} {class_name(names, c)}" for c in classes)])
        for c in classes:
            writer.writerow([f"{c} {class_name(names, c)}", *(int(v) for v in confusion[c, classes])])


def write_misclassified_csv(path: str, mistakes, names) -> None:
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "true", "true_name", "predicted", "predicted_name", "score"])
        for image_path, true, predicted, score in mistakes:
            writer.writerow([image_path, true, class_name(names, true), predicted, class_name(names, predicted),
                             f"{score:.6f}"])


def write_png(path: str, image_rgb: np.ndarray) -> None:
    import cv2

    if not cv2.imwrite(path, cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR)):
        raise OSError(f"{path}: could not write the PNG")


# ---------------------------------------------------------------- plots (RGB uint8 arrays)


def most_confused_classes(confusion: np.ndarray, limit: int = MOST_CONFUSED) -> np.ndarray:
    """The classes involved in the most mistakes (as true or as predicted class), in id order; every class
    with support or predictions when there are at most ``limit`` of them."""
    confusion = np.asarray(confusion)
    present = present_classes(confusion)
    if len(present) <= limit:
        return present
    off = confusion - np.diag(np.diag(confusion))
    mistakes = off.sum(axis=0) + off.sum(axis=1)
    ranked = present[np.argsort(-mistakes[present], kind="stable")][:limit]
    return np.sort(ranked)


def _figure_to_rgb(figure) -> np.ndarray:
    figure.canvas.draw()
    image = np.asarray(figure.canvas.buffer_rgba())[:, :, :3].copy()
    import matplotlib.pyplot as plt

    plt.close(figure)
    return image


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # headless: no display on servers and CI
    import matplotlib.pyplot as plt

    return plt


def render_confusion_matrix(confusion: np.ndarray, names, limit: int = MOST_CONFUSED) -> np.ndarray:
    """The confusion matrix as an RGB uint8 image (HWC), row-normalised colours and counts in the cells;
    with more than ``limit`` classes only the most confused ones (for VisualDL's add_image, or a PNG)."""
    plt = _pyplot()
    classes = most_confused_classes(confusion, limit)
    shown = np.asarray(confusion)[np.ix_(classes, classes)]
    support = np.maximum(np.asarray(confusion).sum(axis=1)[classes], 1)
    labels = [f"{c} {class_name(names, c)}"[:28] for c in classes]
    side = max(5.0, 0.42 * len(classes) + 2.5)
    figure, axes = plt.subplots(figsize=(side + 1.5, side), dpi=100)
    axes.imshow(shown / support[:, None], cmap="Blues", vmin=0, vmax=1)
    axes.set_xticks(range(len(classes)), labels, rotation=90, fontsize=8)
    axes.set_yticks(range(len(classes)), labels, fontsize=8)
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    total = int(np.asarray(confusion).sum())
    title = f"confusion matrix ({total} images)"
    if len(classes) < np.asarray(confusion).shape[0]:
        title = f"confusion matrix: the {len(classes)} most confused classes ({total} images)"
    axes.set_title(title, fontsize=10)
    if len(classes) <= MOST_CONFUSED:
        for row in range(len(classes)):
            for col in range(len(classes)):
                if shown[row, col]:
                    colour = "white" if shown[row, col] / support[row] > 0.5 else "black"
                    axes.text(col, row, str(int(shown[row, col])), ha="center", va="center", fontsize=7,
                              color=colour)
    figure.tight_layout()
    return _figure_to_rgb(figure)


def render_reliability(before: ReliabilityBins, after: ReliabilityBins | None = None,
                       temperature: float | None = None) -> np.ndarray:
    """Reliability diagram: accuracy against confidence per bin (the diagonal is perfect calibration)."""
    plt = _pyplot()
    bins = len(before.counts)
    centres = (np.arange(bins) + 0.5) / bins
    figure, axes = plt.subplots(figsize=(6, 5.5), dpi=100)
    axes.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfect calibration")
    used = before.counts > 0
    axes.bar(centres[used], before.accuracy[used], width=1 / bins, edgecolor="black", alpha=0.6,
             label=f"accuracy per bin (ECE {before.ece:.4f})")
    gap = before.confidence[used] - before.accuracy[used]  # drawn from the accuracy up (or down) to the confidence
    axes.bar(centres[used], gap, bottom=before.accuracy[used], width=1 / bins, color="red", alpha=0.25,
             edgecolor="red", hatch="//", label="gap to the mean confidence")
    if after is not None:
        used_after = after.counts > 0
        axes.plot(centres[used_after], after.accuracy[used_after], "o-", color="darkorange",
                  label=f"with temperature {temperature:.3f} (ECE {after.ece:.4f})")
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1)
    axes.set_xlabel("confidence (top-1 softmax score)")
    axes.set_ylabel("accuracy")
    axes.set_title(f"reliability ({int(before.counts.sum())} images, {bins} bins)", fontsize=10)
    axes.legend(loc="upper left", fontsize=8)
    figure.tight_layout()
    return _figure_to_rgb(figure)


def render_contact_sheet(mistakes, names, tile: int = 160, columns: int = 6) -> np.ndarray:
    """The given mistakes as captioned thumbnails (true / predicted, score), in the given order."""
    import cv2

    from utils.transforms import ImageDecodeError, read_image

    caption = 36
    rows = -(-len(mistakes) // columns)
    sheet = np.full((rows * (tile + caption), columns * tile, 3), 255, np.uint8)
    for position, (path, true, predicted, score) in enumerate(mistakes):
        top, left = (position // columns) * (tile + caption), (position % columns) * tile
        try:
            image = read_image(path)
            scale = tile / max(image.shape[:2])
            image = cv2.resize(image, (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale))),
                               interpolation=cv2.INTER_AREA)
            sheet[top:top + image.shape[0], left:left + image.shape[1]] = image
        except ImageDecodeError:
            cv2.putText(sheet, "unreadable", (left + 4, top + tile // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                        (200, 0, 0), 1, cv2.LINE_AA)
        lines = (f"true {class_name(names, true)}"[:26], f"pred {class_name(names, predicted)}"[:20] + f" {score:.2f}")
        for number, text in enumerate(lines):
            cv2.putText(sheet, text, (left + 3, top + tile + 14 + 15 * number), cv2.FONT_HERSHEY_SIMPLEX, 0.36,
                        (0, 0, 0), 1, cv2.LINE_AA)
    return sheet


# ---------------------------------------------------------------- the whole report


def build_report(counts: ClassCounts, labels: np.ndarray, logits: np.ndarray, names) -> dict:
    """The JSON figures: per-class rows, their averages, ECE before/after the fitted temperature."""
    per_class = per_class_summary(counts.confusion, names, counts.top5_hits)
    temperature = fit_temperature(logits, labels)
    return {
        "per_class": per_class,
        "averages": averages(per_class),
        "ece": calibration(logits, labels).ece,
        "ece_bins": ECE_BINS,
        "temperature": temperature,
        "ece_at_temperature": calibration(logits, labels, temperature).ece,
        "nll": negative_log_likelihood(logits, labels),
        "nll_at_temperature": negative_log_likelihood(logits, labels, temperature),
    }


def write_report_files(directory: str, report: dict, counts: ClassCounts, paths: list[str], labels: np.ndarray,
                       logits: np.ndarray, names, contact_images: int = 0) -> list[str]:
    """confusion_matrix.csv/.png, reliability.png, misclassified.csv, per_class.csv and, with
    ``contact_images`` > 0, misclassified.png; returns the files written."""
    os.makedirs(directory, exist_ok=True)
    written = []

    def target(name: str) -> str:
        written.append(os.path.join(directory, name))
        return written[-1]

    write_confusion_csv(target("confusion_matrix.csv"), counts.confusion, names)
    with open(target("per_class.csv"), "w", encoding="utf-8", newline="") as handle:
        fields = ["class_id", "name", "support", "precision", "recall", "f1", "top5_recall"]
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(report["per_class"])
    mistakes = misclassified(paths, labels, logits)
    write_misclassified_csv(target("misclassified.csv"), mistakes, names)
    write_png(target("confusion_matrix.png"), render_confusion_matrix(counts.confusion, names))
    write_png(target("reliability.png"), render_reliability(calibration(logits, labels),
                                                            calibration(logits, labels, report["temperature"]),
                                                            report["temperature"]))
    if contact_images > 0 and mistakes:
        write_png(target("misclassified.png"), render_contact_sheet(mistakes[:contact_images], names))
    return written
