"""Robustness sweeps: landmark models on a labelled folder under growing perturbations
(``kpdesk.vision.perturb``), NME per face per (model, severity). No Qt, no torch.

Protocol (the same as ``training bench`` and validation): each face is cut with the
canonical crop of its labels at the model's crop scale, perturbed, run through the model
with its default decode mode; the error is the mean point-to-point distance over the
inter-ocular distance of the labels (iBUG 68: outer eye corners 36 / 45; 5 points: eye
centres), in percent, measured in crop pixels (a similarity transform of the image, so
the ratio is the image's).

The MediaPipe reference (``kpdesk.inference.reference.ReferenceLandmarker``) is swept with
its own detector: it is given the perturbed face with the context of a face68 pack image
(a ``REFERENCE_CONTEXT`` x landmark-box crop, ``REFERENCE_CROP`` px), finds the face itself
and is scored through its 68-point view; a face it does not find has an infinite error
(a failure; left out of the mean, counted in ``SweepCell.missed``).
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from kpdesk.inference.model import LandmarkModel
from kpdesk.inference.reference import ReferenceLandmarker
from kpdesk.vision.files import atomic_write_text
from kpdesk.vision.labels import LabelledFace
from kpdesk.vision.perturb import UNITS, Perturbation
from kpdesk.vision.transforms import apply_affine, crop_params_from_points, warp_crop

FAILURE_NME = 10.0  # a face with NME above this (%) counts as a failure (FR@10)
REFERENCE_CONTEXT = 1.8  # the reference sees a crop this many times the landmark box (as face68 packs)
REFERENCE_CROP = 192  # ... of this many pixels (the packs' size)


class SweepError(ValueError):
    """A sweep cannot run (a model and the data disagree, an image cannot be read)."""


class SweepCancelled(Exception):
    """The caller asked the sweep to stop."""


@dataclass(frozen=True)
class SweepConfig:
    """What to sweep: one perturbation kind over ``severities`` (see ``kpdesk.vision.perturb``)."""

    kind: str
    severities: tuple[float, ...]
    placement: str = "random"
    seed: int = 0
    worst_k: int = 4
    batch_size: int = 8

    def __post_init__(self) -> None:
        if not self.severities:
            raise ValueError("a sweep needs at least one severity")
        for s in self.severities:
            Perturbation(self.kind, s, self.placement, self.seed)  # validates kind, range, placement

    def perturbation(self, severity: float) -> Perturbation:
        return Perturbation(self.kind, severity, self.placement, self.seed)

    @property
    def unit(self) -> str:
        return UNITS[self.kind]


@dataclass(frozen=True, eq=False)
class WorstFace:
    """One badly predicted face: the perturbed crop the model saw (S, S, 3) BGR, labels and
    prediction in its pixels (K, 2), and the face's NME in %."""

    index: int
    path: str
    nme: float
    crop_bgr: np.ndarray
    gt_crop: np.ndarray
    pred_crop: np.ndarray


@dataclass(frozen=True, eq=False)
class SweepCell:
    """One variant at one severity: NME (%) of every face, and the worst faces."""

    variant: str
    model_name: str
    kind: str
    placement: str
    severity: float
    nme: np.ndarray
    worst: tuple[WorstFace, ...] = ()
    seconds: float = 0.0

    @property
    def n(self) -> int:
        return int(len(self.nme))

    @property
    def mean(self) -> float:
        """Mean NME over the faces found (every face, for kpdesk's models)."""
        found = self.nme[np.isfinite(self.nme)]
        return float(np.mean(found)) if len(found) else float("nan")

    @property
    def missed(self) -> int:
        """Faces the model's own detector did not find (the reference only): infinite NME."""
        return int(np.sum(~np.isfinite(self.nme)))

    @property
    def median(self) -> float:
        return float(np.median(self.nme)) if len(self.nme) else float("nan")

    @property
    def failure_rate(self) -> float:
        """% of faces with NME above ``FAILURE_NME``."""
        return float(100.0 * np.mean(self.nme > FAILURE_NME)) if len(self.nme) else float("nan")


@dataclass
class SweepResult:
    """All cells of a sweep so far (a cancelled sweep keeps the finished ones)."""

    config: SweepConfig
    folder: str = ""
    faces: int = 0
    cells: list[SweepCell] = field(default_factory=list)
    cancelled: bool = False
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (variant, why it was not run)

    def series(self, variant: str) -> tuple[np.ndarray, np.ndarray]:
        """(severities, mean NME) of one variant, in sweep order."""
        cs = [c for c in self.cells if c.variant == variant]
        return np.array([c.severity for c in cs]), np.array([c.mean for c in cs])

    def variants(self) -> list[str]:
        return list(dict.fromkeys(c.variant for c in self.cells))


