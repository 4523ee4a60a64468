"""The default engine on CPU: the fastest engine x precision on this machine whose scores match fp32.

On the first use of an export on a machine kind (CPU model, its bf16/int8 flags, the engine packages'
versions, the thread count), every engine x precision that can run here is built and timed on a
calibration batch of the run's own first images; the fastest one whose scores match Paddle Inference fp32
is kept, and the choice is cached in ``<export>/engine_choice.json`` under that machine kind, so later runs
on the same kind of machine skip the trial (and, when the choice is not Paddle Inference, need no paddle).
"""
from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from importlib import metadata

import cv2
import numpy as np

from utils.cpu_features import FLAGS_OF_INTEREST, cpu_features
from utils.errors import UsageError
from utils.export_format import ExportedModel
from utils.inference import selection
from utils.inference.engine import Engine, as_numpy, short_error
from utils.inference.options import DeviceOptions
from utils.inference.records import log, softmax
from utils.transforms import ImageDecodeError, PreprocessConfig, eval_transform, read_image

CHOICE_FILE = "engine_choice.json"
REFERENCE = ("inference", "fp32")  # what predict.py and eval.py ran before the automatic choice
CANDIDATES = (REFERENCE, ("onnxruntime", "fp32"), ("openvino", "fp32"), ("inference", "bf16"),
              ("openvino", "bf16"), ("inference", "int8"), ("openvino", "int8"))
CALIBRATION_IMAGES = 16
TIMED_RUNS = 2  # after one warm-up run; the faster of the two counts (the machine may be shared)
# A candidate matches fp32 when its top-1 class is fp32's on every calibration image and the softmax scores
# of fp32's top-5 classes differ by at most this much. Measured here on EfficientNetLite0's real weights and
# 128 Imagenette images against Paddle Inference fp32: bf16 (Paddle Inference or OpenVINO) moves those scores
# by 0.01 median, 0.05 at the 99th percentile, 0.065 at most (onnxruntime/OpenVINO fp32: < 1e-4); OpenVINO
# int8 (NNCF, 300 calibration images) by 0.03 median and 0.35 at the 99th percentile, with 10% of its top-1s
# different. 0.1 admits bf16's scores on any batch and refuses scores that moved like that int8 model's.
TOP5_SCORE_TOLERANCE = 0.1
PACKAGES = ("paddlepaddle", "paddlepaddle-gpu", "onnxruntime", "openvino")


@dataclass(frozen=True)
class MachineKind:
    """What the choice depends on besides the export: a different value means choosing again."""
    cpu: str
    flags: tuple[str, ...]  # the bf16/int8/AVX flags of interest this CPU has
    packages: tuple[str, ...]  # "name==version" of the engine packages installed
    threads: int

    @property
    def key(self) -> str:
        return f"{self.cpu} [{' '.join(self.flags)}] {' '.join(self.packages)} threads={self.threads}"


def machine_kind(threads: int) -> MachineKind:
    features = cpu_features()
    packages = []
    for name in PACKAGES:
        try:
            packages.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            pass
    return MachineKind(features.model, tuple(f for f in FLAGS_OF_INTEREST if features.has(f)), tuple(packages),
                       threads)


@dataclass
class Trial:
    engine: str
    precision: str
    milliseconds: float | None = None  # per calibration batch; None when it did not run
    outcome: str = ""  # "matches fp32", or why it was not tried or not kept


@dataclass
class Choice:
    engine: str
    precision: str
    speedup: float  # over Paddle Inference fp32 on the calibration batch
    calibration_images: int
    trials: list[Trial] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.engine} {self.precision}"


class ChosenEngine:
    """The engine the automatic choice picked; ``name`` and ``precision`` say which (eval.py's JSON)."""

    def __init__(self, engine: Engine, choice: Choice):
        self.engine, self.choice = engine, choice
        self.name, self.precision = choice.engine, choice.precision

    def __call__(self, batch) -> np.ndarray:
        return self.engine(as_numpy(batch))


