"""The train job (``python -m training train``) and what every training job shares: the
run folder, the model's initialisation, the export of the best checkpoint, and the job
arguments (``--config``, ``--run-dir``, ``--resume``, ``--set``, ``--no-export``). Each job
builds its pieces from a RunConfig and runs the shared engine (training/jobs/engine.py).
The GUI runs exactly these, in a child process."""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch

from kpdesk.vision.files import atomic_write_text
from training.config import RunConfig, load_config
from training.events import EventStream
from training.jobs.engine import (
    CancelFlag,
    Trainer,
    TrainingError,
    init_distributed,
    load_data,
    load_file,
    make_datasets,
    pick_device,
)
from training.jobs.onnx_export import export_model
from training.nets.backbones import load_imagenet
from training.nets.networks import LandmarkNet, build_model

log = logging.getLogger(__name__)

LICENCE_NOTE = ("Trained on research-only, non-commercial data (300W/AFW/HELEN, YouTube Faces, MTFL); "
                "the weights inherit those terms: research and non-commercial use only.")


def imagenet_weights_path() -> Path:
    """The offline torchvision MobileNetV2 weights fetched by set-up (kpdesk.assets)."""
    from kpdesk import assets  # local import: the asset cache is only needed for ImageNet init

    return Path(assets.asset_path("mobilenet_v2-b0353104.pth"))


CALIB_BN_IMAGES = 64  # un-augmented training crops that restore BatchNorm statistics folded away in an ONNX model


def calibration_images(ds, n: int = CALIB_BN_IMAGES) -> torch.Tensor:
    """The first ``n`` crops of ``ds`` (an un-augmented dataset), stacked (n, 3, S, S)."""
    return torch.stack([ds[i]["image"] for i in range(min(n, len(ds)))])


def init_model(cfg: RunConfig, events: EventStream, calib_ds=None) -> LandmarkNet:
    """The network to train. ``train.init_checkpoint`` may be a checkpoint or a shipped
    NAME.onnx; for the latter, ``calib_ds`` (un-augmented training crops) restores the
    BatchNorm statistics the export folded away (``onnx_import.recalibrate_folded_bn``)."""
    model = build_model(cfg.model)
    t = cfg.train
    if t.init_checkpoint:
        from training.jobs.checkpoints import read_checkpoint

        st = read_checkpoint(t.init_checkpoint)
        if st.get("model_object") is not None:  # a pruned model: its layers no longer fit the dense class
            model = pruned_start(cfg, st, t.init_checkpoint)
            take = model.state_dict()
            events.emit("log", message=f"initialised the whole pruned model of {t.init_checkpoint} "
                                       f"({sum(p.numel() for p in model.parameters()):,} parameters)")
        else:
            own = model.state_dict()
            take = {k: v for k, v in st["model_state"].items() if k in own and own[k].shape == v.shape}
            model.load_state_dict(take, strict=False)
            events.emit("log", message=f"initialised {len(take)}/{len(own)} tensors from {t.init_checkpoint}")
        folded = [n for n in st.get("folded_bn", ()) if f"{n}.weight" in take]
        if folded and calib_ds is not None and len(calib_ds):
            from training.jobs.onnx_import import recalibrate_folded_bn

            k = recalibrate_folded_bn(model, folded, calibration_images(calib_ds))
            events.emit("log", message=f"{k} BatchNorm layers folded in the ONNX model recalibrated on "
                                       f"{min(CALIB_BN_IMAGES, len(calib_ds))} training crops")
        elif folded:
            events.emit("log", message=f"warning: {len(folded)} BatchNorm layers of {t.init_checkpoint} keep "
                                       "identity statistics (no calibration crops given)")
    elif t.pretrained == "imagenet":
        if cfg.model.arch == "mobilenetv2":
            path = imagenet_weights_path()
            load_imagenet(model.backbone, str(path))
            events.emit("log", message=f"backbone initialised from ImageNet weights {path.name}")
        else:
            events.emit("log", message=f"no offline ImageNet weights for {cfg.model.arch}: training from scratch")
    elif t.pretrained not in ("", "none"):
        load_imagenet(model.backbone, t.pretrained)
        events.emit("log", message=f"backbone initialised from {t.pretrained}")
    return model


