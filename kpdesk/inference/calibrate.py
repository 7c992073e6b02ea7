"""Where a third-party landmark model wants its crop: fitting the crop scale and centre
offset on labelled faces (Qt-free, no torch).

A model trained elsewhere was trained on crops placed its own way: side ``scale`` x the
landmark box's longer side, centre moved by ``offset`` x that side from the box centre
(``crop_params_from_points``). Nothing in an ONNX file says which, and a wrong guess costs
more accuracy than the difference between good and bad models. So the setting is measured:
the ION NME (mean point error over the outer-eye-corner distance, %) of the model on
labelled faces, cut with each candidate crop, is minimised by a coarse grid over (scale,
dx, dy) on a few faces, then refined by Nelder-Mead from the best grid point on more faces
(until the simplex is smaller than ``CalibrationGrid.tol_scale`` / ``tol_offset``).

A best NME above ``PLAUSIBLE_NME`` means the model is not being fed or read the way it
expects; ``diagnose`` re-fits, coarsely, with the usual suspects changed (colour order,
input layout, input range, coordinate units) and names the one that helps.

Each face's neighbourhood is cut once (``_Regions``): every candidate crop is then a warp of
that small image, not of the whole photo.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from kpdesk.inference.model import LandmarkModel, ModelLoadError
from kpdesk.inference.robustness import nme_percent
from kpdesk.vision.labels import LabelledFace
from kpdesk.vision.manifest import Manifest
from kpdesk.vision.transforms import CropSpec, apply_affine, crop_params_from_points, warp_crop

log = logging.getLogger(__name__)

PLAUSIBLE_NME = 15.0  # % ION: above this the model is being fed or read wrongly, whatever the crop

# The search is laid out for 68 points, whose layout's own crop scale is REFERENCE_SCALE; for
# another layout every scale and offset is multiplied by its crop scale / REFERENCE_SCALE (the
# 5 points' box is far smaller than the face: crop scale 2.2).
REFERENCE_SCALE = 1.5


class CalibrationError(ValueError):
    """The crop cannot be fitted, or the best fit is implausible. One line for the user."""


@dataclass(frozen=True)
class CalibrationGrid:
    """The coarse grid, the bounds of the search (the refinement may not leave them) and the
    refinement's stopping steps."""

    scales: tuple[float, ...] = (1.0, 1.3, 1.6, 1.9, 2.2, 2.5, 2.8)
    dx: tuple[float, ...] = (0.0,)  # faces are left-right symmetric: dx is left to the refinement
    dy: tuple[float, ...] = (-0.1, 0.0, 0.1, 0.2)
    tol_scale: float = 0.002
    tol_offset: float = 0.001
    max_evaluations: int = 160
    scale_range: tuple[float, float] = (0.9, 3.0)
    offset_limit: float = 0.35
    offset_step: float = 0.05  # the refinement's first step on an offset axis the grid holds fixed

    def scaled(self, unit: float) -> CalibrationGrid:
        """Every scale and offset times ``unit`` (see ``REFERENCE_SCALE``)."""
        def mul(v: tuple[float, ...]) -> tuple[float, ...]:
            return tuple(x * unit for x in v)
        return replace(self, scales=mul(self.scales), dx=mul(self.dx), dy=mul(self.dy),
                       tol_scale=self.tol_scale * unit, tol_offset=self.tol_offset * unit,
                       scale_range=(self.scale_range[0] * unit, self.scale_range[1] * unit),
                       offset_limit=self.offset_limit * unit, offset_step=self.offset_step * unit)

    def clamp(self, scale: float, dx: float, dy: float) -> tuple[float, float, float]:
        lo, hi = self.scale_range
        lim = self.offset_limit
        return min(max(scale, lo), hi), min(max(dx, -lim), lim), min(max(dy, -lim), lim)

    @property
    def steps(self) -> tuple[float, float, float]:
        """The refinement's first simplex: half the grid spacing on each axis (``offset_step``
        for an offset axis the grid holds fixed)."""
        def half(v: tuple[float, ...], default: float) -> float:
            return float(min(np.diff(sorted(v))) / 2) if len(v) > 1 else default
        return half(self.scales, 2 * self.offset_step), half(self.dx, self.offset_step), half(self.dy, self.offset_step)


COARSE = CalibrationGrid(scales=(1.2, 1.6, 2.0, 2.4), dx=(0.0,), dy=(0.0, 0.1))


