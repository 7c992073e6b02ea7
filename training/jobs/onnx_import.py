"""Rebuild a trainable PyTorch ``LandmarkNet`` from a shipped ``NAME.onnx`` + ``NAME.json``.

So every stage can start from what is committed in ``models/`` (no checkpoint needed):
``distill.teacher``, ``prune.student`` and ``train.init_checkpoint`` accept a ``.onnx``
path wherever they accept a checkpoint (``training.jobs.checkpoints.read_checkpoint``).

How the tensors are matched. ``training.jobs.onnx_export`` writes the graph with the TorchScript
exporter and constant folding, which renames and folds initializers:

* Every Conv-BatchNorm pair becomes one ``Conv`` whose weight and bias are anonymous
  (``onnx::Conv_593``); BN's scale, shift and statistics are folded into them.
* A ``Linear`` becomes ``Gemm`` (with a bias) or ``MatMul`` (weight transposed, no bias).
* With ``fp16_weights`` (the teacher) a large initializer is stored as ``NAME__fp16`` and
  read through a ``Cast`` to float32.

Only initializers that are not folded keep their PyTorch names (``net.reg_head.fc2.weight``).
So tensors are matched by the *name of the module* that produced each operator: a node
name records the module scope it was traced in (``/net/backbone/features.1/conv/conv.0/
conv.0.0/Conv`` -> ``backbone.features.1.conv.0.0``), and each scope segment is resolved
against the model's ``named_modules``. Conv / Gemm / MatMul / BatchNormalization nodes are
mapped; every other node must hold no weights. Anything left over on either side (a module
of the model that no node fills, a weight node that names no module, an initializer no
mapped node reads) is an ``OnnxImportError`` that lists the names.

The model is built from the manifest's ``info.run_config.model`` (``arch`` and head
settings), then each Conv2d / Linear / BatchNorm whose shape differs from the ONNX tensor
is replaced by one of the ONNX shape: that rebuilds pruned models (``student-0.25x``), whose
channel counts no longer match the dense class, without knowing the pruning plan. Finally
the rebuilt model is run against onnxruntime on random inputs; a difference over ``tol``
raises.

Folded BatchNorms. A folded BN is restored as an identity map plus the folded bias
(weight 1, running mean 0, running variance 1 - eps): exact in eval mode (the frozen
teacher, evaluation, export), but in train mode BN would normalise with batch statistics
the original never saw. ``recalibrate_folded_bn`` fixes that from a few real crops: it
sets each such BN's running statistics to the batch statistics of its input and rescales
weight / bias so the eval-mode function is unchanged, so train-mode and eval-mode outputs
agree on data like the calibration crops (as they did for the original network).
``init_model`` and the prune job call it with training crops.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

from kpdesk.vision.manifest import Manifest, ManifestError
from training.config import ConfigError, RunConfig, config_from_dict
from training.jobs.engine import TrainingError
from training.nets.networks import LandmarkNet, ModelConfig

log = logging.getLogger(__name__)

WEIGHT_OPS = ("Conv", "Gemm", "MatMul", "BatchNormalization")
_BN = nn.modules.batchnorm._BatchNorm


class OnnxImportError(TrainingError):
    """The ONNX graph cannot be turned back into the PyTorch model (names what is unmatched)."""


@dataclass(eq=False)
class ImportedModel:
    """A model rebuilt from ONNX.

    Attributes:
        model: the network, eval mode, float32.
        run_config: the run config of the manifest (``info.run_config``), or one built
            from the manifest's fields when it has none.
        manifest: the manifest.
        folded_bn: BatchNorm modules restored from a folded Conv (see the module docstring).
        resized: modules replaced to match the ONNX shapes (non-empty for a pruned model).
        parity: max abs difference against onnxruntime per output (random inputs).
    """

    model: LandmarkNet
    run_config: RunConfig
    manifest: Manifest
    folded_bn: list[str] = field(default_factory=list)
    resized: list[str] = field(default_factory=list)
    parity: dict[str, float] = field(default_factory=dict)


# -- the graph ----------------------------------------------------------------------------
class _Graph:
    """Constant values of a graph, with a record of which initializers were read."""

    def __init__(self, m: onnx.ModelProto) -> None:
        self.model = m
        self.inits = {i.name: i for i in m.graph.initializer}
        self.producer = {o: n for n in m.graph.node for o in n.output}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for n in m.graph.node:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)
        self.read: set[str] = set()

    def const(self, name: str) -> np.ndarray | None:
        """The value of tensor ``name`` when it is a constant (initializer, Constant, or a
        Cast / Identity of one), as float32 for float tensors; else None."""
        if not name:
            return None
        if name in self.inits:
            self.read.add(name)
            return numpy_helper.to_array(self.inits[name])
        node = self.producer.get(name)
        if node is None:
            return None
        if node.op_type == "Identity":
            return self.const(node.input[0])
        if node.op_type == "Cast":
            v = self.const(node.input[0])
            to = next(a.i for a in node.attribute if a.name == "to")
            return None if v is None else v.astype(onnx.helper.tensor_dtype_to_np_dtype(to))
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    return numpy_helper.to_array(a.t)
        return None

    def weight(self, node: onnx.NodeProto, k: int) -> np.ndarray | None:
        if len(node.input) <= k or not node.input[k]:
            return None
        v = self.const(node.input[k])
        if v is None:
            raise OnnxImportError(f"{node.op_type} node {node.name!r}: input {k} ({node.input[k]}) is not a constant")
        return np.array(v, dtype=np.float32, order="C", copy=True)


def _attr(node: onnx.NodeProto, name: str, default: Any) -> Any:
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def scope_to_module(node_name: str, modules: set[str]) -> str | None:
    """The module a traced node belongs to, e.g. ``/net/backbone/features.1/conv/conv.0/conv.0.0/Conv``
    -> ``backbone.features.1.conv.0.0``: each scope segment is a module name relative to one
    of the enclosing scopes (the innermost that makes it a real module wins)."""
    segs = [s for s in node_name.split("/") if s][:-1]
    if segs and segs[0] == "net" and "net" not in modules:  # the ExportWrapper's attribute
        segs = segs[1:]
    scopes = [""]
    for seg in segs:
        for parent in reversed(scopes):
            cand = f"{parent}.{seg}" if parent else seg
            if cand in modules:
                scopes.append(cand)
                break
        else:
            return None
    return scopes[-1] or None


# -- module surgery -----------------------------------------------------------------------
def _set_module(root: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, attr = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, attr, new)


def _conv_like(node: onnx.NodeProto, w: np.ndarray, old: nn.Conv2d) -> nn.Conv2d:
    group = int(_attr(node, "group", 1))
    kernel = tuple(w.shape[2:])
    pads = list(_attr(node, "pads", [0] * 2 * len(kernel)))
    if pads[: len(kernel)] != pads[len(kernel):]:
        raise OnnxImportError(f"Conv {node.name!r}: asymmetric padding {pads} has no nn.Conv2d equivalent")
    return nn.Conv2d(w.shape[1] * group, w.shape[0], kernel, stride=tuple(_attr(node, "strides", [1, 1])),
                     padding=tuple(pads[: len(kernel)]), dilation=tuple(_attr(node, "dilations", [1, 1])),
                     groups=group, bias=old.bias is not None)


def _bn_like(old: _BN, n: int) -> _BN:
    return type(old)(n, eps=old.eps, momentum=old.momentum, affine=old.affine,
                     track_running_stats=old.track_running_stats)


def _following_bn(model: nn.Module, input_size: int) -> dict[str, str]:
    """{conv / linear name: name of the BatchNorm reading its output} of the dense model."""
    from training.nets.graph import following_batchnorm

    names = {m: n for n, m in model.named_modules()}
    pairs = following_batchnorm(model, torch.zeros(2, 3, input_size, input_size))
    return {names[c]: names[b] for c, b in pairs.items()}


def model_config_of(manifest: Manifest) -> tuple[ModelConfig, RunConfig]:
    rc = manifest.info.get("run_config")
    if isinstance(rc, dict) and "model" in rc:
        try:
            cfg = config_from_dict(rc)
        except ConfigError as exc:
            raise OnnxImportError(f"manifest {manifest.name}: info.run_config is not a valid config: {exc}") from None
        return cfg.model, cfg
    mc = ModelConfig(arch=manifest.arch, num_points=manifest.schema.num_points, input_size=manifest.input_size,
                     heatmap_size=manifest.heatmap_size or 0 if manifest.heatmaps_output else 0)
    return mc, RunConfig(model=mc)


# -- import -------------------------------------------------------------------------------
def import_onnx(path: str | Path, *, check: bool = True, tol: float = 1e-4, check_batch: int = 2) -> ImportedModel:
    """Rebuild the PyTorch model of ``path`` (NAME.onnx with NAME.json beside it).

    ``check``: compare with onnxruntime on ``check_batch`` seeded random inputs and raise
    ``OnnxImportError`` when any output differs by more than ``tol``.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise OnnxImportError(f"{p}: ONNX model not found")
    try:
        manifest = Manifest.load(p.with_suffix(".json"))
    except ManifestError as exc:
        raise OnnxImportError(f"{p}: {exc}") from None
    mc, run_cfg = model_config_of(manifest)
    try:
        model = LandmarkNet(mc).eval()
    except ValueError as exc:
        raise OnnxImportError(f"{p}: cannot build arch {mc.arch!r} from the manifest: {exc}") from None
    try:
        g = _Graph(onnx.load(str(p)))
    except Exception as exc:  # noqa: BLE001 - protobuf raises assorted errors on bad files
        raise OnnxImportError(f"{p}: not a readable ONNX model: {exc}") from None
    bn_after = _following_bn(model, mc.input_size)
    modules = dict(model.named_modules())
    names = set(modules) - {""}

    filled: set[str] = set()
    resized: list[str] = []
    folded: list[str] = []
    unmatched_nodes: list[str] = []
    for node in g.model.graph.node:
        if node.op_type not in WEIGHT_OPS:
            continue
        # MatMul / Conv on two activations (no constant weight) are not layers
        if node.op_type in ("MatMul", "Gemm", "Conv") and g.const(node.input[1]) is None:
            continue
        name = scope_to_module(node.name, names)
        if name is None:
            unmatched_nodes.append(f"{node.op_type} {node.name or '(unnamed)'} [{', '.join(node.input[1:])}]")
            continue
        mod = model.get_submodule(name)
        if name in filled:
            raise OnnxImportError(f"{p}: module {name} is filled by two ONNX nodes (the second: {node.name})")
        if node.op_type == "Conv":
            _load_conv(model, g, node, name, mod, bn_after, filled, resized, folded)
        elif node.op_type in ("Gemm", "MatMul"):
            _load_linear(model, g, node, name, mod, filled, resized)
        else:
            _load_bn(model, g, node, name, mod, filled, resized)
    missing = [n for n, m in model.named_modules()
               if n not in filled and any(True for _ in m.parameters(recurse=False))]
    unread = [n for n, t in g.inits.items() if n not in g.read and t.data_type in (
        onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE) and len(t.dims) >= 1
        and int(np.prod(t.dims)) > 1]
    problems = []
    if unmatched_nodes:
        problems.append(f"ONNX nodes with weights that name no module of {mc.arch}: {unmatched_nodes}")
    if missing:
        problems.append(f"modules of {mc.arch} that no ONNX tensor fills: {missing}")
    if unread:
        problems.append(f"ONNX initializers not matched to any module: {unread}")
    if problems:
        raise OnnxImportError(f"{p}: cannot rebuild the PyTorch model: " + "; ".join(problems))
    model.eval()  # replaced modules are new, in train mode
    _refresh_channel_attrs(model, mc.input_size)
    out = ImportedModel(model=model, run_config=run_cfg, manifest=manifest, folded_bn=folded, resized=resized)
    if check:
        out.parity = onnx_parity(model, p, mc.input_size, check_batch)
        worst = max(out.parity.values())
        if not worst <= tol:
            raise OnnxImportError(f"{p}: the rebuilt model differs from onnxruntime by {worst:.2e} (> {tol:g}): "
                                  f"{out.parity}")
    log.info("rebuilt %s from ONNX (%d folded BatchNorms, %d resized modules, parity %s)", p.name, len(folded),
             len(resized), out.parity)
    return out


