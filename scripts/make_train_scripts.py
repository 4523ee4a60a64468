#!/usr/bin/env python
"""Generate scripts/train/<name>.sh from the recipe tables below: one per registered model, plus the
recipes keyed by script name (e.g. ResNet50_fp16).

    python scripts/make_train_scripts.py          # rewrite scripts/train/*.sh
    python scripts/make_train_scripts.py --check  # exit 1 if a script is missing or stale (CI/tests)

A recipe is the classic suite's training setting for a family: its reference global batch and lr (what the
classic script ran: `batch_ref`, `lr_ref`), the batch per device, and the other flags (schedule, epochs,
weight decay, regularisation); the first matching pattern wins. The generated script's global batch is
(batch per device) x (devices of the run, TRAIN_DEVICES from scripts/launch.sh) and its lr follows the
linear scaling rule: lr = lr_ref x global batch / batch_ref. Image size and preprocessing come from each
model's metadata, so they are not repeated here.

The *_modern recipes follow a published recipe of today (their notes name the source of each setting) and
accept ACCUM_STEPS: gradient accumulation, with the lr scaled to the effective batch.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
from dataclasses import dataclass, field

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

# The classic scripts' "Training details" headers name 4 Tesla V100 cards; their global batch was spread
# over those, so the per-device batch of a recipe is its reference batch / 4 unless the recipe says otherwise.
CLASSIC_DEVICES = 4
SMOOTH_MIX = ["--use_label_smoothing=True", "--use_mixup=True"]


@dataclass(frozen=True)
class Recipe:
    batch_ref: int  # the classic script's global batch ...
    lr_ref: float  # ... and its lr: the reference point of the linear scaling rule
    flags: list[str] = field(default_factory=list)
    per_device: int | None = None  # default: batch_ref / CLASSIC_DEVICES
    description: str = "the classic training recipe"
    reference: str = "classic reference"  # where lr_ref / batch_ref come from
    notes: tuple[str, ...] = ()  # extra header lines: the source of each setting
    accumulate: bool = False  # ACCUM_STEPS: --accum_steps, lr scaled to global batch x ACCUM_STEPS

    @property
    def batch_per_device(self) -> int:
        return self.per_device or self.batch_ref // CLASSIC_DEVICES


# (model name pattern, recipe). Order matters: specific before general.
RECIPES: list[tuple[str, Recipe]] = [
    (r"^EfficientNet", Recipe(512, 0.032, ["--lr_strategy=exponential_decay_warmup", "--num_epochs=360",
                                           "--l2_decay=1e-5", "--optimizer=rmsprop", "--warm_up_epochs=5",
                                           "--decay_epochs=2.4", "--decay_rate=0.97", "--use_ema=True",
                                           "--ema_decay=0.9999", "--use_label_smoothing=True", "--use_aa=True"])),
    (r"^MobileNetV3", Recipe(2048, 1.3, ["--lr_strategy=cosine_decay_warmup", "--num_epochs=360",
                                         "--warm_up_epochs=5", "--l2_decay=1e-5", "--use_label_smoothing=True"])),
    (r"^MobileNetV2", Recipe(500, 0.1, ["--lr_strategy=cosine_decay", "--num_epochs=240", "--l2_decay=4e-5"])),
    (r"^MobileNetV1", Recipe(256, 0.1, ["--lr_strategy=piecewise_decay", "--num_epochs=120", "--l2_decay=3e-5"])),
    (r"^ShuffleNetV2", Recipe(1024, 0.5, ["--lr_strategy=cosine_decay_warmup", "--num_epochs=240",
                                          "--l2_decay=4e-5", "--lower_scale=0.2"])),
    (r"^SqueezeNet", Recipe(256, 0.02, ["--lr_strategy=cosine_decay", "--num_epochs=120", "--l2_decay=1e-4"])),
    (r"^(AlexNet|VGG)", Recipe(256, 0.01, ["--lr_strategy=cosine_decay", "--num_epochs=120", "--l2_decay=1e-4"])),
    (r"^GoogLeNet", Recipe(256, 0.01, ["--lr_strategy=cosine_decay", "--num_epochs=200", "--l2_decay=1e-4"])),
    (r"^Inception", Recipe(256, 0.045, ["--lr_strategy=cosine_decay", "--num_epochs=200", "--l2_decay=1e-4",
                                        *SMOOTH_MIX])),
    (r"^Xception", Recipe(256, 0.1, ["--lr_strategy=cosine_decay", "--num_epochs=200", "--l2_decay=1e-4",
                                     *SMOOTH_MIX])),
    # published weights are fine-tune starting points only
    (r"_wsl$", Recipe(256, 0.001, ["--lr_strategy=cosine_decay", "--num_epochs=10", "--l2_decay=1e-4"])),
    # the classic README: every _vd model trains with mixup (and label smoothing, as its scripts show)
    (r"^SENet154_vd$", Recipe(256, 0.1, ["--lr_strategy=cosine_decay", "--num_epochs=200", "--l2_decay=1e-4",
                                         *SMOOTH_MIX])),
    (r"_vd", Recipe(256, 0.1, ["--lr_strategy=cosine_decay", "--num_epochs=200", "--l2_decay=7e-5", *SMOOTH_MIX])),
    (r"^(Res2Net|DPN|DarkNet|SENet|SE_)", Recipe(256, 0.1, ["--lr_strategy=cosine_decay", "--num_epochs=200",
                                                            "--l2_decay=1e-4", *SMOOTH_MIX])),
    (r"^ResNeXt", Recipe(256, 0.1, ["--lr_strategy=cosine_decay", "--num_epochs=120", "--l2_decay=1e-4"])),
    (r"^DARTS", Recipe(256, 0.1, ["--lr_strategy=cosine_decay", "--num_epochs=250", "--l2_decay=3e-5",
                                  "--use_label_smoothing=True"])),
    (r"^FastImageNet", Recipe(256, 0.1, ["--lr_strategy=cosine_decay_warmup", "--warm_up_epochs=2",
                                         "--num_epochs=30", "--l2_decay=5e-5", "--use_label_smoothing=True"])),
    # ResNet, _vc, DenseNet, HRNet, ACNet: the original ResNet recipe
    (r".", Recipe(256, 0.1, ["--lr_strategy=piecewise_decay", "--num_epochs=120", "--l2_decay=1e-4"])),
]

# Recipes that are not a model's default, keyed by script name: (model, recipe).
NAMED_RECIPES: dict[str, tuple[str, Recipe]] = {
    # The classic scripts/train/ResNet50_fp16.sh: AMP O1 with dynamic loss scaling from 128, NHWC, DALI,
    # piecewise decay at lr 0.1; its README's table trains 256 images per V100 card. Its static-graph fusion
    # switches and 4-channel input padding have no counterpart here.
    "ResNet50_fp16": ("ResNet50", Recipe(256, 0.1, [
        "--lr_strategy=piecewise_decay", "--num_epochs=120", "--l2_decay=1e-4", "--use_amp=True",
        "--use_pure_fp16=False", "--scale_loss=128.0", "--use_dynamic_loss_scaling=True", "--data_format=NHWC",
        "--use_dali=True"], per_device=256)),
    # PaddleClas ppcls/configs/ImageNet/ResNet/ResNet50_vd.yaml: Momentum 0.9, cosine lr 0.1 at 4 x 64 images,
    # 200 epochs, L2 7e-5, label smoothing 0.1, mixup alpha 0.2; CutMix alpha 0.2 as in PaddleClas's
    # DataAugment/ResNet50_Cutmix.yaml, one of the two per batch (switch probability 0.5: timm's Mixup default);
    # 5 warm-up epochs as in Bag of Tricks (He et al. 2019), the paper that defines ResNet-D (_vd).
    "ResNet50_vd_modern": ("ResNet50_vd", Recipe(256, 0.1, [
        "--lr_strategy=cosine_decay_warmup", "--warm_up_epochs=5", "--num_epochs=200", "--l2_decay=7e-5",
        "--use_label_smoothing=True", "--label_smoothing_epsilon=0.1", "--use_mixup=True", "--mixup_alpha=0.2",
        "--cutmix_alpha=0.2", "--mixup_switch_prob=0.5"], per_device=64,
        description="a modern training recipe", reference="PaddleClas config", accumulate=True, notes=(
            "Sources: PaddleClas ResNet50_vd.yaml (Momentum, cosine lr, 200 epochs, L2 7e-5, label smoothing 0.1,",
            "mixup 0.2), PaddleClas DataAugment/ResNet50_Cutmix.yaml (CutMix 0.2; one of the two per batch, switch",
            "probability 0.5 as timm's Mixup), Bag of Tricks (He et al. 2019: 5 warm-up epochs).",
        ))),
    # timm's MobileNetV3-Large-100 recipe (docs/training_hparam_examples.md, 75.77% top-1): 2 GPUs x 512 at lr
    # 0.064, RMSProp (TF form: eps 1e-3), lr x 0.973 every 2.4 epochs after warm-up, 600 epochs, weight decay
    # 1e-5, EMA 0.9999, RandAugment rand-m9 (2 operations at 9 on timm's 0-10 scale: 27 on this suite's 0-30),
    # random erasing 0.2 with random pixel values; timm's default label smoothing 0.1 and 5 warm-up epochs.
    "MobileNetV3_large_x1_0_modern": ("MobileNetV3_large_x1_0", Recipe(1024, 0.064, [
        "--optimizer=rmsprop", "--lr_strategy=exponential_decay_warmup", "--warm_up_epochs=5",
        "--decay_epochs=2.4", "--decay_rate=0.973", "--num_epochs=600", "--l2_decay=1e-5", "--use_ema=True",
        "--ema_decay=0.9999", "--use_randaugment=True", "--randaugment_n=2", "--randaugment_m=27",
        "--random_erasing_prob=0.2", "--use_label_smoothing=True", "--label_smoothing_epsilon=0.1"],
        per_device=512, description="a modern training recipe", reference="timm recipe", accumulate=True, notes=(
            "Source: timm's MobileNetV3-Large-100 recipe (docs/training_hparam_examples.md, 75.77% top-1): RMSProp,",
            "lr x 0.973 every 2.4 epochs after 5 warm-up epochs, 600 epochs, weight decay 1e-5, EMA 0.9999,",
            "RandAugment n 2 m 9 of 10 (27 on the 0-30 scale here), random erasing 0.2, label smoothing 0.1.",
            "Not carried over: dropout/drop-path 0.2, lr noise, magnitude noise (mstd 0.5), no decay on bias/norm.",
        ))),
}

TEMPLATE = """#!/usr/bin/env bash
# {name}: {description}{of_model}. Generated by scripts/make_train_scripts.py (edit the table there).{notes}
# Scaling: global batch = {per_device} per device x TRAIN_DEVICES (visible GPUs x NNODES, or NPROC x NNODES on CPU;
# BATCH_PER_DEVICE overrides the {per_device}); lr follows the linear scaling rule from the {reference}
# (lr {lr_ref} at batch {batch_ref}): lr = {lr_ref} x {scaled_batch} / {batch_ref}.{accumulation_doc}
# Environment: DATA_DIR (default ./data/ILSVRC2012/), CUDA_VISIBLE_DEVICES (GPUs to use), NPROC (CPU processes),
# NNODES/MASTER (multi-node), EXTRA_FLAGS; further flags on the command line override the recipe (argparse: the
# last one wins; a --batch_size given there does not rescale --lr).
set -euo pipefail
source "$(dirname "$0")/../launch.sh"
BATCH_SIZE="$(global_batch "${{BATCH_PER_DEVICE:-{per_device}}}")"
{accumulation_setup}launch_train --model={model} --data_dir="${{DATA_DIR:-./data/ILSVRC2012/}}" \\
  --batch_size="$BATCH_SIZE" {accumulation_flag}--lr="$(linear_scaled_lr {lr_ref} {batch_ref} "{lr_batch}")" \\
{flags} \\
  --model_save_dir="${{MODEL_SAVE_DIR:-./output/}}" ${{EXTRA_FLAGS:-}} "$@"