class ImageStore:
    """Decoded BGR images by path, so a sweep reads each file once."""

    def __init__(self) -> None:
        self._images: dict[str, np.ndarray] = {}

    def __call__(self, path: str) -> np.ndarray:
        img = self._images.get(path)
        if img is None:
            img = cv2.imread(path, cv2.IMREAD_COLOR)
            if img is None:
                raise SweepError(f"{path}: cannot decode image (missing or corrupt)")
            self._images[path] = img
        return img


def nme_percent(pred: np.ndarray, gt: np.ndarray, ocular: tuple[int, int]) -> np.ndarray:
    """(N, K, 2) predictions and labels -> (N,) mean point error over the distance between the
    labels' ``ocular`` points, in %."""
    a, b = ocular
    iod = np.linalg.norm(gt[:, a] - gt[:, b], axis=-1)
    err = np.linalg.norm(pred - gt, axis=-1).mean(axis=-1)
    return 100.0 * err / np.maximum(iod, 1e-6)


def ocular_pair(model: LandmarkModel | ReferenceLandmarker) -> tuple[int, int]:
    schema = model.schema
    if schema.ocular is None:
        raise SweepError(f"{model.name}: schema {schema.name} has no eye points to normalise the error by")
    return schema.ocular


def evaluate_reference_cell(model: ReferenceLandmarker, faces: Sequence[LabelledFace], perturbation: Perturbation,
                            images: ImageStore | None = None, worst_k: int = 4, batch_size: int = 8,
                            cancel: Callable[[], bool] | None = None,
                            on_batch: Callable[[int], None] | None = None) -> tuple[np.ndarray, tuple[WorstFace, ...]]:
    """``evaluate_cell`` for the MediaPipe reference: its own detector on each perturbed face
    (see the module's docstring); a missed face has NME ``inf``."""
    images = images or ImageStore()
    ocular = ocular_pair(model)
    s = REFERENCE_CROP
    nme = np.zeros(len(faces))
    kept: list[tuple[float, int, np.ndarray, np.ndarray, np.ndarray]] = []
    for i, f in enumerate(faces):
        if i % batch_size == 0 and cancel is not None and cancel():
            raise SweepCancelled()
        spec = crop_params_from_points(f.pts_img, REFERENCE_CONTEXT)
        img, spec = perturbation.apply(images(f.path), f.pts_img, spec, i)
        crop = warp_crop(img, spec, s)
        gt = apply_affine(f.pts_img, spec.matrix(s))
        lo, hi = gt.min(axis=0), gt.max(axis=0)
        pred = model.predict68(crop, (float(lo[0] + hi[0]) / 2, float(lo[1] + hi[1]) / 2))
        nme[i] = np.inf if pred is None else float(nme_percent(pred[None], gt[None], ocular)[0])
        kept.append((float(nme[i]), i, crop, gt, np.zeros((0, 2)) if pred is None else pred))
        kept = sorted(kept, key=lambda t: -t[0])[:worst_k]
        if on_batch is not None and ((i + 1) % batch_size == 0 or i + 1 == len(faces)):
            on_batch(batch_size if (i + 1) % batch_size == 0 else (i + 1) % batch_size)
    worst = tuple(WorstFace(i, faces[i].path, e, c, g, p) for e, i, c, g, p in kept)
    return nme, worst


def evaluate_cell(model: LandmarkModel | ReferenceLandmarker, faces: Sequence[LabelledFace], perturbation: Perturbation,
                  images: ImageStore | None = None, worst_k: int = 4, batch_size: int = 8,
                  cancel: Callable[[], bool] | None = None,
                  on_batch: Callable[[int], None] | None = None) -> tuple[np.ndarray, tuple[WorstFace, ...]]:
    """NME (%) of ``model`` on every face under ``perturbation``, and its ``worst_k`` worst faces.

    Raises:
        SweepError: the model's point count differs from the labels', or an image is unreadable.
        SweepCancelled: ``cancel()`` turned true (checked before every batch).
    """
    if isinstance(model, ReferenceLandmarker):
        return evaluate_reference_cell(model, faces, perturbation, images, worst_k, batch_size, cancel, on_batch)
    images = images or ImageStore()
    k = model.schema.num_points
    if faces and len(faces[0].pts_img) != k:
        raise SweepError(f"{model.name} predicts {k} points, the labelled faces have {len(faces[0].pts_img)}")
    ocular = ocular_pair(model)
    s, man = model.input_size, model.manifest
    nmes: list[np.ndarray] = []
    kept: list[tuple[float, int, np.ndarray, np.ndarray, np.ndarray]] = []
    for start in range(0, len(faces), batch_size):
        if cancel is not None and cancel():
            raise SweepCancelled()
        crops, gts = [], []
        for i in range(start, min(start + batch_size, len(faces))):
            f = faces[i]
            spec = man.crop_for_points(f.pts_img)
            img, spec = perturbation.apply(images(f.path), f.pts_img, spec, i)
            crops.append(warp_crop(img, spec, s))
            gts.append(apply_affine(f.pts_img, spec.matrix(s)))
        batch = np.stack(crops)
        out = model.run(batch)
        gt = np.stack(gts)
        e = nme_percent(out.pts_crop, gt, ocular)
        nmes.append(e)
        for j in np.argsort(-e)[:worst_k]:
            kept.append((float(e[j]), start + int(j), batch[j], gt[j], np.asarray(out.pts_crop[j], np.float64)))
        kept = sorted(kept, key=lambda t: -t[0])[:worst_k]
        if on_batch is not None:
            on_batch(len(batch))
    worst = tuple(WorstFace(i, faces[i].path, e, c, g, p) for e, i, c, g, p in kept)
    return (np.concatenate(nmes) if nmes else np.zeros(0)), worst


