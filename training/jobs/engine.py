"""The training engine: one loop for train, distill and prune fine-tuning.

Checkpoints every epoch (and on cancel, mid-epoch, with the position inside the epoch),
``--resume`` continues exactly there; a non-finite loss stops the run with a clear error
and leaves the last good checkpoint untouched; under ``torchrun`` it runs data-parallel.
"""

from __future__ import annotations

import importlib
import logging
import os
import pickle
import signal
import sys
import threading
import time
import types
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader

from kpdesk.vision.codecs import LandmarkDecoder
from kpdesk.vision.schema import KeypointSchema
from training.config import RunConfig, TrainConfig
from training.data.datasets import LabelError, Sample, is_extra, load_extra_train, load_split, with_label_offsets
from training.data.torchdata import LandmarkDataset
from training.events import EventStream
from training.jobs.ema import WeightAverage
from training.metrics import summarize
from training.nets.losses import landmark_loss

log = logging.getLogger(__name__)

LossFn = Callable[[dict[str, torch.Tensor], dict[str, torch.Tensor]], tuple[torch.Tensor, dict[str, float]]]


class TrainingError(RuntimeError):
    """A run cannot continue (bad data, diverged loss, bad checkpoint)."""


class DivergedError(TrainingError):
    """The loss became NaN or infinite."""


class Cancelled(Exception):
    """The user asked the job to stop; a resumable checkpoint was written."""


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise TrainingError(f"device {name!r} requested but CUDA is not available")
    return torch.device(name)


@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> DistInfo:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    info = DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    return info


class CancelFlag:
    """Set by a line ``cancel`` on stdin (the GUI) or by SIGTERM / SIGINT."""

    def __init__(self) -> None:
        self._ev = threading.Event()

    def set(self) -> None:
        self._ev.set()

    def is_set(self) -> bool:
        return self._ev.is_set()

    def listen(self) -> None:
        def handler(_sig, _frm) -> None:
            self.set()

        for s in (signal.SIGTERM, signal.SIGINT):
            try:
                signal.signal(s, handler)
            except ValueError:  # not the main thread (tests)
                pass
        if not sys.stdin or sys.stdin.closed or sys.stdin.isatty():
            return

        def reader() -> None:
            try:
                for line in sys.stdin:
                    if line.strip().lower() == "cancel":
                        self.set()
                        return
            except (OSError, ValueError):
                return

        threading.Thread(target=reader, name="cancel-listener", daemon=True).start()


def atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


# Before training/ was split into sub-packages its modules were flat: a checkpoint written
# then names the classes it pickles (a pruned model is stored whole) by the old module.
# Old module -> the modules that may hold the class now.
MOVED_MODULES: dict[str, tuple[str, ...]] = {
    "training.augment": ("training.data.augment",), "training.datasets": ("training.data.datasets",),
    "training.torchdata": ("training.data.torchdata",), "training.pseudolabel": ("training.data.pseudolabel",),
    "training.backbones": ("training.nets.backbones",), "training.networks": ("training.nets.networks",),
    "training.losses": ("training.nets.losses",), "training.engine": ("training.jobs.engine",),
    "training.jobs": ("training.jobs.train",), "training.checkpoints": ("training.jobs.checkpoints",),
    "training.export": ("training.jobs.onnx_export",), "training.onnx_import": ("training.jobs.onnx_import",),
    "training.ship": ("training.jobs.ship",),
    "training.distill": ("training.distill.loss", "training.distill.teacher", "training.distill.job"),
    "training.prune": ("training.prune.job", "training.prune.plan", "training.prune.criterion"),
    "training.evaluate": ("training.evaluation.evaluate",), "training.bench": ("training.evaluation.bench",),
    "training.bench_detect": ("training.evaluation.bench_detect",),
    "training.ablations": ("training.evaluation.ablations",), "training.cards": ("training.evaluation.cards",),
}