"""


# what a recipe with ``accumulate`` adds: ACCUM_STEPS batches per optimizer step, lr for the effective batch
ACCUMULATION = {
    "scaled_batch": "effective batch",
    "accumulation_doc": "\n# ACCUM_STEPS (default 1): batches accumulated per optimizer step (--accum_steps); the"
                        "\n# effective batch = global batch x ACCUM_STEPS: fewer devices reach the reference batch.",
    "accumulation_setup": 'ACCUM_STEPS="${ACCUM_STEPS:-1}"\n'
                          'positive_int ACCUM_STEPS "$ACCUM_STEPS" "batches accumulated per optimizer step"\n',
    "accumulation_flag": '--accum_steps="$ACCUM_STEPS" ',
    "lr_batch": "$((BATCH_SIZE * ACCUM_STEPS))",
}


def recipe(model: str) -> Recipe:
    for pattern, found in RECIPES:
        if re.search(pattern, model):
            return found
    raise LookupError(model)


def recipe_for(model: str) -> list[str]:
    """The recipe's flags other than batch and lr (those depend on the run's device count)."""
    return recipe(model).flags


def generated_scripts() -> dict[str, tuple[str, Recipe]]:
    """Every generated script: name -> (model, recipe)."""
    from models import list_models

    return {**{model: (model, recipe(model)) for model in list_models()}, **NAMED_RECIPES}


def render(name: str, model: str, chosen: Recipe) -> str:
    flags = chosen.flags
    lines = ["  " + " ".join(flags[i : i + 4]) for i in range(0, len(flags), 4)]
    accumulation = ACCUMULATION if chosen.accumulate else {"scaled_batch": "global batch", "accumulation_doc": "",
                                                           "accumulation_setup": "", "accumulation_flag": "",
                                                           "lr_batch": "$BATCH_SIZE"}
    return TEMPLATE.format(name=name, model=model, of_model="" if name == model else f" for {model}",
                           description=chosen.description, reference=chosen.reference,
                           notes="".join(f"\n# {line}" for line in chosen.notes),
                           per_device=chosen.batch_per_device, lr_ref=chosen.lr_ref, batch_ref=chosen.batch_ref,
                           flags=" \\\n".join(lines), **accumulation)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only verify the scripts are up to date")
    args = parser.parse_args(argv)

    folder = os.path.join(ROOT, "scripts", "train")
    os.makedirs(folder, exist_ok=True)
    wanted = generated_scripts()
    stale = []
    for name, (model, chosen) in wanted.items():
        path = os.path.join(folder, f"{name}.sh")
        text = render(name, model, chosen)
        current = open(path, encoding="utf-8").read() if os.path.exists(path) else None
        if current != text:
            stale.append(name)
            if not args.check:
                with open(path, "w", encoding="utf-8") as handle:
                    handle.write(text)
                os.chmod(path, 0o755)
    if args.check and stale:
        print(f"stale or missing: {', '.join(stale)}; run python scripts/make_train_scripts.py", file=sys.stderr)
        return 1
    print(f"{len(wanted)} train scripts up to date" if not stale or not args.check else "")
    return 0


if __name__ == "__main__":
    sys.exit(main())
