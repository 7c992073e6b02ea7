"""``python -m training bench``: every model of a folder, in one run, on the same data.

Per model: validation accuracy (NME ION / IPN / box, FR, AUC; overall and per data
source, AFW+HELEN together too), size (params, MACs from the manifest, file size),
onnxruntime latency at batch 1 (1 thread and all threads; median and p95), robustness
(NME under synthetic occlusion, rotation, blur and low light) and jitter (RMS
frame-to-frame landmark movement on a still face through the real per-frame pipeline,
with and without One-Euro smoothing). The MediaPipe reference runs on the 68-point split in the
same run (``training.evaluation.bench_reference``: its own detector, its 68-point view) and every 68-point
model gets its NME and speed as ratios to it. Everything is seeded: two runs on the same files
give the same accuracy numbers. Writes ``bench.md`` + ``bench.json`` (+ CED plots).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import re
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from kpdesk.vision.files import atomic_write_text
from kpdesk.vision.perturb import Perturbation
from kpdesk.vision.schema import KeypointSchema
from training.data.datasets import Sample
from training.evaluation.bench_reference import REFERENCE_SCHEMA, bench_reference, reference_markdown
from training.evaluation.evaluate import (
    EvalError,
    ImageCache,
    Perturb,
    Runner,
    load_runner,
    load_samples,
    plot_ced,
    predict_samples,
)
from training.evaluation.tables import cell, markdown_table
from training.metrics import nme_per_image

log = logging.getLogger(__name__)

# Which split each keypoint layout is benchmarked on: folder under --data, list, format.
DATASETS: dict[str, tuple[str, str, str]] = {
    "ibug68": ("face68", "val.txt", "face68"),
    "mtfl5": ("face5", "test.txt", "face5"),
}
PERTURBATIONS = ("occlusion20", "occlusion40", "rotate30", "rotate45", "blur", "lowlight")
PERTURB_LABELS = {"clean": "clean", "occlusion20": "occl. 20%", "occlusion40": "occl. 40%", "rotate30": "rot. 30°",
                  "rotate45": "rot. 45°", "blur": "blur", "lowlight": "low light"}


@dataclass(frozen=True)
class BenchConfig:
    """What to run. ``max_images`` / ``robust_images``: first N faces of the split (0 = all)."""

    models_dir: str = ""  # "" = kpdesk's models folder ($KPDESK_MODELS or <repo>/models)
    data_root: str = ""  # "" = $KPDESK_DATA or <repo>/../shared/data
    out: str = ""  # "" = <repo>/docs/bench
    seed: int = 0
    max_images: int = 0
    robust_images: int = 0
    latency_runs: int = 200
    latency_warmup: int = 20
    jitter_faces: int = 6
    jitter_frames: int = 90
    jitter_shift_px: float = 0.5
    jpeg_quality: int = 90
    detector: str = "labels"
    eval_threads: int = 0
    robustness: bool = True
    jitter: bool = True
    only: tuple[str, ...] = ()
    crop_detectors: tuple[str, ...] = ("blazeface", "haar")  # accuracy on crops from the app's detectors too
    reference: bool = True  # MediaPipe on the 68-point split too, and every model as ratios to it

    @classmethod
    def quick(cls, **kw: Any) -> BenchConfig:
        base = dict(max_images=24, robust_images=16, latency_runs=20, latency_warmup=3, jitter_faces=1,
                    jitter_frames=12)
        return cls(**{**base, **kw})


# -- perturbations ------------------------------------------------------------------------
def _face_box(pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return pts.min(axis=0), pts.max(axis=0)


# Each named perturbation is a ``kpdesk.vision.perturb.Perturbation`` (the app's robustness
# lab runs the same code): (kind, severity in that kind's unit).
NAMED_PERTURBATIONS = {"occlusion20": ("occlusion", 20.0), "occlusion40": ("occlusion", 40.0),
                       "rotate30": ("rotation", 30.0), "rotate45": ("rotation", 45.0),
                       "blur": ("blur", 3.0), "lowlight": ("lowlight", 1.0)}


def make_perturbation(name: str, seed: int = 0) -> Perturb:
    """A deterministic perturbation (see ``training.evaluation.evaluate.Perturb``) by name.

    occlusionNN: a flat rectangle of a seeded colour covering NN% of the landmark box's
        area, same aspect ratio, at a seeded position inside the box.
    rotateNN: the face turned by NN degrees in the crop (alternating sign per image); the
        crop keeps its upright size, as a roll-unaware detector would give.
    blur: Gaussian blur, sigma 3% of the face's longer side.
    lowlight: gamma 2.2 darkening to ~45% brightness plus Gaussian sensor noise (std 6).
    """
    if name not in NAMED_PERTURBATIONS:
        raise ValueError(f"unknown perturbation {name!r}; known: {PERTURBATIONS}")
    kind, severity = NAMED_PERTURBATIONS[name]
    return Perturbation(kind, severity, "random", seed).apply


# -- latency ------------------------------------------------------------------------------
def measure_latency(path: Path, x: np.ndarray, threads: int, runs: int, warmup: int) -> dict[str, float]:
    """onnxruntime forward time of one input (1, 3, S, S), in milliseconds."""
    from kpdesk.inference.model import LandmarkModel

    lm = LandmarkModel.load(path, threads=threads)
    for _ in range(warmup):
        lm.forward(x)
    ts = np.empty(runs)
    for i in range(runs):
        t0 = time.perf_counter()
        lm.forward(x)
        ts[i] = time.perf_counter() - t0
    ms = 1000.0 * ts
    return {"median_ms": float(np.median(ms)), "p95_ms": float(np.percentile(ms, 95)), "mean_ms": float(ms.mean()),
            "min_ms": float(ms.min()), "runs": runs, "threads": threads}


# -- jitter -------------------------------------------------------------------------------
def _label_detector(box: list[tuple[float, float, float, float] | None]):
    """A detector that 'finds' the face at its labelled box (identity calibration), so the
    jitter test measures the landmark model + tracking, not a detector's own noise."""
    from kpdesk.inference.detectors import BoxCalibration, Detection, FaceDetector

    class LabelBoxDetector(FaceDetector):
        name = "labels"

        def __init__(self) -> None:
            super().__init__(BoxCalibration(), use_roll=False)

        def detect(self, frame_bgr: np.ndarray) -> list[Detection]:
            return [Detection(box[0], 1.0)] if box[0] is not None else []

    return LabelBoxDetector()


