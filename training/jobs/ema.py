"""An exponential moving average of a network's weights (``train.ema_decay``).

After every optimiser step ``avg = d * avg + (1 - d) * weights`` for every floating-point
parameter and buffer (BatchNorm's running statistics included); integer buffers are copied.
``d`` warms up as ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates, so a short run is not
dominated by the weights it started from.

The trainer validates and checkpoints the average and trains on the raw weights:
``swapped_in`` puts the average into the network for the duration of a ``with`` block (yielding
a copy of the raw weights) and puts the raw weights back after it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn


class WeightAverage:
    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.updates = 0
        self.avg = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def rate(self) -> float:
        """The decay the next update uses."""
        return min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        d = self.rate()
        for k, v in model.state_dict().items():
            a = self.avg[k]
            if a.is_floating_point():
                a.mul_(d).add_(v.detach().to(a.dtype), alpha=1.0 - d)
            else:
                a.copy_(v)
        self.updates += 1

    @contextmanager
    def swapped_in(self, model: nn.Module) -> Iterator[dict[str, torch.Tensor]]:
        raw = {k: v.detach().clone() for k, v in model.state_dict().items()}
        model.load_state_dict(self.avg)
        try:
            yield raw
        finally:
            model.load_state_dict(raw)

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "updates": self.updates}

    def load(self, avg: dict[str, torch.Tensor], state: dict[str, Any]) -> None:
        """Resume: ``avg`` the averaged weights (a checkpoint's model_state), ``state`` from state_dict()."""
        self.avg = {k: v.detach().clone() for k, v in avg.items()}
        self.updates = int(state.get("updates", 0))
