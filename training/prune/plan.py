"""The pruning plan and the surgery: Torch-Pruning's dependency graph of the student, the
prunable layers in pruning order, and the removal of a layer's lowest-scoring channels.

Order and schedule: groups are ordered by the execution position of their first
producing (non-depthwise) conv / linear; pruning goes from the last (the heads' hidden
layers, then features.18) to the first (features.0), ``prune.layers_per_step`` groups
per step, keeping round((1 - alpha) * n) (at least 1) of each group's n channels, alpha
being ``prune.alpha`` or, for the layers a prefix of ``prune.alpha_by_prefix`` names, its own. The
heads' final outputs (``reg_head.fc2``, ``hm_head.out``) and the input are never
pruned; ``prune.ignore`` adds module-name prefixes to leave alone. Each step is followed
by ``prune.finetune_steps`` optimiser steps with loss_t (distillation from
``distill.teacher`` when set, else LOSS), at most one pass over the training set (the
steps are one epoch's, capped; the job logs the count that runs), and the run ends with ``prune.final_epochs``
epochs of fine-tuning at ``train.lr`` with the usual schedule.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import torch
import torch_pruning as tp
from torch import nn

from training.jobs.engine import TrainingError

ALWAYS_KEEP = ("reg_head.fc2", "hm_head.out")  # the heads' final outputs: never pruned


class _Traced(nn.Module):
    """The student (+ the distillation projection, whose input channels must follow
    features.18) as one module, so Torch-Pruning sees every reader of each channel."""

    def __init__(self, net: nn.Module, proj: nn.Module | None) -> None:
        super().__init__()
        self.net, self.proj = net, proj

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = self.net(x)
        res = [out["coords"]] + ([out["heatmaps"]] if "heatmaps" in out else [])
        if self.proj is not None:
            res.append(self.proj(out["feat"].mean(dim=(2, 3), keepdim=True)))
        return res


def build_graph(model: nn.Module, input_size: int, proj: nn.Module | None = None) -> tp.DependencyGraph:
    was = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        dg = tp.DependencyGraph().build_dependency(_Traced(model, proj),
                                                   example_inputs=torch.randn(1, 3, input_size, input_size,
                                                                              device=device))
    finally:
        model.train(was)
    return dg


@dataclass(frozen=True)
class PruneLayer:
    """One prunable layer t = one dependency group, named by its root module."""

    root: str  # first producing non-depthwise conv / linear of the group (execution order)
    members: tuple[str, ...]  # every conv / linear whose output channels the group removes
    position: int  # execution index of the root
    channels: int  # dense channel count


def _is_depthwise(m: nn.Module) -> bool:
    return isinstance(m, nn.Conv2d) and m.groups > 1 and m.groups == m.in_channels == m.out_channels


def execution_order(model: nn.Module, input_size: int) -> dict[nn.Module, int]:
    order: dict[nn.Module, int] = {}

    def hook(mod, _inp) -> None:
        order.setdefault(mod, len(order))

    hooks = [m.register_forward_pre_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, input_size, input_size, device=next(model.parameters()).device))
    finally:
        for h in hooks:
            h.remove()
        model.train(was)
    return order


def ignored_modules(model: nn.Module, prefixes: tuple[str, ...] = ()) -> list[nn.Module]:
    keep = tuple(ALWAYS_KEEP) + tuple(prefixes)
    return [m for n, m in model.named_modules() if n and any(_under(n, p) for p in keep)]


def plan_layers(model: nn.Module, dg: tp.DependencyGraph, input_size: int, ignore: tuple[str, ...] = (),
                extra_ignored: list[nn.Module] | None = None) -> list[PruneLayer]:
    """The prunable layers in pruning order: from the last to the first."""
    names = {m: n for n, m in model.named_modules()}
    order = execution_order(model, input_size)
    ign = ignored_modules(model, ignore) + list(extra_ignored or [])
    layers = []
    for group in dg.get_all_groups(ignored_layers=ign, root_module_types=(nn.Conv2d, nn.Linear)):
        members = [d.target.module for d, _ in group
                   if dg.is_out_channel_pruning_fn(d.handler) and isinstance(d.target.module, (nn.Conv2d, nn.Linear))
                   and d.target.module in names]
        producers = sorted((m for m in members if not _is_depthwise(m)), key=lambda m: order.get(m, -1))
        if not producers:
            continue
        root = producers[0]
        layers.append(PruneLayer(names[root], tuple(sorted(names[m] for m in members)), order[root],
                                 len(group[0].idxs)))
    return sorted(layers, key=lambda ly: -ly.position)


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def layer_alphas(layers: list[PruneLayer], alpha: float, by_prefix: dict[str, float] | None = None) -> dict[str, float]:
    """Each layer's pruning share, by its root's name: the longest prefix of ``by_prefix`` that
    names it, else ``alpha``. A prefix that names no layer is an error (a typo would otherwise
    silently prune that layer at ``alpha``)."""
    by_prefix = by_prefix or {}
    unused = [p for p in by_prefix if not any(_under(ly.root, p) for ly in layers)]
    if unused:
        raise TrainingError(f"prune.alpha_by_prefix: {unused} name no prunable layer; the layers are "
                            f"{[ly.root for ly in layers]}")
    out = {}
    for ly in layers:
        hits = [p for p in by_prefix if _under(ly.root, p)]
        out[ly.root] = by_prefix[max(hits, key=len)] if hits else alpha
    return out


def keep_count(n: int, alpha: float, multiple: int = 1) -> int:
    """Channels kept of ``n`` when the share ``alpha`` is pruned: rounded to the nearest multiple of
    ``multiple`` (at least one multiple, never more than ``n``). onnxruntime's int8 convolutions run
    channel counts off a multiple of 8 or 16 about 1.6x slower (docs/results/chain_session11.md)."""
    if multiple < 1:
        raise ValueError(f"keep_count: multiple must be >= 1, got {multiple}")
    keep = max(1, int(math.floor(n * (1.0 - alpha) / multiple + 0.5))) * multiple
    return min(n, keep)


def prune_layer(dg: tp.DependencyGraph, module: nn.Module, importance: tp.importance.Importance,
                alpha: float, multiple: int = 1) -> dict[str, Any]:
    """Score the group rooted at ``module`` and remove its lowest-scoring alpha share (the count
    kept rounded to ``multiple``, see ``keep_count``)."""
    pruner = dg.get_pruner_of_module(module)
    n = pruner.get_out_channels(module)
    group = dg.get_pruning_group(module, pruner.prune_out_channels, list(range(n)))
    t0, c0 = time.perf_counter(), time.process_time()
    scores = importance(group)
    t_score, c_score = time.perf_counter() - t0, time.process_time() - c0
    keep = keep_count(n, alpha, multiple)
    ranked = torch.argsort(scores.float().cpu(), descending=True, stable=True)
    remove = sorted(ranked[keep:].tolist())
    t1 = time.perf_counter()
    if remove:
        g = dg.get_pruning_group(module, pruner.prune_out_channels, remove)
        if not dg.check_pruning_group(g):
            raise TrainingError(f"torch-pruning refused to prune {module} to {keep} channels")
        g.prune()
    return {"before": n, "after": keep, "score_time_s": t_score, "score_cpu_s": c_score,
            "prune_time_s": time.perf_counter() - t1}
