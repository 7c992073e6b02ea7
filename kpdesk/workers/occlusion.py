"""Synthetic occluders painted into frames before the models see them (Qt-free).

An occluder is either fixed in the image (a rectangle the user dragged) or anchored to
the face, so a preset such as "hand over mouth" follows a moving, rolling face. Anchored
rectangles are in face units: the face's landmark box is a square of side 1 whose
top-left corner is (0, 0), turned with the face's roll; (1, 1) is its bottom-right.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

KINDS = ("rect", "hand", "sunglasses", "half")

# name -> (kind, rectangle in face units)
PRESETS: dict[str, tuple[str, tuple[float, float, float, float]]] = {
    "hand over mouth": ("hand", (0.02, 0.52, 0.98, 1.12)),
    "sunglasses band": ("sunglasses", (-0.08, 0.14, 1.08, 0.44)),
    "half face": ("half", (0.5, -0.25, 1.3, 1.3)),
}

_SKIN_BGR = (120, 160, 215)
_GREY_BGR = (90, 90, 90)

Quad = tuple[tuple[float, float], tuple[float, float], tuple[float, float], tuple[float, float]]


@dataclass(frozen=True)
class FaceAnchor:
    """Where the face is: its landmark box's centre and longer side (image pixels) and its
    roll (degrees, the eye line's angle, ``CropSpec.angle_deg`` convention)."""

    cx: float
    cy: float
    side: float
    roll_deg: float = 0.0

    @classmethod
    def from_box(cls, box_xyxy: tuple[float, float, float, float], roll_deg: float = 0.0) -> FaceAnchor:
        x0, y0, x1, y1 = box_xyxy
        return cls((x0 + x1) / 2, (y0 + y1) / 2, max(x1 - x0, y1 - y0), roll_deg)

    def blend(self, new: FaceAnchor, a: float) -> FaceAnchor:
        """Exponential smoothing towards ``new`` (weight ``a`` on the new value)."""
        return FaceAnchor(self.cx + a * (new.cx - self.cx), self.cy + a * (new.cy - self.cy),
                          self.side + a * (new.side - self.side), self.roll_deg + a * (new.roll_deg - self.roll_deg))


@dataclass(frozen=True)
class Occluder:
    """What to paint and where.

    Attributes:
        kind: one of ``KINDS``.
        rect: (x0, y0, x1, y1): image pixels if ``anchor == "image"``, else face units.
        anchor: ``"image"`` or ``"face"``.
    """

    kind: str
    rect: tuple[float, float, float, float]
    anchor: str = "image"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"occluder kind {self.kind!r} not in {KINDS}")
        if self.anchor not in ("image", "face"):
            raise ValueError(f"occluder anchor {self.anchor!r} must be 'image' or 'face'")

    @classmethod
    def preset(cls, name: str) -> Occluder:
        try:
            kind, rect = PRESETS[name]
        except KeyError:
            raise ValueError(f"unknown occlusion preset {name!r}; known: {sorted(PRESETS)}") from None
        return cls(kind, rect, anchor="face")


def quad_bbox(quad: Quad, frame_shape: tuple[int, ...]) -> tuple[int, int, int, int] | None:
    """Integer (x0, y0, x1, y1) bounding box of a quad, clipped to the frame; None if empty."""
    h, w = frame_shape[:2]
    q = np.asarray(quad, dtype=np.float64)
    x0, y0 = max(0, int(math.floor(q[:, 0].min()))), max(0, int(math.floor(q[:, 1].min())))
    x1, y1 = min(w, int(math.ceil(q[:, 0].max()))), min(h, int(math.ceil(q[:, 1].max())))
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    return x0, y0, x1, y1


