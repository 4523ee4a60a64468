"""PaddleClas oracle: the logits PaddleClas 2.6's own networks give for deterministic weights and input.

tests/test_zoo_oracle.py gives this suite's models the same weights and input (tools/oracle/deterministic.py:
a value is a function of the state_dict key and shape) and compares its logits with the file written here.
The suite never imports PaddleClas; only this script does, in its own virtual environment:

    python3 -m venv /tmp/oracle-venv
    /tmp/oracle-venv/bin/pip install -r tools/oracle/requirements.txt
    /tmp/oracle-venv/bin/pip install --no-deps paddleclas==2.6.0
    /tmp/oracle-venv/bin/python tools/oracle/make_logits.py     # all 112 models: ~20 min on 2 cores, 8 GB

(``--no-deps``: the paddleclas wheel pins numpy 1.24 and opencv-python <= 4.6, which Paddle 3.3.1 on
Python 3.11 does not need; requirements.txt lists what its model code imports.) ``--names A B`` redoes some
entries and keeps the others already in tests/oracle/paddleclas_logits.npz.

Every PaddleClas network is first checked against ../shared/zoo/state_dict_manifest.json (same keys, shapes
and order), so both sides hold the same tensors. Each model gets the first weight gain (conv weight variance
gain / fan_in, tried 2, 1.5, 1) under which a 1e-6 relative change of the input changes its logits by at most
10x that: a chaotic network (deep swish and squeeze-excite nets at gain 2) would turn float rounding alone
into large differences between two correct implementations. The file records each entry's input size,
gain and int16-quantised logits (error <= 1.5e-5 of max|logits|).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tools.oracle.deterministic import (  # noqa: E402
    GAINS,
    dequantize_logits,
    fixed_input,
    quantize_logits,
    relative_max_error,
    weight_for,
)

MANIFEST = ROOT.parent / "shared" / "zoo" / "state_dict_manifest.json"
OUTPUT = ROOT / "tests" / "oracle" / "paddleclas_logits.npz"

# Manifest names whose PaddleClas 2.6 constructor (ppcls.arch.backbone) has another name; all other names
# are PaddleClas's own. Fix_ResNeXt101_32x48d_wsl is the 32x48d network fine-tuned at 320 (FixRes).
PADDLECLAS_CONSTRUCTOR = {
    "MobileNetV1_x1_0": "MobileNetV1",
    "MobileNetV2_x1_0": "MobileNetV2",
    "ShuffleNetV2": "ShuffleNetV2_x1_0",
    "Fix_ResNeXt101_32x48d_wsl": "ResNeXt101_32x48d_wsl",
    "ResNet50_vd_v2": "ResNet50_vd",
}

# Native input sizes (PaddleClas's configs); every other model is evaluated at 224. AlexNet and VGG need 224
# (their classifiers have a fixed input), PaddleClas's EfficientNet 'SAME' padding is laid out for its size.
INPUT_SIZE = {
    "InceptionV3": 299, "InceptionV4": 299, "Xception41": 299, "Xception65": 299, "Xception71": 299,
    "Xception41_deeplab": 299, "Xception65_deeplab": 299, "DarkNet53": 256, "Fix_ResNeXt101_32x48d_wsl": 320,
    "EfficientNetB1": 240, "EfficientNetB2": 260, "EfficientNetB3": 300, "EfficientNetB4": 380,
    "EfficientNetB5": 456, "EfficientNetB6": 528, "EfficientNetB7": 600,
}


# A relative input change of PROBE may change the logits by at most MAX_AMPLIFICATION * PROBE (relative).
PROBE = 1e-6
MAX_AMPLIFICATION = 10.0


# Entries "<model>@<size>" are a model at a size other than its native one: PaddleClas's EfficientNet 'SAME'
# padding is planned for the native size and differs from TensorFlow's at odd sizes such as these.
OFF_SIZE_ENTRIES = ("EfficientNetB0@231", "EfficientNetB3@333")


def model_name(entry: str) -> str:
    return entry.split("@")[0]


def input_size(entry: str) -> int:
    name, _, size = entry.partition("@")
    return int(size) if size else INPUT_SIZE.get(name, 224)


def paddleclas_logits(entry: str, manifest_entry: dict) -> tuple[np.ndarray, float, float]:
    """(logits, gain, amplification) of a model or "<model>@<size>" entry: the logits under the first gain
    whose network amplifies a relative input change by at most MAX_AMPLIFICATION (beyond that, float rounding
    alone would differ between two correct implementations)."""
    import paddle
    import ppcls.arch.backbone as backbones

    # PaddleClas's older models name their parameters explicitly; a fresh name scope per model lets one
    # process build them all (paddle.utils.unique_name.guard swaps in a new parameter-name checker)
    with paddle.utils.unique_name.guard():
        name = model_name(entry)
        model = getattr(backbones, PADDLECLAS_CONSTRUCTOR.get(name, name))(class_num=1000)
    state = model.state_dict()
    layout = [[key, list(value.shape)] for key, value in state.items()]
    if layout != manifest_entry["state_dict"]:
        raise SystemExit(f"error: PaddleClas {name} state_dict differs from the manifest; is this PaddleClas 2.6?")
    model.eval()
    image = fixed_input(input_size(entry))
    for gain in GAINS:
        model.set_state_dict({key: weight_for(key, value.shape, gain) for key, value in state.items()})
        logits = _forward(model, image)
        amplification = relative_max_error(_forward(model, image * np.float32(1 + PROBE)), logits) / PROBE
        if amplification <= MAX_AMPLIFICATION:
            return logits, gain, amplification
    raise SystemExit(f"error: {entry} amplifies input changes {amplification:.3g}x even at gain {gain}")


def _forward(model, image: np.ndarray) -> np.ndarray:
    import paddle

    with paddle.no_grad():
        out = model(paddle.to_tensor(image))
    if isinstance(out, (list, tuple)):  # GoogLeNet returns [main, aux1, aux2] even in eval
        out = out[0]
    return out.numpy()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--names", nargs="*", help="models to (re)compute; default: every manifest name")
    parser.add_argument("--out", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)

    sys.path.insert(0, str(_paddleclas_root()))
    from ppcls.utils import logger

    logger.init_logger()  # its models log deprecation notes and fail if the logger was never set up
    manifest = json.loads(MANIFEST.read_text())
    names = args.names or [*sorted(manifest), *OFF_SIZE_ENTRIES]
    unknown = sorted({model_name(entry) for entry in names} - set(manifest))
    if unknown:
        raise SystemExit(f"error: not in {MANIFEST}: {', '.join(unknown)}")

    logits, gains = {}, {}
    if args.out.exists():
        with np.load(args.out) as stored:
            gains = dict(zip(map(str, stored["names"]), map(float, stored["gains"])))
            logits = {name: dequantize_logits(stored[name], scale) for name, scale in zip(gains, stored["scales"])}
    for name in names:
        start = time.time()
        values, gains[name], amplification = paddleclas_logits(name, manifest[model_name(name)])
        logits[name] = values
        spread = np.abs(values[0] - values[1]).max() / np.abs(values).max()
        print(f"{name:28s} {input_size(name):4d}px gain {gains[name]}  amplification {amplification:7.3g}  "
              f"max|logit| {np.abs(values).max():9.3g}  image-to-image {spread:.3f}  {time.time() - start:5.1f}s",
              flush=True)
        _save(args.out, logits, gains)
    return 0


def _save(path: Path, logits: dict, gains: dict) -> None:
    names = sorted(logits)
    quantized = {name: quantize_logits(logits[name]) for name in names}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, names=np.array(names), input_sizes=np.array([input_size(n) for n in names]),
                        gains=np.array([gains[n] for n in names]),
                        scales=np.array([quantized[n][1] for n in names]),
                        **{n: quantized[n][0] for n in names})
    tmp.replace(path)


def _paddleclas_root() -> Path:
    # the paddleclas wheel ships its source as the package directory, and its model code imports `ppcls`
    # from there; find it without importing paddleclas itself (that pulls in its whole deploy stack)
    import importlib.util

    spec = importlib.util.find_spec("paddleclas")
    if spec is None:
        raise SystemExit("error: paddleclas is not installed here; run this with the oracle venv's python")
    return Path(spec.origin).parent


if __name__ == "__main__":
    sys.exit(main())
