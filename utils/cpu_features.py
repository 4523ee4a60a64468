"""What this CPU can run fast: its model name and the instruction-set flags that matter for bf16 and int8
inference, read from /proc/cpuinfo (Linux; elsewhere nothing is known and bf16/int8 are refused).

bf16 pays off only with native bf16 dot products (AVX512-BF16 or AMX-BF16); without them oneDNN and OpenVINO
emulate it, slower than fp32. int8 needs VNNI (AVX512-VNNI, AVX-VNNI) or AMX-INT8 to beat fp32.
"""
from __future__ import annotations

from dataclasses import dataclass

CPUINFO = "/proc/cpuinfo"
# The flags the engines and the benchmark care about, in the order they are printed
FLAGS_OF_INTEREST = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_int8", "amx_tile", "avx512_vnni", "avx_vnni")
BF16_FLAGS = ("avx512_bf16", "amx_bf16")
INT8_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")


@dataclass(frozen=True)
class CpuFeatures:
    model: str  # "AMD EPYC 7B13", "Intel(R) Xeon(R) Processor"; "unknown CPU" when unreadable
    flags: frozenset[str]

    def has(self, *names: str) -> bool:
        return any(name in self.flags for name in names)

    def summary(self) -> str:
        """One line: the model and which flags of interest it has, e.g. "AMD EPYC 7B13 (avx2)"."""
        present = [name for name in FLAGS_OF_INTEREST if name in self.flags]
        return f"{self.model} ({', '.join(present) or 'none of ' + ', '.join(FLAGS_OF_INTEREST)})"


def parse_cpuinfo(text: str) -> CpuFeatures:
    """The first processor's "model name" and "flags" from /proc/cpuinfo text (x86 Linux layout)."""
    model, flags = "", ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not model:
            model = value.strip()
        elif key == "flags" and not flags:
            flags = value
        if model and flags:
            break
    return CpuFeatures(model or "unknown CPU", frozenset(flags.split()))


_detected: CpuFeatures | None = None


def cpu_features() -> CpuFeatures:
    """This machine's CPU (read once)."""
    global _detected
    if _detected is None:
        try:
            with open(CPUINFO, encoding="utf-8", errors="replace") as handle:
                _detected = parse_cpuinfo(handle.read())
        except OSError:
            _detected = CpuFeatures("unknown CPU (no /proc/cpuinfo)", frozenset())
    return _detected


def bf16_support(features: CpuFeatures | None = None) -> str | None:
    """None when the CPU has native bf16 (AVX512-BF16 or AMX-BF16), else the one-line reason to use fp32."""
    features = features or cpu_features()
    if features.has(*BF16_FLAGS):
        return None
    return (f"this CPU ({features.model}) has no {' or '.join(BF16_FLAGS)}: bf16 would run emulated and slower "
            "than fp32; use --precision fp32")


def int8_support(features: CpuFeatures | None = None) -> str | None:
    """None when the CPU has int8 dot products (VNNI or AMX-INT8), else the one-line reason to use fp32."""
    features = features or cpu_features()
    if features.has(*INT8_FLAGS):
        return None
    return (f"this CPU ({features.model}) has no {', '.join(INT8_FLAGS)}: int8 would not run faster than fp32; "
            "use --precision fp32")


def precision_support(precision: str, features: CpuFeatures | None = None) -> str | None:
    """None when ``precision`` runs well on this CPU, else why not (fp32 always does)."""
    checks = {"bf16": bf16_support, "int8": int8_support}
    return checks[precision](features) if precision in checks else None