def fitting_variants(variants: Sequence[tuple[str, LandmarkModel | ReferenceLandmarker]],
                     faces: Sequence[LabelledFace]
                     ) -> tuple[list[tuple[str, LandmarkModel | ReferenceLandmarker]], list[tuple[str, str]]]:
    """The variants whose models predict the labelled faces' points, and (label, why) for
    the others: a sweep runs the models that fit and marks the rest, instead of failing."""
    k = len(faces[0].pts_img) if faces else None
    fit, skipped = [], []
    for label, model in variants:
        if k is not None and model.schema.num_points != k:
            skipped.append((label, f"{model.name} predicts {model.schema.num_points} points, the labelled faces "
                                   f"have {k}"))
        else:
            fit.append((label, model))
    return fit, skipped


def run_sweep(variants: Sequence[tuple[str, LandmarkModel | ReferenceLandmarker]], faces: Sequence[LabelledFace],
              config: SweepConfig,
              images: ImageStore | None = None, on_cell: Callable[[SweepCell], None] | None = None,
              on_progress: Callable[[int, int], None] | None = None,
              cancel: Callable[[], bool] | None = None, folder: str = "") -> SweepResult:
    """Every (severity, variant) cell, severities outermost so all curves grow together.

    Variants whose point count differs from the labels' are not run: the result lists them
    in ``skipped`` (SweepError only when no variant fits).
    ``on_cell`` gets each finished cell, ``on_progress(faces_done, faces_total)`` each batch.
    A cancel request raises ``SweepCancelled`` out of the running cell; the cells finished
    before it were already delivered through ``on_cell``.
    """
    fit, skipped = fitting_variants(variants, faces)
    if not fit:
        raise SweepError("no model fits these faces: " + "; ".join(f"{label}: {why}" for label, why in skipped))
    variants = fit
    for _label, model in variants:
        ocular_pair(model)
    images = images or ImageStore()
    result = SweepResult(config, folder, len(faces), skipped=list(skipped))
    total = len(faces) * len(variants) * len(config.severities)
    done = 0

    def step(n: int) -> None:
        nonlocal done
        done += n
        if on_progress is not None:
            on_progress(done, total)

    for severity in config.severities:
        p = config.perturbation(severity)
        for label, model in variants:
            t0 = time.perf_counter()
            nme, worst = evaluate_cell(model, faces, p, images, config.worst_k, config.batch_size, cancel, step)
            cell = SweepCell(label, model.name, config.kind, config.placement, float(severity), nme, worst,
                             time.perf_counter() - t0)
            result.cells.append(cell)
            if on_cell is not None:
                on_cell(cell)
    return result


CSV_HEADER = ("variant", "model", "perturbation", "placement", "severity", "unit", "faces", "nme_mean_pct",
              "nme_median_pct", "fr10_pct", "seconds", "missed")


def write_csv(result: SweepResult, path: str | Path) -> Path:
    """One row per (variant, severity): mean / median NME (% inter-ocular; the mean over the
    faces found), failure rate (a missed face is a failure), time, faces missed."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(CSV_HEADER)
    for c in result.cells:
        w.writerow([c.variant, c.model_name, c.kind, c.placement if c.kind == "occlusion" else "",
                    f"{c.severity:g}", UNITS[c.kind], c.n, f"{c.mean:.3f}", f"{c.median:.3f}",
                    f"{c.failure_rate:.1f}", f"{c.seconds:.2f}", c.missed])
    return atomic_write_text(path, buf.getvalue())  # OutputError: one line naming the file and why