def _check_kind(name: str, mod: nn.Module, kind: type, node: onnx.NodeProto) -> None:
    if not isinstance(mod, kind):
        raise OnnxImportError(f"ONNX {node.op_type} node {node.name!r} maps to {name}, a {type(mod).__name__}, "
                              f"not a {kind.__name__}")


def _load_conv(model, g, node, name, mod, bn_after, filled, resized, folded) -> None:
    _check_kind(name, mod, nn.Conv2d, node)
    w, b = g.weight(node, 1), g.weight(node, 2)
    if tuple(w.shape) != tuple(mod.weight.shape) or int(_attr(node, "group", 1)) != mod.groups:
        mod_new = _conv_like(node, w, mod)
        _set_module(model, name, mod_new)
        mod = mod_new
        resized.append(name)
    with torch.no_grad():
        mod.weight.copy_(torch.from_numpy(w))
        if mod.bias is not None:
            mod.bias.copy_(torch.from_numpy(b) if b is not None else torch.zeros_like(mod.bias))
    filled.add(name)
    if mod.bias is None and b is not None:
        bn_name = bn_after.get(name)
        if bn_name is None:
            raise OnnxImportError(f"ONNX Conv {node.name!r} has a bias, but {name} has none and no BatchNorm "
                                  "follows it to fold it into")
        bn = model.get_submodule(bn_name)
        if bn.num_features != w.shape[0]:
            bn = _bn_like(bn, w.shape[0])
            _set_module(model, bn_name, bn)
            resized.append(bn_name)
        with torch.no_grad():
            bn.weight.fill_(1.0)
            bn.bias.copy_(torch.from_numpy(b))
            bn.running_mean.zero_()
            bn.running_var.fill_(1.0 - bn.eps)
        filled.add(bn_name)
        folded.append(bn_name)


