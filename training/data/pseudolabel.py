"""``python -m training pseudo-label``: turn unlabelled faces into a face68 pack.

METHOD.md section 7. A labeller (dlib's 68-point shape predictor, any catalog model, or
an ensemble of them) labels each face twice, as is and mirrored, and the two answers are
averaged. Each face gets a quality score:

- ``flip_nme``: how far the plain and the mirrored answer disagree (in % of the
  inter-ocular distance of the averaged answer, outer eye corners 36 / 45);
- ``ens_nme``: with several labellers, how far each labeller's answer sits from the mean;
- ``five_nme``: where human 5-point labels exist (the face5 pack), how far the derived eye
  centres (mean of 36-41 / 42-47), nose tip (30) and mouth corners (48, 54) sit from
  them, in % of the human eye-centre distance.

``score`` is the largest of those that exist; faces above ``--max-score`` are dropped.
The pack (crops + ``.pts`` + ``train.txt`` + ``quality.csv`` + ``pack.json``) is written
into a folder outside the repository and is rebuilt from scratch by the same command.

A labeller sees a face through a *landmark-box estimate* (the box around the 68 points):
it starts from the human 5 points, the app's face detector or a given box, and is
refined twice from the labeller's own answer, the way the app tracks a face.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import math
import os
import shutil
import sys
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from kpdesk.vision.files import atomic_write_text, write_image
from kpdesk.vision.labels import write_pts
from kpdesk.vision.schema import get_schema
from kpdesk.vision.transforms import CropSpec, apply_affine, crop_params_from_points, warp_crop
from training.data.datasets import DataConfig, LabelError, image_problem, load_split

log = logging.getLogger(__name__)

SCHEMA = get_schema("ibug68")
PACK_CROP_SCALE = 1.8  # the face68 pack's convention: crop side = 1.8 x longer side of the landmark box
PACK_SIZE = 192
REFINE_STEPS = 2

# dlib's HOG face rectangles against the 68-point box, measured on 570 face68 train faces
# (python -m training pseudo-label --calibrate-dlib): centre 0.08 box sides above the
# landmark-box centre, side 1.02x the landmark box's longer side.
DLIB_DY, DLIB_RATIO = -0.080, 1.02
# Human 5 points -> 68-point box, measured on the 4,526 face68 train faces with the 5 points
# derived from their 68: centre 0.14 units below the mid-point of eye and mouth centres,
# side 2.19 units, unit = max(eye-centre distance, eye-to-mouth distance).
FIVE_DY, FIVE_RATIO = 0.142, 2.19

SOURCE_TERMS = {
    "face5": "MTFL images (LFW, web; Zhang et al. 2014): research, non-commercial use",
    "dlib": "dlib 68-point shape predictor, trained on iBUG 300-W: its authors restrict the model to "
            "non-commercial use (300-W licence)",
    "model": "labels from a kpdesk model trained on the face68 pack: research, non-commercial use",
    "mediapipe": "MediaPipe Face Landmarker (Apache-2.0) read through kpdesk's 68-point view, fitted on face68 "
                 "train labels: research, non-commercial use",
}


class PseudoLabelError(ValueError):
    """The command cannot run (bad input, missing labeller, output inside the repository)."""


@dataclass(frozen=True)
class Face:
    """One face to label. ``box`` is a landmark-box estimate (x0, y0, x1, y1) in image
    pixels; ``human5`` (5, 2) the human 5 points when they exist."""

    image: str
    key: str
    box: tuple[float, float, float, float]
    human5: np.ndarray | None = None
    source: str = ""


def five_points(pts68: np.ndarray) -> np.ndarray:
    """(..., 68, 2) -> (..., 5, 2): eye centres, nose tip, mouth corners (MTFL order)."""
    p = np.asarray(pts68, dtype=np.float64)
    return np.stack([p[..., 36:42, :].mean(-2), p[..., 42:48, :].mean(-2), p[..., 30, :], p[..., 48, :],
                     p[..., 54, :]], axis=-2)


def box_from_five(p5: np.ndarray) -> tuple[float, float, float, float]:
    """Landmark-box estimate from 5 points (left eye, right eye, nose, mouth corners)."""
    p5 = np.asarray(p5, dtype=np.float64)
    ec, mc = (p5[0] + p5[1]) / 2, (p5[3] + p5[4]) / 2
    unit = max(float(np.linalg.norm(p5[1] - p5[0])), float(np.linalg.norm(mc - ec)), 1.0)
    cx, cy = (ec + mc) / 2 + np.array([0.0, FIVE_DY * unit])
    h = FIVE_RATIO * unit / 2
    return (cx - h, cy - h, cx + h, cy + h)


def box_of(pts: np.ndarray) -> tuple[float, float, float, float]:
    lo, hi = np.asarray(pts).min(axis=0), np.asarray(pts).max(axis=0)
    return (float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1]))


def ion(pts68: np.ndarray) -> float:
    return max(float(np.linalg.norm(pts68[45] - pts68[36])), 1e-6)


def flip_box(box: tuple[float, float, float, float], width: int) -> tuple[float, float, float, float]:
    x0, y0, x1, y1 = box
    return (width - 1 - x1, y0, width - 1 - x0, y1)


# -- labellers ------------------------------------------------------------------------------
class Labeller(ABC):
    name = "labeller"
    terms = ""

    @abstractmethod
    def predict(self, image_bgr: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
        """(68, 2) points in image pixels for the face whose landmark box is about ``box``."""

    def label(self, image_bgr: np.ndarray, box: tuple[float, float, float, float]) -> tuple[np.ndarray, float]:
        """Refined, flip-averaged answer and the flip disagreement (% of the inter-ocular distance)."""
        w = image_bgr.shape[1]
        flipped = np.ascontiguousarray(image_bgr[:, ::-1])
        a = self._refined(image_bgr, box)
        b = SCHEMA.flip_points(self._refined(flipped, flip_box(box, w)), w)
        mean = (a + b) / 2
        dis = float(np.linalg.norm(a - b, axis=1).mean() / ion(mean) * 100)
        return mean, dis

    def _refined(self, image: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
        pts = self.predict(image, box)
        for _ in range(REFINE_STEPS):
            pts = self.predict(image, box_of(pts))
        return pts

    def close(self) -> None:  # noqa: B027 - optional
        pass


def dlib_model_path() -> Path:
    """dlib's 68-point predictor inside the face_recognition_models package, found without
    importing it (its __init__ needs pkg_resources, gone from recent setuptools)."""
    import importlib.util

    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise PseudoLabelError("the dlib labeller needs the training extra: pip install dlib-bin "
                               "face_recognition_models")
    p = Path(list(spec.submodule_search_locations)[0]) / "models" / "shape_predictor_68_face_landmarks.dat"
    if not p.is_file():
        raise PseudoLabelError(f"{p}: dlib's 68-point predictor is missing from face_recognition_models")
    return p


class DlibLabeller(Labeller):
    """dlib's 68-point shape predictor (regression trees, iBUG 300-W training set)."""

    name = "dlib"
    terms = SOURCE_TERMS["dlib"]

    def __init__(self) -> None:
        try:
            import dlib
        except ImportError:
            raise PseudoLabelError("the dlib labeller needs the training extra: pip install dlib-bin "
                                   "face_recognition_models") from None
        self._dlib = dlib
        self._pred = dlib.shape_predictor(str(dlib_model_path()))

    def predict(self, image_bgr: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
        x0, y0, x1, y1 = box
        side = max(x1 - x0, y1 - y0)
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2 + DLIB_DY * side
        h = DLIB_RATIO * side / 2
        rect = self._dlib.rectangle(int(round(cx - h)), int(round(cy - h)), int(round(cx + h)), int(round(cy + h)))
        shape = self._pred(image_bgr[:, :, ::-1].copy() if image_bgr.ndim == 3 else image_bgr, rect)
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)