def jitter_frames(image: np.ndarray, pts: np.ndarray, frames: int, seed: int, face: int, shift_px: float,
                  quality: int):
    """Yield (frame, pts_img) of a still face: each frame shifted by uniform sub-pixel noise
    in [-shift_px, shift_px] and JPEG re-encoded (as a webcam stream would be)."""
    h, w = image.shape[:2]
    for t in range(frames):
        rng = np.random.default_rng((seed, 17, face, t))
        d = rng.uniform(-shift_px, shift_px, size=2)
        m = np.array([[1.0, 0.0, d[0]], [0.0, 1.0, d[1]]])
        f = cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        ok, enc = cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise RuntimeError("JPEG encoding failed")
        yield cv2.imdecode(enc, cv2.IMREAD_COLOR), pts + d


def _rms_motion(seq: np.ndarray) -> float:
    """RMS over frames and points of the frame-to-frame displacement; seq (T, K, 2), NaN = lost."""
    d = np.diff(seq, axis=0)
    d2 = np.sum(d * d, axis=-1)
    d2 = d2[np.all(np.isfinite(d2), axis=1)]
    return float(np.sqrt(d2.mean())) if d2.size else float("nan")


def measure_jitter(path: Path, samples: list[Sample], images: ImageCache, schema: KeypointSchema,
                   cfg: BenchConfig) -> dict[str, Any]:
    """RMS frame-to-frame landmark movement (% of inter-ocular distance) on still faces,
    through ``Pipeline`` (tracking on) with and without One-Euro smoothing."""
    from kpdesk.inference.detectors import create_detector
    from kpdesk.inference.model import LandmarkModel
    from kpdesk.inference.pipeline import Pipeline, PipelineConfig

    model = LandmarkModel.load(path, threads=1)
    res: dict[str, Any] = {"faces": len(samples), "frames": cfg.jitter_frames, "shift_px": cfg.jitter_shift_px,
                           "jpeg_quality": cfg.jpeg_quality, "detector": cfg.detector}
    norm = (lambda p: schema.interocular(p)) if schema.ocular else (lambda p: schema.interpupil(p))
    for smoothing in (False, True):
        rms, nme, lost, inp, restarts = [], [], 0, [], 0
        for fi, smp in enumerate(samples):
            box: list[tuple[float, float, float, float] | None] = [None]
            det = _label_detector(box) if cfg.detector == "labels" else create_detector(cfg.detector)
            pipe = Pipeline(model, det, PipelineConfig(max_faces=1, smoothing=smoothing))
            seq, gts, last_id = [], [], None
            for t, (frame, gt) in enumerate(jitter_frames(images(smp.path), smp.pts, cfg.jitter_frames, cfg.seed,
                                                          fi, cfg.jitter_shift_px, cfg.jpeg_quality)):
                lo, hi = _face_box(gt)
                box[0] = (float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1]))
                r = pipe.process(frame, frame_index=t)
                if r.faces:
                    seq.append(r.faces[0].pts_img)
                    tid = r.extras["track_ids"][0]
                    restarts += last_id is not None and tid != last_id
                    last_id = tid
                else:
                    seq.append(np.full_like(gt, np.nan))
                    lost += 1
                gts.append(gt)
            det.close()
            seq_a, gt_a = np.asarray(seq), np.asarray(gts)
            iod = float(norm(smp.pts))
            rms.append(100.0 * _rms_motion(seq_a) / iod)
            inp.append(100.0 * _rms_motion(gt_a) / iod)
            ok = np.all(np.isfinite(seq_a), axis=(1, 2))
            if ok.any():
                nme.append(100.0 * float(np.mean(np.linalg.norm(seq_a[ok] - gt_a[ok], axis=-1)) / iod))
        key = "smoothed" if smoothing else "raw"
        res[key] = {"rms_pct_iod": float(np.nanmean(rms)) if rms else float("nan"),
                    "nme_pct_iod": float(np.mean(nme)) if nme else float("nan"), "lost_frames": lost,
                    "track_restarts": int(restarts)}
        res["input_rms_pct_iod"] = float(np.mean(inp)) if inp else float("nan")
    return res


