"""Measure each face detector's box against the ground-truth landmark box.

The landmark models are trained on crops centred on the landmark bounding box with side
``crop_scale`` x its longer side. At run time the first crop of a face comes from a
detector box, which sits and scales differently. This script runs each detector on
face68 images with 68 ground-truth points and fits, in units of the detector box's
longer side D (and in the face's own frame when the detector gives an eye roll):

    landmark-box centre = detector-box centre + (dx, dy) * D
    landmark-box longer side = ratio * D

The 192 x 192 face68 crops (face box ~107 px) are too tight for detectors, so each is
upscaled by ``--upscale`` and pasted on a 640 x 480 grey canvas.

    python benchmarks/calibrate_detectors.py [--split val] [--limit N]

Prints the mean / median / std per detector and the residual crop error after
calibration; the means are hard-coded in kpdesk/inference/detectors.py (CALIBRATION).

Result on face68/val, upscale 2.0 and 1.3 (1826 faces, 66 s on 2 CPU cores):

    detector   found   dx mean (std)     dy mean (std)     ratio mean (std)
    blazeface  100.0%  -0.0031 (0.0331)  +0.0471 (0.0418)  1.0084 (0.0735)
    haar        83.4%  +0.0100 (0.0924)  +0.1591 (0.0389)  0.8814 (0.0883)

Residual after calibration, as a fraction of the landmark-box side: BlazeFace centre
std 0.033 (x) / 0.041 (y), scale p5-p95 0.89-1.13; Haar 0.10 / 0.04, 0.87-1.18.
Training's crop jitter should cover at least these.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from kpdesk.inference.detectors import BlazeFaceDetector, Detection, FaceDetector, HaarDetector
from kpdesk.inference.tracking import box_iou

CANVAS = (640, 480)


def data_root() -> Path:
    env = os.environ.get("KPDESK_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "data"


def read_pts(path: Path) -> np.ndarray:
    lines = path.read_text().splitlines()
    start = lines.index("{") + 1
    return np.array([[float(v) for v in ln.split()] for ln in lines[start:start + 68]], dtype=np.float64)


def on_canvas(img: np.ndarray, pts: np.ndarray, upscale: float) -> tuple[np.ndarray, np.ndarray]:
    big = cv2.resize(img, None, fx=upscale, fy=upscale, interpolation=cv2.INTER_CUBIC)
    w, h = CANVAS
    canvas = np.full((h, w, 3), 114, np.uint8)
    bh, bw = big.shape[:2]
    ox, oy = (w - bw) // 2, (h - bh) // 2
    canvas[max(oy, 0):oy + bh, max(ox, 0):ox + bw] = big[max(-oy, 0):h - oy, max(-ox, 0):w - ox]
    # pixel centres: x_big = (x + 0.5) * s - 0.5
    return canvas, (pts + 0.5) * upscale - 0.5 + (ox, oy)


def measure(det: FaceDetector, d: Detection, pts: np.ndarray) -> tuple[float, float, float]:
    """(dx, dy, ratio) of the landmark box relative to the detector box, in the face frame."""
    x0, y0, x1, y1 = d.box_xyxy
    big_d = max(x1 - x0, y1 - y0)
    roll = d.roll_deg if det.use_roll else None
    a = math.radians(roll or 0.0)
    c, s = math.cos(a), math.sin(a)

    def to_face(p: np.ndarray) -> np.ndarray:
        return np.stack([p[..., 0] * c + p[..., 1] * s, -p[..., 0] * s + p[..., 1] * c], axis=-1)

    uv = to_face(pts)
    lo, hi = uv.min(axis=0), uv.max(axis=0)
    centre = (lo + hi) / 2 - to_face(np.array([(x0 + x1) / 2, (y0 + y1) / 2]))
    return centre[0] / big_d, centre[1] / big_d, float(max(hi - lo)) / big_d


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--split", default="val", choices=["train", "val"])
    ap.add_argument("--limit", type=int, default=0, help="first N images only")
    ap.add_argument("--upscale", type=float, nargs="+", default=[2.0, 1.3])
    args = ap.parse_args()
    root = data_root() / "face68"
    if not root.is_dir():
        print(f"calibrate_detectors: no data at {root} (set KPDESK_DATA)", file=sys.stderr)
        return 2
    cv2.setNumThreads(1)
    files = (root / f"{args.split}.txt").read_text().split()
    if args.limit:
        files = files[: args.limit]
    detectors: list[FaceDetector] = [BlazeFaceDetector(), HaarDetector()]
    rows: dict[str, list[tuple[float, float, float]]] = {d.name: [] for d in detectors}
    t0 = time.time()
    for rel in files:
        img = cv2.imread(str(root / rel))
        pts = read_pts((root / rel).with_suffix(".pts"))
        for up in args.upscale:
            canvas, p = on_canvas(img, pts, up)
            lm_box = (*p.min(axis=0), *p.max(axis=0))
            for det in detectors:
                found = det.detect(canvas)
                best = max(found, key=lambda d: box_iou(d.box_xyxy, lm_box), default=None)
                if best is None or box_iou(best.box_xyxy, lm_box) < 0.2:
                    continue
                rows[det.name].append(measure(det, best, p))
    n_total = len(files) * len(args.upscale)
    print(f"{len(files)} images of face68/{args.split} at upscale {args.upscale}: {time.time() - t0:.0f} s")
    for det in detectors:
        a = np.array(rows[det.name])
        if not len(a):
            print(f"{det.name}: no detections")
            continue
        mean, med, std = a.mean(0), np.median(a, 0), a.std(0)
        # Residual after calibration, relative to the landmark box side: what training
        # augmentation must cover (shift as a fraction of the side, scale as a ratio).
        res_shift = (a[:, :2] - mean[:2]) / a[:, 2:3]
        res_scale = a[:, 2] / mean[2]
        print(f"{det.name}: detected {len(a)}/{n_total} ({100 * len(a) / n_total:.1f}%)")
        print(f"  dx    mean {mean[0]:+.4f}  median {med[0]:+.4f}  std {std[0]:.4f}")
        print(f"  dy    mean {mean[1]:+.4f}  median {med[1]:+.4f}  std {std[1]:.4f}")
        print(f"  ratio mean {mean[2]:.4f}  median {med[2]:.4f}  std {std[2]:.4f}")
        sx, sy = res_shift.std(0)
        lo, hi = np.percentile(res_scale, [5, 95])
        print(f"  residual shift / landmark side: std x {sx:.4f} y {sy:.4f}; scale p5-p95 {lo:.3f}-{hi:.3f}")
        print(f"  -> BoxCalibration(dx={mean[0]:.3f}, dy={mean[1]:.3f}, ratio={mean[2]:.3f})")
        det.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
