"""Drawing landmarks with cv2 (BGR images), shared by the CLI and the GUI.

Functions named ``draw_*`` paint into ``img`` in place and return it; ``render_result``
returns an annotated copy.
"""

from __future__ import annotations

import cv2
import numpy as np

from kpdesk.vision.headpose import HeadPose
from kpdesk.vision.mesh68 import MESH_SCHEMA_NAME
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


def line_scale(shape: tuple[int, ...]) -> float:
    """Overlay size factor of an image (H, W, ...): 1 for a ~1000 px frame. Lines, dots and
    captions grow with it, so they stay visible when a 8000 x 6000 photo is shown whole."""
    return max(shape[0], shape[1]) / 1000.0


def line_thickness(shape: tuple[int, ...], base: float = 1.0) -> int:
    """Line width in pixels for an image (H, W, ...): ``base`` px on a ~1000 px frame, never < 1."""
    return max(1, int(round(base * line_scale(shape))))


def dot_radius(shape: tuple[int, ...]) -> int:
    """Keypoint radius for an image (H, W, ...)."""
    return max(2, int(round(2.5 * max(1.0, line_scale(shape) * 2.0))))


_FONT_PX = 22.0  # approx. cap height of FONT_HERSHEY_SIMPLEX at scale 1, in pixels


def index_labels(pts: np.ndarray) -> tuple[list[int], float]:
    """Which points to label with their index, and the font scale: the text is sized to the
    face (a label ~ a 40th of its landmark box), and where the points are too close for
    that text (a small face) only every n-th point is labelled, instead of a clump."""
    p = np.asarray(pts, dtype=np.float64)
    ok = np.all(np.isfinite(p), axis=1)
    if ok.sum() < 2:
        return [int(i) for i in np.flatnonzero(ok)], 0.35
    q = p[ok]
    face = float(np.max(q.max(axis=0) - q.min(axis=0)))
    scale = float(np.clip(face / 40.0 / _FONT_PX, 0.3, 12.0))
    d = np.linalg.norm(q[:, None] - q[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    spacing = float(np.median(d.min(axis=1)))  # typical distance to the nearest point
    text_px = _FONT_PX * scale
    step = max(1, int(np.ceil(text_px / max(spacing, 1e-6))))
    idx = np.flatnonzero(ok)
    return [int(i) for i in idx if i % step == 0], scale


def draw_points(img: np.ndarray, pts: np.ndarray, conf: np.ndarray | None = None, radius: int = 2,
                color: tuple[int, int, int] = (0, 255, 0)) -> np.ndarray:
    """Points (K, 2) as filled dots, coloured by confidence when given."""
    colors = conf_colors(conf) if conf is not None else np.tile(np.array(color, np.uint8), (len(pts), 1))
    for p, c in zip(pts, colors):
        if np.all(np.isfinite(p)):
            cv2.circle(img, _pt(p), radius, tuple(int(v) for v in c), -1, cv2.LINE_AA)
    return img


def draw_indices(img: np.ndarray, pts: np.ndarray, font_scale: float | None = None,
                 color: tuple[int, int, int] = (255, 255, 255)) -> np.ndarray:
    """Points' indices beside them, sized to the face (``index_labels``: on a small face,
    every n-th point only); ``font_scale`` forces a size and labels every point."""
    if font_scale is None:
        which, font_scale = index_labels(pts)
    else:
        which = [i for i, p in enumerate(pts) if np.all(np.isfinite(p))]
    thick = max(1, int(round(font_scale * 1.5)))
    off = max(3, int(round(font_scale * 8)))
    for i in which:
        x, y = _pt(pts[i])
        cv2.putText(img, str(i), (x + off, y - off), cv2.FONT_HERSHEY_SIMPLEX, font_scale, color, thick, cv2.LINE_AA)
    return img


def draw_skeleton(img: np.ndarray, pts: np.ndarray, edges: tuple[tuple[int, int], ...],
                  color: tuple[int, int, int] = EDGE_COLOR, thickness: int = 1) -> np.ndarray:
    """The schema's edges as lines between points (one OpenCV call: a face mesh has ~2,600)."""
    if not len(edges) or not len(pts):
        return img
    e = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
    p = np.asarray(pts, dtype=np.float64)
    e = e[(e < len(p)).all(axis=1)]
    seg = p[e]  # (E, 2, 2)
    seg = seg[np.isfinite(seg).all(axis=(1, 2))]
    if len(seg):
        cv2.polylines(img, list(np.round(seg).astype(np.int32)), False, color, thickness, cv2.LINE_AA)
    return img


MESH_COLOR = (200, 200, 120)  # BGR: a face mesh's tessellation


def is_mesh(schema: KeypointSchema | None) -> bool:
    """A dense face mesh (MediaPipe's 478 points): drawn as its tessellation, not as dots."""
    return schema is not None and schema.name == MESH_SCHEMA_NAME


def draw_mesh(img: np.ndarray, pts: np.ndarray, schema: KeypointSchema) -> np.ndarray:
    """A mesh as its thin tessellation (its points alone would be a blot)."""
    return draw_skeleton(img, pts, schema.edges, MESH_COLOR, 1)


def draw_box(img: np.ndarray, box_xyxy: tuple[float, float, float, float], color: tuple[int, int, int] = BOX_COLOR,
             label: str | None = None, thickness: int = 1) -> np.ndarray:
    x0, y0, x1, y1 = (int(round(v)) for v in box_xyxy)
    cv2.rectangle(img, (x0, y0), (x1, y1), color, thickness, cv2.LINE_AA)
    if label:
        cv2.putText(img, label, (x0, max(y0 - 4, 10)), cv2.FONT_HERSHEY_SIMPLEX, 0.4, color, 1, cv2.LINE_AA)
    return img


def draw_text(img: np.ndarray, text: str, org: tuple[int, int] | None = None, scale: float | None = None,
              color: tuple[int, int, int] = (255, 255, 255)) -> np.ndarray:
    """Text with a dark outline, readable on any background. Without ``scale`` / ``org``, a
    caption at the top left sized to the image (``line_scale``)."""
    k = max(1.0, line_scale(img.shape) * 1.6)
    scale = 0.5 * k if scale is None else scale
    org = (int(8 * k), int(20 * k)) if org is None else org
    thin = max(1, int(round(scale * 2)))
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thin + 2, cv2.LINE_AA)
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, color, thin, cv2.LINE_AA)
    return img