class ModelLabeller(Labeller):
    """A 68-point model of the app's catalog (self-training), run by onnxruntime."""

    def __init__(self, name_or_path: str, threads: int = 1) -> None:
        from kpdesk.inference.catalog import resolve_model
        from kpdesk.inference.model import LandmarkModel, ModelLoadError

        try:
            self.model = LandmarkModel.load(resolve_model(name_or_path), threads=threads)
        except (ModelLoadError, FileNotFoundError, ValueError) as exc:
            raise PseudoLabelError(f"labeller model {name_or_path!r}: {exc}") from None
        if self.model.schema.num_points != 68:
            raise PseudoLabelError(f"labeller model {name_or_path!r} predicts {self.model.schema.num_points} "
                                   "points; pseudo-labels need 68")
        self.name = f"model:{self.model.name}"
        self.terms = SOURCE_TERMS["model"]

    def predict(self, image_bgr: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
        x0, y0, x1, y1 = box
        spec = CropSpec((x0 + x1) / 2, (y0 + y1) / 2, max(x1 - x0, y1 - y0, 1.0) * self.model.schema.crop_scale)
        s = self.model.input_size
        crop = warp_crop(image_bgr, spec, s)
        out = self.model.run(crop[None])
        return apply_affine(out.pts_crop[0], spec.inverse_matrix(s))


class MediaPipeLabeller(Labeller):
    """MediaPipe Face Landmarker (its own detector and 478-point mesh, trained on other faces than dlib and
    the kpdesk models, so its errors are its own) read through the project's fitted 68-point view
    (``kpdesk/vision/mesh68.json``). It sees a crop around the box with room for its detector; a face it
    does not find is answered with NaN (the ensemble then labels it without it)."""

    name = "mediapipe"
    terms = SOURCE_TERMS["mediapipe"]
    CONTEXT = 2.0  # crop side / landmark-box side
    CROP = 320

    def __init__(self) -> None:
        from kpdesk.inference.reference import FaceLandmarkerTask, ReferenceUnavailable, task_path
        from kpdesk.vision.mesh68 import Mesh68Error, default_view

        try:
            task_path()
            self.view = default_view()
            self.task = FaceLandmarkerTask(video=False)
        except (Mesh68Error, ReferenceUnavailable, RuntimeError, OSError) as exc:
            raise PseudoLabelError(f"mediapipe labeller: {exc}") from None

    def predict(self, image_bgr: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
        x0, y0, x1, y1 = box
        spec = CropSpec((x0 + x1) / 2, (y0 + y1) / 2, max(x1 - x0, y1 - y0, 1.0) * self.CONTEXT)
        meshes = self.task.find(warp_crop(image_bgr, spec, self.CROP))
        if not meshes:
            return np.full((68, 2), np.nan)
        centre = np.array([self.CROP / 2, self.CROP / 2])
        mesh = min(meshes, key=lambda m: float(np.linalg.norm(m.mean(axis=0) - centre)))
        return apply_affine(self.view.apply(mesh), spec.inverse_matrix(self.CROP))

    def _refined(self, image: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
        return self.predict(image, box)  # its own detector places its crop: no box refinement

    def close(self) -> None:
        self.task.close()


class Ensemble:
    """Several labellers; the answer is the mean of their flip-averaged answers (a labeller that found no
    face, a NaN answer, is left out of that face's mean)."""

    def __init__(self, labellers: list[Labeller]) -> None:
        if not labellers:
            raise PseudoLabelError("no labeller given")
        self.labellers = labellers
        self.name = "+".join(lb.name for lb in labellers)

    def label(self, image: np.ndarray, box: tuple[float, float, float, float]) -> tuple[np.ndarray, float, float]:
        found = [(a, f) for a, f in (lb.label(image, box) for lb in self.labellers) if np.isfinite(a).all()]
        if not found:
            return np.full((68, 2), np.nan), float("nan"), float("nan")
        answers, flips = zip(*found)
        mean = np.mean(answers, axis=0)
        ens = 0.0
        if len(answers) > 1:
            ens = float(np.mean([np.linalg.norm(a - mean, axis=1).mean() for a in answers]) / ion(mean) * 100)
        return mean, float(np.mean(flips)), ens

    def close(self) -> None:
        for lb in self.labellers:
            lb.close()


def make_labeller(spec: str, threads: int = 1) -> Ensemble:
    """``dlib``, ``mediapipe``, ``model:NAME`` (catalog name or .onnx path), or several joined by ``+``."""
    out: list[Labeller] = []
    for part in (p.strip() for p in spec.split("+")):
        if part == "dlib":
            out.append(DlibLabeller())
        elif part == "mediapipe":
            out.append(MediaPipeLabeller())
        elif part.startswith("model:") and len(part) > 6:
            out.append(ModelLabeller(part[6:], threads))
        else:
            raise PseudoLabelError(f"labeller {part!r}: expected 'dlib', 'mediapipe', 'model:NAME' or several "
                                   "joined by '+'")
    return Ensemble(out)


# -- inputs ---------------------------------------------------------------------------------
def faces_from_face5(root: Path, list_name: str = "train.txt") -> list[Face]:
    """The face5 pack's faces with their human 5 points. Its test split is the 5-point
    benchmark and is refused."""
    if Path(list_name).stem.lower() == "test":
        raise PseudoLabelError("the face5 test split is the 5-point benchmark: pseudo-label train.txt only")
    try:
        samples, _ = load_split(DataConfig(format="face5", root=str(root), train_list=list_name), "train")
    except LabelError as exc:
        raise PseudoLabelError(str(exc)) from None
    faces = []
    for s in samples:
        rel = Path(s.path).relative_to(root)
        key = "_".join(rel.with_suffix("").parts[1:] if rel.parts[0] == "images" else rel.with_suffix("").parts)
        faces.append(Face(s.path, key, box_from_five(s.pts), s.pts.copy(), s.source or "face5"))
    return faces


def read_boxes(path: Path) -> dict[str, list[tuple[float, float, float, float]]]:
    """CSV ``image,x0,y0,x1,y1`` (image relative to the folder; a header row is allowed)."""
    out: dict[str, list] = {}
    try:
        fh = path.open(newline="")
    except OSError as exc:
        raise PseudoLabelError(f"{path}: cannot read boxes: {exc.strerror}") from None
    with fh:
        for ln, row in enumerate(csv.reader(fh), 1):
            if not row or (ln == 1 and row[0].strip().lower() in ("image", "path", "file")):
                continue
            try:
                if len(row) != 5:
                    raise ValueError
                x0, y0, x1, y1 = (float(v) for v in row[1:])
                if not (x1 > x0 and y1 > y0):
                    raise ValueError
            except ValueError:
                raise PseudoLabelError(f"{path}:{ln}: expected 'image,x0,y0,x1,y1' with x1>x0, y1>y0, "
                                       f"got {','.join(row)!r}") from None
            out.setdefault(row[0].strip(), []).append((x0, y0, x1, y1))
    return out


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def faces_from_folder(folder: Path, detector: str = "auto", boxes: Path | None = None,
                      max_faces: int = 4) -> tuple[list[Face], int]:
    """Faces in an image folder: from a box file, else found by the app's detector.
    Returns the faces and the number of images where none was found."""
    images = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise PseudoLabelError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)})")
    given = read_boxes(boxes) if boxes else None
    det = None
    if given is None:
        from kpdesk.inference.detectors import create_detector

        det = create_detector(detector)
    faces, missed = [], 0
    try:
        for p in images:
            rel = p.relative_to(folder)
            stem = "_".join(rel.with_suffix("").parts)
            if given is not None:
                found = given.get(str(rel), [])
            else:
                img = cv2.imread(str(p))
                if img is None:
                    log.warning("skipping %s: cannot decode", p)
                    missed += 1
                    continue
                found = []
                for d in det.detect(img)[:max_faces]:
                    spec = det.calibration.crop(d.box_xyxy, 1.0)  # crop of scale 1 = the landmark box
                    found.append(spec.box_xyxy())
            if not found:
                missed += 1
            for j, b in enumerate(found):
                faces.append(Face(str(p), f"{stem}_{j}" if len(found) > 1 else stem, tuple(b), None, "folder"))
    finally:
        if det is not None:
            det.close()
    return faces, missed


