"""Synthetic occluders painted into frames before the models see them (Qt-free).

An occluder is either fixed in the image (a rectangle the user dragged) or anchored to
the face box, so a preset such as "hand over mouth" follows a moving face. Anchored
rectangles are in face-box units: (0, 0) is the box's top-left corner, (1, 1) its
bottom-right.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

KINDS = ("rect", "hand", "sunglasses", "half")

# name -> (kind, rectangle in face-box units)
PRESETS: dict[str, tuple[str, tuple[float, float, float, float]]] = {
    "hand over mouth": ("hand", (0.05, 0.58, 0.95, 1.12)),
    "sunglasses band": ("sunglasses", (-0.08, 0.18, 1.08, 0.48)),
    "half face": ("half", (0.5, -0.25, 1.3, 1.3)),
}

_SKIN_BGR = (120, 160, 215)
_GREY_BGR = (90, 90, 90)


@dataclass(frozen=True)
class Occluder:
    """What to paint and where.

    Attributes:
        kind: one of ``KINDS``.
        rect: (x0, y0, x1, y1): image pixels if ``anchor == "image"``, else face-box units.
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

    def box_in_image(self, face_box: tuple[float, float, float, float] | None,
                     frame_shape: tuple[int, ...]) -> tuple[int, int, int, int] | None:
        """The occluder's rectangle in image pixels, clipped to the frame; None if empty."""
        h, w = frame_shape[:2]
        if self.anchor == "face":
            if face_box is None:
                # No face yet: assume a centred face filling half the frame.
                side = 0.5 * min(w, h)
                face_box = ((w - side) / 2, (h - side) / 2, (w + side) / 2, (h + side) / 2)
            bx0, by0, bx1, by1 = face_box
            bw, bh = bx1 - bx0, by1 - by0
            r = self.rect
            x0, y0, x1, y1 = bx0 + r[0] * bw, by0 + r[1] * bh, bx0 + r[2] * bw, by0 + r[3] * bh
        else:
            x0, y0, x1, y1 = self.rect
        x0, x1 = sorted((x0, x1))
        y0, y1 = sorted((y0, y1))
        ix0, iy0 = max(0, int(round(x0))), max(0, int(round(y0)))
        ix1, iy1 = min(w, int(round(x1))), min(h, int(round(y1)))
        if ix1 - ix0 < 2 or iy1 - iy0 < 2:
            return None
        return ix0, iy0, ix1, iy1


Box = tuple[int, int, int, int]


def paint_occluder(frame_bgr: np.ndarray, occluder: Occluder,
                   face_box: tuple[float, float, float, float] | None) -> tuple[np.ndarray, Box | None]:
    """Return a copy of ``frame_bgr`` (H, W, 3) uint8 with the occluder painted in, and its box."""
    box = occluder.box_in_image(face_box, frame_bgr.shape)
    if box is None:
        return frame_bgr, None
    out = np.array(frame_bgr, copy=True)
    x0, y0, x1, y1 = box
    if occluder.kind == "rect":
        out[y0:y1, x0:x1] = _GREY_BGR
    elif occluder.kind == "half":
        out[y0:y1, x0:x1] = _GREY_BGR
    elif occluder.kind == "sunglasses":
        _paint_sunglasses(out, box)
    elif occluder.kind == "hand":
        _paint_hand(out, box)
    return out, box


def _paint_sunglasses(img: np.ndarray, box: tuple[int, int, int, int]) -> None:
    x0, y0, x1, y1 = box
    roi = img[y0:y1, x0:x1]  # a view: drawing is clipped to the occluder's box
    h, w = roi.shape[:2]
    cy = h // 2
    bridge = max(2, h // 6)
    cv2.rectangle(roi, (0, cy - bridge // 2), (w - 1, cy + bridge // 2), (20, 20, 20), -1)
    for cx in (w // 4, 3 * w // 4):
        cv2.ellipse(roi, (cx, cy), (max(2, int(w * 0.22)), max(2, h // 2)), 0, 0, 360, (15, 15, 15), -1,
                    cv2.LINE_AA)


def _paint_hand(img: np.ndarray, box: tuple[int, int, int, int]) -> None:
    x0, y0, x1, y1 = box
    roi = img[y0:y1, x0:x1]  # a view: drawing is clipped to the occluder's box
    h, w = roi.shape[:2]
    # Palm: a block over the lower part of the box; fingers: four rounded bars; a thumb.
    palm_top = int(h * 0.35)
    cv2.rectangle(roi, (w // 10, palm_top), (w - 1 - w // 10, h - 1), _SKIN_BGR, -1)
    finger_w = max(2, (w * 8 // 10) // 4)
    for i in range(4):
        fx0 = w // 10 + i * finger_w
        top = h // 12 if i in (1, 2) else h // 5
        cv2.rectangle(roi, (fx0 + 1, top + finger_w // 2), (fx0 + finger_w - 2, palm_top + 2), _SKIN_BGR, -1)
        cv2.circle(roi, (fx0 + finger_w // 2, top + finger_w // 2), max(1, finger_w // 2 - 1), _SKIN_BGR, -1,
                   cv2.LINE_AA)
        cv2.line(roi, (fx0 + finger_w - 1, top + finger_w), (fx0 + finger_w - 1, palm_top), (95, 125, 175), 1)
    cv2.ellipse(roi, (w // 10, (palm_top + h) // 2), (max(2, w // 10), max(2, h // 6)), -30, 0, 360,
                _SKIN_BGR, -1, cv2.LINE_AA)
