"""Command-line flags, with the classic PaddleCV image_classification names, defaults and meanings.

Flags are grouped so each script takes only what it uses. Preprocessing flags default to None: the
model's metadata (models.get_model_meta) fills what the user did not give, so every script and the
exported model preprocess the same way.
"""
from __future__ import annotations

import argparse
import os
import sys

from utils.errors import UsageError  # noqa: F401  (re-exported: scripts import it from here)

LR_STRATEGIES = ("piecewise_decay", "cosine_decay", "cosine_decay_warmup", "exponential_decay_warmup",
                 "linear_decay")




TRUE_WORDS = ("true", "1", "yes", "y", "t")


def str2bool(text: str) -> bool:
    value = str(text).strip().lower()
    if value in TRUE_WORDS:
        return True
    if value in ("false", "0", "no", "n", "f", "none"):
        return False
    raise argparse.ArgumentTypeError(f"expected True or False, got {text!r}")


def _shape(text: str) -> list[int]:
    return [int(v) for v in text.replace(",", " ").split()]


class ShapeAction(argparse.Action):
    """--image_shape 3 224 224, --image_shape 3,224,224 and --image_shape=3,224,224 all work."""

    def __call__(self, parser, namespace, values, option_string=None):
        numbers = [n for value in values for n in _shape(value)]
        if len(numbers) != 3 or numbers[0] != 3 or min(numbers) <= 0:
            parser.error(f"--image_shape needs 3 values C H W with C=3 (e.g. 3 224 224), got {values}")
        setattr(namespace, self.dest, numbers)


def add_env_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("environment")
    group.add_argument("--use_gpu", type=str2bool, default=None,
                       help="True/False; default: True when Paddle is built with CUDA and a GPU is visible")
    group.add_argument("--cpu_threads", type=int, default=None, help="CPU threads (default: usable cores)")
    group.add_argument("--debug", type=str2bool, default=False, help="show full tracebacks on errors")


def add_model_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    group.add_argument("--model", type=str, default="ResNet50", help="model name (see models.list_models())")
    group.add_argument("--class_dim", type=int, default=None,
                       help="number of classes (default: from the list files, else 1000)")
    group.add_argument("--pretrained_model", type=str, default=None,
                       help=".pdparams file, path prefix without extension, or checkpoint directory")
    group.add_argument("--padding_type", type=str, default=None, help="EfficientNet: SAME | DYNAMIC | VALID")
    group.add_argument("--use_se", type=str2bool, default=None, help="EfficientNet: squeeze-excite blocks")
    group.add_argument("--drop_connect_rate", type=float, default=None, help="EfficientNet drop-connect")
    group.add_argument("--deploy", type=str2bool, default=None, help="ACNet: build the fused deploy form")
    group.add_argument("--data_format", type=str, default="NCHW", choices=("NCHW", "NHWC"),
                       help="NHWC (channels-last) is a GPU speed-up, for the ResNet family")


def add_preprocess_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("reader and preprocessing")
    group.add_argument("--data_dir", type=str, default="./data/ILSVRC2012/", help="root of the list paths")
    group.add_argument("--image_shape", nargs="+", action=ShapeAction, default=None,
                       help="C H W, e.g. 3 224 224 (default: the model's input size)")
    group.add_argument("--resize_short_size", type=int, default=None,
                       help="eval: resize the short side to this, then centre crop (default: the model's)")
    group.add_argument("--interpolation", type=str, default=None,
                       help="nearest|bilinear|bicubic|area|lanczos or cv2 code 0-4 (default: the model's)")
    group.add_argument("--image_mean", nargs=3, type=float, default=None, help="RGB mean on 0-1 scale")
    group.add_argument("--image_std", nargs=3, type=float, default=None, help="RGB std on 0-1 scale")
    group.add_argument("--reader_thread", type=int, default=8, help="decode/augment worker processes")
    group.add_argument("--prefetch_batches", dest="reader_buf_size", type=int, default=2,
                       help="batches prefetched per worker process")
    group.add_argument("--reader_buf_size", dest="classic_reader_buf_size", type=int, default=None,
                       help="deprecated, classic unit: samples buffered; converted to --prefetch_batches")
    group.add_argument("--use_dali", type=str2bool, default=False,
                       help="NVIDIA DALI reader (GPU decode; a CPU pipeline without a GPU)")
    group.add_argument("--max_bad_image_fraction", type=float, default=0.5,
                       help="stop when more than this fraction of an epoch's images are unreadable")


