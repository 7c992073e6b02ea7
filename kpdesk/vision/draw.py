"""Drawing landmarks with cv2 (BGR images), shared by the CLI and the GUI.

Functions named ``draw_*`` paint into ``img`` in place and return it; ``render_result``
returns an annotated copy.
"""

from __future__ import annotations

import cv2
import numpy as np

from kpdesk.vision.headpose import HeadPose
from kpdesk.vision.results import FaceResult, FrameResult
from kpdesk.vision.schema import KeypointSchema

BOX_COLOR = (255, 200, 0)
TRACKED_BOX_COLOR = (180, 180, 180)
EDGE_COLOR = (230, 230, 230)


def conf_colors(conf: np.ndarray) -> np.ndarray:
    """Confidence (K,) in [0, 1] -> BGR colours (K, 3) uint8: red (0) -> yellow (0.5) -> green (1)."""
    c = np.clip(np.asarray(conf, dtype=np.float32), 0.0, 1.0)
    g = np.clip(2.0 * c, 0.0, 1.0)
    r = np.clip(2.0 - 2.0 * c, 0.0, 1.0)
    return (np.stack([np.zeros_like(c), g, r], axis=-1) * 255).astype(np.uint8)


def _pt(p: np.ndarray) -> tuple[int, int]:
    return int(round(float(p[0]))), int(round(float(p[1])))


def draw_points(img: np.ndarray, pts: np.ndarray, conf: np.ndarray | None = None, radius: int = 2,
                color: tuple[int, int, int] = (0, 255, 0)) -> np.ndarray:
    """Points (K, 2) as filled dots, coloured by confidence when given."""
    colors = conf_colors(conf) if conf is not None else np.tile(np.array(color, np.uint8), (len(pts), 1))
    for p, c in zip(pts, colors):
        if np.all(np.isfinite(p)):
            cv2.circle(img, _pt(p), radius, tuple(int(v) for v in c), -1, cv2.LINE_AA)
    return img


def draw_indices(img: np.ndarray, pts: np.ndarray, font_scale: float = 0.3,
                 color: tuple[int, int, int] = (255, 255, 255)) -> np.ndarray:
    """Each point's index beside it."""
    for i, p in enumerate(pts):
        x, y = _pt(p)
        cv2.putText(img, str(i), (x + 3, y - 3), cv2.FONT_HERSHEY_SIMPLEX, font_scale, color, 1, cv2.LINE_AA)
    return img


def draw_skeleton(img: np.ndarray, pts: np.ndarray, edges: tuple[tuple[int, int], ...],
                  color: tuple[int, int, int] = EDGE_COLOR, thickness: int = 1) -> np.ndarray:
    """The schema's edges as lines between points."""
    for a, b in edges:
        if a < len(pts) and b < len(pts):
            cv2.line(img, _pt(pts[a]), _pt(pts[b]), color, thickness, cv2.LINE_AA)
    return img


def draw_box(img: np.ndarray, box_xyxy: tuple[float, float, float, float], color: tuple[int, int, int] = BOX_COLOR,
             label: str | None = None, thickness: int = 1) -> np.ndarray:
    x0, y0, x1, y1 = (int(round(v)) for v in box_xyxy)
    cv2.rectangle(img, (x0, y0), (x1, y1), color, thickness, cv2.LINE_AA)
    if label:
        cv2.putText(img, label, (x0, max(y0 - 4, 10)), cv2.FONT_HERSHEY_SIMPLEX, 0.4, color, 1, cv2.LINE_AA)
    return img


def draw_text(img: np.ndarray, text: str, org: tuple[int, int] = (8, 20), scale: float = 0.5,
              color: tuple[int, int, int] = (255, 255, 255)) -> np.ndarray:
    """Text with a dark outline, readable on any background."""
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, color, 1, cv2.LINE_AA)
    return img


POSE_AXIS_COLORS = ((60, 60, 255), (80, 220, 80), (255, 160, 40))  # BGR: x red, y green, facing blue


def draw_pose_axes(img: np.ndarray, pose: HeadPose, length_mm: float = 60.0, thickness: int = 2,
                   label: bool = True) -> np.ndarray:
    """The head's axes from the nose tip (x right: red, y down: green, facing: blue) and,
    with ``label``, its yaw / pitch / roll beside them."""
    origin, ends = pose.axes_px(length_mm)
    o = _pt(origin)
    for end, color in zip(ends, POSE_AXIS_COLORS):
        cv2.arrowedLine(img, o, _pt(end), color, thickness, cv2.LINE_AA, tipLength=0.15)
    if label:
        text = f"yaw {pose.yaw:+.0f}  pitch {pose.pitch:+.0f}  roll {pose.roll:+.0f}"
        x = int(max(min(p[0] for p in (origin, *ends)) - 10, 4))
        y = int(min(max(p[1] for p in (origin, *ends)) + 18, img.shape[0] - 6))
        draw_text(img, text, (x, y), 0.45)
    return img


def blend_heatmap(img: np.ndarray, heatmaps: np.ndarray, crop_matrix: np.ndarray, crop_size: int,
                  alpha: float = 0.5) -> np.ndarray:
    """Blend the max over K of heatmaps (K, H, W) (crop space) into ``img`` through the
    inverse of the (2, 3) image -> crop matrix of an ``crop_size`` crop."""
    hm = np.clip(np.max(np.asarray(heatmaps, dtype=np.float32), axis=0), 0.0, 1.0)
    hm = cv2.resize(hm, (crop_size, crop_size), interpolation=cv2.INTER_LINEAR)
    h, w = img.shape[:2]
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    heat = cv2.warpAffine(hm, crop_matrix, (w, h), flags=flags, borderValue=0.0)
    color = cv2.applyColorMap((heat * 255).astype(np.uint8), cv2.COLORMAP_JET).astype(np.float32)
    a = (alpha * heat)[..., None]
    img[:] = (img.astype(np.float32) * (1.0 - a) + color * a).astype(np.uint8)
    return img


def draw_face(img: np.ndarray, face: FaceResult, schema: KeypointSchema | None = None, *, points: bool = True,
              skeleton: bool = True, box: bool = True, indices: bool = False, heatmap: bool = False,
              crop_size: int | None = None, radius: int = 2, label: str | None = None) -> np.ndarray:
    """One face: optional heatmap layer, skeleton, box, points coloured by confidence, indices.
    ``heatmap`` needs ``face.heatmap`` and ``crop_size`` (the model's input size)."""
    if heatmap and face.heatmap is not None and crop_size:
        blend_heatmap(img, face.heatmap, face.crop_matrix, crop_size)
    if skeleton and schema is not None:
        draw_skeleton(img, face.pts_img, schema.edges)
    if box:
        draw_box(img, face.box_xyxy, TRACKED_BOX_COLOR if face.tracked else BOX_COLOR, label)
    if points:
        draw_points(img, face.pts_img, face.conf, radius)
    if indices:
        draw_indices(img, face.pts_img)
    return img


def render_result(frame_bgr: np.ndarray, result: FrameResult, schema: KeypointSchema | None = None,
                  **face_opts: object) -> np.ndarray:
    """A copy of the frame with every face of ``result`` drawn (options as ``draw_face``)."""
    out = frame_bgr.copy()
    for face in result.faces:
        draw_face(out, face, schema, **face_opts)  # type: ignore[arg-type]
    return out
