#!/usr/bin/env python
"""Train an image classifier with the classic PaddleCV image_classification flags.

    python train.py --model=ResNet50_vd --data_dir=./data/ILSVRC2012/ --batch_size=256 \
        --lr_strategy=cosine_decay --num_epochs=200 --use_mixup=True --use_label_smoothing=True

Multi-process / multi-node: ``python -m paddle.distributed.launch --nproc_per_node N train.py ...``.
"""
import argparse

from utils.cli import run


def build_parser() -> argparse.ArgumentParser:
    from utils import args as flags

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    flags.add_env_args(parser)
    flags.add_model_args(parser)
    flags.add_preprocess_args(parser)
    flags.add_train_args(parser)
    return parser


def main(argv):
    from utils.args import parse, print_arguments
    from utils.trainer import Trainer, TrainingDiverged

    args = parse(build_parser(), argv)
    trainer = Trainer(args)
    if trainer.rank.is_main:
        print_arguments(args)
    try:
        trainer.fit()
    except TrainingDiverged as err:
        print(f"error: {err}", flush=True)
        return 3
    # stopped by SIGTERM/SIGINT after saving a checkpoint: report it the conventional way (128 + signal)
    return {"SIGTERM": 143, "SIGINT": 130}.get(trainer.stop_requested or "", 0)


if __name__ == "__main__":
    run(main)