# -- one model ----------------------------------------------------------------------------
def _compact(m: dict[str, Any]) -> dict[str, Any]:
    """Metrics without the per-point list (kept in the JSON only for the clean run)."""
    return {k: v for k, v in m.items() if k != "per_point_nme"}


def bench_model(path: Path, cfg: BenchConfig, data: Callable[[str], list[Sample] | None],
                images: ImageCache, emit: Callable[[str], None],
                faces: Callable[[str, str], Any] | None = None) -> dict[str, Any]:
    """One model's record. ``faces(schema name, detector)``: that detector's faces on the
    split (``bench_detect.FaceFinds``), for the accuracy on detector crops."""
    runner: Runner = load_runner(path, threads=cfg.eval_threads)
    info = runner.info
    rec: dict[str, Any] = {
        "name": path.stem, "path": str(path), "ok": True, "schema": runner.schema.name,
        "arch": info.get("arch", ""), "decode": runner.default_decode, "input_size": runner.input_size,
        "params": info.get("params"), "macs": info.get("macs"), "file_size_bytes": path.stat().st_size,
        "weights_dtype": info.get("weights_dtype", ""),
    }
    samples = data(runner.schema.name) or []
    if samples:
        rec["split"] = "/".join(DATASETS[runner.schema.name][:2])
    else:
        rec["note"] = f"no benchmark split for schema {runner.schema.name} under {cfg.data_root or 'the data root'}"
    if samples:
        emit(f"{runner.name}: accuracy on {len(samples)} faces")
        pred = predict_samples(runner, samples, runner.modes, images=images)
        rec["accuracy"] = {m: pred.metrics(m) for m in runner.modes}
        main = rec["accuracy"][runner.default_decode]["norm_main"]
        rec["norm_main"] = main
        rec["_nme_clean"] = nme_per_image(pred.pred_crop[runner.default_decode], pred.gt_crop, pred.schema, main)
        if faces is not None and cfg.crop_detectors:
            from training.evaluation.bench_detect import detector_accuracy, label_crop_summary

            crops = {"labels": label_crop_summary(rec["_nme_clean"], samples)}
            for det in cfg.crop_detectors:
                finds = faces(runner.schema.name, det)
                emit(f"{runner.name}: accuracy on {det} crops ({finds.n_detected}/{len(samples)} faces found)")
                crops[det] = detector_accuracy(runner, samples, finds, images, main)
            rec["crops"] = crops
        x = runner_input(runner, samples[0], images)
    else:
        x = np.zeros((1, 3, runner.input_size, runner.input_size), np.float32)
    if runner.kind == "onnx":
        emit(f"{runner.name}: latency ({cfg.latency_runs} runs)")
        rec["latency"] = {
            "threads_1": measure_latency(path, x, 1, cfg.latency_runs, cfg.latency_warmup),
            "threads_all": measure_latency(path, x, 0, cfg.latency_runs, cfg.latency_warmup),
        }
    if samples and cfg.robustness:
        sub = spread(samples, cfg.robust_images)
        rob: dict[str, Any] = {"n": len(sub), "clean": {m: _compact(
            predict_samples(runner, sub, runner.modes, images=images).metrics(m)) for m in runner.modes}
            if len(sub) != len(samples) else {m: _compact(v) for m, v in rec["accuracy"].items()}}
        for name in PERTURBATIONS:
            emit(f"{runner.name}: robustness {name}")
            p = predict_samples(runner, sub, runner.modes, images=images, perturb=make_perturbation(name, cfg.seed))
            rob[name] = {m: _compact(p.metrics(m, groups={})) for m in runner.modes}
        rec["robustness"] = rob
    if samples and cfg.jitter and runner.kind == "onnx":
        emit(f"{runner.name}: jitter ({cfg.jitter_faces} faces x {cfg.jitter_frames} frames)")
        rec["jitter"] = measure_jitter(path, jitter_faces(samples, cfg), images, runner.schema, cfg)
    return rec


