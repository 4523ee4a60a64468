"""Deterministic weights and input shared by the PaddleClas oracle (tools/oracle/make_logits.py, run in its own
virtual environment) and the comparison test (tests/test_zoo_oracle.py), and the format the logits are
stored in.

Numpy only, so both sides import it; it knows nothing about either implementation. A tensor's values are a
function of its state_dict key and shape (and the model's recorded gain) alone, so two networks with the
same keys get the same weights.
"""
from __future__ import annotations

import hashlib

import numpy as np

FIXED_BATCH = 2


def _rng(*parts) -> np.random.Generator:
    # a stable hash (Python's hash() is salted per process)
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


# Conv weight variance is gain / fan_in. The oracle uses the first gain under which the network is not chaotic
# (see tools/oracle/make_logits.py) and records it per model: 2 (He) keeps a ReLU layer's output as large as
# its input, so the logits still depend on the image after 200 layers; deep swish/squeeze-excite nets
# (EfficientNet-B4+, SENet154) amplify float rounding under it and need less.
GAINS = (2.0, 1.5, 1.0)


def weight_for(key: str, shape, gain: float = GAINS[0]) -> np.ndarray:
    """The float32 value of state_dict entry ``key``.

    Conv weights have variance ``gain`` / fan_in, Linear weights 1 / fan_in (zero-mean uniforms: float32
    uniforms are ten times faster to draw than normals, which matters for 4 billion values). BatchNorm
    statistics and scales stay near (0, 1) but differ per channel, so an epsilon or a statistics mix-up
    shows in the output.
    """
    shape = tuple(int(d) for d in shape)
    rng = _rng(key, shape)
    leaf = key.rsplit(".", 1)[-1]
    if leaf in ("_variance", "running_var"):
        return _uniform(rng, shape, 0.5, 1.5)
    if leaf in ("_mean", "running_mean"):
        return _uniform(rng, shape, -0.2, 0.2)
    if len(shape) <= 1:
        # a 1-d "weight" is a normalisation scale, anything else a bias
        return _uniform(rng, shape, 0.8, 1.2) if leaf in ("weight", "scale") else _uniform(rng, shape, -0.1, 0.1)
    # Paddle stores Linear weights as [in, out], conv weights as [out, in / groups, kh, kw]
    variance = 1.0 / shape[0] if len(shape) == 2 else gain / np.prod(shape[1:])
    half_width = np.sqrt(3.0 * variance)  # U(-a, a) has variance a^2 / 3
    return _uniform(rng, shape, -half_width, half_width)


def _uniform(rng: np.random.Generator, shape: tuple, low: float, high: float) -> np.ndarray:
    values = rng.random(shape, dtype=np.float32)
    values *= np.float32(high - low)
    values += np.float32(low)
    return values


def fixed_input(size: int, batch: int = FIXED_BATCH) -> np.ndarray:
    """A normalised-image-like float32 batch of shape [batch, 3, size, size] (mean 0, variance 1)."""
    return _uniform(_rng("input", batch, size), (batch, 3, size, size), -np.sqrt(3.0), np.sqrt(3.0))


def relative_max_error(ours: np.ndarray, reference: np.ndarray) -> float:
    """max |ours - reference| / max |reference|."""
    ours, reference = np.asarray(ours, np.float64), np.asarray(reference, np.float64)
    return float(np.abs(ours - reference).max() / np.abs(reference).max())


# Logits are stored as int16 steps of max|logits| / 32767 per entry: the error is at most 1.5e-5 of
# max|logits|, far below the test's 1e-4 relative max error, in a quarter of float32's compressed size.
QUANTUM_STEPS = 32767


def quantize_logits(logits: np.ndarray) -> tuple[np.ndarray, float]:
    scale = float(np.abs(logits).max()) / QUANTUM_STEPS
    return np.round(np.asarray(logits, np.float64) / scale).astype(np.int16), scale


def dequantize_logits(steps: np.ndarray, scale: float) -> np.ndarray:
    return steps.astype(np.float64) * scale
