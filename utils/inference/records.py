"""What infer.py and predict.py print: one JSON record per image (top-k ids, scores, names, or the
error), progress on stderr, and the exit code a run ends with.
"""
from __future__ import annotations

import json
import os
import sys

import numpy as np


def log(message: str) -> None:
    """Progress and notes go to stderr, so stdout carries only the JSON results."""
    print(message, file=sys.stderr, flush=True)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.asarray(logits, np.float64)
    shifted = shifted - shifted.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def topk_records(paths: list[str], logits: np.ndarray, topk: int, names: list[str] | None) -> list[dict]:
    """One ``{"path", "class_ids", "scores", "label_names"}`` per image, best class first."""
    finite = np.isfinite(np.asarray(logits, np.float64)).all(axis=1)
    probs = softmax(np.where(finite[:, None], logits, 0.0))
    records = []
    for path, row, ok in zip(paths, probs, finite):
        if not ok:
            records.append({"path": path, "error": "the model's output is not finite (NaN/Inf) for this image: "
                                                   "an input size below the model's minimum, or broken weights"})
            continue
        ids = np.argsort(-row, kind="stable")[:topk]
        records.append({
            "path": path,
            "class_ids": [int(i) for i in ids],
            "scores": [round(float(row[i]), 8) for i in ids],
            "label_names": [names[i] if names else str(int(i)) for i in ids],
        })
    return records


def format_record(record: dict) -> str:
    if "error" in record:
        return f"{record['path']}: error: {record['error']}"
    best = ", ".join(f"{i} {name!r} {score:.4f}" for i, name, score in
                     zip(record["class_ids"], record["label_names"], record["scores"]))
    return f"{record['path']}: {best}"


def records_json(records: list[dict]) -> str:
    """A JSON list with one image per line (valid JSON, and still readable with a thousand images)."""
    if not records:
        return "[]"
    return "[\n" + ",\n".join(json.dumps(r, ensure_ascii=False, allow_nan=False) for r in records) + "\n]"


def write_json(path: str, records: list[dict]) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(records_json(records) + "\n")


def emit_results(records: list[dict], save_json_path: str | None, source: str | None = None,
                 max_bad_fraction: float | None = None) -> int:
    """Print the JSON list on stdout, write it to ``save_json_path``; the exit code (see :func:`summarize`)."""
    print(records_json(records), flush=True)
    if save_json_path:
        write_json(save_json_path, records)
        log(f"wrote {len(records)} results to {save_json_path}")
    return summarize(records, source, max_bad_fraction)


def summarize(records: list[dict], source: str | None = None, max_bad_fraction: float | None = None) -> int:
    """Exit code: 1 when every image failed (or more than ``max_bad_fraction`` of them), with the likely
    cause; else 0. ``source``: the folder or list file the images came from."""
    failed = [r["path"] for r in records if "error" in r]
    if not failed:
        return 0
    log(f"{len(failed)} of {len(records)} images could not be read (see their 'error' entries)")
    if len(failed) == len(records):
        log(f"error: no image could be classified: {_unreadable_cause(failed, source)}")
        return 1
    if max_bad_fraction is not None and len(failed) > max_bad_fraction * len(records):
        log(f"error: {len(failed)} of {len(records)} images could not be classified, more than "
            f"--max_bad_image_fraction {max_bad_fraction}: {_unreadable_cause(failed, source)}")
        return 1
    return 0


def _unreadable_cause(paths: list[str], source: str | None) -> str:
    from reader import Sample, likely_cause

    if source and os.path.isfile(source):  # a list file: its relative paths start at its folder
        root, list_path, root_name = os.path.dirname(os.path.abspath(source)), source, "the list's folder"
    else:
        root, list_path, root_name = source or os.path.dirname(paths[0]), None, "--data_dir"
    return likely_cause([Sample(p, 0) for p in paths], root, list_path, root_name)
