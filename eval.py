#!/usr/bin/env python
"""Evaluate top-1/top-5 accuracy of a model over a list file, and optionally a report that explains it
(per-class figures, confusion matrix, calibration, the most confident mistakes).

    python eval.py --model=ResNet50_vd --pretrained_model=output/ResNet50_vd/199 --data_dir=./data/ILSVRC2012/
    python eval.py --inference_model=output/ResNet50_vd --data_dir=./data/ILSVRC2012/    # an exported model
    python eval.py ... --save_report_dir=report/ --save_report_images=24
"""
import argparse
import json
import os
import time

from utils.cli import run


def build_parser() -> argparse.ArgumentParser:
    from utils import args as flags

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    flags.add_env_args(parser)
    flags.add_model_args(parser)
    flags.add_preprocess_args(parser)
    flags.add_eval_args(parser)
    group = parser.add_argument_group("inference engine")
    group.add_argument("--engine", type=str, default=None, choices=("dygraph", "inference", "onnxruntime", "openvino"),
                       help="dygraph, or inference (Paddle Inference with oneDNN); default on CPU: inference "
                            "when its first batch gives the same top-k as dygraph. With --inference_model: "
                            "inference, onnxruntime or openvino (on the export's inference.onnx); without "
                            "--engine and --precision on CPU, the fastest engine x precision whose scores match "
                            "fp32 here, chosen once per machine kind (engine_choice.json in the export)")
    group.add_argument("--precision", type=str, default=None, choices=("fp32", "bf16", "int8", "fp16"),
                       help="CPU: fp32, bf16 (needs AVX512-BF16 or AMX; --engine inference or openvino) or int8 "
                            "(an export's int8/ model; needs VNNI or AMX); GPU: fp32 or fp16")
    group.add_argument("--inference_model", type=str, default=None,
                       help="evaluate a model exported by infer.py --save_inference=True (no --model needed)")
    group = parser.add_argument_group("report")
    group.add_argument("--save_report_dir", type=str, default=None,
                       help="write confusion_matrix.csv/.png, per_class.csv, reliability.png, misclassified.csv "
                            "and report.json here (per-class figures, ECE and a fitted temperature)")
    group.add_argument("--save_report_images", type=int, default=0,
                       help="with --save_report_dir: the N most confident mistakes as a contact sheet, "
                            "misclassified.png")
    group.add_argument("--class_map_path", type=str, default=None,
                       help="class names for the report: 'index name' lines or one name per line (default: the "
                            "export's or the checkpoint folder's labels.txt, ImageNet names for 1000 classes)")
    return parser


def check_report_flags(args) -> None:
    from utils.errors import UsageError
    from utils.outputs import probe_output_dir

    if args.save_report_images < 0:
        raise UsageError(f"--save_report_images {args.save_report_images}: must be >= 0")
    if args.save_report_images and not args.save_report_dir:
        raise UsageError("--save_report_images needs --save_report_dir (the folder the contact sheet goes to)")
    if args.save_report_dir:
        probe_output_dir(args.save_report_dir, "--save_report_dir")


def report_class_names(args, class_dim: int, exported_labels) -> list[str] | None:
    """--class_map_path, else ``exported_labels`` (the export's labels.txt or a folder data set's class
    folders), else labels.txt beside --pretrained_model, else the ImageNet names for 1000 classes, else None
    (classes are called by their id)."""
    from utils.inference import label_names, read_class_map

    if args.class_map_path:
        return read_class_map(args.class_map_path, class_dim)
    if exported_labels:
        return exported_labels
    return label_names(None, class_dim, args.pretrained_model)


