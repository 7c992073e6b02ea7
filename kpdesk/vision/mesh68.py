"""A 68-point (iBUG) view of a face mesh: each iBUG point is a fixed mix of at most three
mesh vertices with non-negative weights that sum to 1 (a point of a mesh triangle, edge or
vertex), fitted on labelled faces by ``scripts/fit_mesh68.py``. numpy only.

The mixes are affine combinations, so the view commutes with any similarity (or affine)
map of the image: it can be applied to mesh points in any pixel frame.

The fitted view ships as ``kpdesk/vision/mesh68.json`` with the data it was fitted on and
its fit error (``Mesh68View.source`` / ``.fit``); the error of any NME measured through it
includes that fit error.
"""

from __future__ import annotations

import itertools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = "kpdesk-mesh68/1"
MESH_SCHEMA_NAME = "mediapipe478"  # the keypoint schema of MediaPipe's face mesh (kpdesk.inference.reference)
DEFAULT_PATH = Path(__file__).with_name("mesh68.json")
IBUG_OCULAR = (36, 45)


class Mesh68Error(ValueError):
    """A mesh view file is missing, unreadable or inconsistent."""


@dataclass(frozen=True, eq=False)
class Mesh68View:
    """68 fixed mixes of mesh vertices.

    Attributes:
        vertices: (68, 3) int mesh vertex indices (a mix of fewer than three repeats one
            with weight 0).
        weights: (68, 3) float, each row >= 0 and summing to 1.
        mesh_points: number of points in the mesh the indices refer to (MediaPipe: 478).
        source: what it was fitted on (data, list, faces, command).
        fit: fit error figures (ION NME in %, in-sample and cross-validated).
    """

    vertices: np.ndarray
    weights: np.ndarray
    mesh_points: int
    source: dict[str, Any] = field(default_factory=dict)
    fit: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        v, w = np.asarray(self.vertices), np.asarray(self.weights)
        if v.shape != (68, 3) or w.shape != (68, 3):
            raise Mesh68Error(f"mesh view: expected (68, 3) vertices and weights, got {v.shape} and {w.shape}")
        if v.min() < 0 or v.max() >= self.mesh_points:
            raise Mesh68Error(f"mesh view: vertex index out of range 0..{self.mesh_points - 1}")
        if (w < -1e-9).any() or not np.allclose(w.sum(axis=1), 1.0, atol=1e-6):
            raise Mesh68Error("mesh view: weights must be >= 0 and sum to 1 per point")

    def apply(self, mesh_pts: np.ndarray) -> np.ndarray:
        """Mesh points (..., M, D) -> the 68 iBUG points (..., 68, D)."""
        p = np.asarray(mesh_pts, dtype=np.float64)
        if p.shape[-2] != self.mesh_points:
            raise Mesh68Error(f"mesh view: expects {self.mesh_points} mesh points, got {p.shape[-2]}")
        return np.einsum("...kjd,kj->...kd", p[..., self.vertices, :], self.weights)

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "mesh_points": int(self.mesh_points),
                "vertices": np.asarray(self.vertices).astype(int).tolist(),
                "weights": np.round(np.asarray(self.weights, np.float64), 6).tolist(),
                "source": self.source, "fit": self.fit}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Mesh68View:
        if d.get("format") != FORMAT:
            raise Mesh68Error(f"mesh view: format {d.get('format')!r}, expected {FORMAT!r}")
        try:
            w = np.asarray(d["weights"], np.float64)
            w = w / w.sum(axis=1, keepdims=True)  # undo the 6-decimal rounding of the file
            return cls(np.asarray(d["vertices"], np.int64), w, int(d["mesh_points"]),
                       dict(d.get("source") or {}), dict(d.get("fit") or {}))
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, Mesh68Error):
                raise
            raise Mesh68Error(f"mesh view: invalid file ({exc})") from None

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        tmp = path.with_name(path.name + ".part")
        tmp.write_text(json.dumps(self.to_dict(), indent=1) + "\n")
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | Path | None = None) -> Mesh68View:
        p = Path(path) if path is not None else DEFAULT_PATH
        try:
            d = json.loads(p.read_text())
        except OSError as exc:
            raise Mesh68Error(f"{p}: cannot read mesh view: {exc.strerror}") from None
        except json.JSONDecodeError as exc:
            raise Mesh68Error(f"{p}: not JSON: {exc}") from None
        return cls.from_dict(d)


_DEFAULT: Mesh68View | None = None


