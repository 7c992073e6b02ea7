"""Accuracy as a user gets it: faces cut from the app's own detector, misses counted.

``training bench`` reports accuracy twice. With crops from the labels (the canonical crop
training validates on: a perfect face box), and here with crops from the app's detectors
(``kpdesk.inference.detectors``: BlazeFace and the Haar cascade, each with its
``BoxCalibration`` from ``benchmarks/calibrate_detectors.py`` and, for BlazeFace, levelled
by the eye roll), as the first frame of a face in the app is cut.

Protocol. Each detector runs once per split on the pack image itself (face68: a 192 x 192
crop at 1.8x the landmark box, so it sees the face in context). A face counts as detected
when a detection's box contains the centre of the labelled points' box; of several, the
one whose centre is nearest is used, any other is ignored. (An IoU rule, as in
``calibrate_detectors.py``, would depend on the point layout: a 5-point box is about a
quarter of a face box's area.) The model's crop is ``detector.box_to_crop(detection, model crop scale,
the model's own mapping)`` (its manifest's ``detector_crop``: a 5-point box sits and scales unlike a
68-point one); the
predictions are mapped back to the image and scored in the same upright label-crop frame
as the label-crop accuracy, so the two are directly comparable. Reported per subset (all,
AFW+HELEN, YTF, ...): detection rate, NME over the detected faces, and FR@8 / FR@10 and
AUC@8 / AUC@10 over *all* faces with a missed face counted as a failure (infinite error).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kpdesk.vision.transforms import apply_affine, crop_params_from_points
from training.data.datasets import Sample
from training.evaluation.evaluate import SOURCE_GROUPS, ImageCache, Runner, compute_metrics, predict_samples
from training.evaluation.tables import cell, markdown_table
from training.metrics import auc, failure_rate, nme_per_image

log = logging.getLogger(__name__)

CROP_DETECTORS = ("blazeface", "haar")


def create_detector(name: str):
    """The app's detector ``name`` (a seam for tests)."""
    from kpdesk.inference.detectors import create_detector as create

    return create(name)


@dataclass(eq=False)
class FaceFinds:
    """One detector's result on one split: per sample the matched detection or None."""

    detector: str
    found: list[Any] = field(default_factory=list)  # kpdesk Detection | None per sample
    to_crop: Callable[..., Any] | None = None  # (Detection, crop_scale, crop_offset) -> CropSpec
    seconds: float = 0.0
    error: str = ""

    @property
    def n_detected(self) -> int:
        return sum(d is not None for d in self.found)


def landmark_box(pts: np.ndarray) -> tuple[float, float, float, float]:
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    return float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])


def match(dets: list[Any], pts: np.ndarray) -> Any:
    """The detection whose box holds the centre of the points' box (nearest centre first), or None."""
    x0, y0, x1, y1 = landmark_box(pts)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    inside = [d for d in dets if d.box_xyxy[0] <= cx <= d.box_xyxy[2] and d.box_xyxy[1] <= cy <= d.box_xyxy[3]]
    return min(inside, default=None, key=lambda d: ((d.box_xyxy[0] + d.box_xyxy[2]) / 2 - cx) ** 2
               + ((d.box_xyxy[1] + d.box_xyxy[3]) / 2 - cy) ** 2)


def find_faces(samples: list[Sample], images: ImageCache, name: str,
               cancel: Callable[[], bool] | None = None) -> FaceFinds:
    """Run detector ``name`` on every sample's image; keep the detection matching the face."""
    t0 = time.perf_counter()
    try:
        det = create_detector(name)
    except Exception as exc:  # noqa: BLE001 - a missing asset / native library: reported, not fatal
        log.warning("detector %s unavailable: %s", name, exc)
        return FaceFinds(name, error=f"{type(exc).__name__}: {exc}")
    found: list[Any] = []
    try:
        for smp in samples:
            if cancel is not None and cancel():
                from training.jobs.engine import Cancelled

                raise Cancelled()
            found.append(match(det.detect(images(smp.path)), smp.pts))
    finally:
        det.close()
    return FaceFinds(name, found, det.box_to_crop, time.perf_counter() - t0)


def display_groups(sources: list[str]) -> list[str]:
    """``all``, the source groups present (``afw+helen``), then every source outside a group."""
    present = set(sources)
    groups = [g for g, members in SOURCE_GROUPS.items() if all(m in present for m in members) and len(present) > 1]
    grouped = {m for g in groups for m in SOURCE_GROUPS[g]}
    return ["all", *groups, *sorted(present - grouped)]


def _members(group: str, sources: np.ndarray) -> np.ndarray:
    if group == "all":
        return np.ones(len(sources), bool)
    return np.isin(sources, SOURCE_GROUPS.get(group, (group,)))