def spread(samples: list[Sample], n: int) -> list[Sample]:
    """``n`` samples evenly spread over the list (every data source represented), or all."""
    if not n or n >= len(samples):
        return samples
    return [samples[i] for i in np.linspace(0, len(samples) - 1, n).round().astype(int)]


def runner_input(runner: Runner, smp: Sample, images: ImageCache) -> np.ndarray:
    """A real pre-processed face (1, 3, S, S) for timing."""
    from kpdesk.vision.preprocess import to_input
    from kpdesk.vision.transforms import warp_crop

    spec = runner.crop(smp.pts)
    return to_input(warp_crop(images(smp.path), spec, runner.input_size), runner.mean, runner.std)


def jitter_faces(samples: list[Sample], cfg: BenchConfig) -> list[Sample]:
    """Seeded choice of faces, from the carefully labelled sources when present
    (AFW / HELEN rather than the integer-rounded YouTube-Faces labels)."""
    clean = [s for s in samples if s.source in ("afw", "helen")] or samples
    rng = np.random.default_rng((cfg.seed, 19))
    idx = rng.choice(len(clean), size=min(cfg.jitter_faces, len(clean)), replace=False)
    return [clean[i] for i in sorted(idx)]


# -- the whole folder ---------------------------------------------------------------------
def run_bench(cfg: BenchConfig, emit: Callable[[str], None] | None = None,
              cancel: Callable[[], bool] | None = None) -> dict[str, Any]:
    """Benchmark every ``*.onnx`` (+ manifest) and ``*.pt`` in ``cfg.models_dir``."""
    from kpdesk.inference.catalog import default_models_dir, scan_models
    from training.paths import REPO_ROOT, default_data_dir

    emit = emit or (lambda msg: log.info("%s", msg))
    models_dir = Path(cfg.models_dir).expanduser() if cfg.models_dir else default_models_dir()
    data_root = Path(cfg.data_root).expanduser() if cfg.data_root else default_data_dir()
    if not models_dir.is_dir():
        raise EvalError(f"{models_dir}: models folder not found")
    entries = [(e.onnx_path, e.error) for e in scan_models(models_dir, validate=True)]
    entries += [(p, None) for p in sorted(models_dir.glob("*.pt"))]
    if cfg.only:
        entries = [(p, e) for p, e in entries if p.stem in cfg.only]
    if not entries:
        raise EvalError(f"{models_dir}: no models (*.onnx with a manifest, or *.pt checkpoints)")
    images = ImageCache()
    splits: dict[str, list[Sample] | None] = {}

    def data(schema_name: str) -> list[Sample] | None:
        """The benchmark split of a keypoint layout, loaded on first use (None: no split)."""
        if schema_name not in splits:
            splits[schema_name] = None
            if schema_name in DATASETS:
                folder, lst, fmt = DATASETS[schema_name]
                if (data_root / folder / lst).is_file():
                    splits[schema_name] = spread(load_samples(data_root / folder, lst, fmt)[0], cfg.max_images)
        return splits[schema_name]

    found: dict[tuple[str, str], Any] = {}

    def faces(schema_name: str, detector: str):
        """A detector's faces on a split, found once and shared by every model."""
        from training.evaluation.bench_detect import find_faces

        key = (schema_name, detector)
        if key not in found:
            emit(f"{detector}: finding the faces of {len(splits[schema_name] or [])} images")
            found[key] = find_faces(splits[schema_name] or [], images, detector, cancel=cancel)
        return found[key]

    t0 = time.time()
    records = []
    for path, error in entries:
        if cancel is not None and cancel():
            from training.jobs.engine import Cancelled

            raise Cancelled()
        if error:
            records.append({"name": path.stem, "path": str(path), "ok": False, "error": error})
            continue
        try:
            records.append(bench_model(path, cfg, data, images, emit, faces))
        except (EvalError, ValueError, OSError) as exc:
            log.warning("%s: %s", path, exc)
            records.append({"name": path.stem, "path": str(path), "ok": False, "error": str(exc)})
    reference = None
    if cfg.reference and any(r.get("schema") == REFERENCE_SCHEMA and "accuracy" in r for r in records):
        samples = data(REFERENCE_SCHEMA) or []
        reference = bench_reference(samples, spread(samples, cfg.robust_images) if cfg.robustness else [],
                                    images, cfg.latency_runs, {n: NAMED_PERTURBATIONS[n] for n in PERTURBATIONS},
                                    cfg.seed, emit)
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S"), "seconds": round(time.time() - t0, 1),
        "models_dir": str(models_dir), "data_root": str(data_root),
        "splits": {k: {"split": "/".join(DATASETS[k][:2]), "n": len(v)} for k, v in splits.items() if v},
        "cpu_count": os.cpu_count(), "load_avg": [round(x, 2) for x in os.getloadavg()],
        "machine": platform.machine(), "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(), "onnxruntime": _version("onnxruntime"),
        "config": asdict(cfg), "command": " ".join(sys.argv),
    }
    out = Path(cfg.out).expanduser() if cfg.out else REPO_ROOT / "docs" / "bench"
    out.mkdir(parents=True, exist_ok=True)
    files = {"markdown": str(out / "bench.md"), "json": str(out / "bench.json")}
    for schema_name, (folder, _, _) in DATASETS.items():
        curves = {r["name"]: r["_nme_clean"] for r in records if r.get("schema") == schema_name and "_nme_clean" in r}
        if curves:
            norm = next(r["norm_main"] for r in records if r.get("schema") == schema_name and "norm_main" in r)
            files[f"ced_{folder}"] = str(plot_ced(curves, out / f"ced_{folder}.png", norm=norm,
                                                  title=f"{folder} {DATASETS[schema_name][1]}: CED"))
    for r in records:
        r.pop("_nme_clean", None)
    result = {"meta": meta, "models": records, "reference": reference, "files": files}
    atomic_write_text(out / "bench.json", json.dumps(result, indent=1, default=_json_default) + "\n")
    atomic_write_text(out / "bench.md", to_markdown(result))
    return result