POSE_AXIS_COLORS = ((60, 60, 255), (80, 220, 80), (255, 160, 40))  # BGR: x red, y green, facing blue


def draw_pose_axes(img: np.ndarray, pose: HeadPose, length_mm: float = 80.0, thickness: int | None = None,
                   label: bool = True) -> np.ndarray:
    """The head's axes from the nose tip (x right: red, y down: green, facing: blue) and,
    with ``label``, its yaw / pitch / roll beside them. Line and text grow with the image."""
    origin, ends = pose.axes_px(length_mm)
    o = _pt(origin)
    thickness = thickness or max(2, line_thickness(img.shape, 2.0))
    for end, color in zip(ends, POSE_AXIS_COLORS):
        cv2.arrowedLine(img, o, _pt(end), color, thickness, cv2.LINE_AA, tipLength=0.15)
    if label:
        k = max(1.0, line_scale(img.shape) * 1.6)
        text = pose.label()
        x = int(max(min(p[0] for p in (origin, *ends)) - 10 * k, 4))
        y = int(min(max(p[1] for p in (origin, *ends)) + 18 * k, img.shape[0] - 6))
        draw_text(img, text, (x, y), 0.45 * k)
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
              crop_size: int | None = None, radius: int | None = None, label: str | None = None) -> np.ndarray:
    """One face: optional heatmap layer, skeleton, box, points coloured by confidence, indices.
    ``heatmap`` needs ``face.heatmap`` and ``crop_size`` (the model's input size). Line widths
    and the dot ``radius`` (default) follow the image size."""
    if heatmap and face.heatmap is not None and crop_size:
        blend_heatmap(img, face.heatmap, face.crop_matrix, crop_size)
    if is_mesh(schema) and (points or skeleton):
        draw_mesh(img, face.pts_img, schema)  # type: ignore[arg-type]
        points = skeleton = False
    if skeleton and schema is not None:
        draw_skeleton(img, face.pts_img, schema.edges, thickness=line_thickness(img.shape))
    if box:
        draw_box(img, face.box_xyxy, TRACKED_BOX_COLOR if face.tracked else BOX_COLOR, label,
                 thickness=line_thickness(img.shape, 1.5))
    if points:
        draw_points(img, face.pts_img, face.conf, dot_radius(img.shape) if radius is None else radius)
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
