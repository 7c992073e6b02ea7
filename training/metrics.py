"""Landmark accuracy metrics (numpy): NME with several normalisations, failure rate, AUC, CED."""

from __future__ import annotations

import numpy as np

from kpdesk.vision.schema import KeypointSchema

NORMS = ("ion", "ipn", "box")


def norm_distance(gt: np.ndarray, schema: KeypointSchema, norm: str) -> np.ndarray:
    """Per-image normalising distance. gt (N, K, 2) -> (N,)."""
    if norm == "ion":
        return schema.interocular(gt)
    if norm == "ipn":
        return schema.interpupil(gt)
    if norm == "box":
        wh = gt.max(axis=1) - gt.min(axis=1)
        return np.sqrt(wh[:, 0] * wh[:, 1])
    raise ValueError(f"unknown normalisation {norm!r}; known: {NORMS}")


def point_errors(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """(N, K, 2) x 2 -> (N, K) Euclidean errors."""
    return np.linalg.norm(np.asarray(pred, np.float64) - np.asarray(gt, np.float64), axis=-1)


def nme_per_image(pred: np.ndarray, gt: np.ndarray, schema: KeypointSchema, norm: str) -> np.ndarray:
    """(N,) mean point error / normalising distance (a fraction, not percent)."""
    d = norm_distance(np.asarray(gt, np.float64), schema, norm)
    return point_errors(pred, gt).mean(axis=1) / np.maximum(d, 1e-6)


def ced(nme: np.ndarray, threshold: float, steps: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative error distribution: x in [0, threshold], fraction of images with NME <= x."""
    xs = np.linspace(0.0, threshold, steps + 1)
    s = np.sort(nme)
    return xs, np.searchsorted(s, xs, side="right") / max(len(s), 1)


def auc(nme: np.ndarray, threshold: float) -> float:
    """Area under the CED curve up to ``threshold``, normalised to [0, 1]."""
    xs, ys = ced(nme, threshold)
    return float(np.trapezoid(ys, xs) / threshold)


def failure_rate(nme: np.ndarray, threshold: float) -> float:
    return float(np.mean(nme > threshold)) if len(nme) else 0.0


def summarize(pred: np.ndarray, gt: np.ndarray, schema: KeypointSchema, sources: list[str] | None = None,
              norms: tuple[str, ...] | None = None) -> dict:
    """All metrics in percent (NME, FR) and [0, 1] (AUC), overall and per source.

    pred, gt: (N, K, 2) in any common pixel frame (NME is invariant to similarity maps).
    """
    if norms is None:
        norms = tuple(n for n in NORMS if (n != "ion" or schema.ocular) and (n != "ipn" or schema.pupils))
    out: dict = {"n": int(len(gt))}
    per_image = {}
    for n in norms:
        e = nme_per_image(pred, gt, schema, n)
        per_image[n] = e
        out[f"nme_{n}"] = 100.0 * float(e.mean())
    main = "ion" if "ion" in per_image else norms[0]
    e = per_image[main]
    for t in (0.08, 0.10):
        out[f"fr{int(t * 100):02d}_{main}"] = 100.0 * failure_rate(e, t)
        out[f"auc{int(t * 100):02d}_{main}"] = auc(e, t)
    if sources is not None:
        src = np.asarray(sources)
        by = {}
        for s in sorted(set(sources)):
            m = src == s
            by[s] = {f"nme_{n}": 100.0 * float(per_image[n][m].mean()) for n in norms} | {"n": int(m.sum())}
        out["by_source"] = by
    return out


def per_point_nme(pred: np.ndarray, gt: np.ndarray, schema: KeypointSchema, norm: str) -> np.ndarray:
    """(K,) NME of each point in percent: its error / the image's normalising distance,
    averaged over images (shows which points a model gets wrong: jaw, occluded mouth, ...)."""
    d = norm_distance(np.asarray(gt, np.float64), schema, norm)
    return 100.0 * (point_errors(pred, gt) / np.maximum(d, 1e-6)[:, None]).mean(axis=0)


def mse_normalised(pred_norm: np.ndarray, gt_norm: np.ndarray) -> float:
    """Mean squared error over images, points and both coordinates of [0, 1]-normalised
    crop coordinates (..., K, 2): the metric of the paper's CelebA ablation."""
    diff = np.asarray(pred_norm, np.float64) - np.asarray(gt_norm, np.float64)
    return float(np.mean(diff * diff)) if diff.size else 0.0
