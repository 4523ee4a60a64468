"""Checkpoints (atomic), pretrained-weight loading (shape-checked) and resuming.

A checkpoint is a directory ``<model_save_dir>/<model>/<epoch>/`` holding ``model.pdparams``,
``model.pdopt`` (optimizer + LR schedule), optional ``ema.pdparams`` and ``scaler.json``, and
``meta.json`` (epoch, model, args). It is written into a temporary sibling directory and renamed into
place, so a crash never leaves a half-written checkpoint under an epoch number.
"""
from __future__ import annotations

import json
import os
import pickle
import shutil
import tempfile
import warnings
from dataclasses import dataclass

import numpy as np
import paddle

from utils.errors import UsageError
from utils.state import assign_state

WEIGHTS = "model.pdparams"
OPTIMIZER = "model.pdopt"
EMA_WEIGHTS = "ema.pdparams"
META = "meta.json"


# ---------------------------------------------------------------- reading weight files


def resolve_weights_path(path: str, flag: str = "--pretrained_model") -> str:
    """A .pdparams file, a path prefix without extension, or a checkpoint directory -> the file."""
    candidates = [path, path + ".pdparams", os.path.join(path, WEIGHTS)]
    for candidate in candidates:
        if os.path.isfile(candidate):
            return candidate
    raise UsageError(
        f"{flag} {path}: not found (tried {', '.join(candidates)}); give a .pdparams file, "
        "its path without extension, or a checkpoint directory"
    )


# What a .pdparams/.pdopt pickle may reference: numpy arrays and plain containers, nothing that runs code.
# paddle.save (paddle/framework/io.py, reduce_varbase) pickles a named tensor as builtins.tuple((name, array)):
# optimizer accumulators and the O2 master weights arrive that way.
_ALLOWED_GLOBALS = {
    ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"), ("numpy.core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("collections", "OrderedDict"), ("builtins", "tuple"),
}


class UnsafeWeightsError(UsageError):
    """A weights file that would import something other than arrays (pickle can run arbitrary code)."""


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise UnsafeWeightsError(f"refers to {module}.{name}, which a weights file never needs")


def safe_load(path: str) -> dict:
    """Load a Paddle state_dict pickle admitting only numpy arrays and plain containers."""
    with open(path, "rb") as handle:
        return _RestrictedUnpickler(handle).load()


def load_state_file(path: str, flag: str = "--pretrained_model") -> dict:
    """Read a .pdparams/.pdopt file without running code from it (see :func:`safe_load`)."""
    try:
        state = safe_load(path)
    except UnsafeWeightsError as err:
        raise UnsafeWeightsError(f"{flag} {path}: refused to load: the file {err} (it may run code); "
                                 "only load weights from sources you trust") from None
    except Exception as err:  # truncated or foreign files raise many types
        raise UsageError(f"{flag} {path}: not Paddle weights ({type(err).__name__}: {err})"[:400]) from None
    if not isinstance(state, dict) or not state:
        raise UsageError(f"{flag} {path}: not a Paddle state_dict (got {type(state).__name__})")
    # paddle.save adds a bookkeeping entry ("StructuredToParameterName@@") that is not a tensor
    return {k: _array_of(v) for k, v in state.items() if not str(k).endswith("@@")}


def _is_named_array(value) -> bool:
    return isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str) \
        and isinstance(value[1], np.ndarray)


def _array_of(value):
    """A named tensor as paddle.save writes it, ``(name, array)``, becomes the array."""
    return value[1] if _is_named_array(value) else value


PARAMETER_NAMES = "StructuredToParameterName@@"  # paddle.save's map: state_dict key -> parameter name


def parameter_renames(saved_names: dict | None, model) -> dict[str, str]:
    """Saved parameter name -> this process's name for the same state_dict key.

    Paddle keys optimizer state by generated parameter names (``conv2d_3.w_0``), which depend on how many
    layers the process built before the model; the state_dict keys do not.
    """
    if not isinstance(saved_names, dict):
        return {}
    current = {key: param.name for key, param in model.named_parameters()}
    return {old: current[key] for key, old in saved_names.items() if key in current and current[key] != old}