@dataclass(frozen=True)
class CropFit:
    """The fitted crop.

    Attributes:
        scale: crop side / landmark-box longer side.
        offset: (dx, dy) crop centre minus box centre, in box sides.
        nme: mean ION NME (%) at that setting on ``faces`` faces.
        faces: faces the refinement and ``nme`` used.
        grid_faces: faces the coarse grid used.
        grid_best: (scale, dx, dy, nme on the grid faces) of the best grid point.
        evaluations: crop settings tried (grid + refinement).
        seconds: wall time.
    """

    scale: float
    offset: tuple[float, float]
    nme: float
    faces: int
    grid_faces: int
    grid_best: tuple[float, float, float, float]
    evaluations: int
    seconds: float

    @property
    def plausible(self) -> bool:
        return self.nme <= PLAUSIBLE_NME

    def to_dict(self) -> dict:
        return {"scale": round(self.scale, 4), "offset": [round(v, 4) for v in self.offset],
                "nme_ion": round(self.nme, 4), "faces": self.faces, "grid_faces": self.grid_faces,
                "grid_best": [round(v, 4) for v in self.grid_best], "evaluations": self.evaluations,
                "seconds": round(self.seconds, 1)}

    def describe(self) -> str:
        return (f"crop scale {self.scale:.3f}, offset ({self.offset[0]:+.3f}, {self.offset[1]:+.3f}): "
                f"ION NME {self.nme:.2f}% on {self.faces} faces ({self.evaluations} settings tried, "
                f"{self.seconds:.1f} s)")


def _spread(faces: Sequence[LabelledFace], n: int) -> list[LabelledFace]:
    """``n`` faces spread evenly over the list (all when n <= 0 or there are fewer)."""
    if n <= 0 or n >= len(faces):
        return list(faces)
    return [faces[i] for i in np.linspace(0, len(faces) - 1, n).round().astype(int)]


class _Regions:
    """Each face's neighbourhood cut once, large enough for every crop the search may try,
    at a resolution where a crop of scale ``FULL_RES_SCALE`` has ``input_size`` pixels
    (smaller crops are upsampled a little; 200 faces of a 112 px model take ~65 MB)."""

    FULL_RES_SCALE = 1.25  # x the grid's unit

    def __init__(self, faces: Sequence[LabelledFace], input_size: int, read: Callable[[str], np.ndarray],
                 grid: CalibrationGrid, unit: float) -> None:
        reach = 2.0 * (grid.offset_limit * math.sqrt(2) + grid.scale_range[1] / 2) + 0.1  # region side / box side
        res = int(min(512, math.ceil(reach * input_size / (self.FULL_RES_SCALE * unit))))
        self.images: list[np.ndarray] = []
        self.pts: list[np.ndarray] = []
        for f in faces:
            box = crop_params_from_points(f.pts_img, 1.0)
            region = CropSpec(box.center_x, box.center_y, box.side * reach)
            self.images.append(warp_crop(read(f.path), region, res))
            self.pts.append(apply_affine(f.pts_img, region.matrix(res)))

    def __len__(self) -> int:
        return len(self.images)


def _nme(model: LandmarkModel, regions: _Regions, scale: float, offset: tuple[float, float],
         batch: int = 32) -> float:
    """Mean ION NME (%) of ``model`` on the regions' faces cut with (scale, offset)."""
    s = model.input_size
    ocular = model.schema.ocular
    assert ocular is not None
    errs = []
    for start in range(0, len(regions), batch):
        crops, gts = [], []
        for img, pts in zip(regions.images[start:start + batch], regions.pts[start:start + batch]):
            spec = crop_params_from_points(pts, scale, offset=offset)
            crops.append(warp_crop(img, spec, s))
            gts.append(apply_affine(pts, spec.matrix(s)))
        out = model.run(np.stack(crops))
        errs.append(nme_percent(out.pts_crop, np.stack(gts), ocular))
    e = np.concatenate(errs)
    return float(np.mean(np.where(np.isfinite(e), e, 1e3)))


def _unit(model: LandmarkModel) -> float:
    return model.schema.crop_scale / REFERENCE_SCALE


def _check(model: LandmarkModel, faces: Sequence[LabelledFace]) -> None:
    if not faces:
        raise CalibrationError("no labelled faces to calibrate on")
    k, n = model.schema.num_points, len(faces[0].pts_img)
    if n != k:
        raise CalibrationError(f"the model predicts {k} points, the labelled faces have {n}: calibrate on "
                               f"faces labelled with the model's {k} points")
    if model.schema.ocular is None:
        raise CalibrationError(f"schema {model.schema.name} has no eye corners to normalise the error by")