FIXED_GEOMETRY = ("arch", "num_points")  # what a pruned start must share with the run (sizes: see pruned_start)


def pruned_start(cfg: RunConfig, st: dict, path: str) -> LandmarkNet:
    """The pruned model a checkpoint (or a pruned NAME.onnx) carries whole, marked so the run's
    checkpoints keep it whole (``stored_whole``). A pruned model cannot be reshaped, so its arch
    and points must be the run's (a mismatch is a TrainingError naming the setting); its input
    and heatmap sizes may change together (the network is convolutional up to a global pooling),
    as long as the input stays the same multiple of the heatmap: e.g. 128 / 16 -> 96 / 12."""
    model = st["model_object"]
    model.load_state_dict(st["model_state"])
    theirs = st.get("model_config") or {}
    for key in FIXED_GEOMETRY:
        if key in theirs and theirs[key] != getattr(cfg.model, key):
            raise TrainingError(f"{path}: a pruned model of {key} {theirs[key]!r} cannot start a run with "
                                f"model.{key} {getattr(cfg.model, key)!r}; set --set model.{key}={theirs[key]!r}")
    s_in, s_hm = theirs.get("input_size", cfg.model.input_size), theirs.get("heatmap_size", cfg.model.heatmap_size)
    if (s_in, s_hm) != (cfg.model.input_size, cfg.model.heatmap_size):
        if not s_hm or not cfg.model.heatmap_size or s_in * cfg.model.heatmap_size != s_hm * cfg.model.input_size:
            raise TrainingError(f"{path}: a pruned model of input {s_in} px and heatmaps {s_hm} px cannot run at "
                                f"input {cfg.model.input_size} px with heatmaps {cfg.model.heatmap_size} px: keep "
                                f"model.input_size / model.heatmap_size at {s_in}/{s_hm} (--set model.input_size="
                                f"{s_in}, or --set model.heatmap_size={cfg.model.input_size * s_hm // s_in})")
        if getattr(model, "hm_head", None) is not None:
            model.hm_head.size = cfg.model.heatmap_size
    model.stored_whole = True
    return model


def stored_whole(model: torch.nn.Module) -> bool:
    """Whether a run must save ``model`` whole (a pruned start) rather than as a dense state dict."""
    return bool(getattr(model, "stored_whole", False))


def unaugmented_train(cfg: RunConfig, train, schema, n: int = CALIB_BN_IMAGES):
    """The first ``n`` training samples with the validation crop (no augmentation), or None
    when ``train.init_checkpoint`` is not an ONNX model (nothing to calibrate)."""
    if not cfg.train.init_checkpoint.lower().endswith(".onnx"):
        return None
    return make_datasets(cfg, [], list(train[:n]), schema)[1]


def real_batch(ds, n: int = 16) -> np.ndarray:
    return np.stack([ds[i]["image"].numpy() for i in range(min(n, len(ds)))])


def export_best(trainer: Trainer, run_dir: Path, name: str, info: dict, model: torch.nn.Module | None = None,
                events: EventStream | None = None) -> Path:
    """Export best.pt's weights (or ``model``) to run_dir/export/NAME.onnx."""
    cfg = trainer.cfg
    best = trainer.best
    if model is None:
        st = load_file(trainer.ckpt_dir / "best.pt")
        model = st.get("model_object") or LandmarkNet(cfg.model)
        model.load_state_dict(st["model_state"])
    out = run_dir / "export" / f"{name}.onnx"
    metrics = best.get("metrics", {}).get(best.get("decode", ""), {})
    manifest = export_model(
        model, trainer.val_ds.schema, out, input_size=cfg.model.input_size, heatmap_size=cfg.model.heatmap_size,
        sigma=cfg.train.sigma, decode=best.get("decode", "regression"), arch=cfg.model.arch,
        real_inputs=real_batch(trainer.val_ds),
        info={"val_metrics": metrics, "val_by_decode": {k: v.get(cfg.train.select) for k, v in
                                                           best.get("metrics", {}).items()},
              "best_epoch": best.get("epoch"), "licence": LICENCE_NOTE,
              "data": {"format": cfg.data.format, "root_name": Path(cfg.data.root).name,
                       "train_samples": len(trainer.train_ds), "val_samples": len(trainer.val_ds)},
              "run_config": cfg.to_dict(), **info},
    )
    ev = events or trainer.events
    ev.emit("exported", onnx=str(out), manifest=str(out.with_suffix(".json")), name=manifest.name)
    return out