# -- the pack -------------------------------------------------------------------------------
def check_out_dir(out: Path, repo: Path) -> None:
    out_r, repo_r = out.expanduser().resolve(), repo.resolve()
    if out_r == repo_r or repo_r in out_r.parents:
        raise PseudoLabelError(f"{out}: pseudo-labelled data must live outside the repository ({repo_r})")


@dataclass
class Record:
    rel: str
    source: str
    flip_nme: float
    ens_nme: float
    five_nme: float | None
    score: float
    kept: bool


def label_faces(faces: list[Face], labeller: Ensemble, out: Path, max_score: float,
                progress: callable | None = None) -> list[Record]:
    """Label, score and write every face into ``out`` (crop, .pts); returns one record a face."""
    (out / "images").mkdir(parents=True, exist_ok=True)
    records: list[Record] = []
    cache: tuple[str, np.ndarray | None] = ("", None)
    for i, f in enumerate(faces):
        if cache[0] != f.image:
            problem = image_problem(Path(f.image))
            img = None if problem else cv2.imread(f.image, cv2.IMREAD_COLOR)
            cache = (f.image, img)
        img = cache[1]
        if img is None:
            log.warning("skipping %s: cannot decode image", f.image)
            continue
        pts, flip, ens = labeller.label(img, f.box)
        five = None
        if f.human5 is not None:
            h = f.human5
            iod = max(float(np.linalg.norm(h[1] - h[0])), 1e-6)
            five = float(np.linalg.norm(five_points(pts) - h, axis=1).mean() / iod * 100)
        score = max(v for v in (flip, ens, five) if v is not None)
        kept = bool(np.isfinite(score) and score <= max_score)
        rel = f"images/{f.source or 'faces'}/{f.key}.jpg"
        if kept:
            spec = crop_params_from_points(pts, PACK_CROP_SCALE)
            crop = warp_crop(img, spec, PACK_SIZE)
            dst = out / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            write_image(dst, crop, [cv2.IMWRITE_JPEG_QUALITY, 95])  # OutputError: a pack never lists a missing image
            write_pts(dst.with_suffix(".pts"), apply_affine(pts, spec.matrix(PACK_SIZE)))
        records.append(Record(rel, f.source, flip, ens, five, score, kept))
        if progress is not None:
            progress(i + 1, len(faces))
    return records