def _grid(model: LandmarkModel, regions: _Regions, grid: CalibrationGrid,
          progress: Callable[[str], None] | None = None) -> tuple[tuple[float, float, float, float], int]:
    best = (0.0, 0.0, 0.0, math.inf)
    n = 0
    for scale in grid.scales:
        for dx in grid.dx:
            for dy in grid.dy:
                e = _nme(model, regions, scale, (dx, dy))
                n += 1
                if e < best[3]:
                    best = (scale, dx, dy, e)
        if progress is not None:
            progress(f"grid: scale {scale:.2f} done, best so far {best[3]:.2f}% at scale {best[0]:.2f}, "
                     f"offset ({best[1]:+.2f}, {best[2]:+.2f})")
    return best, n


def fit_crop(model: LandmarkModel, faces: Sequence[LabelledFace], read: Callable[[str], np.ndarray] | None = None,
             grid: CalibrationGrid | None = None, grid_faces: int = 48, refine_faces: int = 200,
             progress: Callable[[str], None] | None = None) -> CropFit:
    """Fit the crop scale and offset of ``model`` on labelled ``faces`` (see the module).

    Args:
        model: the model (its manifest's crop setting is ignored).
        faces: labelled faces with the model's point count.
        read: path -> BGR image (default ``cv2.imread``).
        grid: the coarse grid and refinement steps, laid out for 68 points (scaled for the
            model's point layout, see ``REFERENCE_SCALE``).
        grid_faces: faces for the grid (spread over the list; 0 = all).
        refine_faces: faces for the refinement and the reported NME (0 = all).
        progress: called with a line now and then.

    Raises:
        CalibrationError: no faces, a point-count mismatch, or an unreadable image.
    """
    t0 = time.perf_counter()
    _check(model, faces)
    unit = _unit(model)
    grid = (grid or CalibrationGrid()).scaled(unit)
    read = read or _imread
    fine = _spread(faces, refine_faces)
    coarse = _spread(fine, grid_faces)
    coarse_regions = _Regions(coarse, model.input_size, read, grid, unit)
    (s, dx, dy, grid_nme), n = _grid(model, coarse_regions, grid, progress)
    regions = _Regions(fine, model.input_size, read, grid, unit) if len(fine) > len(coarse) else coarse_regions
    def f(v: np.ndarray) -> float:
        return _nme(model, regions, float(v[0]), (float(v[1]), float(v[2])))

    x, best, used = _nelder_mead(f, np.array([s, dx, dy]), np.array(grid.steps),
                                 np.array([grid.tol_scale, grid.tol_offset, grid.tol_offset]),
                                 grid.clamp, grid.max_evaluations - n)
    n += used
    if progress is not None:
        progress(f"refined on {len(regions)} faces: scale {x[0]:.3f}, offset ({x[1]:+.3f}, {x[2]:+.3f}), "
                 f"NME {best:.2f}%")
    return CropFit(scale=float(x[0]), offset=(float(x[1]), float(x[2])), nme=float(best), faces=len(regions),
                   grid_faces=len(coarse), grid_best=(s, dx, dy, grid_nme), evaluations=n,
                   seconds=time.perf_counter() - t0)


def _nelder_mead(f: Callable[[np.ndarray], float], x0: np.ndarray, steps: np.ndarray, tol: np.ndarray,
                 clamp: Callable[..., tuple[float, float, float]], budget: int) -> tuple[np.ndarray, float, int]:
    """Minimise ``f`` over (scale, dx, dy) inside ``clamp``'s bounds, from ``x0`` with a first
    simplex ``x0 + steps[i] e_i``; stop when every vertex is within ``tol`` of the best on
    every axis, or after ``budget`` evaluations. Returns (best x, f there, evaluations)."""
    used = 0

    def g(v: np.ndarray) -> tuple[np.ndarray, float]:
        nonlocal used
        v = np.array(clamp(*v))
        used += 1
        return v, f(v)

    simplex = [g(x0)] + [g(x0 + np.eye(3)[i] * steps[i]) for i in range(3)]
    while used < budget:
        simplex.sort(key=lambda p: p[1])
        pts = np.stack([p[0] for p in simplex])
        if np.all(np.abs(pts - pts[0]) <= tol):
            break
        centroid = pts[:-1].mean(axis=0)
        worst, fw = simplex[-1]
        xr, fr = g(centroid + (centroid - worst))
        if fr < simplex[0][1]:
            xe, fe = g(centroid + 2.0 * (centroid - worst))
            simplex[-1] = (xe, fe) if fe < fr else (xr, fr)
        elif fr < simplex[-2][1]:
            simplex[-1] = (xr, fr)
        else:
            xc, fc = g(centroid + 0.5 * (worst - centroid)) if fr >= fw else g(centroid + 0.5 * (xr - centroid))
            if fc < min(fw, fr):
                simplex[-1] = (xc, fc)
            else:  # shrink towards the best vertex
                b = simplex[0][0]
                simplex = [simplex[0]] + [g(b + 0.5 * (p[0] - b)) for p in simplex[1:]]
    simplex.sort(key=lambda p: p[1])
    return simplex[0][0], simplex[0][1], used