def main(argv):
    from reader import (
        BadImageLog,
        EpochBatchSampler,
        ImageListDataset,
        TooManyBadImages,
        allowed_bad_images,
        check_readable,
        make_loader,
        resolve_split,
    )
    from utils import distributed
    from utils.args import parse, print_arguments
    from utils.cli import select_device
    from utils.evaluate import all_reduce_counts, evaluate
    from utils.inference import (
        engine_fallback,
        engine_for_model,
        exported_for_eval,
        inference_options,
        require_finite,
    )
    from utils.outputs import probe_output_file
    from utils.presets import load_trained_model, preprocess_config
    from utils.report import ClassCounts, PredictionLog, all_reduce_class_counts, build_report, write_report_files

    args = parse(build_parser(), argv)
    print_arguments(args)
    if args.save_json_path:
        probe_output_file(args.save_json_path, "--save_json_path")
    check_report_flags(args)
    device = select_device(args.use_gpu)
    rank = distributed.init(device)  # under paddle.distributed.launch each rank evaluates an interleaved share
    if args.inference_model:
        # on CPU with neither flag: the fastest engine x precision matching fp32 (utils.inference.autoselect)
        auto_choice = args.engine is None and args.precision is None and device == "cpu"
        deployed, forward = exported_for_eval(args, device, build_engine=not auto_choice)
        args.model, model, cfg, class_dim = deployed.model, None, deployed.preprocess, deployed.class_dim
        val = resolve_split(args.data_dir, args.val_list, "val_list.txt", "val", class_dim)
        if auto_choice:
            from utils.inference.autoselect import auto_engine, calibration_batch

            forward = auto_engine(deployed, inference_options(args, args.batch_size, device),
                                  lambda: calibration_batch([s.path for s in val.summary.samples], cfg))
        exported_labels = deployed.labels or val.class_names
    else:
        val = resolve_split(args.data_dir, args.val_list, "val_list.txt", "val", args.class_dim)
        model, class_dim = load_trained_model(args, fallback_class_dim=val.summary.num_classes)
        # labels must fit the weights' classes (warnings were given by the first parse)
        val = resolve_split(args.data_dir, args.val_list, "val_list.txt", "val", class_dim, warn=None)
        exported_labels = val.class_names  # a folder data set's class names
        cfg = preprocess_config(args)
        forward = engine_for_model(args.engine, device, model, cfg, inference_options(args, args.batch_size, device),
                                   topk=5)
    listed, val_list = val.summary, val.source
    names = report_class_names(args, class_dim, exported_labels)
    want_report = bool(args.save_report_dir or args.save_json_path)
    dataset = ImageListDataset(listed.samples, cfg, training=False)
    sampler = EpochBatchSampler(len(dataset), args.batch_size, shuffle=False, rank=rank.rank,
                                world_size=rank.world_size)
    loader = make_loader(dataset, sampler, args.reader_thread, args.reader_buf_size, args.use_dali)
    bad = BadImageLog(stop_after=allowed_bad_images(len(dataset), args.max_bad_image_fraction))
    counts, predictions = (ClassCounts(class_dim), PredictionLog()) if want_report else (None, None)
    started = time.perf_counter()
    try:
        accuracy = evaluate(model, loader, bad, forward=require_finite(forward), show_progress=rank.is_main,
                            class_counts=counts, predictions=predictions)
    except TooManyBadImages:
        accuracy = None  # check_readable reports it just below, with the likely cause
    if accuracy is not None:
        # counts are summed over ranks, not averaged: the same figures as one process
        accuracy, skipped = all_reduce_counts(accuracy, bad.count)
    else:
        skipped = bad.count
    check_readable(skipped, len(dataset), args.max_bad_image_fraction, listed.samples, args.data_dir, val.list_path,
                   what="evaluation")
    seconds = time.perf_counter() - started
    result = {"model": args.model, "top1": accuracy.top(1), "top5": accuracy.top(5),
              "samples": accuracy.samples, "skipped": skipped, "pretrained_model": args.pretrained_model,
              "inference_model": args.inference_model, "engine": getattr(forward, "name", "dygraph"),
              "precision": getattr(forward, "precision", args.precision or "fp32"),
              "engine_fallback": engine_fallback(forward),
              "val_list": val_list, "class_dim": class_dim, "preprocess": cfg.__dict__,
              "seconds": round(seconds, 2)}
    print(f"[eval] {args.model} ({result['engine']} {result['precision']}) top1 {result['top1']:.4f} "
          f"top5 {result['top5']:.4f} samples {accuracy.samples} skipped {skipped} ({seconds:.1f} s)")
    if want_report:
        counts = all_reduce_class_counts(counts)
        indices, labels, logits = predictions.gather()  # every rank takes part; rank 0 writes
        if rank.is_main and len(labels):
            result.update(build_report(counts, labels, logits, names))
            print_report_summary(result)
            if args.save_report_dir:
                paths = [listed.samples[i].path for i in indices]
                written = write_report_files(args.save_report_dir, result, counts, paths, labels, logits, names,
                                             args.save_report_images)
                written.append(os.path.join(args.save_report_dir, "report.json"))
                with open(written[-1], "w", encoding="utf-8") as handle:
                    json.dump(result, handle, indent=1, allow_nan=False)
                print(f"[eval] report: {', '.join(written)}")
    if args.save_json_path and rank.is_main:
        with open(args.save_json_path, "w", encoding="utf-8") as handle:
            json.dump(result, handle, indent=1, allow_nan=False)
    return 0


def print_report_summary(result: dict) -> None:
    """The calibration figures and the classes that fail most, in the log."""
    from utils.report import TEMPERATURE_RANGE

    print(f"[eval] ECE {result['ece']:.4f} ({result['ece_bins']} bins); fitted temperature "
          f"{result['temperature']:.3f} gives ECE {result['ece_at_temperature']:.4f}")
    if result["temperature"] in TEMPERATURE_RANGE:
        print(f"warning: the fitted temperature hit the limit of {TEMPERATURE_RANGE}: the scores carry "
              "(almost) no information, or every image is right with a wide margin", flush=True)
    worst = sorted((row for row in result["per_class"] if row["support"]), key=lambda row: row["recall"])[:3]
    def label(row):  # "class 6" already names the id; a real name gets its id in front
        return row["name"] if row["name"] == f"class {row['class_id']}" else f"{row['class_id']} {row['name']}"

    print("[eval] lowest recall: " + "; ".join(f"{label(row)} {row['recall']:.3f} (of {row['support']})"
                                               for row in worst))


if __name__ == "__main__":
    run(main)
