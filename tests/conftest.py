"""Test setup: CPU threads/MKL before paddle loads; paths to the shared reference data."""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
IMAGENETTE = SHARED / "data" / "imagenette"

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from utils.runtime import import_paddle_quietly, prepare_cpu  # noqa: E402

prepare_cpu(argv=[])
import_paddle_quietly()

import os  # noqa: E402
import subprocess  # noqa: E402

import pytest  # noqa: E402


def run_script(*args, check=True, timeout=600, env=None):
    """Run one of the entry scripts as a user would; returns the CompletedProcess (stdout+stderr text)."""
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run([sys.executable, *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=full_env)
    if check and proc.returncode != 0:
        raise AssertionError(f"{args[0]} exited {proc.returncode}\n--- stdout\n{proc.stdout[-4000:]}\n"
                             f"--- stderr\n{proc.stderr[-4000:]}")
    return proc


@pytest.fixture(scope="session")
def digits_dir(tmp_path_factory):
    """The demo digits data set (32x32 PNGs, 10 classes) built into a temporary folder."""
    out = tmp_path_factory.mktemp("digits")
    run_script("data/make_demo_data.py", "--out", out, "--size", 32)
    return out


def subset_list(source, target, count):
    """``count`` lines evenly spaced over a list file (lists are sorted by class, so every class appears)."""
    lines = [line for line in open(source, encoding="utf-8").read().splitlines() if line.strip()]
    step = max(1, len(lines) // count)
    with open(target, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines[::step][:count]) + "\n")
    return target
