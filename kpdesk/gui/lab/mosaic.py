"""The worst faces of a sweep as one BGR image: each face twice, side by side, with its
labels (green) and with the model's prediction (red). numpy + cv2 only."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from kpdesk.inference.robustness import WorstFace
from kpdesk.vision import draw

GT_BGR = (80, 220, 80)
PRED_BGR = (60, 60, 255)
_BG = (30, 26, 24)


def _panel(face: WorstFace, pts: np.ndarray, color: tuple[int, int, int], tile: int, title: str) -> np.ndarray:
    s = face.crop_bgr.shape[0]
    img = cv2.resize(face.crop_bgr, (tile, tile), interpolation=cv2.INTER_LINEAR)
    scale = tile / s
    draw.draw_points(img, (np.asarray(pts) + 0.5) * scale - 0.5, radius=2, color=color)
    draw.draw_text(img, title, (5, 15), 0.42, color)
    return img


def worst_mosaic(worst: Sequence[WorstFace], tile: int = 150, cols: int = 2, gap: int = 8) -> np.ndarray | None:
    """(H, W, 3) BGR: ``cols`` pairs [labels | prediction] per row, the NME and file name under
    each pair; None for no faces."""
    if not worst:
        return None
    caption_h = 18
    pair_w = 2 * tile + 2
    rows = (len(worst) + cols - 1) // cols
    h = rows * (tile + caption_h) + (rows - 1) * gap
    w = min(cols, len(worst)) * pair_w + (min(cols, len(worst)) - 1) * gap
    out = np.full((h, w, 3), _BG, np.uint8)
    for n, face in enumerate(worst):
        r, c = divmod(n, cols)
        y, x = r * (tile + caption_h + gap), c * (pair_w + gap)
        out[y:y + tile, x:x + tile] = _panel(face, face.gt_crop, GT_BGR, tile, "labels")
        title = "prediction" if len(face.pred_crop) else "not found"
        out[y:y + tile, x + tile + 2:x + pair_w] = _panel(face, face.pred_crop, PRED_BGR, tile, title)
        name = Path(face.path).name
        text = f"{'NME ' + format(face.nme, '.1f') + '%' if np.isfinite(face.nme) else 'face not found'}  {name[:24]}"
        cv2.putText(out, text, (x + 2, y + tile + 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (220, 220, 220), 1, cv2.LINE_AA)
    return out