def _load_linear(model, g, node, name, mod, filled, resized) -> None:
    _check_kind(name, mod, nn.Linear, node)
    w = g.weight(node, 1)
    if node.op_type == "Gemm":
        if _attr(node, "alpha", 1.0) != 1.0 or _attr(node, "beta", 1.0) != 1.0 or _attr(node, "transA", 0):
            raise OnnxImportError(f"Gemm {node.name!r}: only alpha = beta = 1, transA = 0 map to nn.Linear")
        if not _attr(node, "transB", 0):
            w = w.T
        b = g.weight(node, 2)
    else:  # MatMul: x @ W with W (in, out); a bias, if any, is a following Add of a constant
        w = w.T
        b = None
        for c in g.consumers.get(node.output[0], []):
            if c.op_type == "Add":
                other = [i for i in c.input if i != node.output[0]]
                v = g.const(other[0]) if other else None
                if v is not None and mod.bias is not None:
                    b = np.asarray(v, np.float32).reshape(-1)
    if mod.bias is not None and b is None:
        raise OnnxImportError(f"{name} has a bias, the ONNX {node.op_type} {node.name!r} has none")
    if tuple(w.shape) != tuple(mod.weight.shape):
        mod_new = nn.Linear(w.shape[1], w.shape[0], bias=mod.bias is not None)
        _set_module(model, name, mod_new)
        mod = mod_new
        resized.append(name)
    with torch.no_grad():
        mod.weight.copy_(torch.from_numpy(np.ascontiguousarray(w)))
        if mod.bias is not None:
            mod.bias.copy_(torch.from_numpy(b))
    filled.add(name)


