"""Process setup that must happen before paddle is imported: CPU threads and MKL on AMD processors.

Paddle's CPU wheel ships Intel MKL, which picks slow code paths on AMD CPUs unless MKL_DEBUG_CPU_TYPE=5
is set before the library loads (measured ~3x on ResNet50 training); on Intel it must not be set.
Paddle also defaults to one OpenMP thread. Scripts call :func:`prepare_cpu` first thing.
"""
from __future__ import annotations

import os
import sys
import warnings


def cpu_vendor() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            for line in info:
                if line.startswith("vendor_id"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def flag_value(argv: list[str], flag: str) -> str | None:
    """The value of ``--flag=V`` or ``--flag V`` in argv, read before argparse runs."""
    for i, arg in enumerate(argv):
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
        if arg == flag and i + 1 < len(argv):
            return argv[i + 1]
    return None


def prepare_cpu(threads: int | None = None, argv: list[str] | None = None) -> int:
    """Set thread counts and the AMD MKL switch. Returns the thread count in effect.

    Must run before ``import paddle``; a value the user already exported is respected.
    """
    # Paddle warns at import that ccache (a C++ extension build cache) is missing: noise for users.
    warnings.filterwarnings("ignore", message="No ccache found")
    # ... and BatchNorm2D warns on every training forward that it tracks running statistics (it always did).
    warnings.filterwarnings("ignore", message="When training, we now always track global mean and variance")
    if threads is None:
        requested = flag_value(argv if argv is not None else sys.argv, "--cpu_threads")
        threads = int(requested) if requested and requested.isdigit() and int(requested) > 0 else None
    if threads is None:
        threads = int(os.environ.get("CPU_NUM_THREADS", 0)) or usable_cores()
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    os.environ.setdefault("MKL_NUM_THREADS", str(threads))
    if cpu_vendor() == "AuthenticAMD":
        os.environ.setdefault("MKL_DEBUG_CPU_TYPE", "5")
    return int(os.environ["OMP_NUM_THREADS"])


class _DropLines:
    """A stderr stand-in that drops lines containing any of ``patterns``."""

    def __init__(self, stream, patterns: tuple[str, ...]):
        self.stream, self.patterns = stream, patterns

    def write(self, text: str) -> int:
        if any(p in text for p in self.patterns):
            return len(text)
        return self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()


def import_paddle_quietly():
    """Import paddle without its warning that OMP_NUM_THREADS > 1 "will not be optimized": we set the
    thread count on purpose (it is what makes CPU training fast) and the warning would only mislead."""
    if "paddle" in sys.modules:
        return sys.modules["paddle"]
    # OpenCV first: Paddle 2.6 wheels bundle a zlib whose symbols otherwise shadow OpenCV's, which breaks
    # (or crashes) PNG decoding.
    import cv2  # noqa: F401

    saved = sys.stderr
    sys.stderr = _DropLines(saved, ("OMP_NUM_THREADS set to", "USE OMP_NUM_THREADS WISELY"))
    try:
        import paddle
    finally:
        sys.stderr = saved
    return paddle
