#!/usr/bin/env python
"""Classify images with a trained model; optionally export it for deployment (Paddle Inference, ONNX).

    python infer.py --model=ResNet50_vd --pretrained_model=ResNet50_vd_pretrained --image_path=cat.jpg --topk=5
    python infer.py --model=ResNet50_vd --pretrained_model=output/ResNet50_vd/199 --data_dir=photos/ \
        --save_json_path=out.json
    python infer.py --model=ResNet50_vd --pretrained_model=... --save_inference=True --save_onnx=True

stdout is a JSON list, one object per image: {"path", "class_ids", "scores", "label_names"} (softmax
scores, best first); an unreadable image gets {"path", "error"}, and records computed by dygraph after the
default engine fell back carry "engine_fallback" (the reason). Logs go to stderr. The exit code is 1 when
every image failed or more than --max_bad_image_fraction of them did.
"""
import argparse
import os
import sys

from utils.cli import run


def build_parser() -> argparse.ArgumentParser:
    from utils import args as flags

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    flags.add_env_args(parser)
    flags.add_model_args(parser)
    flags.add_preprocess_args(parser)
    parser.set_defaults(data_dir=None)
    for action in parser._actions:  # the shared flag's help speaks of list roots; here it is the input
        if action.dest == "data_dir":
            action.help = "images to classify: a folder (walked recursively) or a list file of 'path [label]' lines"
    group = parser.add_argument_group("inference")
    group.add_argument("--image_path", type=str, default=None, help="one image to classify")
    group.add_argument("--batch_size", type=int, default=32)
    group.add_argument("--topk", type=int, default=1, help="classes reported per image")
    group.add_argument("--class_map_path", type=str, default=None,
                       help="class names: 'index name' lines or one name per line "
                            "(default for 1000 classes: utils/tools/readable_label.txt)")
    group.add_argument("--save_json_path", type=str, default=None, help="also write the JSON results here")
    group.add_argument("--temperature", type=float, default=1.0,
                       help="scores are softmax(logits / T): eval.py's fitted \"temperature\" calibrates them; "
                            "stored in the export")
    group.add_argument("--engine", type=str, default=None, choices=("dygraph", "inference"),
                       help="dygraph, or inference (Paddle Inference with oneDNN); default on CPU: inference "
                            "when its first batch gives the same top-k as dygraph")
    group.add_argument("--precision", type=str, default="fp32", choices=("fp32", "bf16", "int8", "fp16"),
                       help="Paddle Inference precision (--engine inference): bf16 on a CPU with AVX512-BF16 or "
                            "AMX, fp16 on the GPU (int8 runs on an export: predict.py --engine openvino)")
    group = parser.add_argument_group("export")
    group.add_argument("--save_inference", type=flags.str2bool, default=False,
                       help="export to <model_save_dir>/<model>/ (paddle.jit.save, preprocess.json, labels.txt)")
    group.add_argument("--save_onnx", type=flags.str2bool, default=False,
                       help="also convert the export to ONNX (paddle2onnx) and check it in onnxruntime")
    group.add_argument("--model_save_dir", type=str, default="./output", help="where exports are written")
    group.add_argument("--calib_list", type=str, default=None,
                       help="with --save_inference=True: calibrate the export's int8 model (NNCF, for --engine "
                            "openvino --precision int8) on these 'path [label]' images (a few hundred)")
    return parser


def main(argv):
    from utils import inference as infer
    from utils.args import parse, print_arguments
    from utils.cli import select_device
    from utils.export import export_onnx, save_inference_model
    from utils.inference.onnx_engine import check_onnx
    from utils.outputs import probe_output_dir, probe_output_file
    from utils.presets import preprocess_config

    args = parse(build_parser(), argv)
    print_arguments(args, out=sys.stderr)
    infer.check_temperature(args.temperature)
    exporting = args.save_inference or args.save_onnx
    if args.calib_list:
        from utils.quantize import check_calib_list

        check_calib_list(args.calib_list, exporting)
    if args.save_json_path:
        probe_output_file(args.save_json_path, "--save_json_path")
    if exporting:
        probe_output_dir(os.path.join(args.model_save_dir, args.model), "--model_save_dir")
    device = select_device(args.use_gpu)
    items = infer.collect_images(args.image_path, args.data_dir) if (
        args.image_path or args.data_dir or not exporting) else []
    cfg = preprocess_config(args)
    model, class_dim = infer.load_model(args)
    infer.check_topk(args.topk, class_dim)
    names = infer.label_names(args.class_map_path, class_dim, args.pretrained_model)

    export_dir = None
    if exporting:
        export_dir = save_inference_model(model, os.path.join(args.model_save_dir, args.model), args.model,
                                          class_dim, cfg, names, args.temperature)
        infer.log(f"exported to {export_dir}")
    if args.save_onnx:
        onnx_path = export_onnx(export_dir)
        diff = check_onnx(onnx_path, infer.DygraphEngine(model), cfg.crop_size, min(5, class_dim))
        infer.log(f"exported {onnx_path}; onnxruntime matches dygraph (max score difference {diff:.1e})")
    if args.calib_list:
        from utils.quantize import CalibrationOptions, calibrate

        calibrate(export_dir, CalibrationOptions(args.calib_list, threads=infer.decode_threads(args)))
    if not items:
        return 0

    options = infer.inference_options(args, args.batch_size, device)
    engine = infer.engine_for_model(args.engine, device, model, cfg, options, args.topk, export_dir)
    batches = infer.iter_batches(items, cfg, args.batch_size, options.cpu_threads)
    records = infer.classify(batches, engine, args.topk, names, on_record=lambda r: infer.log(infer.format_record(r)),
                             temperature=args.temperature)
    return infer.emit_results(records, args.save_json_path, args.data_dir, args.max_bad_image_fraction)


if __name__ == "__main__":
    run(main)
