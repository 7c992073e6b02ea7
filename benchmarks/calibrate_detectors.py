"""Measure each face detector's box against the ground-truth landmark box, per point layout.

The landmark models are trained on crops centred on the landmark bounding box with side
``crop_scale`` x its longer side. At run time the first crop of a face comes from a
detector box, which sits and scales differently, and differently again for each point
layout (a 5-point box, eyes to mouth corners, is about half a 68-point box's side). This
script runs each detector on labelled faces and fits, in units of the detector box's
longer side D (and in the face's own frame when the detector gives an eye roll):

    landmark-box centre = detector-box centre + (dx, dy) * D
    landmark-box longer side = ratio * D

face68: the 192 x 192 crops (face box ~107 px) are too tight for detectors, so each is
upscaled by ``--upscale`` and pasted on a 640 x 480 grey canvas. face5: the detectors run
on the 160 x 160 pack image itself, as ``training bench`` does for its detector table.
A detection belongs to a face when its box holds the centre of the labelled points' box
(``kpdesk.inference.detectors.match_face``); face68 also asks for IoU >= 0.2.

    python benchmarks/calibrate_detectors.py [--pack face68|face5] [--split val] [--limit N]
    python benchmarks/calibrate_detectors.py --pack face5 --split train --limit 400 \
        --model models/student-5pt.onnx --write

Prints the mean / median / std per detector and the residual crop error after
calibration. ``--write`` stores the means in the model's manifest (``detector_crop``, the
graph file is not touched); the app and ``training bench`` cut that model's crops with
them. The 68-point means are also kpdesk/inference/detectors.py's CALIBRATION, used for
iBUG-68 manifests written before ``detector_crop`` existed.

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
import json
import math
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from kpdesk.inference.detectors import (
    BlazeFaceDetector,
    BoxCalibration,
    Detection,
    FaceDetector,
    HaarDetector,
    match_face,
)
from kpdesk.inference.tracking import box_iou
from kpdesk.vision.labels import LabelError, load_labelled_folder
from kpdesk.vision.manifest import Manifest, ManifestError

CANVAS = (640, 480)
PACK_POINTS = {"face68": 68, "face5": 5}


def data_root() -> Path:
    env = os.environ.get("KPDESK_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "data"


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


def views(pack: str, img: np.ndarray, pts: np.ndarray, upscale: list[float]):
    """The (image, points) pairs a detector is run on for one labelled face."""
    if pack == "face5":
        yield img, pts
        return
    for up in upscale:
        yield on_canvas(img, pts, up)


def matched(pack: str, found: list[Detection], pts: np.ndarray) -> Detection | None:
    best = match_face(found, pts)
    if best is not None and pack == "face68":
        if box_iou(best.box_xyxy, (*pts.min(axis=0), *pts.max(axis=0))) < 0.2:
            return None
    return best


def write_manifest(model: Path, fits: dict[str, BoxCalibration], note: dict) -> Path:
    """Store ``fits`` as the ``detector_crop`` of ``model``'s manifest (atomic rewrite; the
    graph file is not touched)."""
    path = model.with_suffix(".json")
    m = Manifest.load(path)
    crop = {name: cal.as_dict() for name, cal in fits.items()}
    m = Manifest.from_dict({**m.to_dict(), "detector_crop": crop}, str(path))  # validates the mapping
    m.with_info(detector_crop=note).save(path)
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pack", default="face68", choices=sorted(PACK_POINTS))
    ap.add_argument("--split", default="val", choices=["train", "val", "test"])
    ap.add_argument("--limit", type=int, default=0, help="N faces spread evenly over the list (0 = all)")
    ap.add_argument("--upscale", type=float, nargs="+", default=[2.0, 1.3], help="face68 only")
    ap.add_argument("--model", type=Path, help="NAME.onnx whose manifest --write updates (same point layout)")
    ap.add_argument("--write", action="store_true", help="store the means in --model's manifest")
    args = ap.parse_args()
    if args.write and args.model is None:
        ap.error("--write needs --model")
    root = data_root() / args.pack
    if not root.is_dir():
        print(f"calibrate_detectors: no data at {root} (set KPDESK_DATA)", file=sys.stderr)
        return 2
    if args.model is not None:
        try:
            k = Manifest.load(args.model.with_suffix(".json")).schema.num_points
        except ManifestError as exc:
            print(f"calibrate_detectors: {exc}", file=sys.stderr)
            return 2
        if k != PACK_POINTS[args.pack]:
            print(f"calibrate_detectors: {args.model} predicts {k} points, {args.pack} has {PACK_POINTS[args.pack]}",
                  file=sys.stderr)
            return 2
    try:
        faces = load_labelled_folder(root, f"{args.split}.txt", max_faces=args.limit).faces
    except LabelError as exc:
        print(f"calibrate_detectors: {exc}", file=sys.stderr)
        return 2
    cv2.setNumThreads(1)
    detectors: list[FaceDetector] = [BlazeFaceDetector(), HaarDetector()]
    rows: dict[str, list[tuple[float, float, float]]] = {d.name: [] for d in detectors}
    t0 = time.time()
    n_total = 0
    for face in faces:
        img = cv2.imread(str(face.path))
        if img is None:
            continue
        for view, p in views(args.pack, img, np.asarray(face.pts_img, np.float64), args.upscale):
            n_total += 1
            for det in detectors:
                best = matched(args.pack, det.detect(view), p)
                if best is not None:
                    rows[det.name].append(measure(det, best, p))
    where = f"{args.pack}/{args.split}" + (f" at upscale {args.upscale}" if args.pack == "face68" else "")
    print(f"{len(faces)} faces of {where}: {time.time() - t0:.0f} s")
    fits: dict[str, BoxCalibration] = {}
    for det in detectors:
        a = np.array(rows[det.name])
        det.close()
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
        fits[det.name] = BoxCalibration(dx=float(mean[0]), dy=float(mean[1]), ratio=float(mean[2]))
        print(f"  -> {fits[det.name]}")
    if args.write:
        missing = [d.name for d in detectors if d.name not in fits]
        if missing:
            print(f"calibrate_detectors: no detections for {', '.join(missing)}: manifest not written", file=sys.stderr)
            return 1
        argv = " ".join(sys.argv[1:])
        note = {"command": f"python benchmarks/calibrate_detectors.py {argv}", "pack": args.pack,
                "split": args.split, "faces": len(faces),
                "detected": {name: len(rows[name]) for name in fits}}
        try:
            path = write_manifest(args.model, fits, note)
        except (OSError, ManifestError) as exc:
            print(f"calibrate_detectors: cannot write the manifest: {exc}", file=sys.stderr)
            return 1
        print(f"wrote detector_crop to {path}: {json.dumps({n: c.as_dict() for n, c in fits.items()})}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