def add_train_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("solver and hyperparameters")
    group.add_argument("--train_list", type=str, default=None, help="default: <data_dir>/train_list.txt")
    group.add_argument("--val_list", type=str, default=None, help="default: <data_dir>/val_list.txt")
    group.add_argument("--total_images", type=int, default=None,
                       help="images per epoch (default: lines in the train list)")
    group.add_argument("--num_epochs", type=int, default=120)
    group.add_argument("--batch_size", type=int, default=8, help="global batch size (all devices)")
    group.add_argument("--test_batch_size", type=int, default=16)
    group.add_argument("--lr", type=float, default=0.1, help="base learning rate")
    group.add_argument("--lr_strategy", type=str, default="piecewise_decay", help=" | ".join(LR_STRATEGIES))
    group.add_argument("--l2_decay", type=float, default=1e-4)
    group.add_argument("--momentum_rate", type=float, default=0.9)
    group.add_argument("--optimizer", type=str, default="momentum", choices=("momentum", "rmsprop"),
                       help="momentum (classic) or rmsprop (EfficientNet recipe)")
    group.add_argument("--warm_up_epochs", type=float, default=5.0)
    group.add_argument("--decay_epochs", type=float, default=2.4, help="exponential_decay_warmup period")
    group.add_argument("--decay_rate", type=float, default=0.97, help="exponential_decay_warmup factor")
    group.add_argument("--step_epochs", nargs="+", type=int, default=[30, 60, 90],
                       help="piecewise_decay: epochs at which lr is multiplied by 0.1")
    group.add_argument("--lower_scale", type=float, default=0.08, help="random crop: smallest area fraction")
    group.add_argument("--lower_ratio", type=float, default=3.0 / 4.0, help="random crop: smallest aspect")
    group.add_argument("--upper_ratio", type=float, default=4.0 / 3.0, help="random crop: largest aspect")
    group.add_argument("--random_flip", type=str2bool, default=True, help="random horizontal flip")
    group.add_argument("--rotate_degrees", type=float, default=0.0, help="random rotation range (0: off)")
    group.add_argument("--color_jitter", type=float, default=0.0, help="brightness/contrast/saturation")
    group.add_argument("--use_aa", type=str2bool, default=False, help="AutoAugment, ImageNet policy")
    group.add_argument("--use_mixup", type=str2bool, default=False)
    group.add_argument("--mixup_alpha", type=float, default=0.2)
    group.add_argument("--cutmix_alpha", type=float, default=0.0, help="CutMix Beta(a, a) (0: off)")
    group.add_argument("--mixup_switch_prob", type=float, default=0.5,
                       help="with mixup and CutMix on: probability a batch gets CutMix")
    group.add_argument("--use_randaugment", type=str2bool, default=False, help="RandAugment (cv2 reader)")
    group.add_argument("--randaugment_n", type=int, default=2, help="RandAugment: operations per image")
    group.add_argument("--randaugment_m", type=int, default=9, help="RandAugment: magnitude, 0-30")
    group.add_argument("--random_erasing_prob", type=float, default=0.0,
                       help="random erasing probability per image (0: off)")
    group.add_argument("--use_label_smoothing", type=str2bool, default=False)
    group.add_argument("--label_smoothing_epsilon", type=float, default=0.1)
    group.add_argument("--use_ema", type=str2bool, default=False)
    group.add_argument("--ema_decay", type=float, default=0.9999)
    group.add_argument("--freeze_bn", type=str2bool, default=False,
                       help="keep BatchNorm statistics fixed (small-batch fine-tuning; exact multi-process parity)")
    group.add_argument("--accum_steps", type=int, default=1,
                       help="gradient accumulation: loader batches per optimizer step (effective batch = "
                            "batch_size x accum_steps)")
    group.add_argument("--clip_grad_norm", type=float, default=None,
                       help="clip the global L2 norm of all gradients to this (after AMP unscaling); default off")
    group.add_argument("--use_sync_bn", type=str2bool, default=False,
                       help="SyncBatchNorm across processes (multi-GPU runs; on CPU or one process: plain BatchNorm)")
    group.add_argument("--validate", type=str2bool, default=True, help="evaluate after each epoch")

    group = parser.add_argument_group("checkpoints and logging")
    group.add_argument("--model_save_dir", type=str, default="./output")
    group.add_argument("--save_step", type=int, default=1, help="save a checkpoint every N epochs")
    group.add_argument("--print_step", type=int, default=10, help="log every N steps")
    group.add_argument("--checkpoint", type=str, default=None, help="checkpoint directory to resume from")
    group.add_argument("--resume", type=str, default=None,
                       help="'auto': resume from the newest complete checkpoint of this model, if any")
    group.add_argument("--finetune_exclude_pretrained_params", type=str, default=None,
                       help="comma-separated parameter name prefixes not to load from --pretrained_model")
    group.add_argument("--allow_partial_pretrained", type=str2bool, default=False,
                       help="load --pretrained_model even when tensors outside the classifier are missing "
                            "or differ in shape")
    group.add_argument("--overwrite_checkpoints", type=str2bool, default=False,
                       help="start a new run in a --model_save_dir/<model> that holds another run's checkpoints")
    group.add_argument("--vdl_log_dir", type=str, default=None, help="write VisualDL scalars here")

    group = parser.add_argument_group("reproducibility and profiling")
    group.add_argument("--random_seed", type=int, default=None)
    group.add_argument("--enable_ce", type=str2bool, default=False,
                       help="continuous-evaluation mode: fixed seed 1000 and no shuffling randomness")
    group.add_argument("--is_profiler", type=str2bool, default=False)
    # --profilier_path: the classic suite's spelling
    group.add_argument("--profiler_path", "--profilier_path", dest="profiler_path", type=str,
                       default="./profiler_files")
    group.add_argument("--max_iter", type=int, default=0, help="stop after this many steps (0: no limit)")
    group.add_argument("--same_feed_batches", dest="same_feed", type=int, default=0,
                       help="feed the first N batches repeatedly (speed tests without I/O); 0: off")
    group.add_argument("--same_feed", dest="classic_same_feed", type=int, default=None,
                       help="deprecated, classic unit: images; converted to --same_feed_batches")

    group = parser.add_argument_group("mixed precision")
    group.add_argument("--use_fp16", type=str2bool, default=False, help="alias of --use_amp")
    group.add_argument("--use_amp", type=str2bool, default=False, help="O1 autocast (GPU)")
    group.add_argument("--use_pure_fp16", type=str2bool, default=False, help="O2: fp16 model, fp32 master weights")
    group.add_argument("--amp_dtype", type=str, default="float16", help="float16 | bfloat16")
    group.add_argument("--scale_loss", type=float, default=1.0)
    group.add_argument("--use_dynamic_loss_scaling", type=str2bool, default=True)