def _renamed(name: str, renames: dict[str, str]) -> str:
    """``name`` is a parameter name or an accumulator name built from one (``<param>_velocity_0``)."""
    if name in renames:
        return renames[name]
    best = max((old for old in renames if name.startswith(old + "_")), key=len, default=None)
    return renames[best] + name[len(best):] if best else name


def optimizer_state_for_resume(state: dict, renames: dict[str, str] | None = None) -> dict:
    """Prepare a safely loaded .pdopt for ``optimizer.set_state_dict``.

    Under O2 ``Optimizer.set_state_dict`` keeps ``state["master_weights"]`` as the fp32 master tensors
    themselves (``Optimizer._create_master_weight`` uses them as they are), and names the accumulators of
    each master weight after the master tensor's name: so they must be float32 Tensors carrying their saved
    names, or the momentum of every float16 parameter would silently restart from zero.
    """
    renames = renames or {}
    state = {(k if k in ("master_weights", "LR_Scheduler") else _renamed(k, renames)): v for k, v in state.items()}
    masters = state.get("master_weights")
    if isinstance(masters, dict):
        restored = {}
        for param_name, value in masters.items():
            name, array = value if _is_named_array(value) else (None, np.asarray(value))
            tensor = paddle.to_tensor(np.asarray(array, dtype=np.float32))
            if name:
                tensor.name = _renamed(name, renames)
            restored[_renamed(param_name, renames)] = tensor
        state["master_weights"] = restored
    return state


def class_dim_of_weights(path: str, classifier: tuple[str, ...], flag: str = "--pretrained_model") -> int | None:
    """The number of classes a weights file was trained for, read from its classifier tensor."""
    from utils.fluid_weights import fluid_class_dim, is_fluid_weights_dir

    if is_fluid_weights_dir(path):  # the classic suite's per-parameter directory
        return fluid_class_dim(path, flag, classifier)
    state = load_state_file(resolve_weights_path(path, flag), flag)
    for prefix in classifier:
        weight = state.get(f"{prefix}.weight")
        if weight is not None:
            shape = list(weight.shape)
            return int(shape[1] if len(shape) == 2 else shape[0])  # Linear [in, out]; 1x1 conv [out, in, 1, 1]
    return None


@dataclass
class LoadReport:
    loaded: list[str]
    shape_mismatch: list[str]
    excluded: list[str]
    missing: list[str]
    unexpected: list[str]

    def summary(self) -> str:
        parts = [f"loaded {len(self.loaded)} tensors"]
        if self.shape_mismatch:
            parts.append(f"skipped {len(self.shape_mismatch)} with a different shape "
                         f"(new head / class_dim): {', '.join(self.shape_mismatch)}")
        if self.excluded:
            parts.append(f"excluded by flag: {', '.join(self.excluded)}")
        if self.missing:
            parts.append(f"{len(self.missing)} not in the file (kept initialised): {', '.join(self.missing[:6])}"
                         + (" ..." if len(self.missing) > 6 else ""))
        if self.unexpected:
            parts.append(f"{len(self.unexpected)} in the file but not in the model (ignored)")
        return "; ".join(parts)