def scores_mismatch(reference: np.ndarray, candidate: np.ndarray) -> str | None:
    """None when ``candidate`` matches the fp32 ``reference`` (see TOP5_SCORE_TOLERANCE), else why not."""
    if reference.shape != candidate.shape:
        return f"output shape {candidate.shape} != fp32's {reference.shape}"
    if not np.isfinite(candidate).all():
        return "non-finite scores"
    pr, pc = softmax(reference), softmax(candidate)
    differ = int((pr.argmax(axis=1) != pc.argmax(axis=1)).sum())
    if differ:
        return f"top-1 differs from fp32 on {differ} of {len(pr)} images"
    top5 = np.argsort(-pr, axis=1, kind="stable")[:, :5]
    rows = np.arange(len(pr))[:, None]
    diff = float(np.abs(pr[rows, top5] - pc[rows, top5]).max())
    if diff > TOP5_SCORE_TOLERANCE:
        return f"top-5 scores differ from fp32 by up to {diff:.3f} (> {TOP5_SCORE_TOLERANCE})"
    return None


def _time(engine: Engine, batch: np.ndarray) -> float:
    """Seconds of the faster of TIMED_RUNS calls (the engine has run once already)."""
    best = float("inf")
    for _ in range(TIMED_RUNS):
        start = time.perf_counter()
        engine(batch)
        best = min(best, time.perf_counter() - start)
    return best


def run_trial(deployed: ExportedModel, options: DeviceOptions, batch: np.ndarray,
              build: Callable[[str, ExportedModel, DeviceOptions], Engine] | None = None) -> tuple[Choice, Engine]:
    """Build (with ``build``, default selection.engine_for_export) every candidate, compare its scores on
    ``batch`` with fp32's and time the ones that match; the fastest of those, and its engine."""
    build = build or selection.engine_for_export
    trials, engines, seconds_of, reference_out = [], {}, {}, None
    for engine_name, precision in CANDIDATES:
        trial = Trial(engine_name, precision)
        trials.append(trial)
        try:
            engine = build(engine_name, deployed, replace(options, precision=precision))
            out = np.asarray(engine(batch))  # also the warm-up run
            reference_out = out if reference_out is None else reference_out
            mismatch = scores_mismatch(reference_out, out)
            seconds = None if mismatch else _time(engine, batch)
        except Exception as err:  # a refused precision, a missing package or file, an engine that fails
            trial.outcome = f"not tried: {err if isinstance(err, UsageError) else short_error(err)}"
            if (engine_name, precision) == REFERENCE:
                raise
            continue
        if mismatch:  # not worth timing
            trial.outcome = f"not kept: {mismatch}"
            continue
        trial.outcome = "matches fp32"
        trial.milliseconds, seconds_of[(engine_name, precision)] = round(seconds * 1000, 2), seconds
        engines[(engine_name, precision)] = engine
    best = min(engines, key=seconds_of.__getitem__)
    speedup = seconds_of[REFERENCE] / max(seconds_of[best], 1e-9)
    return Choice(*best, round(speedup, 2), len(batch), trials), engines[best]


def _cache_path(deployed: ExportedModel) -> str:
    return os.path.join(deployed.directory, CHOICE_FILE)


def read_cache(path: str) -> dict:
    """The cached choices by machine key ({} when there is no cache; an unreadable one is said and ignored)."""
    if not os.path.exists(path):
        return {}
    try:
        with open(path, encoding="utf-8") as handle:
            choices = json.load(handle)["choices"]
        if not isinstance(choices, dict):
            raise TypeError("'choices' is not an object")
        return choices
    except (OSError, ValueError, KeyError, TypeError) as err:
        log(f"note: {path} is unreadable ({type(err).__name__}: {err}); choosing the engine again")
        return {}


def cached_choice(path: str, choices: dict, machine: MachineKind) -> Choice | None:
    """``machine``'s entry of the cache ``choices`` read from ``path``, or None."""
    entry = choices.get(machine.key)
    if not isinstance(entry, dict):
        return None
    try:
        trials = [Trial(**t) for t in entry.get("trials", [])]
        return Choice(str(entry["engine"]), str(entry["precision"]), float(entry["speedup"]),
                      int(entry["calibration_images"]), trials)
    except (KeyError, TypeError, ValueError) as err:
        log(f"note: {path}: the entry for this machine is incomplete ({type(err).__name__}: {err}); choosing again")
        return None