def _version(mod: str) -> str:
    try:
        return __import__(mod).__version__
    except (ImportError, AttributeError):
        return "?"


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


# -- markdown -----------------------------------------------------------------------------
def _weights(dtype: str | None) -> str:
    """A manifest's ``weights_dtype`` in one word: float32, float16 (stored; computed in float32), int8."""
    return (dtype or "float32").split(" ")[0]


def to_markdown(result: dict[str, Any]) -> str:
    meta, recs = result["meta"], [r for r in result["models"] if r.get("ok")]
    c = meta["config"]
    md = ["# Model benchmark\n",
          f"{meta['date']}; {len(result['models'])} model(s) from `{meta['models_dir']}`; data "
          + ", ".join(f"{v['split']} ({v['n']} faces)" for v in meta["splits"].values())
          + f". CPU: {meta['processor']}, {meta['cpu_count']} logical cores, load average "
          f"{meta['load_avg'][0]} at the end (latency is sensitive to other work on the machine); "
          f"onnxruntime {meta['onnxruntime']}. Regenerate: `python -m training bench`.\n",
          "NME in % (ION: outer eye corners; IPN: eye centres; box: sqrt(w h) of the landmark box), "
          "FR = share of faces with NME(ION) above 8% / 10%, AUC of the CED up to 8% / 10%. "
          "Faces are cut with the canonical crop of their labels (as in training validation); "
          "each model uses its own default decode mode.\n"]
    for schema_name, (folder, lst, _) in DATASETS.items():
        rs = [r for r in recs if r.get("schema") == schema_name and "accuracy" in r]
        if not rs:
            continue
        md.append(f"\n## Accuracy: {folder}/{lst}\n")
        mse = schema_name == "mtfl5"
        header = ["model", "decode", "NME ION", "NME IPN", "NME box", "FR@8", "FR@10", "AUC@8", "AUC@10"]
        header += ["MSE (norm.)"] if mse else []
        rows = []
        for r in rs:
            a = r["accuracy"][r["decode"]]
            main = a["norm_main"]
            rows.append([r["name"], r["decode"], cell(a.get("nme_ion")), cell(a.get("nme_ipn")), cell(a.get("nme_box")),
                         cell(a.get(f"fr08_{main}")), cell(a.get(f"fr10_{main}")), cell(a.get(f"auc08_{main}"), ".3f"),
                         cell(a.get(f"auc10_{main}"), ".3f")] + ([cell(a.get("mse_norm"), ".5f")] if mse else []))
        md.append(markdown_table(header, rows))
        sources = sorted({s for r in rs for s in (r["accuracy"][r["decode"]].get("by_source") or {})},
                         key=lambda s: ("+" in s, s))
        if sources:
            md.append("\nPer data source, NME ION % (faces: "
                      + ", ".join(f"{s} {rs[0]['accuracy'][rs[0]['decode']]['by_source'][s]['n']}"
                                  for s in sources if s in rs[0]['accuracy'][rs[0]['decode']]['by_source'])
                      + "):\n\n")
            rows = [[r["name"]] + [cell((r["accuracy"][r["decode"]].get("by_source") or {}).get(s, {}).get("nme_ion"))
                                   for s in sources] for r in rs]
            md.append(markdown_table(["model"] + [s.upper() for s in sources], rows))
        modes = ("regression", "heatmap", "fusion")
        rows = [[r["name"]] + [cell(r["accuracy"][m]["nme_ion"]) if m in r["accuracy"] else "–" for m in modes]
                for r in rs]
        md.append("\nNME ION % by decode mode:\n\n" + markdown_table(["model", *modes], rows))
        from training.evaluation.bench_detect import markdown as detector_markdown

        md.append(detector_markdown(rs, f"{folder}/{lst}", tuple(c.get("crop_detectors") or ())))
    if recs:
        md.append("\n## Size and speed\n\nonnxruntime, batch 1, forward pass only (pre-processing and decoding "
                  f"excluded), {c['latency_runs']} timed runs after {c['latency_warmup']} warm-up runs.\n\n")
        rows = []
        for r in recs:
            lat = r.get("latency", {})
            t1, ta = lat.get("threads_1", {}), lat.get("threads_all", {})
            rows.append([r["name"], r.get("arch", ""), _weights(r.get("weights_dtype")), str(r.get("input_size", "")),
                         cell(r["params"] / 1e6 if r.get("params") else None, ".3f"),
                         cell(r["macs"] / 1e6 if r.get("macs") else None, ".1f"),
                         cell(r["file_size_bytes"] / 1e6, ".2f"),
                         f"{cell(t1.get('median_ms'))} / {cell(t1.get('p95_ms'))}",
                         f"{cell(ta.get('median_ms'))} / {cell(ta.get('p95_ms'))}"])
        md.append(markdown_table(["model", "arch", "weights", "input", "params (M)", "MACs (M)", "file (MB)",
                                  "1 thread ms (median / p95)", "all threads ms (median / p95)"], rows))
    rob = [r for r in recs if "robustness" in r]
    if rob:
        md.append(f"\n## Robustness\n\nNME ION % on {rob[0]['robustness']['n']} faces spread over the split under "
                  "synthetic perturbations (seeded, identical for every model): occlusion = a flat rectangle "
                  "covering 20% / 40% of the landmark box at a seeded place; rotation = the face turned by "
                  "+-30 / 45 degrees inside an upright crop of the usual size; blur = Gaussian, sigma 3% of the "
                  "face size; low light = gamma 2.2 at 80% gain plus noise (std 6). Default decode; FR@10 "
                  "in brackets. The JSON has every decode mode.\n\n")
        keys = ["clean", *PERTURBATIONS]
        rows = []
        for r in rob:
            row = [r["name"]]
            for k in keys:
                m = r["robustness"][k][r["decode"]]
                main = m["norm_main"]
                row.append(f"{cell(m.get(f'nme_{main}'))} ({cell(m.get(f'fr10_{main}'), '.0f')})")
            rows.append(row)
        md.append(markdown_table(["model"] + [PERTURB_LABELS[k] for k in keys], rows))
        fus = [r for r in rob if "fusion" in r["robustness"]["clean"] and "regression" in r["robustness"]["clean"]]
        if fus:
            rows = [[r["name"]] + [f"{cell(r['robustness'][k]['regression']['nme_ion'])} / "
                                   f"{cell(r['robustness'][k]['heatmap']['nme_ion'])} / "
                                   f"{cell(r['robustness'][k]['fusion']['nme_ion'])}" for k in keys] for r in fus]
            md.append("\nSame, regression / heatmap / fusion decoding:\n\n"
                      + markdown_table(["model"] + [PERTURB_LABELS[k] for k in keys], rows))
    jit = [r for r in recs if "jitter" in r]
    if jit:
        j0 = jit[0]["jitter"]
        md.append(f"\n## Jitter\n\nA still face ({j0['faces']} val face(s), {j0['frames']} frames each) shifted by "
                  f"uniform sub-pixel noise (+-{j0['shift_px']} px) and JPEG re-encoded (quality "
                  f"{j0['jpeg_quality']}) every frame, through the app's per-frame pipeline (tracking on, face box "
                  f"from `{j0['detector']}` when detection runs). RMS frame-to-frame landmark movement in % of "
                  "the inter-ocular distance; 'input' is the RMS movement of the true points (the noise "
                  "itself), the floor a perfect, unsmoothed model would show. NME is over all frames. "
                  "'restarts' counts frames where the track was lost (low confidence) and a new one began, "
                  "which also restarts the smoothing filter.\n\n")
        rows = [[r["name"], cell(r["jitter"]["input_rms_pct_iod"], ".3f"),
                 cell(r["jitter"]["raw"]["rms_pct_iod"], ".3f"), cell(r["jitter"]["smoothed"]["rms_pct_iod"], ".3f"),
                 cell(r["jitter"]["raw"]["nme_pct_iod"]), cell(r["jitter"]["smoothed"]["nme_pct_iod"]),
                 str(r["jitter"]["raw"]["track_restarts"])] for r in jit]
        md.append(markdown_table(["model", "input RMS", "raw RMS", "One-Euro RMS", "raw NME", "One-Euro NME",
                                  "restarts"], rows))
    if result.get("reference"):
        md.append(reference_markdown(result["reference"], recs))
    bad = [r for r in result["models"] if not r.get("ok")]
    if bad:
        md.append("\n## Not benchmarked\n\n" + "".join(f"- `{r['name']}`: {r['error']}\n" for r in bad))
    return re.sub(r"\n{3,}", "\n\n", "\n".join(md))


