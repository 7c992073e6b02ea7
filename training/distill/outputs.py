"""Output distillation (not in the paper; ``distill.lambda_out``): the frozen teacher labels every
training crop on the fly, and the student learns those labels with the paper's own LOSS.

loss_t = LOSS + lambda_dp * loss3 + lambda_out * LOSS(student, teacher's labels)

* The teacher reads the very crop the student reads (same augmentation), resized to its own input
  size; its answer is decoded the way its run chose on val (``FrozenTeacher.decode``: regression,
  heatmap or fusion) into landmarks, then encoded with the *student's* codecs: coordinates in
  [0, 1] and Gaussian heatmaps at the student's heatmap size and sigma. So the targets have the
  form of a human label, and a face with no label at all (loss weight 0, e.g. a pseudo-labelled
  pack kept out of the landmark loss) still teaches the student what the teacher sees.
* The normalised coordinate of a point, ``(pts_crop + 0.5) / S``, is the same at every input size
  under a pixel-centre-preserving resize, so no conversion between the two crop sizes is needed
  beyond decoding with the teacher's size and encoding with the student's.
* The term is unweighted: every face in the batch counts, whatever its ``weight``.
"""

from __future__ import annotations

import numpy as np
import torch

from kpdesk.vision.codecs import HeatmapCodec, LandmarkDecoder, RegressionCodec
from training.config import RunConfig
from training.distill.teacher import FrozenTeacher


class TeacherLabels:
    """The teacher's outputs on a batch -> student targets (``coords``, ``heatmaps``, ``hm_weight``)."""

    def __init__(self, teacher: FrozenTeacher, student_cfg: RunConfig) -> None:
        tm = teacher.cfg.model
        self.decoder = LandmarkDecoder(tm.input_size, teacher.decode, tm.heatmap_size or None, teacher.cfg.train.sigma)
        self.teacher_reg = RegressionCodec(tm.input_size)
        sm = student_cfg.model
        self.student_reg = RegressionCodec(sm.input_size)
        self.student_hm = HeatmapCodec(sm.input_size, sm.heatmap_size, student_cfg.train.sigma) \
            if sm.heatmap_size > 0 else None

    def points(self, out_t: dict[str, torch.Tensor]) -> np.ndarray:
        """Teacher outputs -> (B, K, 2) landmarks in the student's crop pixels."""
        hms = out_t.get("heatmaps")
        pts_t, _ = self.decoder.decode(out_t["coords"].cpu().numpy(),
                                       hms.cpu().numpy() if hms is not None else None)
        return self.student_reg.decode(self.teacher_reg.encode(pts_t))

    def targets(self, out_t: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        pts = self.points(out_t)
        dev = out_t["coords"].device
        tgt = {"coords": torch.from_numpy(self.student_reg.encode(pts).reshape(len(pts), -1).astype(np.float32))}
        if self.student_hm is not None:
            enc = [self.student_hm.encode(p) for p in pts]
            tgt["heatmaps"] = torch.from_numpy(np.stack([h for h, _ in enc]))
            tgt["hm_weight"] = torch.from_numpy(np.stack([w for _, w in enc]))
        return {k: v.to(dev) for k, v in tgt.items()}