def add_eval_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("evaluation")
    group.add_argument("--val_list", type=str, default=None, help="default: <data_dir>/val_list.txt")
    group.add_argument("--batch_size", type=int, default=32)
    group.add_argument("--save_json_path", type=str, default=None, help="write the metrics as JSON here")


def parse(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> argparse.Namespace:
    args = parser.parse_args(argv)
    if getattr(args, "model", None) and not getattr(args, "inference_model", None):
        from models import get_model_meta

        get_model_meta(args.model)  # an unknown name fails first, suggesting the nearest ones
    if getattr(args, "use_fp16", False):
        args.use_amp = True
    if getattr(args, "lr_strategy", None) is not None and args.lr_strategy not in LR_STRATEGIES:
        parser.error(f"--lr_strategy {args.lr_strategy!r} is unknown; choose one of: {', '.join(LR_STRATEGIES)}")
    convert_classic_units(args, argv if argv is not None else sys.argv[1:])
    validate_args(args)
    return args


def _given(flag: str, argv: list[str]) -> bool:
    return any(item == flag or item.startswith(flag + "=") for item in map(str, argv))


def _per_process_batch(args: argparse.Namespace) -> int:
    processes = max(1, int(os.environ.get("PADDLE_TRAINERS_NUM", "1") or 1))
    return max(1, (getattr(args, "batch_size", None) or 1) // processes)


def convert_classic_units(args: argparse.Namespace, argv: list[str]) -> None:
    """--reader_buf_size (samples) and --same_feed (images) keep the classic units and become this suite's
    --prefetch_batches (batches per worker) and --same_feed_batches (batches); one note says what they became."""
    batch = _per_process_batch(args)
    workers = max(1, getattr(args, "reader_thread", 1) or 1)
    buffered = _pop_classic(args, "classic_reader_buf_size", "--reader_buf_size", "--prefetch_batches", argv)
    if buffered is not None:
        if buffered < 1:
            raise UsageError(f"--reader_buf_size {buffered}: must be >= 1 (samples buffered)")
        args.reader_buf_size = max(1, -(-buffered // (batch * workers)))
        _note_conversion("--reader_buf_size", buffered, "samples", "--prefetch_batches", args.reader_buf_size)
    images = _pop_classic(args, "classic_same_feed", "--same_feed", "--same_feed_batches", argv)
    if images is not None:
        if images < 0:
            raise UsageError(f"--same_feed {images}: must be >= 0 (images; 0: off)")
        args.same_feed = -(-images // batch)
        _note_conversion("--same_feed", images, "images", "--same_feed_batches", args.same_feed)


def _pop_classic(args: argparse.Namespace, dest: str, classic_flag: str, new_flag: str, argv: list[str]):
    """The classic-unit value if the user gave it (removed from ``args``: only the converted value is kept)."""
    value = vars(args).pop(dest, None)
    if value is not None and _given(new_flag, argv):
        raise UsageError(f"{classic_flag} and {new_flag}: give one ({classic_flag} takes the classic unit, "
                         f"{new_flag} counts batches)")
    return value


def _note_conversion(classic_flag: str, value: int, unit: str, new_flag: str, batches: int) -> None:
    print(f"note: {classic_flag} {value} counts {unit} (the classic unit; deprecated): taken as {new_flag} "
          f"{batches}", file=sys.stderr)


# flag -> (smallest valid value, how to say the range); only the flags a script has are checked
_AT_LEAST = {
    "batch_size": (1, ">= 1"), "test_batch_size": (1, ">= 1"), "num_epochs": (1, ">= 1"),
    "save_step": (1, ">= 1 (epochs between checkpoints)"), "print_step": (1, ">= 1 (steps between log lines)"),
    "reader_thread": (0, ">= 0 (0: decode in the main process)"),
    "reader_buf_size": (1, ">= 1 (batches per worker)"),
    "cpu_threads": (1, ">= 1"), "lr": (0, ">= 0"),
    "accum_steps": (1, ">= 1 (loader batches per optimizer step; 1: no accumulation)"),
}

_FLAG_NAMES = {"reader_buf_size": "prefetch_batches", "same_feed": "same_feed_batches"}  # dest -> flag


def flag_problems(args: argparse.Namespace) -> list[str]:
    """One message per flag whose value is outside its valid range (flags the script lacks are skipped)."""
    given = vars(args)
    problems = [f"--{_FLAG_NAMES.get(name, name)} {given[name]}: must be {rule}"
                for name, (low, rule) in _AT_LEAST.items() if given.get(name) is not None and given[name] < low]
    fraction = given.get("max_bad_image_fraction")
    if fraction is not None and not 0 <= fraction <= 1:
        problems.append(f"--max_bad_image_fraction {fraction}: must be in [0, 1]")
    epsilon = given.get("label_smoothing_epsilon")
    if epsilon is not None and not 0 <= epsilon < 1:
        problems.append(f"--label_smoothing_epsilon {epsilon}: must be in [0, 1)")
    if given.get("clip_grad_norm") is not None and not given["clip_grad_norm"] > 0:
        problems.append(f"--clip_grad_norm {given['clip_grad_norm']}: must be > 0 (the largest global gradient "
                        "norm; leave the flag out for no clipping)")
    if given.get("use_mixup") and given.get("mixup_alpha") is not None and given["mixup_alpha"] <= 0:
        problems.append(f"--mixup_alpha {given['mixup_alpha']}: must be > 0 with --use_mixup=True")
    problems += augmentation_problems(given)
    for name in ("image_mean", "image_std"):
        values = given.get(name)
        if values and max(values) > 1:
            problems.append(f"--{name} {' '.join(map(str, values))}: takes the 0-1 scale (e.g. 0.485 0.456 0.406"
                            " for the mean, 0.229 0.224 0.225 for the std); divide 0-255 values by 255")
        elif values and name == "image_std" and min(values) <= 0:
            problems.append(f"--image_std {' '.join(map(str, values))}: every value must be > 0")
    if given.get("checkpoint") and given.get("pretrained_model"):
        problems.append("--checkpoint and --pretrained_model: give one; --checkpoint resumes a run with its own "
                        "weights, --pretrained_model starts a new run from weights")
    if given.get("checkpoint") and given.get("resume"):
        problems.append(f"--checkpoint and --resume {given['resume']}: give one; --checkpoint names the "
                        "checkpoint to resume, --resume auto picks the newest")
    return problems


def augmentation_problems(given: dict) -> list[str]:
    """CutMix, RandAugment and random erasing ranges and combinations (flags the script lacks are skipped)."""
    problems = []
    if given.get("cutmix_alpha") is not None and given["cutmix_alpha"] < 0:
        problems.append(f"--cutmix_alpha {given['cutmix_alpha']}: must be > 0 (or 0: no CutMix)")
    for name in ("mixup_switch_prob", "random_erasing_prob"):
        if given.get(name) is not None and not 0 <= given[name] <= 1:
            problems.append(f"--{name} {given[name]}: must be in [0, 1]")
    if given.get("use_randaugment"):
        if given["randaugment_n"] < 1:
            problems.append(f"--randaugment_n {given['randaugment_n']}: must be >= 1 (operations per image)")
        if not 0 <= given["randaugment_m"] <= 30:
            problems.append(f"--randaugment_m {given['randaugment_m']}: must be in [0, 30] (the magnitude scale)")
        if given.get("use_aa"):
            problems.append("--use_randaugment and --use_aa: give one (both are automatic augmentation policies)")
        if given.get("use_dali"):
            problems.append("--use_randaugment=True needs the cv2 reader: drop --use_dali=True (the DALI pipeline "
                            "does random crop and flip only)")
    return problems


def validate_args(args: argparse.Namespace) -> None:
    """Refuse out-of-range flag values before any work; every bad flag gets its own line."""
    problems = flag_problems(args)
    if problems:
        raise UsageError("\nerror: ".join(problems))


def print_arguments(args: argparse.Namespace, out=None) -> None:
    out = out or sys.stdout  # looked up per call: a default bound at import would keep a replaced stream
    print("-------------  Configuration Arguments -------------", file=out)
    for key, value in sorted(vars(args).items()):
        print(f"{key:>35} : {value}", file=out)
    print("----------------------------------------------------", file=out)
