"""The frozen teacher of a distillation: a trained model (checkpoint or shipped ONNX) in eval
mode, without gradients, giving its final backbone feature map."""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F

from training.config import RunConfig
from training.jobs.engine import TrainingError

log = logging.getLogger(__name__)


class FrozenTeacher:
    """The trained teacher, frozen: eval mode, no gradients, backbone features only."""

    def __init__(self, path: str, device: torch.device, amp: bool = True, channels_last: bool = True,
                 flip: bool = False, label_offset: tuple[float, ...] = (0.0, 0.0)) -> None:
        """``flip``: ``outputs`` is the average over the crop and its mirror image, moved by ``label_offset``
        crop pixels of the teacher (``training.nets.flip.FlipAveraged``); ``features`` stay the plain ones."""
        from kpdesk.vision.schema import get_schema
        from training.jobs.checkpoints import model_from_checkpoint
        from training.nets.flip import FlipAveraged

        model, cfg, st = model_from_checkpoint(path)
        self.path = path
        self.cfg = cfg
        has_hm = cfg.model.heatmap_size > 0
        # The decoding the teacher's own run chose on val (a shipped ONNX carries it in its manifest).
        self.decode = (st.get("best") or {}).get("decode") or ("fusion" if has_hm else "regression")
        self.net = model.to(device).eval()
        for p in self.net.parameters():
            p.requires_grad_(False)
        if channels_last:
            self.net.to(memory_format=torch.channels_last)
        self.model = self.net
        if flip:
            if cfg.model.num_points != 68:
                raise TrainingError(f"distill.teacher_flip: no mirror pairs known for {cfg.model.num_points} points")
            self.model = FlipAveraged(self.net, get_schema("ibug68").flip_perm, cfg.model.input_size,
                                      tuple(label_offset)).eval()
        self.device = device
        self.channels_last = channels_last
        self.amp_dtype = torch.bfloat16 if device.type == "cpu" else torch.float16
        self.amp = amp

    @property
    def feat_channels(self) -> int:
        return self.net.backbone.out_channels

    def _input(self, x: torch.Tensor) -> torch.Tensor:
        """The batch at the teacher's input size S_t: a smaller crop is resized (bilinear, pixel
        centres kept: the normalised coordinates ``(pts + 0.5) / S`` of a point do not change)."""
        self.model.eval()
        size = self.cfg.model.input_size
        if x.shape[-1] != size or x.shape[-2] != size:
            x = F.interpolate(x.float(), size=(size, size), mode="bilinear", align_corners=False)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    @torch.no_grad()
    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) -> the final backbone map (B, C_t, S_t/32, S_t/32), float32."""
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp):
            _, feat = self.net.backbone(self._input(x))
        return feat.float()

    @torch.no_grad()
    def outputs(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, 3, S, S) -> the whole network's outputs (``coords``, ``feat``, ``heatmaps``), float32;
        the heads run in float32 whatever the backbone's autocast."""
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp):
            out = self.model(self._input(x))
        return {k: v.float() for k, v in out.items()}


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
