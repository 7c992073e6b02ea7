"""Overlays for the views, built on ``kpdesk.vision.draw`` (the CLI draws the same way).

Pure numpy + cv2 on BGR images (no Qt), so a snapshot is exactly what the view shows and
tests can check pixels against the pipeline's coordinates. Added here: occluded
(low-confidence) points drawn as a ring with a cross, the heatmap of one chosen point or
the normalised sum of all points, the outline of the painted occluder, head-pose axes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import cv2
import numpy as np

from kpdesk.vision import draw
from kpdesk.vision.headpose import face_pose
from kpdesk.vision.results import FaceResult
from kpdesk.vision.schema import KeypointSchema
from kpdesk.vision.transforms import apply_affine, invert_affine
from kpdesk.workers.messages import VariantResult

OCCLUDED_BGR = (255, 80, 255)
OCCLUDER_OUTLINE_BGR = (0, 220, 255)


@dataclass(frozen=True)
class OverlayOptions:
    """What to draw. ``heatmap_point`` -1 blends the (normalised) sum of all points' heatmaps."""

    keypoints: bool = True
    indices: bool = False
    box: bool = True
    skeleton: bool = False
    heatmap: bool = False
    heatmap_point: int = -1
    occluded_below: float = 0.35
    heatmap_alpha: float = 0.6
    occluder_outline: bool = True
    head_pose: bool = False


def confidence_color(conf: float) -> tuple[int, int, int]:
    """BGR colour of a visible keypoint with confidence ``conf`` (same ramp as ``draw``)."""
    c = draw.conf_colors(np.array([conf], dtype=np.float32))[0]
    return int(c[0]), int(c[1]), int(c[2])


def point_radius(frame_shape: tuple[int, ...]) -> int:
    return draw.dot_radius(frame_shape)


def heatmap_layer(face: FaceResult, point: int = -1) -> np.ndarray | None:
    """(K, H, H) heatmaps -> a (1, H, H) layer: one point's map, or the sum scaled to peak 1."""
    if face.heatmap is None:
        return None
    hm = np.asarray(face.heatmap, dtype=np.float32)
    if 0 <= point < hm.shape[0]:
        return np.clip(hm[point:point + 1], 0.0, 1.0)
    m = hm.sum(axis=0)
    return (m / max(float(m.max()), 1e-6))[None]


def blend_heatmap_roi(img: np.ndarray, layer: np.ndarray, crop_matrix: np.ndarray, input_size: int,
                      alpha: float) -> None:
    """``draw.blend_heatmap`` restricted to the face crop's bounding box (the heatmap is zero
    outside it), which makes the overlay several times cheaper on the GUI thread."""
    m = np.asarray(crop_matrix, dtype=np.float64)
    corners = np.array([[0, 0], [input_size, 0], [0, input_size], [input_size, input_size]], np.float64) - 0.5
    pts = apply_affine(corners, invert_affine(m))
    h, w = img.shape[:2]
    x0, y0 = (int(max(0, np.floor(v))) for v in pts.min(axis=0))
    x1, y1 = int(min(w, np.ceil(pts[:, 0].max()) + 1)), int(min(h, np.ceil(pts[:, 1].max()) + 1))
    if x1 - x0 < 2 or y1 - y0 < 2:
        return
    shifted = m.copy()
    shifted[:, 2] += m[:, :2] @ np.array([x0, y0], np.float64)  # ROI pixel (u, v) = image (u + x0, v + y0)
    roi = img[y0:y1, x0:x1]  # a view: blending writes into img
    draw.blend_heatmap(roi, layer, shifted, input_size, alpha=alpha)


def draw_occluded(img: np.ndarray, pts: np.ndarray, radius: int) -> None:
    """Low-confidence points as a ring with a cross: readable whatever the colour scheme."""
    d = radius
    t = draw.line_thickness(img.shape)
    for x, y in pts:
        if not (np.isfinite(x) and np.isfinite(y)):
            continue
        p = (int(round(float(x))), int(round(float(y))))
        cv2.circle(img, p, radius + 1, OCCLUDED_BGR, t, cv2.LINE_AA)
        cv2.line(img, (p[0] - d, p[1] - d), (p[0] + d, p[1] + d), OCCLUDED_BGR, t, cv2.LINE_AA)
        cv2.line(img, (p[0] - d, p[1] + d), (p[0] + d, p[1] - d), OCCLUDED_BGR, t, cv2.LINE_AA)


def draw_face(img: np.ndarray, face: FaceResult, schema: KeypointSchema | None, input_size: int,
              opts: OverlayOptions, mirrored: bool = False) -> None:
    """Draw one face's overlays onto ``img`` (H, W, 3) BGR, in place (``mirrored``: the frame
    is the selfie view; the pose label then still names the head's own motion)."""
    if opts.heatmap and input_size > 0:
        layer = heatmap_layer(face, opts.heatmap_point)
        if layer is not None:
            blend_heatmap_roi(img, layer, face.crop_matrix, input_size, opts.heatmap_alpha)
    pts = np.asarray(face.pts_img, dtype=np.float64)
    conf = np.asarray(face.conf, dtype=np.float32)
    if draw.is_mesh(schema):
        if opts.keypoints or opts.skeleton:
            draw.draw_mesh(img, pts, schema)  # type: ignore[arg-type]
        opts = dataclasses.replace(opts, keypoints=False, skeleton=False, indices=False)
    if opts.skeleton and schema is not None:
        draw.draw_skeleton(img, pts, schema.edges, thickness=draw.line_thickness(img.shape))
    if opts.box:
        draw.draw_box(img, face.box_xyxy, draw.TRACKED_BOX_COLOR if face.tracked else draw.BOX_COLOR,
                      thickness=draw.line_thickness(img.shape, 1.5))
    if opts.keypoints:
        r = point_radius(img.shape)
        low = conf < opts.occluded_below
        draw.draw_points(img, pts[~low], conf[~low], radius=r)
        draw_occluded(img, pts[low], r)
    if opts.indices:
        draw.draw_indices(img, pts)
    if opts.head_pose:
        pose = face_pose(pts, (img.shape[1], img.shape[0]), mirrored)
        if pose is not None:
            draw.draw_pose_axes(img, pose)


def render_variant(frame_bgr: np.ndarray, vr: VariantResult | None, opts: OverlayOptions,
                   occluder_quad: tuple[tuple[float, float], ...] | None = None) -> np.ndarray:
    """A copy of ``frame_bgr`` with the variant's faces (and the occluder's outline) drawn on it."""
    img = np.array(frame_bgr, copy=True)
    if occluder_quad is not None and opts.occluder_outline:
        q = np.round(np.asarray(occluder_quad, dtype=np.float64)).astype(np.int32)
        cv2.polylines(img, [q], True, OCCLUDER_OUTLINE_BGR, 1, cv2.LINE_AA)
    if vr is not None and vr.result is not None:
        mirrored = bool(getattr(vr.frame, "mirrored", False))
        for face in vr.result.faces:
            draw_face(img, face, vr.schema, vr.input_size, opts, mirrored)
    return img