def summary(records: list[Record]) -> dict:
    sc = np.array([r.score for r in records]) if records else np.zeros(0)
    kept = [r for r in records if r.kept]
    out = {"faces": len(records), "kept": len(kept)}
    if len(sc):
        out["score_percentiles"] = {str(q): round(float(np.percentile(sc, q)), 3) for q in (10, 25, 50, 75, 90, 99)}
        out["score_mean"] = round(float(sc.mean()), 3)
        hist_edges = [0, 2, 4, 6, 8, 10, 15, 20, math.inf]
        out["score_histogram"] = {f"{a}-{b}": int(((sc >= a) & (sc < b)).sum()) for a, b in
                                  zip(hist_edges[:-1], hist_edges[1:])}
        five = np.array([r.five_nme for r in records if r.five_nme is not None])
        if len(five):
            out["five_nme_mean"] = round(float(five.mean()), 3)
            out["five_nme_under_8"] = round(float((five < 8).mean()), 4)
        out["flip_nme_mean"] = round(float(np.mean([r.flip_nme for r in records])), 3)
    return out


def write_pack(out: Path, records: list[Record], meta: dict) -> None:
    kept = [r.rel for r in records if r.kept]
    atomic_write_text(out / "train.txt", "\n".join(kept) + ("\n" if kept else ""))
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["image", "source", "flip_nme", "ens_nme", "five_nme", "score", "kept"])
    for r in records:
        w.writerow([r.rel, r.source, f"{r.flip_nme:.3f}", f"{r.ens_nme:.3f}",
                    "" if r.five_nme is None else f"{r.five_nme:.3f}", f"{r.score:.3f}", int(r.kept)])
    atomic_write_text(out / "quality.csv", buf.getvalue())
    atomic_write_text(out / "pack.json", json.dumps(meta, indent=2) + "\n")


