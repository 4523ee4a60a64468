"""Script plumbing: CPU setup before paddle loads, one-line errors with exit code 2, device choice."""
from __future__ import annotations

import sys
import traceback

from utils.runtime import flag_value, import_paddle_quietly, prepare_cpu


def run(main) -> None:
    """Run ``main(argv)``; a user error prints one line and exits 2 (``--debug True`` shows the traceback)."""
    prepare_cpu()
    import_paddle_quietly()
    from reader import ListFileError
    from utils.args import TRUE_WORDS
    from utils.errors import UsageError
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
    import paddle

    from utils.errors import UsageError

    has_gpu = paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0
    if use_gpu and not has_gpu:
        raise UsageError("--use_gpu=True, but this Paddle build has no usable CUDA GPU; install "
                         "paddlepaddle-gpu (see README) or pass --use_gpu=False")
    device = "gpu" if (has_gpu if use_gpu is None else use_gpu) else "cpu"
    paddle.set_device(device)
    return device
