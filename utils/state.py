"""A model's tensors as training holds them, and writing saved values back into them in their own dtype.

Under O2 (``paddle.amp.decorate(level="O2", save_dtype="float32")``) the parameters are float16/bfloat16
while ``state_dict()`` returns float32 copies (a state-dict hook). Checkpoints, pretrained weights and the
EMA are float32; ``set_state_dict`` refuses a float32 value for a float16 parameter, so every write goes
through :func:`assign_state`, which casts each value to the dtype of the tensor it replaces.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np
import paddle


def live_tensors(model: paddle.nn.Layer) -> OrderedDict:
    """state_dict keys -> the model's own tensors (parameters and persistable buffers), in their real dtype.

    Unlike ``state_dict()``, no state-dict hook runs, so nothing is cast or copied.
    """
    keys = model.state_dict(use_hook=False).keys()
    named = dict(model.named_parameters())
    named.update((k, v) for k, v in model.named_buffers() if v is not None)
    return OrderedDict((k, named[k]) for k in keys if k in named)


def _as_tensor(value, dtype) -> paddle.Tensor:
    if isinstance(value, paddle.Tensor):
        tensor = value
    else:
        array = np.asarray(value)
        tensor = paddle.to_tensor(array)
    return tensor if tensor.dtype == dtype else tensor.astype(dtype)


@paddle.no_grad()
def assign_state(model: paddle.nn.Layer, state: dict) -> list[str]:
    """Copy ``state`` (arrays or tensors by state_dict key) into the model in place, each value cast to the
    dtype of the tensor it replaces. Returns the keys of the model that ``state`` did not have."""
    tensors = live_tensors(model)
    missing = []
    for key, tensor in tensors.items():
        if key not in state:
            missing.append(key)
            continue
        value = _as_tensor(state[key], tensor.dtype)
        if list(value.shape) != list(tensor.shape):
            raise ValueError(f"{key}: shape {list(value.shape)} does not fit {list(tensor.shape)}")
        tensor.set_value(value)
    return missing
