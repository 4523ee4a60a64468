#!/usr/bin/env python
"""Turn a checkpoint's EMA weights into a plain weights file that eval.py / infer.py load.

    python ema_clean.py --ema_model_dir=output/ResNet50_vd/199 --cleaned_model_dir=output/ResNet50_vd_ema
writes ``<cleaned_model_dir>/model.pdparams`` (load it with --pretrained_model=<cleaned_model_dir>).
"""
import argparse
import os

from utils.cli import run


def main(argv):
    from utils.checkpoint import EMA_WEIGHTS, WEIGHTS, load_state_file, save_weights
    from utils.errors import UsageError
    from utils.outputs import probe_output_dir

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ema_model_dir", required=True, help="a checkpoint directory saved with --use_ema")
    parser.add_argument("--cleaned_model_dir", required=True, help="where to write model.pdparams")
    args = parser.parse_args(argv)
    source_dir, target_dir = os.path.realpath(args.ema_model_dir), os.path.realpath(args.cleaned_model_dir)
    if os.path.commonpath([source_dir, target_dir]) == source_dir:
        raise UsageError(f"--cleaned_model_dir {args.cleaned_model_dir} is --ema_model_dir or inside it: the "
                         f"cleaned {WEIGHTS} would replace or mix with the checkpoint's files; use another directory")
    source = os.path.join(args.ema_model_dir, EMA_WEIGHTS)
    if not os.path.isfile(source):
        raise UsageError(f"--ema_model_dir {args.ema_model_dir}: no {EMA_WEIGHTS} (was it trained with --use_ema?)")
    probe_output_dir(args.cleaned_model_dir, "--cleaned_model_dir")
    state = load_state_file(source, "--ema_model_dir")
    target = os.path.join(args.cleaned_model_dir, WEIGHTS)
    save_weights(state, target)
    print(f"wrote EMA weights ({len(state)} tensors) to {target}")
    return 0


if __name__ == "__main__":
    run(main)