def run(args: argparse.Namespace) -> dict:
    from training.paths import REPO_ROOT, default_data_dir

    out = Path(args.out).expanduser()
    check_out_dir(out, REPO_ROOT)
    if bool(args.face5) == bool(args.images):
        raise PseudoLabelError("give exactly one input: --face5 [ROOT] or --images FOLDER")
    labeller = make_labeller(args.labeller, args.threads)
    t0 = time.time()
    missed = 0
    try:
        if args.face5:
            root = Path(default_data_dir() / "face5" if args.face5 == "default" else args.face5).expanduser()
            faces = faces_from_face5(root, args.list)
            terms = [SOURCE_TERMS["face5"]]
        else:
            folder = Path(args.images).expanduser()
            if not folder.is_dir():
                raise PseudoLabelError(f"{folder}: image folder not found")
            faces, missed = faces_from_folder(folder, args.detector, Path(args.boxes) if args.boxes else None)
            terms = ["the images' own terms (an image folder given by the user)"]
        if args.limit:
            faces = faces[: args.limit]
        if not faces:
            raise PseudoLabelError("no faces to label")
        tmp = out.with_name(out.name + ".partial")
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        last = [0.0]

        def progress(i: int, n: int) -> None:
            now = time.time()
            if now - last[0] > 2 or i == n:
                last[0] = now
                rate = i / max(now - t0, 1e-9)
                print(json.dumps({"event": "progress", "step": i, "steps": n, "faces_s": round(rate, 1),
                                  "eta_s": round((n - i) / max(rate, 1e-9), 1)}), flush=True)

        records = label_faces(faces, labeller, tmp, args.max_score, progress)
    finally:
        labeller.close()
    stats = summary(records)
    meta = {
        "format": "kpdesk-pseudo-pack/1",
        "labeller": labeller.name,
        "input": args.face5 or args.images,
        "max_score": args.max_score,
        "command": "python -m training pseudo-label " + " ".join(sys.argv[2:]) if len(sys.argv) > 2 else "",
        "licence_terms": terms + [lb.terms for lb in labeller.labellers],
        "images_without_face": missed,
        "seconds": round(time.time() - t0, 1),
        **stats,
    }
    write_pack(tmp, records, meta)
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    done = {"event": "done", "out": str(out), **{k: meta[k] for k in ("faces", "kept", "seconds", "labeller")},
            **{k: v for k, v in stats.items() if k not in ("faces", "kept")}}
    print(json.dumps(done), flush=True)
    print(f"pseudo-label: kept {stats['kept']} of {stats['faces']} faces (score <= {args.max_score}) "
          f"-> {out}; score percentiles {stats.get('score_percentiles')}", file=sys.stderr)
    return done


