"""Immutable messages that cross the capture -> inference -> GUI thread boundaries."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kpdesk.vision.results import FrameResult
from kpdesk.vision.schema import KeypointSchema


def frozen_array(a: np.ndarray) -> np.ndarray:
    """Mark an array read-only so a message that carries it cannot be changed in place."""
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class FramePacket:
    """One captured frame.

    Attributes:
        source_id: which capture session produced it (stale sources are ignored).
        frame_index: 0-based index within that source.
        timestamp: seconds, from the source.
        frame_bgr: (H, W, 3) uint8, read-only.
        mirrored: the camera image was flipped left-right (selfie view) before anything
            else saw it; landmarks are in the flipped frame's pixels.
        source_file: the image file it came from (image and folder sources), else None.
    """

    source_id: int
    frame_index: int
    timestamp: float
    frame_bgr: np.ndarray
    mirrored: bool = False
    source_file: str | None = None


@dataclass(frozen=True)
class VariantSpec:
    """One (model, detector, decode mode) combination to run on every frame."""

    label: str
    model_path: Path
    detector: str = "auto"
    decode_mode: str | None = None

    @property
    def key(self) -> tuple[str, str, str | None]:
        return (str(self.model_path), self.detector, self.decode_mode)


@dataclass(frozen=True, eq=False)
class VariantResult:
    """What one variant made of one frame.

    Attributes:
        spec: the variant.
        result: the pipeline's output, or None if it failed on this frame.
        error: why it failed, or None.
        model_name: name of the model actually in use (may lag a pending switch).
        schema: keypoint schema of that model.
        input_size: S of the model's crops (heatmaps are drawn through the S x S crop).
        ort_threads: onnxruntime intra-op threads of the session (0 = onnxruntime's choice).
        wall_ms: wall time of the whole ``Pipeline.process`` call.
        frame: the frame this variant processed (occluder painted in). Variants run at their
            own rates, so in Compare each pane shows its own variant's frame.
        occluder_quad: the occluder painted into ``frame``, if any (see ``InferenceResult``).
        fps: frames this variant processed per second (its own thread's rate).
        seq: how many results this variant's thread has produced (tells a new one from a repeat).
        dropped: frames this variant skipped because a newer one arrived first.
    """

    spec: VariantSpec
    result: FrameResult | None
    error: str | None = None
    model_name: str = ""
    schema: KeypointSchema | None = None
    input_size: int = 0
    ort_threads: int = 0
    wall_ms: float = 0.0
    frame: FramePacket | None = None
    occluder_quad: tuple[tuple[float, float], ...] | None = None
    fps: float = 0.0
    seq: int = 0
    dropped: int = 0


@dataclass(frozen=True, eq=False)
class InferenceResult:
    """Everything the GUI needs to draw one processed frame.

    Every variant runs on its own thread at its own rate, so ``variants`` holds the newest
    result of each (in the requested order), each with the frame it processed; ``frame`` is
    the newest of those frames (with one variant, the frame it processed).

    Attributes:
        frame: the frame as the models saw it (occluder painted in), read-only.
        variants: the newest result of each running variant, in the requested order.
        fps: frames per second of the first variant (with none, of the video alone).
        capture_dropped: frames the first variant never saw: overwritten by a newer one
            on their way from the capture thread to it.
        display_dropped: results the GUI never drew because a newer one replaced them.
        occluder_quad: corners (image pixels, clockwise from its top-left) of the occluder
            painted into ``frame``, if any; it turns with the face's roll.
        agreements: for Compare, every pair of variants matched on a frame both processed
            since the GUI last took a result (``kpdesk.workers.agreement.PairAgreement``).
    """

    frame: FramePacket
    variants: tuple[VariantResult, ...]
    fps: float = 0.0
    capture_dropped: int = 0
    display_dropped: int = 0
    occluder_quad: tuple[tuple[float, float], ...] | None = None
    processed_at: float = 0.0
    extras: dict = field(default_factory=dict)
    agreements: tuple = ()

    @property
    def primary(self) -> VariantResult | None:
        return self.variants[0] if self.variants else None

    @property
    def occluder_box(self) -> tuple[int, int, int, int] | None:
        """Integer bounding box (x0, y0, x1, y1) of the painted occluder, if any."""
        if self.occluder_quad is None:
            return None
        from kpdesk.workers.occlusion import quad_bbox

        return quad_bbox(self.occluder_quad, self.frame.frame_bgr.shape)  # type: ignore[arg-type]
