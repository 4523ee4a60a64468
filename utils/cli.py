"""Script plumbing: CPU setup before paddle loads, one-line errors with exit code 2, device choice."""
from __future__ import annotations

import sys
import traceback

from utils.image_limit import limit_opencv_decoder
from utils.runtime import flag_value, import_paddle_quietly, prepare_cpu


def run(main, import_paddle: bool = True) -> None:
    """Run ``main(argv)``; a user error prints one line and exits 2 (``--debug True`` shows the traceback).

    ``import_paddle=False``: the script imports paddle only when it needs it (predict.py on OpenVINO or
    onnxruntime never does; the import costs seconds)."""
    prepare_cpu()
    if import_paddle:
        import_paddle_quietly()
    else:
        limit_opencv_decoder()  # as import_paddle_quietly does first: OpenCV reads its limit when it loads
    from utils.args import TRUE_WORDS
    from utils.errors import UsageError
    from utils.text_files import ListFileError
    from utils.transforms import ImageDecodeError

    # read before argparse runs, so a bad flag value can still be shown with its traceback
    debug = (flag_value(sys.argv, "--debug") or "").strip().lower() in TRUE_WORDS
    user_errors = (UsageError, ListFileError, ImageDecodeError)
    try:
        code = main(sys.argv[1:])
    except Exception as err:
        # an unknown model name is a user error too; models is imported only by scripts that need model code
        unknown_model = getattr(sys.modules.get("models.registry"), "UnknownModelError", None)
        if not isinstance(err, user_errors) and not (unknown_model and isinstance(err, unknown_model)):
            raise
        if debug:
            traceback.print_exc()
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)


def select_device(use_gpu: bool | None) -> str:
    """'gpu' or 'cpu'; asking for a GPU that this Paddle build cannot use is an error, not a fallback."""
    if not use_gpu and "paddle" not in sys.modules and cpu_only_paddle():
        return "cpu"  # a CPU build has no GPU to find; a script that did not need paddle yet stays without it
    from utils.errors import UsageError

    paddle = import_paddle_quietly()  # predict.py may not have imported it yet

    has_gpu = paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0
    if use_gpu and not has_gpu:
        raise UsageError("--use_gpu=True, but this Paddle build has no usable CUDA GPU; install "
                         "paddlepaddle-gpu (see README) or pass --use_gpu=False")
    device = "gpu" if (has_gpu if use_gpu is None else use_gpu) else "cpu"
    paddle.set_device(device)
    return device


def cpu_only_paddle() -> bool:
    """Whether the installed paddle is a CPU build, read without importing it: Paddle's build writes
    paddle/version/__init__.py with ``cuda_version = 'False'`` in CPU wheels (2.6 and 3.x)."""
    import importlib.util
    import os
    import re

    spec = importlib.util.find_spec("paddle")
    if spec is None or not spec.submodule_search_locations:
        return False
    try:
        with open(os.path.join(spec.submodule_search_locations[0], "version", "__init__.py"), encoding="utf-8") as f:
            text = f.read()
    except OSError:
        return False
    return re.search(r"^cuda_version\s*=\s*'False'", text, re.MULTILINE) is not None
