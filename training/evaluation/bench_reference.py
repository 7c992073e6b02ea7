"""The MediaPipe reference in ``training bench``: the same split, the same faces, the same run.

MediaPipe Face Landmarker (``kpdesk.inference.reference``) is scored as the app's robustness
lab scores it (``kpdesk.inference.robustness.evaluate_reference_cell``): each face with a
face68 pack image's context, its own detector, its 68-point view (whose fit error is part of
every figure), a missed face a failure (left out of the mean NME, counted). Latency is
per image: IMAGE mode (its detector and mesh on every call) and VIDEO mode on a still
(its mesh tracking the face, no detector), median ms; MediaPipe's threads cannot be set.
The markdown gives every kpdesk model's NME and latency as ratios to MediaPipe's.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

REFERENCE_SCHEMA = "ibug68"  # the view's layout: the reference runs on the 68-point split only


def _summary(nme: np.ndarray, sources: list[str]) -> dict[str, Any]:
    def one(e: np.ndarray) -> dict[str, Any]:
        ok = e[np.isfinite(e)]
        return {"n": int(len(e)), "found": int(len(ok)), "nme_ion": float(ok.mean()) if len(ok) else None,
                "fr10_ion": float(100.0 * np.mean(e > 10.0)) if len(e) else None}

    src = np.array(sources)
    out = one(nme)
    groups = {s: (s,) for s in sorted(set(sources))}
    if {"afw", "helen"} & set(sources):
        groups["afw+helen"] = ("afw", "helen")
    out["by_source"] = {g: one(nme[np.isin(src, members)]) for g, members in groups.items()}
    return out


def _latency(task: Any, images: list[np.ndarray], runs: int) -> float:
    times = []
    for i in range(runs):
        img = images[i % len(images)]
        t0 = time.perf_counter()
        task.run_image(task.image(img), i / 30.0)
        times.append((time.perf_counter() - t0) * 1000.0)
    return float(np.median(times[min(5, len(times) - 1):]))


def bench_reference(samples: list, robust: list, image: Callable[[str], np.ndarray], runs: int,
                    perturbations: dict[str, tuple[str, float]], seed: int,
                    emit: Callable[[str], None]) -> dict[str, Any] | None:
    """The reference's record on the 68-point split (``samples``; ``robust``: the robustness
    subset), or None when MediaPipe or its bundle is not there (logged)."""
    from kpdesk.inference.reference import FaceLandmarkerTask, ReferenceLandmarker, ReferenceUnavailable, task_path
    from kpdesk.inference.robustness import ImageStore, evaluate_reference_cell
    from kpdesk.vision.labels import LabelledFace
    from kpdesk.vision.perturb import Perturbation

    if not samples:
        return None
    try:
        task_path()
    except ReferenceUnavailable as exc:
        emit(f"mediapipe: not benchmarked: {exc}")
        return None
    import mediapipe

    faces = [LabelledFace(s.path, s.pts, s.source) for s in samples]
    store = ImageStore()
    rec: dict[str, Any] = {"name": "mediapipe", "kind": "reference", "mediapipe": mediapipe.__version__}
    with ReferenceLandmarker() as ref:
        rec["view"] = {"source": ref.view.source.get("data"), "fit": ref.view.fit}
        emit(f"mediapipe: accuracy on {len(faces)} faces (its own detector, 68-point view)")
        nme, _ = evaluate_reference_cell(ref, faces, Perturbation("occlusion", 0.0), store)
        rec["accuracy"] = _summary(nme, [f.source for f in faces])
        if robust:
            sub = [LabelledFace(s.path, s.pts, s.source) for s in robust]
            rob: dict[str, Any] = {"n": len(sub)}
            for name, (kind, severity) in {"clean": ("occlusion", 0.0), **perturbations}.items():
                emit(f"mediapipe: robustness {name}")
                e, _ = evaluate_reference_cell(ref, sub, Perturbation(kind, severity, "random", seed), store)
                ok = e[np.isfinite(e)]
                rob[name] = {"nme_ion": float(ok.mean()) if len(ok) else None, "found": int(len(ok)),
                             "fr10_ion": float(100.0 * np.mean(e > 10.0))}
            rec["robustness"] = rob
    imgs = [image(s.path) for s in samples[: min(len(samples), 50)]]
    emit(f"mediapipe: latency ({runs} runs, IMAGE and VIDEO mode)")
    lat = {}
    for mode, video in (("image_ms", False), ("video_ms", True)):
        with FaceLandmarkerTask(video=video, num_faces=1) as task:
            # VIDEO: one still over and over (the mesh tracks it); IMAGE: the faces in turn.
            lat[mode] = _latency(task, imgs[:1] if video else imgs, runs)
    rec["latency"] = lat
    return rec


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}" if a and b else "–"


def _num(v: float | None) -> str:
    return "–" if v is None else f"{v:.2f}"


def reference_markdown(ref: dict[str, Any], recs: list[dict[str, Any]]) -> str:
    """The 'against MediaPipe' section: the reference's figures and every 68-point model's ratios."""
    acc, lat = ref["accuracy"], ref["latency"]
    by = acc["by_source"]
    fit = ref.get("view", {}).get("fit", {})
    md = ["\n## Against the MediaPipe reference (same faces, same run)\n\n",
          f"MediaPipe Face Landmarker {ref['mediapipe']} with its own detector, scored through its 68-point view "
          f"(`kpdesk/vision/mesh68.json`, fit error {fit.get('ion_nme_cv2_pct', '?')}% ION cross-validated: part "
          "of every MediaPipe NME here); a face it misses is a failure (FR@10) and left out of its NME. "
          f"Latency per image: IMAGE mode {lat['image_ms']:.2f} ms (detector + mesh), VIDEO mode on a still "
          f"{lat['video_ms']:.2f} ms (mesh tracking, no detector); its threads cannot be set.\n\n"]
    groups = [g for g in ("afw+helen", "ytf") if g in by]
    rows = [["mediapipe"] + [f"{by[g]['found']}/{by[g]['n']}" for g in groups] + [_num(by[g]["nme_ion"])
                                                                                   for g in groups]]
    md.append("| system | " + " | ".join(f"found {g.upper()}" for g in groups) + " | "
              + " | ".join(f"NME ION {g.upper()}" for g in groups) + " |\n")
    md.append("|" + "---|" * (1 + 2 * len(groups)) + "\n")
    md.extend("| " + " | ".join(r) + " |\n" for r in rows)
    md.append("\nkpdesk's models as ratios to MediaPipe: NME / MediaPipe's NME (below 1: more accurate; "
              "label crops, and BlazeFace crops with misses as failures where measured), and MediaPipe's "
              "VIDEO-mode ms / the model's 1-thread ms (how many times faster; the model's figure is its forward "
              "pass on a crop, MediaPipe's its mesh with tracking):\n\n")
    head = ["model"] + [f"NME {g.upper()} / MP" for g in groups] + [f"BlazeFace-crop NME {g.upper()} / MP"
                                                                    for g in groups] + ["× faster than MP VIDEO",
                                                                                        "× faster than MP IMAGE"]
    md.append("| " + " | ".join(head) + " |\n|" + "---|" * len(head) + "\n")
    for r in recs:
        if r.get("schema") != REFERENCE_SCHEMA or "accuracy" not in r:
            continue
        a = r["accuracy"][r["decode"]].get("by_source") or {}
        det = ((r.get("crops") or {}).get("blazeface") or {}).get("groups") or {}
        ms = ((r.get("latency") or {}).get("threads_1") or {}).get("median_ms")
        cells = [_ratio((a.get(g) or {}).get("nme_ion"), by[g]["nme_ion"]) for g in groups]
        cells += [_ratio((det.get(g) or {}).get("nme"), by[g]["nme_ion"]) for g in groups]
        cells += [_ratio(lat["video_ms"], ms), _ratio(lat["image_ms"], ms)]
        md.append(f"| `{r['name']}` | " + " | ".join(cells) + " |\n")
    return "".join(md)
