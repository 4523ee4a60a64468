"""Process setup that must happen before paddle is imported: CPU threads and MKL on AMD processors.

Paddle's CPU wheel ships Intel MKL, which picks slow code paths on AMD CPUs unless MKL_DEBUG_CPU_TYPE=5
is set before the library loads (measured ~3x on ResNet50 training); on Intel it must not be set.
Paddle also defaults to one OpenMP thread; :func:`prepare_cpu` shares the usable cores out among the node's
training processes instead. Scripts call it first thing.
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


def local_processes() -> int:
    """Training processes on this node: paddle.distributed.launch gives each one PADDLE_LOCAL_SIZE (its
    controllers/collective.py, Paddle 2.6 and 3.3); 1 outside the launcher."""
    value = os.environ.get("PADDLE_LOCAL_SIZE", "")
    return int(value) if value.isdigit() and int(value) > 0 else 1


def _env_threads(name: str) -> int | None:
    """A positive thread count from the environment, None when unset; anything else is a one-line error."""
    text = os.environ.get(name, "").strip()
    if not text:
        return None
    if not text.isdigit() or int(text) == 0:
        print(f"error: {name}={text} must be a positive whole number of CPU threads (or unset it)", file=sys.stderr)
        sys.exit(2)
    return int(text)


def _users_omp_threads() -> int | None:
    """OMP_NUM_THREADS as the user exported it. Under the launcher a 1 is not the user's: importing paddle in
    the launcher process sets OMP_NUM_THREADS=1 when it is unset (paddle/base/__init__.py, __bootstrap__) and
    every process it starts inherits it; ask for 1 thread there with --cpu_threads=1 or CPU_NUM_THREADS=1."""
    threads = _env_threads("OMP_NUM_THREADS")
    if threads == 1 and "PADDLE_LOCAL_SIZE" in os.environ:
        return None
    return threads


def prepare_cpu(threads: int | None = None, argv: list[str] | None = None) -> int:
    """Set thread counts and the AMD MKL switch. Returns the thread count in effect.

    Must run before ``import paddle``. The count is, first found: ``threads``, ``--cpu_threads`` in argv,
    CPU_NUM_THREADS, an OMP_NUM_THREADS the user exported, else the usable cores shared out among this
    node's training processes (at least 1 each), so that N data-parallel ranks do not each take every core.
    OMP_NUM_THREADS and MKL_NUM_THREADS are both set to it (a user's OMP_NUM_THREADS is kept as is).
    """
    # Paddle warns at import that ccache (a C++ extension build cache) is missing: noise for users.
    warnings.filterwarnings("ignore", message="No ccache found")
    # ... and BatchNorm2D warns on every training forward that it tracks running statistics (it always did).
    warnings.filterwarnings("ignore", message="When training, we now always track global mean and variance")
    if threads is None:
        requested = flag_value(argv if argv is not None else sys.argv, "--cpu_threads")
        # a malformed value is left to argparse, which names the flag
        threads = int(requested) if requested and requested.isdigit() and int(requested) > 0 else None
    if threads is None:
        threads = _env_threads("CPU_NUM_THREADS")
    if threads is None and _users_omp_threads() is not None:
        os.environ.setdefault("MKL_NUM_THREADS", os.environ["OMP_NUM_THREADS"])
    else:
        if threads is None:
            threads = max(1, usable_cores() // local_processes())
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(threads)
    if cpu_vendor() == "AuthenticAMD":
        os.environ.setdefault("MKL_DEBUG_CPU_TYPE", "5")
    return int(os.environ["OMP_NUM_THREADS"])


def oversubscription() -> str | None:
    """A warning line when this node's training processes x their OpenMP threads exceed its usable cores."""
    text = os.environ.get("OMP_NUM_THREADS", "")
    threads, processes, cores = int(text) if text.isdigit() else 1, local_processes(), usable_cores()
    if threads * processes <= cores:
        return None
    return (f"warning: {processes} training process(es) on this node x {threads} CPU threads each > {cores} "
            f"usable cores: the CPU is oversubscribed and slows down; use --cpu_threads="
            f"{max(1, cores // processes)} or leave --cpu_threads, CPU_NUM_THREADS and OMP_NUM_THREADS unset")


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
    """Import paddle; its warning that OMP_NUM_THREADS > 1 "will not be optimized if you use data parallel"
    is shown, with our own line naming the numbers, only when the threads really oversubscribe the node's
    cores (:func:`oversubscription`). Otherwise it is moot: :func:`prepare_cpu` shares the cores out among
    the node's processes, and dropping it keeps every run's log free of a false alarm."""
    if "paddle" in sys.modules:
        return sys.modules["paddle"]
    # OpenCV first: Paddle 2.6 wheels bundle a zlib whose symbols otherwise shadow OpenCV's, which breaks
    # (or crashes) PNG decoding.
    from utils.image_limit import limit_opencv_decoder

    limit_opencv_decoder()  # OpenCV reads its pixel limit when it loads, i.e. at this import
    import cv2  # noqa: F401

    warning = oversubscription()
    if warning:
        print(warning, file=sys.stderr)
        import paddle

        return paddle
    saved = sys.stderr
    sys.stderr = _DropLines(saved, ("OMP_NUM_THREADS set to", "USE OMP_NUM_THREADS WISELY"))
    try:
        import paddle
    finally:
        sys.stderr = saved
    return paddle