def load_pretrained(model: paddle.nn.Layer, path: str, exclude: list[str] | None = None,
                    model_name: str = "", flag: str = "--pretrained_model") -> LoadReport:
    """Load matching tensors; skip (and name) those whose shape differs, e.g. a 1000-class classifier.

    ``path`` may also be a classic Fluid per-parameter directory (utils.fluid_weights maps its names);
    ``exclude`` takes our key prefixes or classic Fluid names/prefixes; one that matches nothing is an error."""
    from utils.fluid_weights import fluid_exclusions, fluid_state_dict, is_fluid_weights_dir

    own = model.state_dict()
    if is_fluid_weights_dir(path):
        file_path, state = path, fluid_state_dict(path, model_name, list(own), flag)
    else:
        file_path = resolve_weights_path(path, flag)
        state = load_state_file(file_path, flag)
    exclude = [e for e in (exclude or []) if e]
    by_fluid_name = fluid_exclusions(model_name, list(own), exclude)
    excluded_keys = {e: {k for k in own if k.startswith(e)} | set(by_fluid_name[e]) for e in exclude}
    unmatched = [e for e, keys in excluded_keys.items() if not keys]
    if unmatched:
        raise UsageError(f"--finetune_exclude_pretrained_params {','.join(unmatched)}: matches no parameter of "
                         f"{model_name or type(model).__name__} (give state_dict key prefixes such as "
                         f"{next(iter(own))}, or the classic Fluid names such as fc_0.w_0)")
    excluded = set().union(*excluded_keys.values())
    report = LoadReport([], [], [], [], [k for k in state if k not in own])
    to_load = {}
    for key, param in own.items():
        if key not in state:
            report.missing.append(key)
        elif key in excluded:
            report.excluded.append(key)
        elif list(state[key].shape) != list(param.shape):
            report.shape_mismatch.append(key)
        else:
            to_load[key] = state[key]
            report.loaded.append(key)
    if not report.loaded:
        raise UsageError(
            f"{flag} {file_path}: none of its {len(state)} tensors fit model {model_name or type(model).__name__}"
            " (weights of a different model?)"
        )
    assign_state_quietly(model, to_load)
    return report


def assign_state_quietly(model, state: dict) -> None:
    """Write ``state`` into the model (cast to each tensor's dtype) without Paddle's per-key warnings: the
    caller reports what was and was not loaded in one line."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assign_state(model, {k: v for k, v in state.items()})


# ---------------------------------------------------------------- writing checkpoints


def current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _save_fsync(obj, path: str) -> None:
    paddle.save(obj, path)
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def save_weights(state: dict, path: str) -> str:
    """Write a state_dict to ``path`` atomically (temp file + rename)."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".pdparams", dir=directory)
    os.close(fd)
    try:
        _save_fsync(state, tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def save_checkpoint(directory: str, *, epoch: int, model, optimizer=None, ema=None, scaler_state=None,
                    extra_meta: dict | None = None, labels: list[str] | None = None) -> str:
    """Write a complete checkpoint to ``directory`` atomically; returns the directory."""
    parent = os.path.dirname(os.path.abspath(directory))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(directory)}.tmp-", dir=parent)
    try:
        os.chmod(staging, 0o777 & ~current_umask())  # mkdtemp makes it 0700; a checkpoint follows the umask
        _save_fsync(model.state_dict(), os.path.join(staging, WEIGHTS))
        if optimizer is not None:
            _save_fsync(optimizer.state_dict(), os.path.join(staging, OPTIMIZER))
        if ema is not None:
            _save_fsync(ema.state_dict()["weights"], os.path.join(staging, EMA_WEIGHTS))
        if labels:  # a folder data set's class names: eval.py/infer.py name the classes by them
            with open(os.path.join(staging, "labels.txt"), "w", encoding="utf-8", newline="\n") as handle:
                handle.writelines(f"{index} {name}\n" for index, name in enumerate(labels))
        meta = {"epoch": epoch, "complete": True, **(extra_meta or {})}
        if ema is not None:
            meta["ema_updates"] = ema.updates
        if scaler_state is not None:
            meta["scaler"] = scaler_state
        with open(os.path.join(staging, META), "w", encoding="utf-8") as handle:
            json.dump(meta, handle, indent=1, default=str)
            handle.flush()
            os.fsync(handle.fileno())
        _fsync_dir(staging)
        if os.path.exists(directory):  # re-saving an epoch: move the old one aside, then replace
            old = directory + ".old"
            shutil.rmtree(old, ignore_errors=True)
            os.replace(directory, old)
            os.replace(staging, directory)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, directory)
        _fsync_dir(parent)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return directory


# ---------------------------------------------------------------- resuming


def read_meta(directory: str) -> dict | None:
    try:
        with open(os.path.join(directory, META), encoding="utf-8") as handle:
            meta = json.load(handle)
    except (OSError, ValueError):
        return None
    if not meta.get("complete") or not os.path.isfile(os.path.join(directory, WEIGHTS)):
        return None
    return meta


