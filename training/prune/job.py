"""Layer-wise structured filter pruning with distillation (METHOD.md section 3).

``python -m training prune --config C --run-dir D [--resume] [--set ...]``

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

Order and schedule: groups are ordered by the execution position of their first
producing (non-depthwise) conv / linear; pruning goes from the last (the heads' hidden
layers, then features.18) to the first (features.0), ``prune.layers_per_step`` groups
per step, keeping round((1 - alpha) * n) (at least 1) of each group's n channels. The
heads' final outputs (``reg_head.fc2``, ``hm_head.out``) and the input are never
pruned; ``prune.ignore`` adds module-name prefixes to leave alone. Each step is followed
by ``prune.finetune_steps`` optimiser steps with loss_t (distillation from
``distill.teacher`` when set, else LOSS), and the run ends with ``prune.final_epochs``
epochs of fine-tuning at ``train.lr`` with the usual schedule.

Per step (and for the dense start and the final model) a row goes to
``prune_steps.csv`` and a ``step`` event: params, MACs, ONNX size, onnxruntime latency
(1 thread, batch 1, median of ``prune.latency_runs`` runs after 20 warm-up runs),
validation ION NME, and the scoring time. At the end: ``prune_nme_latency.png`` and
the ONNX export of the best final model (``train.export_name``, default
``student-<keep>x``, e.g. ``student-0.25x`` for alpha = 0.75). Checkpoints hold the
whole pruned model; ``--resume`` continues at the step / fine-tuning position saved.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import json
import logging
import math
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import torch_pruning as tp
from torch import nn

from training.config import RunConfig, load_config
from training.distill.job import (
    FeatureDistiller,
    FrozenTeacher,
    build_distiller,
    check_geometry,
    make_distill_loss,
    single_process_only,
    unaugmented,
)
from training.jobs.engine import (
    CancelFlag,
    Cancelled,
    Trainer,
    TrainingError,
    evaluate,
    load_data,
    make_datasets,
    pick_device,
)
from training.events import EventStream
from training.jobs.onnx_export import _onnx_export, run_onnx
from training.nets.networks import ExportWrapper, count_macs, count_params

log = logging.getLogger(__name__)

ALWAYS_KEEP = ("reg_head.fc2", "hm_head.out")  # the heads' final outputs: never pruned
IMPORTANCES = ("reconstruction", "l1")
CSV_COLUMNS = ("step", "layers", "channels", "params", "macs", "onnx_bytes", "latency_ms", "nme_ion", "decode",
               "score_time_s", "score_cpu_s", "prune_time_s", "finetune_time_s")


class _AllConsumersSeen(Exception):
    """Raised from a hook to stop a calibration forward pass early."""


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


# -- the dependency graph and the plan --------------------------------------------------
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
    return [m for n, m in model.named_modules() if n and any(n == p or n.startswith(p + ".") for p in keep)]


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


def keep_count(n: int, alpha: float) -> int:
    return max(1, int(math.floor(n * (1.0 - alpha) + 0.5)))


def prune_layer(dg: tp.DependencyGraph, module: nn.Module, importance: tp.importance.Importance,
                alpha: float) -> dict[str, Any]:
    """Score the group rooted at ``module`` and remove its lowest-scoring alpha share."""
    pruner = dg.get_pruner_of_module(module)
    n = pruner.get_out_channels(module)
    group = dg.get_pruning_group(module, pruner.prune_out_channels, list(range(n)))
    t0, c0 = time.perf_counter(), time.process_time()
    scores = importance(group)
    t_score, c_score = time.perf_counter() - t0, time.process_time() - c0
    keep = keep_count(n, alpha)
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


# -- measurement ---------------------------------------------------------------------------
def onnx_latency_ms(path: Path, input_size: int, runs: int = 200, warmup: int = 20) -> float:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((1, 3, input_size, input_size)).astype(np.float32)
    for _ in range(warmup):
        sess.run(None, {"input": x})
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        sess.run(None, {"input": x})
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e3)


def measure(model: nn.Module, input_size: int, latency_runs: int = 200) -> dict[str, Any]:
    """params, MACs, ONNX file size (float32 weights) and onnxruntime latency (1 thread, batch 1)."""
    m = copy.deepcopy(model).cpu().float().eval().to(memory_format=torch.contiguous_format)
    res: dict[str, Any] = {"params": count_params(m), "macs": count_macs(m, input_size)}
    outputs = ["coords", "heatmaps"] if getattr(m, "hm_head", None) is not None else ["coords"]
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "m.onnx"
        _onnx_export(ExportWrapper(m).eval(), torch.randn(1, 3, input_size, input_size), p, outputs)
        res["onnx_bytes"] = p.stat().st_size
        res["latency_ms"] = onnx_latency_ms(p, input_size, latency_runs) if latency_runs > 0 else float("nan")
        with torch.no_grad():
            x = torch.randn(2, 3, input_size, input_size)
            ref = m(x)["coords"].numpy()
        res["onnx_parity"] = float(np.abs(run_onnx(p, x.numpy())[0] - ref).max())
    return res


def val_record(metrics: dict[str, dict], select: str = "nme_ion") -> dict[str, Any]:
    mode, rec = min(metrics.items(), key=lambda kv: kv[1][select])
    return {"nme_ion": rec[select], "decode": mode}


def write_csv(rows: list[dict], path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: (";".join(map(str, r[k])) if isinstance(r.get(k), (list, tuple)) else r.get(k, ""))
                        for k in CSV_COLUMNS})
    tmp.replace(path)


def plot_nme_latency(rows: list[dict], path: Path, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=120)
    xs = [r["latency_ms"] for r in rows]
    ys = [r["nme_ion"] for r in rows]
    ax.plot(xs, ys, "-o", ms=3, lw=1, color="tab:blue", label="after each step")
    for r in rows:
        if r["step"] in (0, "final"):
            ax.annotate("dense" if r["step"] == 0 else "final", (r["latency_ms"], r["nme_ion"]), fontsize=8,
                        xytext=(4, 4), textcoords="offset points")
    if rows and rows[-1]["step"] == "final":
        ax.plot([xs[-1]], [ys[-1]], "*", ms=12, color="tab:red", label="final (after fine-tuning)")
    ax.set_xlabel("onnxruntime latency, ms (1 thread, batch 1)")
    ax.set_ylabel("val NME (ION), %")
    ax.set_title(title or "pruning: NME vs latency")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# -- the job -------------------------------------------------------------------------------
def default_export_name(alpha: float) -> str:
    return f"student-{round(1.0 - alpha, 4):g}x"


def _check_prune_cfg(cfg: RunConfig) -> None:
    p = cfg.prune
    if not 0.0 <= p.alpha < 1.0:
        raise TrainingError(f"prune.alpha must be in [0, 1), got {p.alpha}")
    if p.importance not in IMPORTANCES:
        raise TrainingError(f"prune.importance must be one of {IMPORTANCES}, got {p.importance!r}")
    if p.layers_per_step < 1 or p.finetune_steps < 0 or p.final_epochs < 0 or p.calib_images < 1:
        raise TrainingError("prune: layers_per_step >= 1, finetune_steps >= 0, final_epochs >= 0, calib_images >= 1")


def run_prune(cfg: RunConfig, run_dir: Path, resume: bool = False, cancel: CancelFlag | None = None,
              events: EventStream | None = None, export: bool = True) -> dict:
    """Prune ``prune.student`` layer by layer with fine-tuning; see the module docstring."""
    from training.jobs.checkpoints import model_from_checkpoint, read_checkpoint
    from training.jobs.train import export_best, prepare_run_dir

    single_process_only("prune")
    _check_prune_cfg(cfg)
    p = cfg.prune
    t0 = time.time()
    device = pick_device(cfg.train.device)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    torch.manual_seed(cfg.train.seed)
    ckpt = run_dir / "checkpoints" / "last.pt"
    st: dict[str, Any] = {}
    if resume:
        if not ckpt.is_file():
            raise TrainingError(f"{run_dir}: nothing to resume (no checkpoints/last.pt)")
        st = read_checkpoint(ckpt)
        model = st["model_object"]
        model.load_state_dict(st["model_state"])
        state = st["extra"]
        cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, **st["model_config"]))
        student_aux = None
        folded_bn = []
    else:
        if not p.student:
            raise TrainingError("prune.student is empty: set it to the (distilled) student's checkpoint (.pt) "
                                "or shipped .onnx")
        model, scfg, sst = model_from_checkpoint(p.student)
        if scfg.model.num_points != cfg.model.num_points:
            raise TrainingError(f"{p.student} predicts {scfg.model.num_points} points, the config says "
                                f"{cfg.model.num_points}")
        cfg = dataclasses.replace(cfg, model=scfg.model)  # the student's own architecture is authoritative
        student_aux = sst.get("aux_state")
        folded_bn = sst.get("folded_bn") or []  # a shipped .onnx student: BatchNorms to recalibrate
        state = {"format": "kpdesk-prune/1", "plan": [], "steps": [], "done": 0, "rows": [], "phase": "prune",
                 "student": p.student}
    prepare_run_dir(run_dir, cfg, resume)
    events = events or EventStream(run_dir)
    cancel = cancel or CancelFlag()
    model.to(device).train()
    for q in model.parameters():
        q.requires_grad_(True)
    s_in = cfg.model.input_size

    train, val, schema = load_data(cfg)
    tr_ds, va_ds = make_datasets(cfg, train, val, schema)
    teacher = distiller = None
    if cfg.distill.teacher:
        teacher = FrozenTeacher(cfg.distill.teacher, device, cfg.distill.teacher_amp, cfg.train.channels_last)
        check_geometry(cfg, teacher)
        if resume:
            distiller = FeatureDistiller(model.backbone.out_channels, teacher.feat_channels, cfg.distill.proj_dim)
            distiller.load_state_dict(st["aux_state"])
        else:
            distiller = build_distiller(cfg, model, teacher, unaugmented(cfg, train[:128], schema))
            if student_aux is not None:
                try:  # keep the distilled student's projection (same teacher, same dims)
                    distiller.load_state_dict(student_aux)
                    events.emit("log", message="distillation projections taken from the student checkpoint")
                except RuntimeError:
                    pass
        distiller.to(device)
    rng = np.random.default_rng((cfg.train.seed, 11))
    calib_idx = rng.permutation(len(train))[: p.calib_images]
    calib_ds = unaugmented(cfg, [train[i] for i in calib_idx], schema)
    calib = torch.stack([calib_ds[i]["image"] for i in range(len(calib_ds))]).to(device)
    if folded_bn:
        from training.jobs.onnx_import import recalibrate_folded_bn

        k = recalibrate_folded_bn(model, folded_bn, calib)
        events.emit("log", message=f"{k} BatchNorm layers folded in {p.student} recalibrated on {len(calib)} crops")
    importance = make_importance(p.importance, model, calib)
    loss_fn = make_distill_loss(cfg, teacher, distiller)
    proj = distiller.student_proj if distiller is not None else None

    def snapshot() -> dict:
        return json.loads(json.dumps(state))

    def new_trainer(tcfg: RunConfig, tag: str) -> Trainer:
        return Trainer(tcfg, model, run_dir, events, tr_ds, va_ds, loss_fn=loss_fn, aux=distiller, cancel=cancel,
                       device=device, checkpoint_extra=snapshot, save_whole_model=True, tag=tag)

    def log_row(row: dict) -> None:
        state["rows"].append(row)
        write_csv(state["rows"], run_dir / "prune_steps.csv")
        events.emit("step", **row, steps=len(state["steps"]))

    keep = 1.0 - p.alpha
    if not resume:
        dg = build_graph(model, s_in, proj)
        extra_ign = [proj] if proj is not None else []
        plan = plan_layers(model, dg, s_in, p.ignore, extra_ign)
        state["plan"] = [asdict(ly) for ly in plan]
        state["steps"] = [[ly.root for ly in plan[i:i + p.layers_per_step]]
                          for i in range(0, len(plan), p.layers_per_step)]
        events.emit("log", message=f"{len(plan)} prunable layers in {len(state['steps'])} steps, "
                                   f"alpha {p.alpha} (keep {keep:.0%}), importance {p.importance}")
        m0 = measure(model, s_in, p.latency_runs)
        v0 = val_record(evaluate(model, va_ds, device, cfg.train.decode_eval, cfg.model.heatmap_size, cfg.train.sigma),
                        cfg.train.select)
        log_row({"step": 0, "layers": [], "channels": [], **m0, **v0, "score_time_s": 0.0, "score_cpu_s": 0.0,
                 "prune_time_s": 0.0, "finetune_time_s": 0.0})

    ft_cfg = dataclasses.replace(cfg, train=dataclasses.replace(
        cfg.train, epochs=1, max_steps_per_epoch=p.finetune_steps, lr_steps=()))

    def finish_step(trainer: Trainer, info: dict) -> None:
        t1 = time.time()
        if trainer.epoch < 1:
            if p.finetune_steps > 0:
                trainer.fit(1)
            else:  # no fine-tuning: just validate and checkpoint
                val = trainer.validate()
                mode = min(val, key=lambda k: val[k][cfg.train.select])
                trainer.best = {"score": val[mode][cfg.train.select], "epoch": 1, "decode": mode, "metrics": val}
                trainer.epoch = 1
                trainer.save("last.pt")
                trainer.save("best.pt")
        row = {**info, **measure(model, s_in, p.latency_runs), **val_record(trainer.best["metrics"], cfg.train.select),
               "finetune_time_s": time.time() - t1}
        log_row(row)

    trainer: Trainer | None = None
    n_steps = len(state["steps"])
    if resume and state["phase"] == "prune" and state["done"] > len(state["rows"]) - 1:
        trainer = new_trainer(ft_cfg, f"prune-step-{state['done']}")
        trainer.resume(ckpt)
        finish_step(trainer, state["pending"])
    while state["phase"] == "prune" and state["done"] < n_steps:
        if cancel.is_set():
            events.emit("cancelled", epoch=0, step=state["done"], checkpoint=str(ckpt))
            raise Cancelled()
        k = state["done"]
        dg = build_graph(model, s_in, proj)
        named = dict(model.named_modules())
        layers, chans, t_score, c_score, t_prune = [], [], 0.0, 0.0, 0.0
        for root in state["steps"][k]:
            r = prune_layer(dg, named[root], importance, p.alpha)
            layers.append(root)
            chans.append(f"{r['before']}->{r['after']}")
            t_score += r["score_time_s"]
            c_score += r["score_cpu_s"]
            t_prune += r["prune_time_s"]
        state["done"] = k + 1
        state["pending"] = {"step": k + 1, "layers": layers, "channels": chans, "score_time_s": t_score,
                            "score_cpu_s": c_score, "prune_time_s": t_prune}
        trainer = new_trainer(ft_cfg, f"prune-step-{k + 1}")
        finish_step(trainer, state["pending"])

    if state["phase"] == "prune":
        state["phase"] = "final"
        resume_final = False
    else:
        resume_final = resume
    if p.final_epochs > 0 or trainer is None:
        fcfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, epochs=max(p.final_epochs, 1)))
        trainer = new_trainer(fcfg, "prune-final")
        if resume_final:
            trainer.resume(ckpt)
        if p.final_epochs > 0:
            trainer.fit(p.final_epochs)
        else:
            trainer.best = read_checkpoint(run_dir / "checkpoints" / "best.pt").get("best", {})
    best_model = read_checkpoint(run_dir / "checkpoints" / "best.pt")["model_object"]
    fin = {"step": "final", "layers": [], "channels": [], **measure(best_model, s_in, p.latency_runs),
           **val_record(trainer.best["metrics"], cfg.train.select), "score_time_s": 0.0, "score_cpu_s": 0.0,
           "prune_time_s": 0.0,
           "finetune_time_s": 0.0}
    if state["rows"][-1].get("step") != "final":
        log_row(fin)
    plot_nme_latency(state["rows"], run_dir / "prune_nme_latency.png",
                     f"{p.importance} pruning, alpha {p.alpha} (keep {keep:.0%})")
    wall = time.time() - t0
    dense = state["rows"][0]
    result = {"final": {k: fin[k] for k in ("params", "macs", "onnx_bytes", "latency_ms", "nme_ion", "decode")},
              "dense": {k: dense[k] for k in ("params", "macs", "onnx_bytes", "latency_ms", "nme_ion", "decode")},
              "steps": n_steps, "csv": str(run_dir / "prune_steps.csv"), "wall_time_s": wall,
              "score_time_s_per_layer": _per_layer(state["rows"], "score_time_s"),
              "score_cpu_s_per_layer": _per_layer(state["rows"], "score_cpu_s")}
    (run_dir / "prune_summary.json").write_text(json.dumps(result, indent=2) + "\n")
    if export:
        name = cfg.train.export_name or default_export_name(p.alpha)
        out = export_best(trainer, run_dir, name, {"pruned": {"alpha": p.alpha, "importance": p.importance,
                                                              "from": Path(state["student"]).name,
                                                              "dense_params": dense["params"]},
                                                   "wall_time_s": round(wall, 1)}, model=best_model)
        result["onnx"] = str(out)
    events.emit("done", **result)
    return result


def _per_layer(rows: list[dict], key: str) -> float:
    n = sum(len(r["layers"]) for r in rows)
    return sum(r.get(key, 0.0) for r in rows if r["layers"]) / max(n, 1)


def _add_args(parser) -> None:
    from training.cli import _add_job_args

    _add_job_args(parser)


def cmd_prune(args, events: EventStream | None, cancel: CancelFlag) -> dict:
    cfg = load_config(args.config, args.set)
    return run_prune(cfg, Path(args.run_dir).expanduser().resolve(), resume=args.resume, cancel=cancel,
                     export=not args.no_export)


COMMANDS = {
    "prune": ("Prune the student layer by layer (reconstruction error or L1) with distillation fine-tuning.",
              _add_args, cmd_prune),
}
