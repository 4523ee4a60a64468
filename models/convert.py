"""Convert trained ACNet weights to the deploy form (the classic utils/acnet/convert_model.sh).

    python -m models.convert --model ResNet50_ACNet --pretrained_model trained.pdparams --output deploy.pdparams

Evaluate the result with ``--deploy=True``.
"""
from __future__ import annotations

import argparse
import sys

from models.acnet import ACNET_META, convert_acnet_to_deploy
from models.registry import build_model


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="ResNet18_ACNet ... ResNet152_ACNet")
    parser.add_argument("--pretrained_model", required=True, help="trained (non-deploy) weights or checkpoint dir")
    parser.add_argument("--class_dim", type=int, default=None, help="default: read from the weights")
    parser.add_argument("--output", required=True, help="where to write the deploy .pdparams")
    args = parser.parse_args(argv)
    from utils.checkpoint import class_dim_of_weights, load_pretrained, save_weights

    class_dim = args.class_dim or class_dim_of_weights(args.pretrained_model, ACNET_META.classifier) or 1000
    model = build_model(args.model, class_dim=class_dim)
    load_pretrained(model, args.pretrained_model, model_name=args.model)
    model.eval()
    deploy = convert_acnet_to_deploy(model, args.model, class_dim)
    save_weights(deploy.state_dict(), args.output)
    print(f"wrote deploy weights of {args.model} ({class_dim} classes) to {args.output}; "
          f"evaluate with --deploy=True")
    return 0


if __name__ == "__main__":
    from utils.runtime import import_paddle_quietly, prepare_cpu

    prepare_cpu()
    import_paddle_quietly()
    sys.exit(main())
