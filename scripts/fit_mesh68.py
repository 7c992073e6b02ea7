"""Fit the 68-point view of MediaPipe's face mesh (``kpdesk/vision/mesh68.json``) on labelled
faces, and measure MediaPipe's NME through it.

    python scripts/fit_mesh68.py --data ../shared/data/face68 [--list train.txt]
        [--sources afw,helen] [--write] [--val val.txt] [--out kpdesk/vision/mesh68.json]

Fit: MediaPipe Face Landmarker (IMAGE mode: its own detector) runs on every face68 pack image
of ``--list`` from ``--sources``; where it finds the labelled face (a mesh whose box holds
the labels' box centre), its 478 points and the 68 labels go into the fit
(``kpdesk.vision.mesh68.fit_view``: per iBUG point the best non-negative, sum-1 mix of at
most three mesh vertices). The fit error is reported in-sample and 2-fold cross-validated
(ION NME, %). ``--write`` stores the view with its source and fit error.

Val (``--val``): the lab's protocol at severity 0 (``kpdesk.inference.robustness``,
``evaluate_reference_cell``: the face with a face68 pack's context, MediaPipe's own
detector, a miss is a failure), per subset: faces found, ION NME over the faces found
(mapping error included), FR@10 counting a miss as a failure.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from kpdesk.assets import _sha256  # noqa: E402
from kpdesk.inference.reference import ReferenceLandmarker, ReferenceUnavailable, task_path  # noqa: E402
from kpdesk.inference.robustness import FAILURE_NME, ImageStore, evaluate_reference_cell  # noqa: E402
from kpdesk.vision.labels import LabelError, load_labelled_folder  # noqa: E402
from kpdesk.vision.mesh68 import DEFAULT_PATH, Mesh68View, cross_validate, fit_view, ion_nme  # noqa: E402
from kpdesk.vision.perturb import Perturbation  # noqa: E402

GROUPS = {"AFW+HELEN": ("afw", "helen"), "YTF": ("ytf",)}


def collect(ref: ReferenceLandmarker, faces: list) -> tuple[np.ndarray, np.ndarray, int]:
    """(meshes (N, 478, 2), labels (N, 68, 2), faces missed) on the pack images as they are."""
    meshes, gts, missed = [], [], 0
    for f in faces:
        img = cv2.imread(f.path, cv2.IMREAD_COLOR)
        if img is None:
            raise SystemExit(f"{f.path}: cannot decode image")
        lo, hi = f.pts_img.min(axis=0), f.pts_img.max(axis=0)
        mesh = ref.mesh_near(img, (float(lo[0] + hi[0]) / 2, float(lo[1] + hi[1]) / 2))
        if mesh is None:
            missed += 1
            continue
        meshes.append(mesh)
        gts.append(f.pts_img)
    return np.array(meshes), np.array(gts), missed


def main(argv: list[str] | None = None) -> int:
    try:
        return run(argv)
    except (LabelError, ReferenceUnavailable) as exc:
        print(f"fit_mesh68: error: {exc}", file=sys.stderr)
        return 2


def run(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="the face68 pack folder")
    ap.add_argument("--list", default="train.txt", help="list file of the faces to fit on")
    ap.add_argument("--sources", default="afw,helen", help="sub-sets to fit on (comma-separated)")
    ap.add_argument("--candidates", type=int, default=12, help="mesh vertices tried per iBUG point")
    ap.add_argument("--write", action="store_true", help="store the fitted view in --out")
    ap.add_argument("--out", type=Path, default=DEFAULT_PATH)
    ap.add_argument("--val", help="list file to measure MediaPipe's NME through the view on")
    a = ap.parse_args(argv)

    import mediapipe

    sources = tuple(s.strip() for s in a.sources.split(",") if s.strip())
    labelled = load_labelled_folder(a.data, a.list, fmt="face68")
    faces = [f for f in labelled.faces if f.source in sources]
    if not faces:
        raise SystemExit(f"{a.data / a.list}: no faces from {', '.join(sources)}")
    t0 = time.perf_counter()
    with ReferenceLandmarker() as ref:
        mesh, gt, missed = collect(ref, faces)
        print(f"fit data: {a.data.name}/{a.list} {'+'.join(sources)}: {len(gt)} of {len(faces)} faces found by "
              f"MediaPipe ({missed} missed), {time.perf_counter() - t0:.0f} s")
        view = fit_view(mesh, gt, a.candidates)
        in_sample = float(ion_nme(view.apply(mesh), gt).mean())
        cv2fold = cross_validate(mesh, gt, folds=2, candidates=a.candidates)
        print(f"fit error (ION NME of the view against the labels): in-sample {in_sample:.2f}%, "
              f"2-fold cross-validated {cv2fold:.2f}%")
        source = {"data": f"{a.data.name}/{a.list}", "sources": list(sources), "faces": int(len(gt)),
                  "missed": int(missed), "task": "face_landmarker.task", "task_sha256": _sha256(task_path()),
                  "mediapipe": mediapipe.__version__,
                  "command": f"python scripts/fit_mesh68.py --data {a.data} --list {a.list} --sources {a.sources}"
                             f" --candidates {a.candidates} --write"}
        fit = {"ion_nme_in_sample_pct": round(in_sample, 3), "ion_nme_cv2_pct": round(cv2fold, 3),
               "candidates": a.candidates}
        view = Mesh68View(view.vertices, view.weights, view.mesh_points, source, fit)
        if a.write:
            print(f"wrote {view.save(a.out)}")
        if a.val:
            ref.view = view
            val = load_labelled_folder(a.data, a.val, fmt="face68")
            t1 = time.perf_counter()
            nme, _ = evaluate_reference_cell(ref, val.faces, Perturbation("occlusion", 0.0), ImageStore())
            src = np.array([f.source for f in val.faces])
            print(f"\nval {a.data.name}/{a.val} ({len(val.faces)} faces, {time.perf_counter() - t1:.0f} s), MediaPipe "
                  f"{mediapipe.__version__} with its own detector, through the 68-point view (its fit error is part "
                  f"of these figures), {platform.machine()}:")
            print("| subset | faces | found | ION NME over found (%) | FR@10 (miss = failure) (%) |")
            print("|---|---|---|---|---|")
            for name, members in (*GROUPS.items(), ("all", tuple(set(src)))):
                e = nme[np.isin(src, members)]
                if not len(e):
                    continue
                ok = e[np.isfinite(e)]
                print(f"| {name} | {len(e)} | {len(ok)} | {ok.mean():.2f} | "
                      f"{100.0 * np.mean(e > FAILURE_NME):.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