def write_cache(path: str, choices: dict, machine: MachineKind, choice: Choice) -> str | None:
    """Write ``choices`` (the cache as read) with ``choice`` for ``machine`` added; None, or why it failed."""
    entry = {**asdict(machine), **asdict(choice), "chosen_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
    temporary = f"{path}.{os.getpid()}.tmp"
    try:
        with open(temporary, "w", encoding="utf-8") as handle:
            json.dump({"choices": {**choices, machine.key: entry}}, handle, indent=1)
        os.replace(temporary, path)  # readers never see a half-written file
    except OSError as err:
        if os.path.isfile(temporary):
            os.remove(temporary)
        return err.strerror or str(err)
    return None


def _speed_phrase(choice: Choice, when: str = "") -> str:
    reference = " ".join(REFERENCE)
    if (choice.engine, choice.precision) == REFERENCE:
        return f"the fastest that matches fp32{when}"
    if choice.speedup < 1.05:  # within timing noise
        return f"about as fast as {reference}{when}"
    return f"{choice.speedup:.1f}x faster than {reference}{when}"


def auto_engine(deployed: ExportedModel, options: DeviceOptions, calibration: Callable[[], np.ndarray]) -> Engine:
    """The cached choice for this machine kind, else a trial on ``calibration()`` (cached for next time);
    one line on stderr says which engine runs and why."""
    machine = machine_kind(options.cpu_threads)
    path = _cache_path(deployed)
    choices = read_cache(path)
    choice = cached_choice(path, choices, machine)
    if choice is not None:
        try:
            engine = selection.engine_for_export(choice.engine, deployed, replace(options, precision=choice.precision))
        except Exception as err:  # e.g. its int8 model was deleted since
            log(f"note: the cached engine {choice.label} cannot be built ({short_error(err)}); choosing again")
        else:
            log(f"engine: {choice.label} (cached choice for this CPU: {machine.cpu}; "
                f"{_speed_phrase(choice, ' when chosen')}; from {path})")
            return ChosenEngine(engine, choice)
    batch = calibration()
    if not len(batch):  # every image is unreadable: the run only reports errors, any engine does
        log(f"engine: {' '.join(REFERENCE)} (no readable image to choose the engine with; nothing cached)")
        engine, precision = REFERENCE
        return selection.engine_for_export(engine, deployed, replace(options, precision=precision))
    log(f"engine: trying {len(CANDIDATES)} engine x precision candidates on {len(batch)} image{'s' * (len(batch) > 1)} "
        "(first use of this export on this kind of machine)")
    choice, engine = run_trial(deployed, options, batch)
    for trial in choice.trials:
        timing = f"{trial.milliseconds:.0f} ms, " if trial.milliseconds is not None else ""
        outcome = trial.outcome if len(trial.outcome) <= 160 else trial.outcome[:157] + "..."  # whole in the cache
        log(f"  {trial.engine} {trial.precision}: {timing}{outcome}")
    problem = write_cache(path, choices, machine, choice)
    where = f"cached in {path}" if problem is None else \
        f"could not cache it in {path} ({problem}): the next run tries again"
    log(f"engine: {choice.label} (chosen on this CPU: {machine.cpu}; {_speed_phrase(choice)}; {where})")
    return ChosenEngine(engine, choice)


def calibration_batch(paths: list[str], cfg: PreprocessConfig, count: int = CALIBRATION_IMAGES) -> np.ndarray:
    """The first ``count`` readable images of ``paths``, preprocessed as the run will (unreadable ones are
    skipped here; the run reports them)."""
    arrays = []
    for path in paths:
        if len(arrays) == count:
            break
        try:
            arrays.append(eval_transform(read_image(path), cfg))
        except (ImageDecodeError, cv2.error):
            continue
    return np.stack(arrays) if arrays else np.zeros((0, 3, cfg.crop_size, cfg.crop_size), np.float32)
