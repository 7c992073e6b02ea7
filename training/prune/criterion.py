"""The pruning criterion: which channels of a layer go (METHOD.md section 3, eq. 7).

Torch-Pruning's DependencyGraph does all channel bookkeeping (BatchNorm, MobileNetV2's
depthwise and residual couplings, the heads' inputs, the distillation projection's
input). This module only decides WHICH channels go, through importance objects that
follow Torch-Pruning's interface (``Importance.__call__(group) -> (n,) scores``):

* ``reconstruction`` (the paper's eq. 7), :class:`ReconstructionImportance`.
  A "layer" t is one Torch-Pruning group: the convolution(s) whose output channels
  must go together (an inverted-residual block's expand conv + its depthwise conv; all
  projection convs tied by residual additions; ...). Removing channel i of the group
  removes input channel i of every *consumer*, the next non-depthwise conv / linear
  layers t+1 that read the group's channels. So Score(i) = sum over consumers of
  mean_l mean_{o,p} (Delta M_{t+1})^2, where Delta M_{t+1} is the change of the
  consumer's output when its input channel i is zeroed. We measure M_{t+1} at the
  consumer's BatchNorm output (conv + BN = the layer's linear part; BN in eval mode is
  a per-channel affine map, so its scale is folded into the weights), before the
  nonlinearity. Because that map is linear in the input, the change is exactly
  conv(x_i, W'[:, i]) with x_i the consumer's actual input channel i over the L
  calibration images: for 1x1 convs and linears it is ||W'[:, i]||^2 * sum x_i^2 in
  closed form; for k x k convs it is one grouped convolution (chunked over channels).
  One forward pass over the calibration images (stopped as soon as all consumers
  have been seen) scores every filter of the layer at once; nothing is re-run per
  filter. This measures exactly the network after removal ("zeroing filter i" here
  means zeroing the whole channel: conv weights AND BN shift, so a filter whose weights
  and BN affine are zero scores 0; zeroing only the conv weights would leave BN's
  constant, which removal then drops, so the score would miss that error).
* ``l1``: the classic L1 norm of each filter of the group's root conv
  (``tp.importance.GroupMagnitudeImportance(p=1, group_reduction="first")``).
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
import torch_pruning as tp
from torch import nn

from training.jobs.engine import TrainingError
from training.nets.graph import following_batchnorm

IMPORTANCES = ("reconstruction", "l1")


class _AllConsumersSeen(Exception):
    """Raised from a hook to stop a calibration forward pass early."""


def _bn_scale(bn: nn.Module | None, n: int, device: torch.device) -> torch.Tensor:
    if bn is None:
        return torch.ones(n, device=device)
    s = torch.rsqrt(bn.running_var.float() + bn.eps)
    return s * bn.weight.float() if bn.weight is not None else s


def consumer_error(m: nn.Module, x: torch.Tensor, idx: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Sum over the batch of mean_{o,p} (Delta out)^2 when input channel idx[j] of ``m``
    is zeroed, for each j; ``scale`` (O,) is the folded BatchNorm scale. Returns (len(idx),)."""
    w = m.weight.float() * scale.view(-1, *([1] * (m.weight.dim() - 1)))
    o = w.shape[0]
    if isinstance(m, nn.Linear):
        xr = x.reshape(x.shape[0], -1, x.shape[-1])
        col = w[:, idx].pow(2).sum(0)
        return xr[..., idx].pow(2).sum((0, 1)) * col / (o * xr.shape[1])
    if m.groups != 1 or m.padding_mode != "zeros":
        raise TrainingError(f"reconstruction importance: unsupported consumer {m} (groups / padding mode)")
    if m.kernel_size == (1, 1) and m.padding in ((0, 0), "valid"):
        xs = x[:, idx, :: m.stride[0], :: m.stride[1]]
        col = w[:, idx, 0, 0].pow(2).sum(0)
        return xs.pow(2).sum((0, 2, 3)) * col / (o * xs.shape[2] * xs.shape[3])
    kh, kw = m.kernel_size
    res = torch.empty(len(idx), device=x.device)
    # per-channel outputs are (B, O, H', W'): bound the chunk's memory to ~2^24 floats
    per_ch = x.shape[0] * o * x.shape[2] * x.shape[3] // (m.stride[0] * m.stride[1])
    chunk = max(1, (1 << 24) // max(per_ch, 1))
    for c0 in range(0, len(idx), chunk):
        ci = idx[c0:c0 + chunk]
        wk = w[:, ci].transpose(0, 1).reshape(len(ci) * o, 1, kh, kw)
        y = F.conv2d(x[:, ci], wk, None, m.stride, m.padding, m.dilation, groups=len(ci))
        res[c0:c0 + len(ci)] = y.view(y.shape[0], len(ci), o, -1).pow(2).sum((0, 2, 3)) / (o * y[0, 0].numel())
    return res


class ReconstructionImportance(tp.importance.Importance):
    """The paper's eq. 7 as a Torch-Pruning importance (see the module docstring).

    ``model``: the network to score (consumers outside it, e.g. a distillation
    projection traced into the same graph, are ignored). ``calib``: (L, 3, S, S)
    un-augmented training crops. ``last_time_s``: the duration of the last call.
    """

    def __init__(self, model: nn.Module, calib: torch.Tensor, batch_size: int = 32) -> None:
        self.model = model
        self.calib = calib
        self.batch_size = batch_size
        self.last_time_s = 0.0
        self._scope = set(model.modules())
        self._bn = following_batchnorm(model, calib[:2])

    def consumers(self, group) -> list[tuple[nn.Module, list[int], list[int]]]:
        """(module, its input-channel indices, the matching root indices) for each consumer."""
        dg = group._DG
        out = []
        for i in range(len(group)):
            item = group[i]
            m = item.dep.target.module
            if m not in self._scope or not dg.is_in_channel_pruning_fn(item.dep.handler):
                continue
            if isinstance(m, nn.Linear) or (isinstance(m, nn.Conv2d) and m.groups == 1):
                out.append((m, list(item.idxs), list(item.root_idxs)))
            elif isinstance(m, nn.Conv2d) and m.groups != m.in_channels:
                raise TrainingError(f"reconstruction importance: grouped conv {m} reads a pruned channel")
        return out

    @torch.no_grad()
    def __call__(self, group) -> torch.Tensor:
        t0 = time.perf_counter()
        n = len(group[0].idxs)
        cons = self.consumers(group)
        if not cons:
            raise TrainingError(f"reconstruction importance: no consumer layer for group rooted at "
                                f"{group[0].dep.target.module}")
        device = self.calib.device
        acc = [torch.zeros(len(c[1]), device=device) for c in cons]
        idx_t = [torch.as_tensor(c[1], device=device) for c in cons]
        scales = [_bn_scale(self._bn.get(m), m.weight.shape[0], device) for m, _, _ in cons]
        seen: set[int] = set()

        def make_hook(k: int):
            def hook(m, inp) -> None:
                acc[k] += consumer_error(m, inp[0].float(), idx_t[k], scales[k])
                seen.add(k)
                if len(seen) == len(cons):
                    raise _AllConsumersSeen()
            return hook

        hooks = [m.register_forward_pre_hook(make_hook(k)) for k, (m, _, _) in enumerate(cons)]
        was = self.model.training
        self.model.eval()
        try:
            for i in range(0, len(self.calib), self.batch_size):
                seen.clear()
                try:
                    self.model(self.calib[i:i + self.batch_size])
                except _AllConsumersSeen:
                    pass
        finally:
            for h in hooks:
                h.remove()
            self.model.train(was)
        score = torch.zeros(n, device=device)
        for (_, _, root), a in zip(cons, acc):
            score.index_add_(0, torch.as_tensor(root, device=device), a / len(self.calib))
        self.last_time_s = time.perf_counter() - t0
        return score.cpu()


def make_importance(name: str, model: nn.Module, calib: torch.Tensor | None = None) -> tp.importance.Importance:
    if name == "reconstruction":
        if calib is None:
            raise ValueError("reconstruction importance needs calibration images")
        return ReconstructionImportance(model, calib)
    if name == "l1":
        return tp.importance.GroupMagnitudeImportance(p=1, group_reduction="first", normalizer=None,
                                                      target_types=[nn.modules.conv._ConvNd, nn.Linear])
    raise ValueError(f"prune.importance must be one of {IMPORTANCES}, got {name!r}")