def latest_checkpoint(model_dir: str) -> str | None:
    """The complete checkpoint furthest into training under ``model_dir`` (by global step), or None.

    Staging directories (``.<name>.tmp-*``) and checkpoints without a complete meta.json are never picked.
    """
    if not os.path.isdir(model_dir):
        return None
    best, best_key = None, None
    for name in os.listdir(model_dir):
        if name.startswith("."):
            continue
        path = os.path.join(model_dir, name)
        meta = read_meta(path) if os.path.isdir(path) else None
        if meta is None:
            continue
        key = (int(meta.get("global_step", -1)), int(meta.get("epoch", -1)))
        if best_key is None or key > best_key:
            best, best_key = path, key
    return best


def load_checkpoint(directory: str, model, optimizer=None, ema=None, model_name: str = "") -> dict:
    """Restore a training state; returns the checkpoint's meta (``epoch`` is the last finished epoch)."""
    meta = read_meta(directory)
    if meta is None:
        raise UsageError(f"--checkpoint {directory}: not a complete checkpoint (no {META} or {WEIGHTS})")
    saved_model = meta.get("model")
    if model_name and saved_model and saved_model != model_name:
        raise UsageError(f"--checkpoint {directory}: saved from --model={saved_model}, not {model_name}")
    weights = load_state_file(os.path.join(directory, WEIGHTS), "--checkpoint")
    renames = parameter_renames(safe_load(os.path.join(directory, WEIGHTS)).get(PARAMETER_NAMES), model)
    own = model.state_dict()
    wrong = [k for k in own if k not in weights or list(weights[k].shape) != list(own[k].shape)]
    if wrong:
        raise UsageError(f"--checkpoint {directory}: weights do not fit this model ({len(wrong)} tensors differ, "
                         f"e.g. {wrong[0]}); was it saved with another --model or --class_dim?")
    assign_state_quietly(model, weights)
    if optimizer is not None and os.path.isfile(os.path.join(directory, OPTIMIZER)):
        state = load_state_file(os.path.join(directory, OPTIMIZER), "--checkpoint")
        optimizer.set_state_dict(optimizer_state_for_resume(state, renames))
    if ema is not None and os.path.isfile(os.path.join(directory, EMA_WEIGHTS)):
        ema.set_state_dict({"updates": meta.get("ema_updates", 0),
                            "weights": load_state_file(os.path.join(directory, EMA_WEIGHTS), "--checkpoint")})
    return meta


# ---------------------------------------------------------------- the run directory


class RunLock:
    """``<model_dir>/.lock``: one training run at a time writes checkpoints into a model directory.

    The lock is an flock on the open file, which the kernel drops when the process dies, so a crashed or
    killed run never blocks the next one; the file's text only names the holder for the error message.
    """

    def __init__(self, model_dir: str):
        self.path = os.path.join(model_dir, ".lock")
        self.handle = None

    def acquire(self) -> None:
        import fcntl
        import socket

        handle = open(self.path, "a+", encoding="utf-8")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise UsageError(f"{os.path.dirname(self.path)} is in use by another training run ({holder}); "
                             "wait for it to finish, or give this run another --model_save_dir") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        handle.flush()
        self.handle = handle

    def release(self) -> None:
        if self.handle is not None:
            try:
                os.unlink(self.path)  # while still held: no other run can be between its open and its flock
            except OSError:
                pass
            self.handle.close()  # closing drops the flock
            self.handle = None


def set_aside_checkpoints(model_dir: str) -> str | None:
    """Move every checkpoint in ``model_dir`` into a hidden ``.replaced-<time>`` folder (never deleted:
    a new run that starts over must not destroy the old one's work). Returns that folder, or None."""
    import time

    names = [n for n in os.listdir(model_dir) if not n.startswith(".")
             and os.path.isdir(os.path.join(model_dir, n)) and read_meta(os.path.join(model_dir, n))]
    if not names:
        return None
    target = os.path.join(model_dir, f".replaced-{time.strftime('%Y%m%d-%H%M%S')}")
    os.makedirs(target, exist_ok=True)
    for name in names:
        os.replace(os.path.join(model_dir, name), os.path.join(target, name))
    return target