def _load_bn(model, g, node, name, mod, filled, resized) -> None:
    _check_kind(name, mod, _BN, node)
    scale, shift, mean, var = (g.weight(node, k) for k in range(1, 5))
    if scale.shape[0] != mod.num_features:
        mod_new = _bn_like(mod, scale.shape[0])
        _set_module(model, name, mod_new)
        mod = mod_new
        resized.append(name)
    mod.eps = float(_attr(node, "epsilon", 1e-5))
    with torch.no_grad():
        for t, v in ((mod.weight, scale), (mod.bias, shift), (mod.running_mean, mean), (mod.running_var, var)):
            t.copy_(torch.from_numpy(v))
    filled.add(name)


def _refresh_channel_attrs(model: LandmarkNet, input_size: int) -> None:
    """Backbones that store their channel counts as plain attributes (ResNet) get the
    counts of the rebuilt layers; a shape mismatch between layers fails here, clearly."""
    try:
        with torch.no_grad():
            s8, feat = model.backbone(torch.zeros(1, 3, input_size, input_size))
            model(torch.zeros(1, 3, input_size, input_size))
    except (RuntimeError, ValueError) as exc:
        raise OnnxImportError(f"the rebuilt layers do not fit together: {exc}") from None
    bb = model.backbone
    for attr, v in (("out_channels", feat.shape[1]), ("s8_channels", s8.shape[1])):
        if attr in vars(bb):
            setattr(bb, attr, int(v))


