#!/usr/bin/env python
"""Classify images with an exported model through the Paddle Inference API (no model code needed).

    python infer.py --model=ResNet50_vd --pretrained_model=... --save_inference=True     # writes output/ResNet50_vd/
    python predict.py --inference_model=output/ResNet50_vd --image_path=cat.jpg --topk=5
    python predict.py --inference_model=output/ResNet50_vd --data_dir=photos/ --batch_size=32
    python predict.py --inference_model=output/ResNet50_vd --data_dir=data/val_list.txt --eval=True
    python predict.py --model_file=./ResNet50_vd/model --params_file=./ResNet50_vd/params \
        --image_path=cat.jpg --gpu_id=0 --gpu_mem=1024          # the classic form (a classic export too)

Preprocessing and class names come from the export (preprocess.json, labels.txt). CPU runs use oneDNN
with --cpu_threads (--engine onnxruntime/openvino: the export's inference.onnx; --precision bf16/int8 where
the CPU has the instructions); --use_gpu=True runs on --gpu_id, with TensorRT under --use_tensorrt=True.
The output is infer.py's: a JSON list on stdout, one object per image, logs on stderr.
"""
import argparse
import sys

from utils.cli import run


def build_parser() -> argparse.ArgumentParser:
    from utils import args as flags

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    flags.add_env_args(parser)
    group = parser.add_argument_group("model and inputs")
    group.add_argument("--inference_model", "--model_dir", type=str, default=None,
                       help="directory written by infer.py --save_inference=True")
    group.add_argument("--model_file", type=str, default=None,
                       help="classic form: the program file (a classic export's 'model', or an export's "
                            "inference.json/.pdmodel); with --params_file")
    group.add_argument("--params_file", type=str, default=None,
                       help="classic form: the parameters file ('params', or inference.pdiparams)")
    group.add_argument("--image_path", type=str, default=None, help="one image to classify")
    group.add_argument("--data_dir", type=str, default=None,
                       help="a folder (walked recursively) or a list file of 'path [label]' lines")
    group.add_argument("--batch_size", type=int, default=32)
    group.add_argument("--topk", type=int, default=1, help="classes reported per image")
    group.add_argument("--class_map_path", type=str, default=None,
                       help="class names: 'index name' lines or one name per line (default: the export's labels)")
    group.add_argument("--save_json_path", type=str, default=None, help="also write the JSON results here")
    group.add_argument("--temperature", type=float, default=None,
                       help="scores are softmax(logits / T) (default: the export's, from infer.py --temperature)")
    group.add_argument("--eval", type=flags.str2bool, default=False,
                       help="with a labelled list in --data_dir: print top-1/top-5 accuracy")
    group = parser.add_argument_group("runtime")
    group.add_argument("--engine", type=str, default=None, choices=("inference", "onnxruntime", "openvino"),
                       help="Paddle Inference, or onnxruntime or OpenVINO on the export's inference.onnx "
                            "(converted once when missing); default on CPU: the fastest of these x --precision "
                            "whose scores match fp32, chosen once per machine kind (engine_choice.json in the export)")
    group.add_argument("--enable_mkldnn", type=flags.str2bool, default=True, help="oneDNN kernels on CPU")
    group.add_argument("--gpu_id", type=int, default=0)
    group.add_argument("--gpu_mem", type=int, default=500, help="initial GPU memory pool in MB")
    group.add_argument("--use_tensorrt", type=flags.str2bool, default=False,
                       help="TensorRT subgraphs (GPU builds compiled with TensorRT)")
    group.add_argument("--precision", type=str, default=None, choices=("fp32", "bf16", "int8", "fp16"),
                       help="CPU: fp32, bf16 (needs AVX512-BF16 or AMX) or int8 (the export's int8/ model; "
                            "needs VNNI or AMX); GPU: fp32 or fp16")
    group = parser.add_argument_group("preprocessing of a classic export (--model_file/--params_file)")
    group.add_argument("--model", type=str, default=None, help="take the preprocessing of this zoo model")
    group.add_argument("--image_shape", nargs="+", action=flags.ShapeAction, default=None,
                       help="C H W (default: --model's, else 3 224 224)")
    group.add_argument("--resize_short_size", type=int, default=None, help="default: --model's, else 256")
    group.add_argument("--interpolation", type=str, default=None, help="default: --model's, else bilinear")
    group.add_argument("--image_mean", nargs=3, type=float, default=None, help="RGB mean, 0-1 (default: ImageNet)")
    group.add_argument("--image_std", nargs=3, type=float, default=None, help="RGB std, 0-1 (default: ImageNet)")
    return parser


def main(argv):
    from utils import inference as infer
    from utils.args import UsageError, parse, print_arguments
    from utils.classic_export import check_model_flags, load_classic
    from utils.cli import select_device
    from utils.outputs import probe_output_file
    from utils.runtime import flag_value

    args = parse(build_parser(), argv)
    print_arguments(args, out=sys.stderr)
    if args.temperature is not None:
        infer.check_temperature(args.temperature)
    if args.save_json_path:
        probe_output_file(args.save_json_path, "--save_json_path")
    check_model_flags(args)
    args.use_gpu = select_device(args.use_gpu) == "gpu"
    if not args.use_gpu and any(flag_value(argv, f) for f in ("--gpu_id", "--gpu_mem")):
        infer.log("note: no GPU in use: --gpu_id/--gpu_mem are not used (pass --use_gpu=True to require one)")
    options = infer.inference_options(args, args.batch_size)
    if args.inference_model:
        deployed = infer.load_export(args.inference_model)
        items = infer.collect_images(args.image_path, args.data_dir)
        if args.engine is None and args.precision is None and not args.use_gpu:
            # the fastest engine x precision that matches fp32 here (utils.inference.autoselect)
            from utils.inference.autoselect import auto_engine, calibration_batch

            engine = auto_engine(deployed, options, lambda: calibration_batch([i.path for i in items],
                                                                              deployed.preprocess))
        else:
            engine = infer.engine_for_export(args.engine or "inference", deployed, options)
    else:
        if args.engine not in (None, "inference"):
            raise UsageError(f"--engine {args.engine}: --model_file/--params_file run on Paddle Inference")
        items = infer.collect_images(args.image_path, args.data_dir)
        deployed, engine = load_classic(args, options)
    infer.check_topk(args.topk, deployed.class_dim)
    names = infer.read_class_map(args.class_map_path, deployed.class_dim) if args.class_map_path else deployed.labels
    accuracy = infer.eval_accumulator(items, args.eval)
    infer.log(f"model: {deployed.model} ({deployed.class_dim} classes) from {deployed.directory}, engine {engine.name} "
              f"{getattr(engine, 'precision', options.precision)}")
    batches = infer.iter_batches(items, deployed.preprocess, args.batch_size, infer.decode_threads(args))
    temperature = deployed.temperature if args.temperature is None else args.temperature
    records = infer.classify(batches, engine, args.topk, names, accuracy=accuracy, temperature=temperature,
                             on_record=lambda r: infer.log(infer.format_record(r)))
    if accuracy is not None:
        infer.log(f"[eval] {deployed.model} top1 {accuracy.top(1):.4f} top5 {accuracy.top(5):.4f} "
                  f"samples {accuracy.samples} skipped {sum('error' in r for r in records)}")
    return infer.emit_results(records, args.save_json_path, args.data_dir)


if __name__ == "__main__":
    run(main, import_paddle=False)  # paddle only when the engine is Paddle Inference
