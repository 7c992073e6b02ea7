"""The distillation loss (METHOD.md section 2, eq. 6, 8).

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
* ``distill.pool`` = ``"global"`` (the paper's eq. 6, the default) pools both maps to one vector
  per image. ``"spatial"`` (not in the paper) keeps the student's final grid (input / 32, e.g.
  4 x 4): the teacher's map is average-pooled onto it, both are projected per cell (the same
  frozen teacher matrix, the same learned 1x1 student conv), the teacher is centred per cell, and
  the normalised vectors are compared cell by cell. A global average cannot say *where* the
  teacher sees an eye; a grid can.
* ``distill.lambda_out`` > 0 adds output distillation (not in the paper, ``training/distill/outputs.py``):
  then the teacher runs whole once a step, and its final map serves loss3 as well.
* The frozen teacher runs under no_grad, in eval mode, through its backbone only (its
  heads are not needed), in bfloat16 autocast on CPU / float16 on CUDA
  (``distill.teacher_amp``); the pooled feature is compared in float32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from training.config import RunConfig
from training.distill.teacher import FrozenTeacher
from training.nets.losses import landmark_loss

CALIB_IMAGES = 128  # un-augmented training crops used to centre the teacher vector


def distill_loss(student_vec: torch.Tensor, teacher_vec: torch.Tensor) -> torch.Tensor:
    """loss3: MSE between projected, pooled student and teacher features (B, D)."""
    return F.mse_loss(student_vec, teacher_vec)


class FeatureDistiller(nn.Module):
    """Projections of pooled student / teacher feature maps and loss3.

    ``student_proj``: learned 1x1 conv C_s -> D (with bias). ``teacher_weight`` (D, C_t):
    frozen (semi-)orthogonal buffer. ``teacher_mean`` (D,): centring of the projected
    teacher vector (see the module docstring).
    """

    def __init__(self, student_channels: int, teacher_channels: int, dim: int, seed: int = 0,
                 grid: int = 0) -> None:
        """``grid`` 0: global pooling (the paper); N > 0: compare on the student's N x N grid."""
        super().__init__()
        self.grid = int(grid)
        self.student_proj = nn.Conv2d(student_channels, dim, 1, bias=True)
        g = torch.Generator().manual_seed(int(seed) + 1234)
        w = torch.empty(dim, teacher_channels)
        # Orthonormal rows (dim <= C_t) or columns (dim > C_t), like nn.init.orthogonal_.
        a = torch.randn(max(dim, teacher_channels), min(dim, teacher_channels), generator=g)
        q, r = torch.linalg.qr(a)
        q = q * torch.sign(torch.diagonal(r))
        w.copy_(q if dim >= teacher_channels else q.t())
        self.register_buffer("teacher_weight", w)
        self.register_buffer("teacher_mean", torch.zeros(dim, self.grid, self.grid) if self.grid else torch.zeros(dim))

    @property
    def dim(self) -> int:
        return self.teacher_weight.shape[0]

    def _pooled(self, feat: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) -> (B, C, N, N): averaged onto the grid (1 x 1 without one)."""
        return F.adaptive_avg_pool2d(feat.float(), self.grid or 1)

    def student_vector(self, feat_s: torch.Tensor) -> torch.Tensor:
        """(B, C_s, h, w) -> (B, D) (global) or (B, D, N, N) (grid): pooling, then the learned 1x1 projection."""
        v = self.student_proj(self._pooled(feat_s))
        return v if self.grid else v.flatten(1)

    def _teacher_projected(self, feat_t: torch.Tensor) -> torch.Tensor:
        v = torch.einsum("bchw,dc->bdhw", self._pooled(feat_t), self.teacher_weight)
        return v if self.grid else v.flatten(1)

    def teacher_vector(self, feat_t: torch.Tensor) -> torch.Tensor:
        """(B, C_t, h, w) -> (B, D) or (B, D, N, N): pooling, frozen projection, centring."""
        return self._teacher_projected(feat_t) - self.teacher_mean

    @torch.no_grad()
    def calibrate(self, teacher_feats: torch.Tensor) -> None:
        """Set the centring from teacher feature maps (N, C_t, h, w) of un-augmented crops."""
        self.teacher_mean.copy_(self._teacher_projected(teacher_feats).mean(0))

    def forward(self, feat_s: torch.Tensor, feat_t: torch.Tensor) -> torch.Tensor:
        """loss3 (eq. 6): MSE between the L2-normalised projected vectors (per grid cell with a grid)."""
        s = F.normalize(self.student_vector(feat_s), dim=1)
        t = F.normalize(self.teacher_vector(feat_t), dim=1)
        return distill_loss(s, t)


def make_distill_loss(cfg: RunConfig, teacher: FrozenTeacher | None, distiller: FeatureDistiller | None):
    """loss_t(out, batch) = LOSS + lambda_dp * loss3 [+ lambda_out * LOSS against the teacher's labels,
    ``training/distill/outputs.py``] (just LOSS without a teacher, or when both lambdas are 0: then the step does
    not run the teacher at all, so a no-distillation arm costs what plain training costs and learns the same)."""
    lam_rh, lam_dp, lam_out = cfg.train.lambda_rh, cfg.distill.lambda_dp, cfg.distill.lambda_out
    labels = None
    if teacher is not None and lam_out > 0:
        from training.distill.outputs import TeacherLabels

        labels = TeacherLabels(teacher, cfg)

    def loss_fn(out: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        loss, parts = landmark_loss(out, batch, lam_rh)
        if teacher is None or distiller is None or (lam_dp == 0 and labels is None):
            return loss, parts  # nothing of the teacher weighs in this loss: its forward is skipped
        total = loss
        parts = {**parts, "loss_landmark": float(loss.detach())}
        if labels is not None:  # one whole-network teacher pass gives the features too
            out_t = teacher.outputs(batch["image"])
            feat_t = out_t["feat"]
            kd, _ = landmark_loss(out, labels.targets(out_t), lam_rh)
            total = total + lam_out * kd
            parts["loss_teacher_labels"] = float(kd.detach())
        else:
            feat_t = teacher.features(batch["image"])
        if lam_dp > 0 or labels is None:
            l3 = distiller(out["feat"], feat_t)
            total = total + lam_dp * l3
            parts["loss_distill"] = float(l3.detach())
        return total, parts

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
    grid = max(1, cfg.model.input_size // 32) if cfg.distill.pool == "spatial" else 0
    d = FeatureDistiller(student.backbone.out_channels, teacher.feat_channels, cfg.distill.proj_dim,
                         seed=cfg.train.seed, grid=grid)
    calibrate_distiller(d, teacher, calib_ds)
    return d
