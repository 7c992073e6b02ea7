"""Questions about a network's structure that need a forward pass: which BatchNorm reads
a layer's output (the pruning criterion folds it in; ONNX import restores BatchNorms that
export folded away)."""

from __future__ import annotations

import torch
from torch import nn


def following_batchnorm(model: nn.Module, x: torch.Tensor) -> dict[nn.Module, nn.Module]:
    """{conv / linear: the BatchNorm that reads its output directly}, found by one forward."""
    outs: dict[int, tuple[torch.Tensor, nn.Module]] = {}
    pairs: dict[nn.Module, nn.Module] = {}

    def after(m, _inp, out) -> None:
        if isinstance(out, torch.Tensor):
            outs[id(out)] = (out, m)

    def before_bn(m, inp) -> None:
        hit = outs.get(id(inp[0]))
        if hit is not None and hit[0] is inp[0]:
            pairs[hit[1]] = m

    hooks = []
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            hooks.append(m.register_forward_hook(after))
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            hooks.append(m.register_forward_pre_hook(before_bn))
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
        model.train(was)
    return pairs