def summary_with_misses(err: np.ndarray, sources: list[str]) -> dict[str, dict[str, Any]]:
    """Per display group: n, detected, detection rate %, NME % over the detected faces, and
    FR@8 / FR@10 % and AUC@8 / AUC@10 over all faces. ``err``: per-image NME (fraction) in
    the order of ``sources``, ``inf`` for a missed face."""
    err = np.asarray(err, np.float64)
    src = np.asarray(sources)
    out = {}
    for g in display_groups(list(sources)):
        e = err[_members(g, src)]
        ok = np.isfinite(e)
        out[g] = {"n": int(len(e)), "detected": int(ok.sum()),
                  "detection_rate": 100.0 * float(ok.mean()) if len(e) else float("nan"),
                  "nme": 100.0 * float(e[ok].mean()) if ok.any() else float("nan"),
                  "fr08": 100.0 * failure_rate(e, 0.08), "fr10": 100.0 * failure_rate(e, 0.10),
                  "auc08": auc(e, 0.08), "auc10": auc(e, 0.10)}
    return out


def detector_accuracy(runner: Runner, samples: list[Sample], finds: FaceFinds, images: ImageCache,
                      norm: str, mode: str | None = None) -> dict[str, Any]:
    """Accuracy of ``runner`` (decode ``mode``, default its own) on crops from ``finds``."""
    mode = mode or runner.default_decode
    if finds.error:
        return {"detector": finds.detector, "error": finds.error}
    idx = [i for i, d in enumerate(finds.found) if d is not None]
    sub = [samples[i] for i in idx]
    cal = runner.detector_crop.get(finds.detector)  # the model's own mapping (manifest detector_crop)
    specs = [finds.to_crop(finds.found[i], runner.crop_scale, cal, runner.crop_offset) for i in idx]
    err = np.full(len(samples), np.inf)
    res: dict[str, Any] = {"detector": finds.detector, "decode": mode, "norm": norm,
                           "detect_seconds": round(finds.seconds, 2)}
    if sub:
        pred = predict_samples(runner, sub, (mode,), images=images,
                               perturb=lambda img, pts, spec, i: (img, specs[i]))
        pts_img = pred.pts_img(mode)
        s = runner.input_size
        mats = [crop_params_from_points(smp.pts, runner.crop_scale).matrix(s) for smp in sub]
        pred_lab = np.stack([apply_affine(p, m) for p, m in zip(pts_img, mats)])
        gt_lab = np.stack([apply_affine(smp.pts, m) for smp, m in zip(sub, mats)])
        err[idx] = nme_per_image(pred_lab, gt_lab, runner.schema, norm)
        res["detected_metrics"] = {k: v for k, v in compute_metrics(
            pred_lab, gt_lab, runner.schema, [smp.source for smp in sub], s).items() if k != "per_point_nme"}
    res["groups"] = summary_with_misses(err, [smp.source for smp in samples])
    return res


def label_crop_summary(err: np.ndarray, samples: list[Sample]) -> dict[str, Any]:
    """The label-crop accuracy in the same shape (every face 'detected')."""
    return {"detector": "labels", "groups": summary_with_misses(err, [smp.source for smp in samples])}


def markdown(recs: list[dict[str, Any]], split: str, detectors: tuple[str, ...]) -> str:
    """The section of bench.md: one row per model and crop source."""
    rs = [r for r in recs if "crops" in r]
    if not rs:
        return ""
    groups = list(next(iter(rs[0]["crops"].values()))["groups"])
    header = ["model", "crops"]
    for g in groups:
        label = "all" if g == "all" else g.upper()
        header += [f"{label} found %", f"{label} NME", f"{label} FR@10"]
    rows = []
    for r in rs:
        for key, c in r["crops"].items():
            if "error" in c:
                rows.append([r["name"], key, *["–"] * (3 * len(groups))])
                continue
            row = [r["name"], key]
            for g in groups:
                d = c["groups"].get(g, {})
                row += [cell(d.get("detection_rate"), ".1f"), cell(d.get("nme")), cell(d.get("fr10"), ".1f")]
            rows.append(row)
    errs = sorted({f"`{c['detector']}`: {c['error']}" for r in rs for c in r["crops"].values() if "error" in c})
    n = rs[0]["crops"]["labels"]["groups"]["all"]["n"]
    return (f"\n## Accuracy with the app's detectors: {split}\n\n"
            f"The same {n} faces cut from each detector's box (`{'`, `'.join(detectors)}`, mapped to each "
            "model's crop by its manifest's `detector_crop`; BlazeFace crops levelled by its eye roll) instead "
            "of the labels, run on the pack image. A face is found when a detection's box holds the centre "
            "of its labelled points' box. "
            "NME (ION %, default decode) is over the faces found; FR@10 counts a missed face as a failure. "
            "`labels` repeats the label-crop figures.\n\n"
            + markdown_table(header, rows)
            + ("\nNot available: " + "; ".join(errs) + "\n" if errs else ""))
