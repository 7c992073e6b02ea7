"""The overlay renderer (pure numpy + cv2): marks where the result says, cheap heatmap blend."""

from __future__ import annotations

import numpy as np
import pytest

from kpdesk.gui.render import (
    OCCLUDED_BGR,
    OverlayOptions,
    blend_heatmap_roi,
    confidence_color,
    heatmap_layer,
    render_variant,
)
from kpdesk.vision import draw
from kpdesk.vision.codecs import HeatmapCodec
from kpdesk.vision.results import FaceResult, FrameResult, StageTimings
from kpdesk.vision.schema import get_schema
from kpdesk.vision.transforms import CropSpec, apply_affine, invert_affine
from kpdesk.workers.messages import VariantResult, VariantSpec

pytestmark = pytest.mark.gui

S, H = 64, 16


def _face() -> tuple[np.ndarray, FaceResult]:
    frame = np.full((240, 320, 3), 90, np.uint8)
    spec = CropSpec(170.0, 110.0, 120.0, 20.0)
    m = spec.matrix(S)
    rng = np.random.default_rng(1)
    pts_crop = rng.uniform(12, 52, (5, 2))
    hm, _ = HeatmapCodec(S, H, 1.5).encode(pts_crop)
    conf = np.array([0.95, 0.9, 0.1, 0.7, 0.05], np.float32)
    face = FaceResult(box_xyxy=(120.0, 60.0, 220.0, 160.0), pts_img=apply_affine(pts_crop, invert_affine(m)),
                      conf=conf, crop_matrix=m, heatmap=hm)
    return frame, face


def test_roi_heatmap_blend_matches_the_full_frame_blend() -> None:
    frame, face = _face()
    for point in (-1, 2):
        layer = heatmap_layer(face, point)
        full, roi = frame.copy(), frame.copy()
        draw.blend_heatmap(full, layer, face.crop_matrix, S, alpha=0.6)
        blend_heatmap_roi(roi, layer, face.crop_matrix, S, 0.6)
        assert np.abs(full.astype(int) - roi.astype(int)).max() <= 3
        assert (full != frame).any()


def test_points_are_drawn_at_their_coordinates_with_confidence_colours_and_occlusion_marks() -> None:
    frame, face = _face()
    schema = get_schema("mtfl5")
    vr = VariantResult(VariantSpec("live", "m.onnx"), FrameResult(0, "m", (face,), StageTimings()),  # type: ignore[arg-type]
                       model_name="m", schema=schema, input_size=S)
    img = render_variant(frame, vr, OverlayOptions(box=False, skeleton=False, occluded_below=0.3))
    for (x, y), c in zip(face.pts_img, face.conf):
        want = OCCLUDED_BGR if c < 0.3 else confidence_color(float(c))
        assert img[int(round(y)), int(round(x))].tolist() == list(want)
    bare = render_variant(frame, vr, OverlayOptions(keypoints=False, box=False, skeleton=False))
    assert np.array_equal(bare, frame)
    heat = render_variant(frame, vr, OverlayOptions(keypoints=False, box=False, heatmap=True))
    assert (heat != frame).any()