class _MovedModulesUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        for new in MOVED_MODULES.get(module, ()):
            mod = importlib.import_module(new)
            if hasattr(mod, name):
                return getattr(mod, name)
        return super().find_class(module, name)


_PICKLE = types.ModuleType("kpdesk_checkpoint_pickle")
_PICKLE.__dict__.update({k: getattr(pickle, k) for k in ("load", "loads", "dump", "dumps", "Pickler",
                                                          "UnpicklingError", "HIGHEST_PROTOCOL")})
_PICKLE.Unpickler = _MovedModulesUnpickler


def load_file(path: str | Path, map_location: Any = "cpu") -> Any:
    """``torch.load`` of a whole checkpoint (not only weights), also one written before the
    modules moved (MOVED_MODULES)."""
    return torch.load(path, map_location=map_location, weights_only=False, pickle_module=_PICKLE)


def _one_thread_worker(_worker_id: int) -> None:
    """A data-loader worker runs torch on one thread (its OpenCV setting comes from ``worker_loader``)."""
    torch.set_num_threads(1)


def worker_loader(ds: Any, batches: list[list[int]], num_workers: int, pin_memory: bool = False) -> DataLoader:
    """A DataLoader whose forked workers decode and warp on one OpenCV thread each: several workers each with a
    pool the size of the machine oversubscribe it.

    The setting is made here, in the parent, and the workers inherit it (the parent keeps it too: its own OpenCV
    work in such a run is the validation crops). Setting it inside a forked worker
    instead deadlocks once the parent's OpenCV pool has run (validation crops, BatchNorm recalibration): the
    child waits on pool threads that fork did not copy. That hung every second epoch on a 16-core GPU machine
    (tests/test_training_loader.py reproduces it). ``pin_memory``: page-locked batches for an asynchronous
    copy to a CUDA device."""
    cv2.setNumThreads(1)
    return DataLoader(ds, batch_sampler=batches, num_workers=num_workers, persistent_workers=False,
                      worker_init_fn=_one_thread_worker, pin_memory=pin_memory)


def batches_for_epoch(n: int, batch_size: int, seed: int, epoch: int, rank: int = 0, world: int = 1,
                      max_steps: int = 0) -> list[list[int]]:
    """Deterministic shuffled batches for one epoch (a rank's share under DDP); the last,
    incomplete batch is dropped so BatchNorm never sees a batch of one."""
    perm = np.random.default_rng((seed, epoch, 7)).permutation(n)
    perm = perm[rank::world]
    nb = len(perm) // batch_size
    if max_steps:
        nb = min(nb, max_steps)
    return [perm[i * batch_size:(i + 1) * batch_size].tolist() for i in range(nb)]