def prepare_run_dir(run_dir: Path, cfg: RunConfig, resume: bool) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg_path = run_dir / "config.json"
    if resume:
        if not (run_dir / "checkpoints" / "last.pt").is_file():
            raise TrainingError(f"{run_dir}: nothing to resume (no checkpoints/last.pt)")
    elif (run_dir / "checkpoints" / "last.pt").is_file():
        raise TrainingError(f"{run_dir} already holds a run; pass --resume to continue it or choose a new --run-dir")
    cfg.save(cfg_path)


def run_train(cfg: RunConfig, run_dir: Path, resume: bool = False, cancel: CancelFlag | None = None,
              events: EventStream | None = None, export: bool = True) -> dict:
    """Train one landmark network (teacher or student) with LOSS = lambda_rh*loss1 + loss2."""
    t0 = time.time()
    device = pick_device(cfg.train.device)
    dinfo = init_distributed(device)
    if device.type == "cuda" and dinfo.world > 1:
        device = torch.device("cuda", dinfo.local_rank)
        torch.cuda.set_device(device)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    torch.manual_seed(cfg.train.seed + dinfo.rank)
    if dinfo.main:
        prepare_run_dir(run_dir, cfg, resume)
    events = events or EventStream(run_dir, enabled=dinfo.main)
    train, val, schema = load_data(cfg)
    tr_ds, va_ds = make_datasets(cfg, train, val, schema)
    model = init_model(cfg, events, unaugmented_train(cfg, train, schema))
    trainer = Trainer(cfg, model, run_dir, events, tr_ds, va_ds, cancel=cancel, device=device, dist_info=dinfo,
                      save_whole_model=stored_whole(model), tag="train")
    prior_wall = 0.0
    if resume:
        trainer.resume(run_dir / "checkpoints" / "last.pt")
        prior_wall = float(json.loads((run_dir / "wall_time.json").read_text())["seconds"]) \
            if (run_dir / "wall_time.json").is_file() else 0.0
    try:
        best = trainer.fit()
    finally:
        if dinfo.main:
            atomic_write_text(run_dir / "wall_time.json", json.dumps({"seconds": prior_wall + time.time() - t0}))
    wall = prior_wall + time.time() - t0
    result = {"best": {k: v for k, v in best.items() if k != "metrics"}, "wall_time_s": wall,
              "best_metrics": best.get("metrics", {}).get(best.get("decode"), {})}
    if dinfo.main and export:
        name = cfg.train.export_name or f"{cfg.model.arch}-{schema.name}"
        out = export_best(trainer, run_dir, name, {"epochs": cfg.train.epochs, "wall_time_s": round(wall, 1)})
        result["onnx"] = str(out)
    if dinfo.main:
        events.emit("done", **result)
    if dinfo.world > 1:
        torch.distributed.destroy_process_group()
    return result


def add_job_args(p: argparse.ArgumentParser) -> None:
    """The arguments of every job that runs from a config: train, distill, prune."""
    p.add_argument("--config", required=True, help="run config JSON (see training/configs/)")
    p.add_argument("--run-dir", required=True, help="folder for config, checkpoints, events and exports")
    p.add_argument("--resume", action="store_true", help="continue from RUN_DIR/checkpoints/last.pt")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a config value, e.g. --set train.epochs=3")
    p.add_argument("--no-export", action="store_true", help="do not export the best model at the end")


def cmd_train(args: argparse.Namespace, events: EventStream | None, cancel: CancelFlag) -> dict:
    cfg = load_config(args.config, args.set)
    run_dir = Path(args.run_dir).expanduser().resolve()
    return run_train(cfg, run_dir, resume=args.resume, cancel=cancel, export=not args.no_export)


COMMANDS = {
    "train": ("Train a landmark network (teacher or student).", add_job_args, cmd_train),
}
