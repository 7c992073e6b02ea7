"""The distillation job: a student trained with loss_t = LOSS + lambda_dp * loss3 from a frozen
teacher (METHOD.md section 2).

``python -m training distill --config C --run-dir D [--resume] [--set ...]``

Where things are: the distillation loss (loss3, the projections and their calibration) is in
``training/distill/loss.py``, the frozen teacher in ``training/distill/teacher.py``.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import torch

from kpdesk.vision.files import atomic_write_text
from training.config import RunConfig, checkpoint_problem, load_config
from training.distill.loss import CALIB_IMAGES, build_distiller, make_distill_loss
from training.distill.teacher import FrozenTeacher, check_geometry
from training.events import EventStream
from training.jobs.engine import CancelFlag, Trainer, TrainingError, load_data, make_datasets, pick_device
from training.jobs.train import (
    add_job_args,
    export_best,
    init_model,
    prepare_run_dir,
    stored_whole,
    unaugmented_train,
)

log = logging.getLogger(__name__)


def single_process_only(job: str) -> None:
    import os

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise TrainingError(f"{job} runs in a single process (the distillation projections are not DDP-wrapped)")


def unaugmented(cfg: RunConfig, samples, schema):
    """``samples`` with the canonical validation crop (no augmentation), e.g. for calibration."""
    return make_datasets(cfg, [], samples, schema)[1]


def run_distill(cfg: RunConfig, run_dir: Path, resume: bool = False, cancel: CancelFlag | None = None,
                events: EventStream | None = None, export: bool = True) -> dict:
    """Distil the frozen ``distill.teacher`` into a student built like run_train's."""
    single_process_only("distill")
    if not cfg.distill.teacher:
        raise TrainingError("distill.teacher is empty: set it to the teacher's checkpoint (.pt) or shipped .onnx")
    problem = checkpoint_problem(cfg.distill.teacher)  # refused before the run folder is made, used or not
    if problem:
        raise TrainingError(f"distill.teacher: {cfg.distill.teacher}: {problem}")
    uses_teacher = cfg.distill.lambda_dp > 0 or cfg.distill.lambda_out > 0
    t0 = time.time()
    device = pick_device(cfg.train.device)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    torch.manual_seed(cfg.train.seed)
    prepare_run_dir(run_dir, cfg, resume)
    events = events or EventStream(run_dir)
    # With both weights 0 nothing of the teacher reaches the loss: it is not loaded, and the run is plain training
    # (the no-distillation arm of an equal-budget comparison). Data order, augmentation and the heads' start come from
    # train.seed alone, so this arm still sees exactly what its distilled twin sees.
    teacher = None
    if uses_teacher:
        teacher = FrozenTeacher(cfg.distill.teacher, device, cfg.distill.teacher_amp, cfg.train.channels_last,
                                flip=cfg.distill.teacher_flip, label_offset=cfg.distill.teacher_label_offset)
        check_geometry(cfg, teacher)
    train, val, schema = load_data(cfg)
    tr_ds, va_ds = make_datasets(cfg, train, val, schema)
    model = init_model(cfg, events, unaugmented_train(cfg, train, schema))
    distiller = None
    if teacher is None:
        events.emit("log", message="lambda_dp 0 and lambda_out 0: the teacher is not loaded, this is plain training")
    else:
        distiller = build_distiller(cfg, model, teacher, unaugmented(cfg, train[:CALIB_IMAGES], schema))
        events.emit("log", message=f"teacher {teacher.path} ({teacher.cfg.model.arch}, {teacher.feat_channels} ch) "
                                   f"frozen; projections {model.backbone.out_channels}->{distiller.dim}<-"
                                   f"{teacher.feat_channels}; lambda_dp {cfg.distill.lambda_dp}, "
                                   f"lambda_out {cfg.distill.lambda_out}")
    trainer = Trainer(cfg, model, run_dir, events, tr_ds, va_ds, loss_fn=make_distill_loss(cfg, teacher, distiller),
                      aux=distiller, cancel=cancel, device=device, save_whole_model=stored_whole(model), tag="distill",
                      checkpoint_extra=lambda: {"teacher": cfg.distill.teacher, "lambda_dp": cfg.distill.lambda_dp})
    prior_wall = 0.0
    wall_file = run_dir / "wall_time.json"
    if resume:
        trainer.resume(run_dir / "checkpoints" / "last.pt")
        prior_wall = float(json.loads(wall_file.read_text())["seconds"]) if wall_file.is_file() else 0.0
    try:
        best = trainer.fit()
    finally:
        atomic_write_text(wall_file, json.dumps({"seconds": prior_wall + time.time() - t0}))
    wall = prior_wall + time.time() - t0
    result = {"best": {k: v for k, v in best.items() if k != "metrics"}, "wall_time_s": wall,
              "best_metrics": best.get("metrics", {}).get(best.get("decode"), {})}
    if export:
        name = cfg.train.export_name or "student"
        out = export_best(trainer, run_dir, name, {"epochs": cfg.train.epochs, "wall_time_s": round(wall, 1),
                                                    "distilled_from": Path(cfg.distill.teacher).name,
                                                    "lambda_dp": cfg.distill.lambda_dp})
        result["onnx"] = str(out)
    events.emit("done", **result)
    return result


def cmd_distill(args, events: EventStream | None, cancel: CancelFlag) -> dict:
    cfg = load_config(args.config, args.set)
    run_dir = Path(args.run_dir).expanduser().resolve()
    return run_distill(cfg, run_dir, resume=args.resume, cancel=cancel, export=not args.no_export)


COMMANDS = {
    "distill": ("Distil a frozen teacher into the student: loss_t = LOSS + lambda_dp * loss3.", add_job_args,
                cmd_distill),
}