# -- command ------------------------------------------------------------------------------
def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--models-dir", default="", help="folder of NAME.onnx + NAME.json (and *.pt checkpoints); "
                                                    "default: $KPDESK_MODELS or the repository's models/")
    p.add_argument("--data", default="", help="data root holding face68/ and face5/ (default: $KPDESK_DATA or "
                                              "../shared/data beside the repository)")
    p.add_argument("--out", default="", help="folder for bench.md, bench.json, CED plots (default: the "
                                             "repository's docs/bench)")
    p.add_argument("--quick", action="store_true", help="few images, few latency runs (tests, smoke checks)")
    p.add_argument("--max-images", type=int, default=None, help="N faces spread evenly over each split (0 = all)")
    p.add_argument("--robust-images", type=int, default=None, help="faces for the robustness table (0 = all)")
    p.add_argument("--latency-runs", type=int, default=None)
    p.add_argument("--jitter-faces", type=int, default=None)
    p.add_argument("--jitter-frames", type=int, default=None)
    p.add_argument("--detector", default="labels", choices=["labels", "auto", "haar", "blazeface"],
                   help="face boxes for the jitter test (labels: from the ground truth, deterministic)")
    p.add_argument("--threads", type=int, default=0, help="threads for the accuracy runs (0 = library default)")
    p.add_argument("--no-robustness", action="store_true")
    p.add_argument("--no-jitter", action="store_true")
    p.add_argument("--only", nargs="*", default=[], help="model names to include (default: all)")
    p.add_argument("--crop-detectors", nargs="*", default=None, choices=["blazeface", "haar"],
                   help="also measure accuracy on crops from these app detectors, misses counted as failures "
                        "(default: blazeface haar; none given: off)")
    p.add_argument("--no-reference", action="store_true",
                   help="leave out the MediaPipe reference (by default it runs on the 68-point split in the same "
                        "run when its bundle is cached, and every model gets ratios to it)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--update-cards", action="store_true",
                   help="write the measured figures into each model's manifest and models/README.md")


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    base = BenchConfig.quick() if args.quick else BenchConfig()
    kw: dict[str, Any] = {"models_dir": args.models_dir, "data_root": args.data, "out": args.out,
                          "detector": args.detector, "eval_threads": args.threads, "seed": args.seed,
                          "robustness": not args.no_robustness, "jitter": not args.no_jitter,
                          "reference": not args.no_reference,
                          "only": tuple(args.only)}
    if args.crop_detectors is not None:
        kw["crop_detectors"] = tuple(args.crop_detectors)
    for a, k in (("max_images", "max_images"), ("robust_images", "robust_images"),
                 ("latency_runs", "latency_runs"), ("jitter_faces", "jitter_faces"),
                 ("jitter_frames", "jitter_frames")):
        if getattr(args, a) is not None:
            kw[k] = getattr(args, a)
    from dataclasses import replace

    return replace(base, **kw)


