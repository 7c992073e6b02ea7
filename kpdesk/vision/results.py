"""Immutable results that cross thread and process boundaries."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

STAGES = ("detect", "preprocess", "inference", "decode")


@dataclass(frozen=True)
class StageTimings:
    """Milliseconds spent in each stage of one frame."""

    detect: float = 0.0
    preprocess: float = 0.0
    inference: float = 0.0
    decode: float = 0.0
    total: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return {"detect": self.detect, "preprocess": self.preprocess, "inference": self.inference,
                "decode": self.decode, "total": self.total}


@dataclass(frozen=True, eq=False)
class FaceResult:
    """One face in one frame.

    Attributes:
        box_xyxy: detector (or tracker) box in image pixels.
        pts_img: (K, 2) landmarks in image pixels.
        conf: (K,) per-point confidence in [0, 1].
        crop_matrix: (2, 3) image -> crop map used for this face.
        heatmap: optional (K, H, H) heatmaps in crop space (for overlays).
        tracked: True when the crop came from the previous frame's landmarks.
        detector_score: detector confidence, or None when tracked.
    """

    box_xyxy: tuple[float, float, float, float]
    pts_img: np.ndarray
    conf: np.ndarray
    crop_matrix: np.ndarray
    heatmap: np.ndarray | None = None
    tracked: bool = False
    detector_score: float | None = None

    @property
    def mean_conf(self) -> float:
        return float(np.mean(self.conf)) if self.conf.size else 0.0


@dataclass(frozen=True, eq=False)
class FrameResult:
    """All faces found in one frame, with the model that found them and the timings.
    ``frame_size`` is the frame's (width, height) in pixels, (0, 0) when unknown."""

    frame_index: int
    model_name: str
    faces: tuple[FaceResult, ...]
    timings: StageTimings
    detector_name: str = ""
    timestamp: float = 0.0
    extras: dict = field(default_factory=dict)
    frame_size: tuple[int, int] = (0, 0)
