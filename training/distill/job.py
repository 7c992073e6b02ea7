"""Feature distillation from a frozen teacher into the student (METHOD.md section 2, eq. 6, 8).

``python -m training distill --config C --run-dir D [--resume] [--set ...]``

loss_t = LOSS + lambda_dp * loss3, where loss3 compares the globally average-pooled
final backbone maps (``out["feat"]``) of student and teacher after projecting both to
``distill.proj_dim`` dimensions.

Choices (the paper leaves them open):

* Projections. A 1x1 convolution on a GAP'd (B, C, 1, 1) map is the same linear map
  as a Linear layer on the pooled (B, C) vector; we use ``nn.Conv2d(C, D, 1)`` on the
  pooled map to stay literal to the paper. The student projection is learned (with
  bias); it is an ``aux`` module of the Trainer, so it is saved and resumed with the run.
* No collapse. If both projections were learned, both could shrink to zero (or map
  every image to one shared constant vector) and drive loss3 to 0 without the student
  learning anything from the teacher. The teacher projection is therefore FROZEN: a
  random (semi-)orthogonal D x C_t matrix, fixed by the seed and stored as a buffer. A
  (semi-)orthogonal map keeps the geometry of the teacher's pooled feature (distances
  and angles in the D-dim subspace it spans), so the target cannot be made trivial.
* Scale. The teacher vector is centred with its mean over 128 un-augmented training
  crops (computed once, stored as a buffer), then both vectors are L2-normalised before
  the MSE. loss3 = (2 - 2 cos(s, t)) / D is then independent of the teacher's arbitrary
  activation scale and lies on the same order as LOSS (~1e-3 for D = 256), so the
  paper's lambda_dp grid {0.2 .. 5} is meaningful. Centring matters: pooled ReLU
  features share a large common component that would make every cosine close to 1.
* Teacher and student see the very same batch tensor (same crop, same augmentation).
  A teacher trained at a larger input size (e.g. 192 px against the student's 128) gets
  that tensor bilinearly resized to its own size, so it reads the same view of the face;
  a teacher trained at a smaller size than the student is refused.
* The frozen teacher runs under no_grad, in eval mode, through its backbone only (its
  heads are not needed), in bfloat16 autocast on CPU / float16 on CUDA
  (``distill.teacher_amp``); the pooled feature is compared in float32.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from training.config import RunConfig, load_config
from training.jobs.engine import CancelFlag, Trainer, TrainingError, load_data, make_datasets, pick_device
from training.events import EventStream
from training.nets.losses import distill_loss, landmark_loss

log = logging.getLogger(__name__)

CALIB_IMAGES = 128  # un-augmented training crops used to centre the teacher vector


class FeatureDistiller(nn.Module):
    """Projections of pooled student / teacher feature maps and loss3.

    ``student_proj``: learned 1x1 conv C_s -> D (with bias). ``teacher_weight`` (D, C_t):
    frozen (semi-)orthogonal buffer. ``teacher_mean`` (D,): centring of the projected
    teacher vector (see the module docstring).
    """

    def __init__(self, student_channels: int, teacher_channels: int, dim: int, seed: int = 0) -> None:
        super().__init__()
        self.student_proj = nn.Conv2d(student_channels, dim, 1, bias=True)
        g = torch.Generator().manual_seed(int(seed) + 1234)
        w = torch.empty(dim, teacher_channels)
        # Orthonormal rows (dim <= C_t) or columns (dim > C_t), like nn.init.orthogonal_.
        a = torch.randn(max(dim, teacher_channels), min(dim, teacher_channels), generator=g)
        q, r = torch.linalg.qr(a)
        q = q * torch.sign(torch.diagonal(r))
        w.copy_(q if dim >= teacher_channels else q.t())
        self.register_buffer("teacher_weight", w)
        self.register_buffer("teacher_mean", torch.zeros(dim))

    @property
    def dim(self) -> int:
        return self.teacher_weight.shape[0]

    def student_vector(self, feat_s: torch.Tensor) -> torch.Tensor:
        """(B, C_s, h, w) -> (B, D): GAP then the learned 1x1 projection."""
        return self.student_proj(feat_s.float().mean(dim=(2, 3), keepdim=True)).flatten(1)

    def teacher_vector(self, feat_t: torch.Tensor) -> torch.Tensor:
        """(B, C_t, h, w) -> (B, D): GAP, frozen projection, centring."""
        return feat_t.float().mean(dim=(2, 3)) @ self.teacher_weight.t() - self.teacher_mean

    @torch.no_grad()
    def calibrate(self, teacher_feats: torch.Tensor) -> None:
        """Set the centring from teacher feature maps (N, C_t, h, w) of un-augmented crops."""
        self.teacher_mean.copy_((teacher_feats.float().mean(dim=(2, 3)) @ self.teacher_weight.t()).mean(0))

    def forward(self, feat_s: torch.Tensor, feat_t: torch.Tensor) -> torch.Tensor:
        """loss3 (eq. 6): MSE between the L2-normalised projected vectors."""
        s = F.normalize(self.student_vector(feat_s), dim=1)
        t = F.normalize(self.teacher_vector(feat_t), dim=1)
        return distill_loss(s, t)


class FrozenTeacher:
    """The trained teacher, frozen: eval mode, no gradients, backbone features only."""

    def __init__(self, path: str, device: torch.device, amp: bool = True, channels_last: bool = True) -> None:
        from training.jobs.checkpoints import model_from_checkpoint

        model, cfg, _ = model_from_checkpoint(path)
        self.path = path
        self.cfg = cfg
        self.model = model.to(device).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        if channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.device = device
        self.channels_last = channels_last
        self.amp_dtype = torch.bfloat16 if device.type == "cpu" else torch.float16
        self.amp = amp

    @property
    def feat_channels(self) -> int:
        return self.model.backbone.out_channels

    @torch.no_grad()
    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) -> the final backbone map (B, C_t, S_t/32, S_t/32), float32. A crop
        smaller than the teacher's input size S_t is resized to it (bilinear) first."""
        self.model.eval()
        size = self.cfg.model.input_size
        if x.shape[-1] != size or x.shape[-2] != size:
            x = F.interpolate(x.float(), size=(size, size), mode="bilinear", align_corners=False)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp):
            _, feat = self.model.backbone(x)
        return feat.float()