def run(args: argparse.Namespace, events: Any, cancel: Any) -> dict[str, Any]:
    from training.events import EventStream

    ev = events or EventStream(None)
    cfg = config_from_args(args)
    res = run_bench(cfg, emit=lambda msg: ev.emit("log", message=msg),
                    cancel=cancel.is_set if cancel is not None else None)
    short = {r["name"]: ({"nme": r["accuracy"][r["decode"]][f"nme_{r['norm_main']}"], "decode": r["decode"]}
                         if "accuracy" in r else {"error": r.get("error", r.get("note", ""))})
             for r in res["models"]}
    if args.update_cards:
        from training.evaluation.cards import update_cards, update_readme
        from training.paths import REPO_ROOT

        models_dir = Path(res["meta"]["models_dir"])
        res["files"]["cards"] = str(update_cards(Path(res["files"]["json"]), models_dir))
        if models_dir.resolve() == (REPO_ROOT / "models").resolve():  # the shipped models: the README shows them
            res["files"]["readme"] = str(update_readme(Path(res["files"]["json"]), REPO_ROOT / "README.md"))
    ev.emit("done", command="bench", files=res["files"], models=short, seconds=res["meta"]["seconds"])
    return res


COMMANDS = {"bench": ("Benchmark every model of a folder: accuracy, size, latency, robustness, jitter.",
                      add_args, run)}
