"""Mixed precision: O1 autocast (--use_amp / --use_fp16), O2 pure fp16/bf16 with fp32 master weights
(--use_pure_fp16), static or dynamic loss scaling (--scale_loss, --use_dynamic_loss_scaling).

Paddle's CPU build has no fp16/bf16 conv kernels and disables GradScaler, so on CPU the flags are
accepted, one note says training stays fp32, and the scaler state still round-trips through checkpoints.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import paddle

from utils.errors import UsageError

AMP_DTYPES = ("float16", "bfloat16")


@dataclass(frozen=True)
class AmpSettings:
    enabled: bool  # requested by the user
    active: bool  # actually running reduced precision (a GPU is present)
    level: str  # O1 or O2
    dtype: str
    init_scale: float
    dynamic: bool

    @classmethod
    def from_args(cls, args, device: str) -> AmpSettings:
        enabled = bool(args.use_amp or args.use_pure_fp16)
        if args.amp_dtype not in AMP_DTYPES:
            raise UsageError(f"--amp_dtype {args.amp_dtype!r}: choose {' or '.join(AMP_DTYPES)}")
        # scale_loss 1.0 is the classic "unset"; dynamic scaling then starts from 2^15 as usual.
        init_scale = args.scale_loss if args.scale_loss != 1.0 or not args.use_dynamic_loss_scaling else 32768.0
        return cls(enabled, enabled and device == "gpu", "O2" if args.use_pure_fp16 else "O1", args.amp_dtype,
                   init_scale, bool(args.use_dynamic_loss_scaling))

    def note(self) -> str | None:
        if self.enabled and not self.active:
            return (f"note: mixed precision ({self.level}, {self.dtype}) needs a GPU; Paddle's CPU build has no "
                    "reduced-precision conv kernels, so training stays fp32 (loss scaling is inactive)")
        return None

    def make_scaler(self) -> paddle.amp.GradScaler:
        # bf16 has fp32's range: no loss scaling needed.
        use_scaling = self.active and self.dtype == "float16"
        if use_scaling:
            _check_scaler_can_report_overflow()
        return paddle.amp.GradScaler(enable=use_scaling, init_loss_scaling=self.init_scale,
                                     use_dynamic_loss_scaling=self.dynamic)

    def decorate(self, model, optimizer):
        """O2: cast the model to the reduced dtype, keep fp32 master weights; saved weights stay fp32."""
        if not (self.active and self.level == "O2"):
            return model, optimizer
        return paddle.amp.decorate(models=model, optimizers=optimizer, level="O2", dtype=self.dtype,
                                   master_weight=True, save_dtype="float32")

    def autocast(self):
        return paddle.amp.auto_cast(enable=self.active, level=self.level, dtype=self.dtype)


def scaler_state(scaler: paddle.amp.GradScaler) -> dict:
    """A JSON-serialisable scaler state: the loss scale as a float, the dynamic-scaling counters.

    ``AmpScaler.state_dict()`` (paddle/amp/grad_scaler.py) returns ``scale`` as a one-element numpy array
    and the rest as Python numbers; an empty dict when scaling is off.
    """
    state = {}
    for key, value in scaler.state_dict().items():
        if hasattr(value, "numpy"):  # a Tensor, in case a Paddle version returns one
            value = value.numpy()
        if isinstance(value, (np.ndarray, np.generic)):
            value = float(np.asarray(value, dtype=np.float64).reshape(-1)[0])
        state[key] = value
    return state


def restore_scaler(scaler: paddle.amp.GradScaler, state: dict | None) -> str | None:
    """Load a state written by :func:`scaler_state`; returns a note when the saved state cannot apply."""
    if not state:
        return None
    if not scaler.is_enable():
        return ("note: the checkpoint holds a loss-scaler state, but loss scaling is off in this run "
                "(fp32, bf16 or no GPU); it is not used")
    state = dict(state)
    scale = state["scale"]
    if isinstance(scale, str):  # written as "[32768.]" by earlier versions of this suite
        scale = scale.strip("[] ")
    # AmpScaler.load_state_dict reads state["scale"][0]
    state["scale"] = np.asarray([float(scale)], dtype=np.float32)
    scaler.load_state_dict(state)
    return None


def _check_scaler_can_report_overflow() -> None:
    """Paddle 3.3's ``AmpScaler._update`` prints ``float(self._scale)`` of a 1-element tensor at every
    overflow; with NumPy >= 2.4 that conversion raises TypeError, so fp16 training would crash at its first
    overflow (usually within the first steps). Refuse up front instead."""
    try:
        float(paddle.to_tensor([1.0]))
    except TypeError:
        import numpy

        raise UsageError(f"--use_amp/--use_pure_fp16 with float16: NumPy {numpy.__version__} breaks Paddle "
                         f"{paddle.__version__}'s loss scaler (float() of a 1-element tensor in "
                         "GradScaler._update); install numpy<2.4 (requirements.txt pins it)") from None