def _imread(path: str) -> np.ndarray:
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        raise CalibrationError(f"{path}: cannot decode image (missing or corrupt)")
    return img


# -- when the best fit is still bad ------------------------------------------------------
@dataclass(frozen=True)
class Alternative:
    """One changed import option and the best NME a coarse fit reached with it."""

    cause: str  # e.g. "colour order"
    option: str  # the command-line option that makes the change, e.g. "--color bgr"
    nme: float


NORMALISATIONS = (  # (option text, mean, std) in [0, 1] units, RGB order
    ("--mean 0 --std 255 (input in [0, 1])", (0.0,) * 3, (1.0,) * 3),
    ("--mean 127.5 --std 127.5 (input in [-1, 1])", (0.5,) * 3, (0.5,) * 3),
    ("--mean 123.675,116.28,103.53 --std 58.395,57.12,57.375 (ImageNet)",
     (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    ("--mean 0 --std 1 (input in [0, 255])", (0.0,) * 3, (1.0 / 255.0,) * 3),
)


def alternatives(m: Manifest) -> list[tuple[str, str, Manifest]]:
    """The usual import mistakes, each as (cause, option, manifest with it undone)."""
    out = [("colour order", f"--color {'bgr' if m.color == 'rgb' else 'rgb'}",
            replace(m, color="bgr" if m.color == "rgb" else "rgb")),
           ("input layout", f"--layout {'nhwc' if m.input_layout == 'nchw' else 'nchw'}",
            replace(m, input_layout="nhwc" if m.input_layout == "nchw" else "nchw"))]
    for opt, mean, std in NORMALISATIONS:
        if not (np.allclose(mean, m.mean, atol=1e-3) and np.allclose(std, m.std, rtol=1e-3)):
            out.append(("input range (mean / std)", opt, replace(m, mean=mean, std=std)))
    if m.coords_output is not None:
        other = "pixels" if m.coords_unit == "norm" else "norm"
        out.append(("coordinate units", f"--output {'pixels' if other == 'pixels' else 'coords01'}",
                    replace(m, coords_unit=other)))
    return out


def diagnose(onnx_path: str | Path, manifest: Manifest, faces: Sequence[LabelledFace],
             read: Callable[[str], np.ndarray] | None = None, n_faces: int = 24, threads: int = 0,
             progress: Callable[[str], None] | None = None) -> list[Alternative]:
    """Coarse fits with each of ``alternatives(manifest)``; those that load, best first."""
    read = read or _imread
    sub = _spread(faces, n_faces)
    found = []
    for cause, option, m in alternatives(manifest):
        try:
            model = LandmarkModel.load(onnx_path, threads=threads, manifest=m)
        except ModelLoadError:
            continue  # e.g. the other layout does not fit the graph's input at all
        unit = _unit(model)
        coarse = COARSE.scaled(unit)
        (_, _, _, e), _ = _grid(model, _Regions(sub, model.input_size, read, coarse, unit), coarse)
        if progress is not None:
            progress(f"with {option}: best ION NME {e:.2f}%")
        found.append(Alternative(cause, option, e))
    return sorted(found, key=lambda a: a.nme)


def implausible_message(fit: CropFit, found: Sequence[Alternative]) -> str:
    """One line: why the model was not installed, and the likely cause."""
    head = (f"best ION NME after calibration is {fit.nme:.1f}% (crop scale {fit.scale:.2f}, offset "
            f"({fit.offset[0]:+.2f}, {fit.offset[1]:+.2f}), {fit.faces} faces), over the {PLAUSIBLE_NME:g}% "
            f"a working landmark model reaches: not installed")
    good = [a for a in found if a.nme <= PLAUSIBLE_NME]
    if good:
        a = good[0]
        return f"{head}; likely cause: {a.cause}: with {a.option} a coarse fit reaches {a.nme:.1f}%"
    tried = ", ".join(sorted({a.cause for a in found})) or "nothing"
    best = f" (best {found[0].nme:.1f}% with {found[0].option})" if found else ""
    return (f"{head}; changing one of {tried} does not fix it{best}: check --points and the point order, "
            f"--output (which output holds the landmarks, and in what units) and that the faces are labelled "
            f"like the model's points")
