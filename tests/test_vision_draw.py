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


def _scaled_face(k: float) -> FaceResult:
    """The 200 x 200 test face, every coordinate times ``k``."""
    f = _face()
    return FaceResult(tuple(v * k for v in f.box_xyxy), f.pts_img * k, f.conf, f.crop_matrix)


def test_lines_and_dots_grow_with_the_image() -> None:
    """On an 8000 x 6000 photo 1-px lines vanish once the photo is shown whole."""
    schema = get_schema("ibug68")
    small = render_result(np.zeros((600, 800, 3), np.uint8), FrameResult(0, "m", (_scaled_face(1),), StageTimings()),
                          schema)
    big = render_result(np.zeros((6000, 8000, 3), np.uint8), FrameResult(0, "m", (_scaled_face(10),), StageTimings()),
                        schema)
    painted_small = int(np.count_nonzero(small.any(axis=2)))
    painted_big = int(np.count_nonzero(big.any(axis=2)))
    assert painted_big > 40 * painted_small  # area x100; fixed 1-px lines and 2-px dots give ~x10


def test_index_labels_fit_the_face() -> None:
    from kpdesk.vision.draw import draw_indices, index_labels

    small = _scaled_face(0.4).pts_img  # a ~32 px face: 68 labels would be a clump
    which, scale = index_labels(small)
    assert 0 < len(which) < 40 and which[0] == 0
    big = _scaled_face(40).pts_img  # a ~3200 px face on a huge photo
    which_big, scale_big = index_labels(big)
    assert len(which_big) == 68 and scale_big > 2.0 > scale
    img = np.zeros((200, 200, 3), np.uint8)
    labelled = draw_indices(img.copy(), small)
    assert labelled.any() and np.count_nonzero(labelled.any(axis=2)) < np.count_nonzero(
        draw_indices(img.copy(), small, font_scale=0.3).any(axis=2))  # fewer labels than one per point