def onnx_parity(model: nn.Module, path: Path, input_size: int, batch: int = 2, seed: int = 0) -> dict[str, float]:
    """Max abs difference between ``model`` (eval) and onnxruntime, per output, on seeded
    standard-normal inputs (B, 3, S, S)."""
    from training.jobs.onnx_export import run_onnx

    x = np.random.default_rng(seed).standard_normal((batch, 3, input_size, input_size)).astype(np.float32)
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            ref = model(torch.from_numpy(x))
    finally:
        model.train(was)
    got = run_onnx(path, x)
    res = {"coords": float(np.abs(got[0] - ref["coords"].numpy()).max())}
    if "heatmaps" in ref:
        if len(got) < 2:
            raise OnnxImportError(f"{path}: the rebuilt model has a heatmap head, the ONNX graph has no heatmaps")
        res["heatmaps"] = float(np.abs(got[1] - ref["heatmaps"].numpy()).max())
    return res


def checkpoint_from_onnx(path: str | Path) -> dict[str, Any]:
    """A ``kpdesk-ckpt/1``-shaped dict for ``training.jobs.checkpoints`` (see ``read_checkpoint``).
    A pruned model is carried whole in ``model_object``, as prune checkpoints are."""
    imp = import_onnx(path)
    info = imp.manifest.info
    return {
        "format": "kpdesk-ckpt/1", "source": "onnx", "onnx": str(Path(path).expanduser()),
        "model_state": imp.model.state_dict(), "model_config": imp.run_config.model.to_dict(),
        "run_config": imp.run_config.to_dict(), "model_object": imp.model if imp.resized else None,
        "folded_bn": imp.folded_bn, "resized": imp.resized, "parity": imp.parity,
        "epoch": info.get("best_epoch"), "tag": "onnx",
        "best": {"decode": imp.manifest.decode, "epoch": info.get("best_epoch"), "metrics": {}},
    }


@torch.no_grad()
def recalibrate_folded_bn(model: nn.Module, names: list[str], images: torch.Tensor, batch_size: int = 32) -> int:
    """Give the BatchNorms ``names`` the statistics of their input over ``images`` (N, 3, S, S),
    keeping the eval-mode function (see the module docstring). Returns how many were set."""
    mods = dict(model.named_modules())
    bns = [mods[n] for n in names if isinstance(mods.get(n), _BN)]
    if not bns or not len(images):
        return 0
    acc: dict[nn.Module, list] = {bn: [0.0, 0.0, 0] for bn in bns}

    def hook(m: nn.Module, inp: tuple[torch.Tensor, ...]) -> None:
        x = inp[0].double().transpose(0, 1).reshape(m.num_features, -1)
        a = acc[m]
        a[0] = a[0] + x.sum(1)
        a[1] = a[1] + x.pow(2).sum(1)
        a[2] += x.shape[1]

    hooks = [bn.register_forward_pre_hook(hook) for bn in bns]
    was = model.training
    model.eval()
    dev = next(model.parameters()).device
    try:
        for i in range(0, len(images), batch_size):
            model(images[i:i + batch_size].to(dev))
    finally:
        for h in hooks:
            h.remove()
        model.train(was)
    for bn, (s1, s2, n) in acc.items():
        mean = s1 / n
        var = (s2 / n - mean.pow(2)).clamp_min(0.0)
        # current eval map y = a z + c  ->  same a, c with the new statistics
        a = bn.weight.double() / (bn.running_var.double() + bn.eps).sqrt()
        c = bn.bias.double() - bn.running_mean.double() * a
        bn.running_mean.copy_(mean)
        bn.running_var.copy_(var)
        bn.weight.copy_(a * (var + bn.eps).sqrt())
        bn.bias.copy_(c + a * mean)
    return len(bns)