def paint_occluder(frame_bgr: np.ndarray, occluder: Occluder,
                   anchor: FaceAnchor | None) -> tuple[np.ndarray, Quad | None]:
    """A copy of ``frame_bgr`` (H, W, 3) uint8 with the occluder painted in, and the
    occluder's corners in image pixels (clockwise from its top-left); the input is returned
    unchanged, with None, when the occluder falls outside the frame."""
    h, w = frame_bgr.shape[:2]
    if occluder.anchor == "image":
        x0, y0, x1, y1 = occluder.rect
        x0, x1 = sorted((x0, x1))
        y0, y1 = sorted((y0, y1))
        origin, angle, cw, ch = (x0, y0), 0.0, x1 - x0, y1 - y0
    else:
        if anchor is None:
            # No face yet: assume a centred face filling half the frame.
            anchor = FaceAnchor(w / 2, h / 2, 0.5 * min(w, h))
        r, side = occluder.rect, anchor.side
        angle = math.radians(anchor.roll_deg)
        lx, ly = (r[0] - 0.5) * side, (r[1] - 0.5) * side  # top-left, relative to the face centre
        ca, sa = math.cos(angle), math.sin(angle)
        origin = (anchor.cx + ca * lx - sa * ly, anchor.cy + sa * lx + ca * ly)
        cw, ch = (r[2] - r[0]) * side, (r[3] - r[1]) * side
    cw_i, ch_i = int(round(cw)), int(round(ch))
    if cw_i < 2 or ch_i < 2:
        return frame_bgr, None
    ca, sa = math.cos(angle), math.sin(angle)
    # Canvas pixel (u, v) -> image: origin + R(angle) (u, v).
    m = np.array([[ca, -sa, origin[0]], [sa, ca, origin[1]]], dtype=np.float64)
    corners = np.array([[0, 0], [cw_i, 0], [cw_i, ch_i], [0, ch_i]], dtype=np.float64)
    quad_img = corners @ m[:, :2].T + m[:, 2]
    quad: Quad = tuple((float(x), float(y)) for x, y in quad_img)  # type: ignore[assignment]
    box = quad_bbox(quad, frame_bgr.shape)
    if box is None:
        return frame_bgr, None
    canvas = np.zeros((ch_i, cw_i, 4), np.uint8)  # BGRA: alpha marks what is painted
    _PAINTERS[occluder.kind](canvas)
    bx0, by0, bx1, by1 = box
    m_roi = m.copy()
    m_roi[:, 2] -= (bx0, by0)
    warped = cv2.warpAffine(canvas, m_roi, (bx1 - bx0, by1 - by0), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0, 0))
    out = np.array(frame_bgr, copy=True)
    roi = out[by0:by1, bx0:bx1]
    a = warped[..., 3:4].astype(np.float32) * (1.0 / 255.0)
    roi[:] = (roi.astype(np.float32) * (1.0 - a) + warped[..., :3].astype(np.float32) * a + 0.5).astype(np.uint8)
    return out, quad


def _fill(canvas: np.ndarray, bgr: tuple[int, int, int]) -> None:
    canvas[:] = (*bgr, 255)


def _paint_rect(canvas: np.ndarray) -> None:
    _fill(canvas, _GREY_BGR)


def _paint_sunglasses(canvas: np.ndarray) -> None:
    h, w = canvas.shape[:2]
    cy = h // 2
    bridge = max(2, h // 6)
    cv2.rectangle(canvas, (0, cy - bridge // 2), (w - 1, cy + bridge // 2), (20, 20, 20, 255), -1)
    for cx in (w // 4, 3 * w // 4):
        cv2.ellipse(canvas, (cx, cy), (max(2, int(w * 0.22)), max(2, h // 2)), 0, 0, 360, (15, 15, 15, 255), -1,
                    cv2.LINE_AA)


def _paint_hand(canvas: np.ndarray) -> None:
    h, w = canvas.shape[:2]
    skin = (*_SKIN_BGR, 255)
    crease = (95, 125, 175, 255)
    # Palm over the lower part, four rounded fingers above it, a thumb on the left.
    palm_top = int(h * 0.35)
    cv2.rectangle(canvas, (w // 10, palm_top), (w - 1 - w // 10, h - 1), skin, -1)
    finger_w = max(2, (w * 8 // 10) // 4)
    for i in range(4):
        fx0 = w // 10 + i * finger_w
        top = h // 12 if i in (1, 2) else h // 5
        cv2.rectangle(canvas, (fx0 + 1, top + finger_w // 2), (fx0 + finger_w - 2, palm_top + 2), skin, -1)
        cv2.circle(canvas, (fx0 + finger_w // 2, top + finger_w // 2), max(1, finger_w // 2 - 1), skin, -1,
                   cv2.LINE_AA)
        if i < 3:
            cv2.line(canvas, (fx0 + finger_w - 1, top + finger_w), (fx0 + finger_w - 1, palm_top), crease, 1)
    cv2.ellipse(canvas, (w // 10, (palm_top + h) // 2), (max(2, w // 10), max(2, h // 6)), -30, 0, 360, skin, -1,
                cv2.LINE_AA)


_PAINTERS = {"rect": _paint_rect, "half": _paint_rect, "sunglasses": _paint_sunglasses, "hand": _paint_hand}
