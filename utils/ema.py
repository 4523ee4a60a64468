"""Exponential moving average of model weights (parameters and BatchNorm statistics)."""
from __future__ import annotations

import paddle


class ModelEMA:
    """ema = decay * ema + (1 - decay) * weights, after every optimizer step.

    The effective decay is min(decay, (1 + n) / (10 + n)) for update n, so early averages are not
    dominated by the random initialisation (the classic suite's thres_steps behaviour).
    """

    def __init__(self, model: paddle.nn.Layer, decay: float):
        self.decay = decay
        self.updates = 0
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @paddle.no_grad()
    def update(self, model: paddle.nn.Layer) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for key, value in model.state_dict().items():
            shadow = self.shadow[key]
            if paddle.is_floating_point(value):
                shadow.set_value(shadow * decay + value.detach() * (1 - decay))
            else:
                shadow.set_value(value.detach())

    def state_dict(self) -> dict:
        return {"updates": self.updates, "decay": self.decay, "weights": self.shadow}

    def set_state_dict(self, state: dict) -> None:
        self.updates = int(state["updates"])
        for key, value in state["weights"].items():
            self.shadow[key].set_value(value)

    def swap_into(self, model: paddle.nn.Layer) -> dict:
        """Load the averaged weights into ``model``; returns the live weights to restore afterwards."""
        live = {k: v.detach().clone() for k, v in model.state_dict().items()}
        model.set_state_dict(self.shadow)
        return live
