"""CPU setup before paddle loads: thread counts from --cpu_threads / cores, the MKL switch on AMD only."""
import os
import subprocess
import sys

from tests.conftest import ROOT
from utils.runtime import cpu_vendor, flag_value, usable_cores

PROBE = ("import sys; from utils.runtime import prepare_cpu; n = prepare_cpu(argv=sys.argv[1:]); import os; "
         "print(n, os.environ['OMP_NUM_THREADS'], os.environ.get('MKL_DEBUG_CPU_TYPE'))")


def probe(*argv):
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "MKL_DEBUG_CPU_TYPE", "CPU_NUM_THREADS")}
    out = subprocess.run([sys.executable, "-c", PROBE, *argv], cwd=ROOT, env=env, capture_output=True, text=True)
    return out.stdout.split()


def test_threads_default_to_usable_cores_and_flag_overrides():
    assert probe()[:2] == [str(usable_cores())] * 2
    assert probe("--cpu_threads=3")[:2] == ["3", "3"]
    assert probe("--cpu_threads", "1")[:2] == ["1", "1"]


def test_mkl_switch_only_on_amd():
    expected = "5" if cpu_vendor() == "AuthenticAMD" else "None"
    assert probe()[2] == expected


def test_flag_value_reads_both_spellings():
    assert flag_value(["--a", "--cpu_threads=4"], "--cpu_threads") == "4"
    assert flag_value(["--cpu_threads", "2"], "--cpu_threads") == "2"
    assert flag_value(["--cpu_threadsx=2"], "--cpu_threads") is None