def _add_args(p: argparse.ArgumentParser) -> None:
    src = p.add_argument_group("input (one of)")
    src.add_argument("--face5", nargs="?", const="default", default="",
                     help="the face5 pack (default: the shared data folder's face5); its train split only")
    src.add_argument("--images", default="", help="a folder of images (faces found by the app's detector)")
    p.add_argument("--list", default="train.txt", help="face5 list file (test.txt is refused)")
    p.add_argument("--boxes", default="", help="CSV image,x0,y0,x1,y1 of face boxes for --images (no detector)")
    p.add_argument("--detector", default="auto", help="face detector for --images: auto, blazeface, haar")
    p.add_argument("--labeller", default="dlib", help="dlib, mediapipe, model:NAME, or an ensemble like "
                   "dlib+model:teacher+mediapipe")
    p.add_argument("--out", required=True, help="pack folder, outside the repository (rebuilt from scratch)")
    p.add_argument("--max-score", type=float, default=8.0,
                   help="drop faces whose score (%% of the inter-ocular distance) is above this")
    p.add_argument("--limit", type=int, default=0, help="label only the first N faces")
    p.add_argument("--threads", type=int, default=1, help="onnxruntime threads of model labellers")


def _run(args: argparse.Namespace, events: object, cancel: object) -> dict:
    try:
        return run(args)
    except PseudoLabelError as exc:
        raise ValueError(str(exc)) from None


COMMANDS = {"pseudo-label": ("Pseudo-label unlabelled faces into a face68 pack (dlib / catalog models).",
                             _add_args, _run)}
