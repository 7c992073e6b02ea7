"""Drawing helpers paint where the points are and leave the input frame alone."""

from __future__ import annotations

import numpy as np

from kpdesk.vision.draw import blend_heatmap, conf_colors, draw_face, render_result
from kpdesk.vision.results import FaceResult, FrameResult, StageTimings
from kpdesk.vision.schema import get_schema
from kpdesk.vision.transforms import CropSpec


def _face(heatmap: np.ndarray | None = None) -> FaceResult:
    ang = np.linspace(0, 2 * np.pi, 68, endpoint=False)
    pts = np.stack([100 + 40 * np.cos(ang), 100 + 40 * np.sin(ang)], axis=-1)
    conf = np.linspace(0, 1, 68).astype(np.float32)
    return FaceResult((50, 50, 150, 150), pts, conf, CropSpec(100, 100, 120).matrix(64), heatmap)


def test_conf_colors_red_to_green() -> None:
    c = conf_colors(np.array([0.0, 0.5, 1.0]))
    assert c[0].tolist() == [0, 0, 255] and c[1].tolist() == [0, 255, 255] and c[2].tolist() == [0, 255, 0]


def test_render_result_copies_and_draws() -> None:
    frame = np.zeros((200, 200, 3), np.uint8)
    res = FrameResult(0, "m", (_face(),), StageTimings())
    out = render_result(frame, res, get_schema("ibug68"), indices=True)
    assert frame.max() == 0 and out.shape == frame.shape
    assert out[100, 140].any()  # a point at (140, 100)
    assert out[50, 100].any()  # the box's top edge


def test_heatmap_blend_lands_inside_the_crop() -> None:
    hm = np.zeros((68, 16, 16), np.float32)
    hm[0, 8, 8] = 1.0
    img = np.zeros((200, 200, 3), np.uint8)
    blend_heatmap(img, hm, CropSpec(100, 100, 120).matrix(64), 64)
    ys, xs = np.nonzero(img.sum(axis=2))
    assert 80 < xs.mean() < 125 and 80 < ys.mean() < 125 and xs.min() >= 40 and xs.max() <= 160
    out = draw_face(np.zeros((200, 200, 3), np.uint8), _face(hm), heatmap=True, crop_size=64)
    assert out.any()