def default_view() -> Mesh68View:
    """The shipped view (``mesh68.json``), read once."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = Mesh68View.load()
    return _DEFAULT


def normalise(mesh: np.ndarray, gt: np.ndarray, ocular: tuple[int, int] = IBUG_OCULAR) -> tuple[np.ndarray, np.ndarray]:
    """(N, M, 2) meshes and (N, 68, 2) labels -> both in each face's label frame: centred on
    the labels' centroid, in units of the labels' inter-ocular distance."""
    gt = np.asarray(gt, np.float64)
    c = gt.mean(axis=1, keepdims=True)
    iod = np.linalg.norm(gt[:, ocular[0]] - gt[:, ocular[1]], axis=-1)[:, None, None]
    iod = np.maximum(iod, 1e-6)
    return (np.asarray(mesh, np.float64) - c) / iod, (gt - c) / iod


def _best_mix(cand: np.ndarray, target: np.ndarray) -> tuple[tuple[int, ...], np.ndarray, float]:
    """Best non-negative, sum-1 mix of at most three of ``cand`` (N, C, 2) vertices for
    ``target`` (N, 2), by least squares; returns (indices into C, weights, mean sq. error)."""
    n, c, _ = cand.shape
    best: tuple[tuple[int, ...], np.ndarray, float] = ((0,), np.ones(1), np.inf)
    for i in range(c):  # single vertices
        e = float(np.mean(np.sum((cand[:, i] - target) ** 2, axis=-1)))
        if e < best[2]:
            best = ((i,), np.ones(1), e)
    for i, j in itertools.combinations(range(c), 2):  # edges: t - vj ~ a (vi - vj), a in [0, 1]
        d, r = (cand[:, i] - cand[:, j]).ravel(), (target - cand[:, j]).ravel()
        dd = float(d @ d)
        a = min(max(float(d @ r) / dd, 0.0), 1.0) if dd > 0 else 0.0
        e = float(np.mean(np.sum(((target - cand[:, j]) - a * (cand[:, i] - cand[:, j])) ** 2, axis=-1)))
        if e < best[2]:
            best = ((i, j), np.array([a, 1.0 - a]), e)
    triples = np.array(list(itertools.combinations(range(c), 3)))
    if len(triples):  # interiors: t - vk ~ a (vi - vk) + b (vj - vk), a, b >= 0, a + b <= 1
        vi, vj, vk = (cand[:, triples[:, q]] for q in range(3))  # (N, T, 2)
        d1, d2, r = vi - vk, vj - vk, target[:, None, :] - vk
        a11 = np.einsum("ntd,ntd->t", d1, d1)
        a12 = np.einsum("ntd,ntd->t", d1, d2)
        a22 = np.einsum("ntd,ntd->t", d2, d2)
        b1 = np.einsum("ntd,ntd->t", d1, r)
        b2 = np.einsum("ntd,ntd->t", d2, r)
        det = a11 * a22 - a12 ** 2
        ok = np.abs(det) > 1e-12
        safe = np.where(ok, det, 1.0)
        a = (a22 * b1 - a12 * b2) / safe
        b = (a11 * b2 - a12 * b1) / safe
        ok &= (a >= 0) & (b >= 0) & (a + b <= 1)
        if ok.any():
            res = r - a[None, :, None] * d1 - b[None, :, None] * d2
            err = np.where(ok, np.mean(np.sum(res ** 2, axis=-1), axis=0), np.inf)
            t = int(np.argmin(err))
            if err[t] < best[2]:
                best = (tuple(int(q) for q in triples[t]), np.array([a[t], b[t], 1.0 - a[t] - b[t]]), float(err[t]))
    return best


def fit_view(mesh: np.ndarray, gt: np.ndarray, candidates: int = 12, ocular: tuple[int, int] = IBUG_OCULAR,
             source: dict[str, Any] | None = None) -> Mesh68View:
    """Fit the 68 mixes on N faces: ``mesh`` (N, M, 2) mesh points and ``gt`` (N, 68, 2)
    labels, in the same pixels. Per iBUG point, the ``candidates`` mesh vertices nearest to
    it on average (in each face's label frame) are tried: every vertex, edge and triangle of
    them, the best by least squares wins (an exact search of the constrained problem)."""
    mesh_n, gt_n = normalise(mesh, gt, ocular)
    if len(mesh_n) == 0:
        raise Mesh68Error("mesh view: no faces to fit on")
    m = mesh_n.shape[1]
    mean_mesh, mean_gt = mesh_n.mean(axis=0), gt_n.mean(axis=0)
    verts = np.zeros((68, 3), np.int64)
    weights = np.zeros((68, 3))
    for k in range(68):
        near = np.argsort(np.linalg.norm(mean_mesh - mean_gt[k], axis=-1))[:min(candidates, m)]
        idx, w, _ = _best_mix(mesh_n[:, near], gt_n[:, k])
        chosen = [int(near[q]) for q in idx]
        verts[k, :len(chosen)] = chosen
        verts[k, len(chosen):] = chosen[0]
        weights[k, :len(w)] = w
    return Mesh68View(verts, weights, m, dict(source or {}))


def ion_nme(pred68: np.ndarray, gt: np.ndarray, ocular: tuple[int, int] = IBUG_OCULAR) -> np.ndarray:
    """(N, 68, 2) predictions and labels -> (N,) mean point error / labels' outer-eye distance, %."""
    gt = np.asarray(gt, np.float64)
    iod = np.linalg.norm(gt[:, ocular[0]] - gt[:, ocular[1]], axis=-1)
    return 100.0 * np.linalg.norm(np.asarray(pred68) - gt, axis=-1).mean(axis=-1) / np.maximum(iod, 1e-6)


def cross_validate(mesh: np.ndarray, gt: np.ndarray, folds: int = 2, seed: int = 0, candidates: int = 12) -> float:
    """Mean ION NME (%) of views fitted on all but one fold and applied to that fold."""
    n = len(gt)
    order = np.random.default_rng(seed).permutation(n)
    errs = np.zeros(n)
    for f in range(folds):
        test = order[f::folds]
        train = np.setdiff1d(order, test)
        view = fit_view(mesh[train], gt[train], candidates)
        errs[test] = ion_nme(view.apply(mesh[test]), gt[test])
    return float(errs.mean())