def mixed_batches_for_epoch(base: list[int], extra: list[int], batch_size: int, n_extra: int, seed: int,
                            epoch: int, rank: int = 0, world: int = 1, max_steps: int = 0) -> list[list[int]]:
    """Batches of ``batch_size - n_extra`` faces of ``base`` and ``n_extra`` of ``extra`` (data.extra_share).

    The epoch is one shuffled pass over ``base`` (the last incomplete batch dropped); ``extra``
    follows its own shuffled order, drawn afresh each epoch and repeated when one pass is too
    short, so a large extra pack is sampled across epochs and a small one cycles. Deterministic
    for (seed, epoch), a rank's share under DDP."""
    rng = np.random.default_rng((seed, epoch, 11))
    b = np.asarray(base)[rng.permutation(len(base))][rank::world]
    n_base = batch_size - n_extra
    nb = len(b) // n_base
    if max_steps:
        nb = min(nb, max_steps)
    if nb == 0 or not extra:
        return []
    need = nb * n_extra
    e = np.asarray(extra)
    stride = world if len(e) >= world else 1  # a pack smaller than the ranks: each rank draws from all of it
    orders = [e[rng.permutation(len(e))][rank % stride::stride] for _ in range(-(-need * stride // len(e)) + 1)]
    x = np.concatenate(orders)[:need]
    return [b[i * n_base:(i + 1) * n_base].tolist() + x[i * n_extra:(i + 1) * n_extra].tolist() for i in range(nb)]


def load_data(cfg: RunConfig, schema_check: int | None = None) -> tuple[list[Sample], list[Sample], KeypointSchema]:
    try:
        train, schema = load_split(cfg.data, "train")
        val, _ = load_split(cfg.data, "val")
        if cfg.train.max_train_samples:
            train = train[: cfg.train.max_train_samples]
        train = with_label_offsets(train + load_extra_train(cfg.data, schema), cfg.data.label_offsets)
    except LabelError as exc:
        raise TrainingError(str(exc)) from None
    if cfg.train.max_val_samples:
        val = val[: cfg.train.max_val_samples]
    k = schema_check or cfg.model.num_points
    if schema.num_points != k:
        raise TrainingError(f"data {cfg.data.root} has {schema.num_points} points, model config says {k}")
    return train, val, schema


def make_datasets(cfg: RunConfig, train: list[Sample], val: list[Sample], schema: KeypointSchema,
                  ) -> tuple[LandmarkDataset, LandmarkDataset]:
    m, t = cfg.model, cfg.train
    tr = LandmarkDataset(train, schema, m.input_size, m.heatmap_size, t.sigma, cfg.augment, seed=t.seed)
    va = LandmarkDataset(val, schema, m.input_size, m.heatmap_size, t.sigma, replace(cfg.augment, enabled=False),
                         seed=t.seed)
    return tr, va


@torch.no_grad()
def predict(model: nn.Module, ds: LandmarkDataset, device: torch.device, batch_size: int = 64,
            num_workers: int = 0) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Run a model over a dataset: coords (N, 2K), heatmaps (N, K, H, H) or None, gt pts_crop (N, K, 2)."""
    was = model.training
    model.eval()
    coords, hms, gts = [], [], []
    loader = DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    try:
        for b in loader:
            out = model(b["image"].to(device))
            coords.append(out["coords"].float().cpu().numpy())
            if "heatmaps" in out:
                hms.append(out["heatmaps"].float().cpu().numpy())
            gts.append(b["pts_crop"].numpy())
    finally:
        model.train(was)
    return np.concatenate(coords), (np.concatenate(hms) if hms else None), np.concatenate(gts)


def evaluate(model: nn.Module, ds: LandmarkDataset, device: torch.device, modes: tuple[str, ...],
             heatmap_size: int, sigma: float) -> dict[str, dict]:
    """Validation metrics for each decode mode, overall and per data source."""
    coords, hms, gt = predict(model, ds, device)
    sources = [s.source for s in ds.samples]
    res = {}
    for mode in modes:
        if mode != "regression" and hms is None:
            continue
        dec = LandmarkDecoder(ds.input_size, mode, heatmap_size if hms is not None else None, sigma)
        pts, _ = dec.decode(coords, hms)
        res[mode] = summarize(pts, gt, ds.schema, sources)
    return res


def selection_score(metrics: dict[str, Any], key: str, sources: tuple[str, ...] = ()) -> float:
    """``metrics[key]``, or its face-count weighted mean over ``sources`` of ``metrics["by_source"]``."""
    if not sources:
        return metrics[key]
    by = metrics.get("by_source") or {}
    missing = [s for s in sources if s not in by]
    if missing:
        raise TrainingError(f"train.select_sources: val has no faces from {missing} (it has {sorted(by)})")
    n = sum(by[s]["n"] for s in sources)
    return sum(by[s][key] * by[s]["n"] for s in sources) / n


def measure_bf16(model: nn.Module, input_size: int, batch_size: int, channels_last: bool = True,
                 steps: int = 2) -> dict[str, Any]:
    """Time forward + backward of a copy of ``model`` in float32 and with the bfloat16
    autocast (best of ``steps`` after one warm-up each) on a random batch; the model,
    its BatchNorm statistics and the RNG streams are left untouched. Returns
    ``{"bf16": faster?, "fp32_img_s": .., "bf16_img_s": ..}``."""
    import copy

    probe = copy.deepcopy(model).train()
    if channels_last:
        probe = probe.to(memory_format=torch.channels_last)
    res = {}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        x = torch.randn(batch_size, 3, input_size, input_size)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        for name, on in (("fp32", False), ("bf16", True)):
            best = float("inf")
            for _ in range(steps + 1):
                t = time.perf_counter()
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=on):
                    out = probe(x)
                sum(v.float().mean() for v in out.values() if torch.is_tensor(v)).backward()
                probe.zero_grad(set_to_none=True)
                best = min(best, time.perf_counter() - t)
            res[f"{name}_img_s"] = round(batch_size / best, 1)
    res["bf16"] = res["bf16_img_s"] > res["fp32_img_s"]
    return res


class Trainer:
    """Fits ``model`` (+ ``aux`` trainable modules, e.g. distillation projections) with
    ``loss_fn`` on the run's data, writing checkpoints and events into ``run_dir``.

    ``extra_state()`` / ``load_extra_state()`` let a job (distill, prune) save what it
    needs to resume beside the model.
    """

    def __init__(self, cfg: RunConfig, model: nn.Module, run_dir: Path, events: EventStream,
                 train_ds: LandmarkDataset, val_ds: LandmarkDataset, loss_fn: LossFn | None = None,
                 aux: nn.Module | None = None, cancel: CancelFlag | None = None, device: torch.device | None = None,
                 dist_info: DistInfo | None = None, checkpoint_extra: Callable[[], dict] | None = None,
                 save_whole_model: bool = False, tag: str = "") -> None:
        self.cfg = cfg
        self.t: TrainConfig = cfg.train
        self.device = device or pick_device(self.t.device)
        self.dist = dist_info or DistInfo()
        self.model = model.to(self.device)
        self.aux = aux.to(self.device) if aux is not None else None
        self.run_dir = run_dir
        self.ckpt_dir = run_dir / "checkpoints"
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        self.events = events
        self.train_ds, self.val_ds = train_ds, val_ds
        self.loss_fn = loss_fn or (lambda out, b: landmark_loss(out, b, self.t.lambda_rh))
        self.cancel = cancel or CancelFlag()
        self.checkpoint_extra = checkpoint_extra
        self.save_whole_model = save_whole_model
        self.tag = tag
        params = list(self.model.parameters()) + (list(self.aux.parameters()) if self.aux is not None else [])
        if self.t.optimizer == "sgd":
            self.opt = torch.optim.SGD(params, lr=self.t.lr, momentum=self.t.momentum,
                                       weight_decay=self.t.weight_decay, nesterov=True)
        elif self.t.optimizer == "adamw":
            self.opt = torch.optim.AdamW(params, lr=self.t.lr, weight_decay=self.t.weight_decay)
        else:
            raise TrainingError(f"train.optimizer must be 'sgd' or 'adamw', got {self.t.optimizer!r}")
        self.use_amp = self.t.amp and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.autocast_dtype = torch.float16
        self.bf16_choice: dict[str, Any] = {}
        bf16 = self.t.cpu_bf16
        if self.device.type == "cpu" and bf16 == "auto":
            self.bf16_choice = measure_bf16(self.model, self.cfg.model.input_size, self.t.batch_size,
                                            self.t.channels_last)
            bf16 = self.bf16_choice["bf16"]
        if self.device.type == "cpu" and bf16 is True:
            self.use_amp, self.autocast_dtype = True, torch.bfloat16  # no scaler needed for bf16
        if self.t.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.ema = WeightAverage(self.model, self.t.ema_decay) if self.t.ema_decay > 0 else None
        self.ddp_model: nn.Module = self.model
        if self.dist.world > 1:
            self.ddp_model = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        if self.t.time_budget_s > 0 and self.dist.world > 1:
            raise TrainingError("train.time_budget_s works in single-process runs only (each rank would time "
                                "its epochs apart and they would stop at different epochs)")
        self.epochs = self.t.epochs  # the run's length: fewer when train.time_budget_s says so
        self.epoch = 0  # completed epochs
        self.step_in_epoch = 0  # completed steps of the epoch in progress
        self.best: dict[str, Any] = {}
        self.history: list[dict] = []

    # -- learning rate ----------------------------------------------------------------
    def lr_at(self, epoch: int) -> float:
        drops = sum(1 for f in self.t.lr_steps if epoch >= round(f * self.epochs))
        return self.t.lr * (0.1**drops)

    # -- checkpoints ------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        st = {
            "format": "kpdesk-ckpt/1",
            "run_config": self.cfg.to_dict(),
            "model_config": self.cfg.model.to_dict(),
            "model_state": self.model.state_dict(),
            "aux_state": self.aux.state_dict() if self.aux is not None else None,
            "optimizer": self.opt.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch,
            "best": self.best,
            "history": self.history,
            "torch_rng": torch.get_rng_state(),
            "tag": self.tag,
        }
        if self.save_whole_model:
            st["model_object"] = self.model
        if self.checkpoint_extra is not None:
            st["extra"] = self.checkpoint_extra()
        return st

    def save(self, name: str = "last.pt") -> Path:
        """With train.ema_decay the checkpoint's model holds the averaged weights and ``ema`` the raw ones."""
        path = self.ckpt_dir / name
        if self.dist.main:
            if self.ema is None:
                atomic_save(self.state(), path)
            else:
                with self.ema.swapped_in(self.model) as raw:
                    atomic_save({**self.state(), "ema": {**self.ema.state_dict(), "raw_model_state": raw}}, path)
            self.events.emit("checkpoint", path=str(path), epoch=self.epoch, step=self.step_in_epoch)
        return path

    def resume(self, path: Path) -> None:
        try:
            st = load_file(path, map_location=self.device)
        except (OSError, RuntimeError, EOFError) as exc:
            raise TrainingError(f"{path}: cannot load checkpoint: {exc}") from None
        if st.get("format") != "kpdesk-ckpt/1":
            raise TrainingError(f"{path}: not a kpdesk checkpoint")
        if self.save_whole_model and "model_object" in st:
            self.model.load_state_dict(st["model_object"].state_dict())
        else:
            self.model.load_state_dict(st["model_state"])
        ema = st.get("ema")
        if ema is not None:  # the model state above is the average; training goes on from the raw weights
            if self.ema is not None:
                self.ema.load(self.model.state_dict(), ema)
            self.model.load_state_dict(ema["raw_model_state"])
        elif self.ema is not None:
            self.ema.load(self.model.state_dict(), {})
        if self.aux is not None and st.get("aux_state") is not None:
            self.aux.load_state_dict(st["aux_state"])
        self.opt.load_state_dict(st["optimizer"])
        self.scaler.load_state_dict(st["scaler"])
        self.epoch, self.step_in_epoch = int(st["epoch"]), int(st["step_in_epoch"])
        self.best, self.history = st.get("best", {}), st.get("history", [])
        torch.set_rng_state(st["torch_rng"].cpu())

    # -- the loop ---------------------------------------------------------------------
    def _batch(self, idx: list[int]) -> dict[str, torch.Tensor]:
        items = [self.train_ds[i] for i in idx]
        return {k: torch.stack([it[k] for it in items]).to(self.device, non_blocking=True) for k in items[0]}

    def _loader(self, batches: list[list[int]]):
        if self.t.num_workers > 0:
            for b in worker_loader(self.train_ds, batches, self.t.num_workers, self.device.type == "cuda"):
                yield {k: v.to(self.device, non_blocking=True) for k, v in b.items()}
        else:
            for idx in batches:
                yield self._batch(idx)

    def _epoch_batches(self, e: int) -> list[list[int]]:
        share, t = self.cfg.data.extra_share, self.t
        if not share:
            batches = batches_for_epoch(len(self.train_ds), t.batch_size, t.seed, e, self.dist.rank,
                                        self.dist.world, t.max_steps_per_epoch)
            if not batches:
                raise TrainingError(f"training set of {len(self.train_ds)} samples is smaller than one batch "
                                    f"({t.batch_size})")
            return batches
        flags = [is_extra(s) for s in self.train_ds.samples]
        base = [i for i, x in enumerate(flags) if not x]
        extra = [i for i, x in enumerate(flags) if x]
        n_extra = round(share * t.batch_size)
        batches = mixed_batches_for_epoch(base, extra, t.batch_size, n_extra, t.seed, e, self.dist.rank,
                                          self.dist.world, t.max_steps_per_epoch)
        if not batches:
            raise TrainingError(f"data.extra_share {share}: {len(base)} faces of the data set and {len(extra)} of "
                                f"the extra packs do not fill one batch of {t.batch_size - n_extra} + {n_extra}")
        return batches

    def epoch_steps(self, e: int) -> int:
        """How many optimiser steps epoch ``e`` runs (``train.max_steps_per_epoch`` caps one pass)."""
        return len(self._epoch_batches(e))

    def train_epoch(self) -> dict[str, float]:
        e = self.epoch
        self.train_ds.set_epoch(e)
        batches = self._epoch_batches(e)
        steps = len(batches)
        lr = self.lr_at(e)
        for g in self.opt.param_groups:
            g["lr"] = lr
        self.ddp_model.train()
        if self.aux is not None:
            self.aux.train()
        t0 = time.time()
        done_at_start = self.step_in_epoch
        sums: dict[str, float] = {}
        n = 0
        for s, batch in enumerate(self._loader(batches[self.step_in_epoch:]), start=self.step_in_epoch):
            if self.cancel.is_set():
                raise Cancelled()
            img = batch["image"]
            if self.t.channels_last:
                img = img.contiguous(memory_format=torch.channels_last)
            with torch.autocast(self.device.type, dtype=self.autocast_dtype, enabled=self.use_amp):
                out = self.ddp_model(img)
            loss, parts = self.loss_fn(out, batch)
            if not torch.isfinite(loss):
                last = self.ckpt_dir / "last.pt"
                kept = (f"the last good checkpoint {last} is kept" if last.is_file()
                        else "no checkpoint had been written yet")
                raise DivergedError(f"loss became {float(loss.detach())} at epoch {e + 1} step {s + 1}; {kept} "
                                    "(lower train.lr, or check the data)")
            self.opt.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            if self.t.grad_clip > 0:
                self.scaler.unscale_(self.opt)
                params = [p for g in self.opt.param_groups for p in g["params"]]
                torch.nn.utils.clip_grad_norm_(params, self.t.grad_clip)
            self.scaler.step(self.opt)
            self.scaler.update()
            if self.ema is not None:
                self.ema.update(self.model)
            self.step_in_epoch = s + 1
            n += 1
            lv = float(loss.detach())
            for k, v in {"loss": lv, **parts}.items():
                sums[k] = sums.get(k, 0.0) + v
            el = time.time() - t0
            per_step = el / max(self.step_in_epoch - done_at_start, 1)
            remaining = (steps - self.step_in_epoch) + steps * (self.epochs - e - 1)
            if s % 5 == 0 or s + 1 == steps:
                self.events.emit("progress", epoch=e + 1, epochs=self.epochs, step=s + 1, steps=steps, loss=lv,
                                 lr=lr, img_s=self.t.batch_size * self.dist.world / max(per_step, 1e-9),
                                 eta_s=per_step * remaining, **parts)
        self.epoch += 1
        self.step_in_epoch = 0
        return {k: v / max(n, 1) for k, v in sums.items()} | {"epoch_time_s": time.time() - t0}

    def validate(self) -> dict[str, Any]:
        """Val metrics of the weights a checkpoint would hold (the average with train.ema_decay)."""
        m = self.cfg.model
        with self.ema.swapped_in(self.model) if self.ema is not None else nullcontext():
            return evaluate(self.model, self.val_ds, self.device, self.t.decode_eval, m.heatmap_size, self.t.sigma)

    def _epochs_in_budget(self, epoch: int, asked: int, epoch_s: float, left_s: float | None = None,
                          now: int | None = None) -> int:
        """How many of the ``asked`` epochs fit in train.time_budget_s (or ``left_s`` of it from the start of
        ``epoch``) when each takes ``epoch_s``; never fewer than the one just done. Tells when that changes ``now``."""
        left = self.t.time_budget_s if left_s is None else left_s
        fit = min(asked, epoch + max(1, int(left // max(epoch_s, 1e-6))))
        if fit != (asked if now is None else now):
            self.events.emit("log", epochs=fit, message=f"train.time_budget_s={self.t.time_budget_s:g}: "
                             f"{fit} of {asked} epochs fit ({epoch_s:.1f} s each); "
                             "the lr steps follow that schedule")
        return fit

    def fit(self, epochs: int | None = None) -> dict[str, Any]:
        """Train until ``epochs`` (default: config) are complete. Returns the best record. With
        train.ema_decay the network holds the averaged weights afterwards (what was validated and saved)."""
        asked = total = self.epochs = epochs or self.t.epochs
        start_epoch = self.epoch
        started = last_end = time.time()
        if self.bf16_choice:
            c = self.bf16_choice
            self.events.emit("log", bf16_choice=c,
                             message=f"train.cpu_bf16=auto: bf16 backbone autocast {'on' if c['bf16'] else 'off'} "
                                     f"(measured {c['fp32_img_s']} img/s float32, {c['bf16_img_s']} bf16)")
        self.events.emit("start", run_dir=str(self.run_dir), epochs=total, start_epoch=self.epoch,
                         train_samples=len(self.train_ds), val_samples=len(self.val_ds), device=str(self.device),
                         world=self.dist.world, tag=self.tag)
        try:
            while self.epoch < total:
                tr = self.train_epoch()
                rec: dict[str, Any] = {"epoch": self.epoch, "train": tr}
                if self.dist.main:
                    val = self.validate()
                    rec["val"] = val
                    mode, score = min(((k, selection_score(v, self.t.select, self.t.select_sources))
                                       for k, v in val.items()), key=lambda kv: kv[1])
                    self.events.emit("metric", epoch=self.epoch, epochs=total, split="val", decode=mode,
                                     **{k: v for k, v in val[mode].items() if k != "by_source"},
                                     by_source=val[mode].get("by_source"), train_loss=tr.get("loss"),
                                     all_modes={k: v[self.t.select] for k, v in val.items()})
                    self.history.append(rec)
                    improved = not self.best or score < self.best["score"]
                    if improved:
                        self.best = {"score": score, "epoch": self.epoch, "decode": mode, "metrics": val}
                    self.save("last.pt")
                    if improved:
                        self.save("best.pt")
                if self.dist.world > 1:
                    dist.barrier()
                if self.t.time_budget_s > 0:
                    # judged on the first epoch, again on the second (start-up left out; it may lengthen the
                    # run), then after every epoch on the last one, shortening only: an epoch that slows down
                    # cannot carry the run past its budget by more than that epoch
                    now = time.time()
                    per, last_end = now - last_end, now
                    cap = asked if self.epoch <= start_epoch + 2 else total
                    total = self.epochs = self._epochs_in_budget(self.epoch - 1, cap, per,
                                                                 self.t.time_budget_s - (now - started) + per, total)
        except Cancelled:
            self.save("last.pt")
            self.events.emit("cancelled", epoch=self.epoch, step=self.step_in_epoch,
                             checkpoint=str(self.ckpt_dir / "last.pt"))
            raise
        if self.ema is not None:
            self.model.load_state_dict(self.ema.avg)
        return self.best
