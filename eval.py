#!/usr/bin/env python
"""Evaluate top-1/top-5 accuracy of a model over a list file.

    python eval.py --model=ResNet50_vd --pretrained_model=output/ResNet50_vd/199 --data_dir=./data/ILSVRC2012/
    python eval.py --inference_model=output/ResNet50_vd --data_dir=./data/ILSVRC2012/    # an exported model
"""
import argparse
import json
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
    group.add_argument("--engine", type=str, default=None, choices=("dygraph", "inference"),
                       help="dygraph, or inference (Paddle Inference with oneDNN); default on CPU: inference "
                            "when its first batch gives the same top-k as dygraph")
    group.add_argument("--inference_model", type=str, default=None,
                       help="evaluate a model exported by infer.py --save_inference=True (no --model needed)")
    return parser


def main(argv):
    from reader import (
        BadImageLog,
        EpochBatchSampler,
        ImageListDataset,
        TooManyBadImages,
        allowed_bad_images,
        check_readable,
        make_loader,
        parse_list_file,
        resolve_list,
    )
    from utils.args import parse, print_arguments
    from utils.cli import select_device
    from utils.evaluate import evaluate
    from utils.inference import (
        engine_fallback,
        engine_for_model,
        exported_for_eval,
        inference_options,
        require_finite,
    )
    from utils.outputs import probe_output_file
    from utils.presets import load_trained_model, preprocess_config

    args = parse(build_parser(), argv)
    print_arguments(args)
    if args.save_json_path:
        probe_output_file(args.save_json_path, "--save_json_path")
    device = select_device(args.use_gpu)
    val_list = resolve_list(args.data_dir, args.val_list, "val_list.txt")
    if args.inference_model:
        deployed, forward = exported_for_eval(args, device)
        args.model, model, cfg, class_dim = deployed.model, None, deployed.preprocess, deployed.class_dim
        listed = parse_list_file(val_list, args.data_dir, class_dim)
    else:
        listed = parse_list_file(val_list, args.data_dir, args.class_dim)
        model, class_dim = load_trained_model(args, fallback_class_dim=listed.num_classes)
        # labels must fit the weights' classes (warnings were given by the first parse)
        listed = parse_list_file(val_list, args.data_dir, class_dim, warn=None)
        cfg = preprocess_config(args)
        forward = engine_for_model(args.engine, device, model, cfg, inference_options(args, args.batch_size, device),
                                   topk=5)
    dataset = ImageListDataset(listed.samples, cfg, training=False)
    loader = make_loader(dataset, EpochBatchSampler(len(dataset), args.batch_size, shuffle=False),
                         args.reader_thread, args.reader_buf_size, args.use_dali)
    bad = BadImageLog(stop_after=allowed_bad_images(len(dataset), args.max_bad_image_fraction))
    started = time.perf_counter()
    try:
        accuracy = evaluate(model, loader, bad, forward=require_finite(forward))
    except TooManyBadImages:
        accuracy = None  # check_readable reports it just below, with the likely cause
    check_readable(bad.count, len(dataset), args.max_bad_image_fraction, listed.samples, args.data_dir, val_list,
                   what="evaluation")
    seconds = time.perf_counter() - started
    result = {"model": args.model, "top1": accuracy.top(1), "top5": accuracy.top(5),
              "samples": accuracy.samples, "skipped": bad.count, "pretrained_model": args.pretrained_model,
              "inference_model": args.inference_model, "engine": getattr(forward, "name", "dygraph"),
              "engine_fallback": engine_fallback(forward),
              "val_list": val_list, "class_dim": class_dim, "preprocess": cfg.__dict__,
              "seconds": round(seconds, 2)}
    print(f"[eval] {args.model} ({result['engine']}) top1 {result['top1']:.4f} top5 {result['top5']:.4f} "
          f"samples {accuracy.samples} skipped {bad.count} ({seconds:.1f} s)")
    if args.save_json_path:
        with open(args.save_json_path, "w", encoding="utf-8") as handle:
            json.dump(result, handle, indent=1, allow_nan=False)
    return 0


if __name__ == "__main__":
    run(main)