def check_geometry(student_cfg: RunConfig, teacher: FrozenTeacher) -> None:
    """Teacher and student share each batch tensor: the teacher's input size must be at least the
    student's (a larger teacher gets the crop resized up to its own size, see ``FrozenTeacher.features``)."""
    ts, ss = teacher.cfg.model.input_size, student_cfg.model.input_size
    if ts < ss:
        raise TrainingError(f"teacher {teacher.path} was trained at input_size {ts}, the student config says {ss}; "
                            "distillation feeds the teacher the student's crop, so the teacher's input size must be "
                            "at least the student's")
    if ts != ss:
        log.info("teacher input %d px, student %d px: the teacher sees each crop resized to %d px", ts, ss, ts)
    if teacher.cfg.data.format != student_cfg.data.format:
        log.warning("teacher data format %s differs from the student's %s", teacher.cfg.data.format,
                    student_cfg.data.format)


def make_distill_loss(cfg: RunConfig, teacher: FrozenTeacher | None, distiller: FeatureDistiller | None):
    """loss_t(out, batch) = LOSS + lambda_dp * loss3 (just LOSS without a teacher)."""
    lam_rh, lam_dp = cfg.train.lambda_rh, cfg.distill.lambda_dp

    def loss_fn(out: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        loss, parts = landmark_loss(out, batch, lam_rh)
        if teacher is None or distiller is None:
            return loss, parts
        l3 = distiller(out["feat"], teacher.features(batch["image"]))
        parts = {**parts, "loss_landmark": float(loss.detach()), "loss_distill": float(l3.detach())}
        return loss + lam_dp * l3, parts

    return loss_fn


@torch.no_grad()
def calibrate_distiller(distiller: FeatureDistiller, teacher: FrozenTeacher, ds, n: int = CALIB_IMAGES,
                        batch_size: int = 32) -> None:
    feats = []
    for i in range(0, min(n, len(ds)), batch_size):
        x = torch.stack([ds[j]["image"] for j in range(i, min(i + batch_size, n, len(ds)))])
        feats.append(teacher.features(x.to(teacher.device)).cpu())
    distiller.calibrate(torch.cat(feats))


def build_distiller(cfg: RunConfig, student: nn.Module, teacher: FrozenTeacher, calib_ds) -> FeatureDistiller:
    d = FeatureDistiller(student.backbone.out_channels, teacher.feat_channels, cfg.distill.proj_dim,
                         seed=cfg.train.seed)
    calibrate_distiller(d, teacher, calib_ds)
    return d


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
    from training.jobs.train import export_best, init_model, prepare_run_dir, unaugmented_train

    single_process_only("distill")
    if not cfg.distill.teacher:
        raise TrainingError("distill.teacher is empty: set it to the teacher's checkpoint (.pt) or shipped .onnx")
    t0 = time.time()
    device = pick_device(cfg.train.device)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    torch.manual_seed(cfg.train.seed)
    prepare_run_dir(run_dir, cfg, resume)
    events = events or EventStream(run_dir)
    teacher = FrozenTeacher(cfg.distill.teacher, device, cfg.distill.teacher_amp, cfg.train.channels_last)
    check_geometry(cfg, teacher)
    train, val, schema = load_data(cfg)
    tr_ds, va_ds = make_datasets(cfg, train, val, schema)
    model = init_model(cfg, events, unaugmented_train(cfg, train, schema))
    distiller = build_distiller(cfg, model, teacher, unaugmented(cfg, train[:CALIB_IMAGES], schema))
    events.emit("log", message=f"teacher {teacher.path} ({teacher.cfg.model.arch}, {teacher.feat_channels} ch) "
                               f"frozen; projections {model.backbone.out_channels}->{distiller.dim}<-"
                               f"{teacher.feat_channels}; lambda_dp {cfg.distill.lambda_dp}")
    trainer = Trainer(cfg, model, run_dir, events, tr_ds, va_ds, loss_fn=make_distill_loss(cfg, teacher, distiller),
                      aux=distiller, cancel=cancel, device=device, tag="distill",
                      checkpoint_extra=lambda: {"teacher": cfg.distill.teacher, "lambda_dp": cfg.distill.lambda_dp})
    prior_wall = 0.0
    wall_file = run_dir / "wall_time.json"
    if resume:
        trainer.resume(run_dir / "checkpoints" / "last.pt")
        prior_wall = float(json.loads(wall_file.read_text())["seconds"]) if wall_file.is_file() else 0.0
    try:
        best = trainer.fit()
    finally:
        wall_file.write_text(json.dumps({"seconds": prior_wall + time.time() - t0}))
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


def _add_args(p) -> None:
    from training.cli import _add_job_args

    _add_job_args(p)


def cmd_distill(args, events: EventStream | None, cancel: CancelFlag) -> dict:
    cfg = load_config(args.config, args.set)
    run_dir = Path(args.run_dir).expanduser().resolve()
    return run_distill(cfg, run_dir, resume=args.resume, cancel=cancel, export=not args.no_export)


COMMANDS = {
    "distill": ("Distil a frozen teacher into the student: loss_t = LOSS + lambda_dp * loss3.", _add_args,
                cmd_distill),
}
