"""``python -m training eval``: accuracy of a checkpoint (.pt) or an exported model (.onnx)
on a labelled split (METHOD.md section 5).

Every face is cut with the canonical crop training validates on (``crop_params_from_points``
with the model's crop scale, i.e. ``make_crop`` with augmentation off) and pre-processed by
``kpdesk.vision.preprocess.to_input``; ONNX models run through
``kpdesk.inference.LandmarkModel``, so the numbers are the ones the app would get from a
perfect face box. Reports NME (inter-ocular, inter-pupil, box), FR@0.08/0.10, AUC, per-point
NME, per data source, MSE on [0, 1]-normalised crop coordinates (the paper's 5-point
ablation metric) and a CED plot. The last stdout line is a one-line JSON summary.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kpdesk.vision.codecs import DECODE_MODES, LandmarkDecoder, RegressionCodec
from kpdesk.vision.files import atomic_write_text, save_figure, save_npz
from kpdesk.vision.preprocess import IMAGENET_MEAN, IMAGENET_STD, to_input
from kpdesk.vision.schema import KeypointSchema, schema_for_points
from kpdesk.vision.transforms import CropSpec, apply_affine, crop_params_from_points, invert_affine, warp_crop
from training.data.datasets import FORMATS, DataConfig, Sample, load_split
from training.metrics import mse_normalised, per_point_nme, summarize

log = logging.getLogger(__name__)

# Sub-sets reported together as well as apart (when all of their sources are present).
SOURCE_GROUPS: dict[str, tuple[str, ...]] = {"afw+helen": ("afw", "helen")}


class EvalError(ValueError):
    """The model or the data cannot be evaluated (names the file and the mismatch)."""


# -- models -----------------------------------------------------------------------------
@dataclass(eq=False)
class Runner:
    """A landmark model reduced to what evaluation needs, whatever its file type.

    ``forward`` maps a normalised input (B, 3, S, S) float32 to raw
    (coords (B, 2K) or None, heatmaps (B, K, H, H) or None).
    """

    name: str
    path: Path
    kind: str  # "onnx" or "checkpoint"
    schema: KeypointSchema
    input_size: int
    crop_scale: float
    heatmap_size: int | None
    sigma: float
    default_decode: str
    forward: Callable[[np.ndarray], tuple[np.ndarray | None, np.ndarray | None]]
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    has_coords: bool = True
    info: dict[str, Any] = field(default_factory=dict)
    # Per app detector, how its box maps to this model's crop (kpdesk BoxCalibration, from the
    # manifest's detector_crop); a detector not in it falls back to its own 68-point mapping.
    detector_crop: dict[str, Any] = field(default_factory=dict)
    crop_offset: tuple[float, float] = (0.0, 0.0)  # an imported model's (Manifest.crop_offset)

    def crop(self, pts_img: np.ndarray) -> CropSpec:
        """The crop this model was trained on for a face with landmarks ``pts_img`` (K, 2)."""
        return crop_params_from_points(pts_img, self.crop_scale, offset=self.crop_offset)

    @property
    def modes(self) -> tuple[str, ...]:
        """Decode modes this model supports."""
        out = ("regression",) if self.has_coords else ()
        if self.heatmap_size:
            out += ("heatmap", "fusion") if self.has_coords else ("heatmap",)
        return out

    def decoder(self, mode: str) -> LandmarkDecoder:
        return LandmarkDecoder(self.input_size, mode, self.heatmap_size, self.sigma)

    def resolve_modes(self, decode: str | None) -> tuple[str, ...]:
        """``None`` / ``default`` -> the model's own mode; ``all`` -> every supported mode."""
        if decode in (None, "", "default"):
            return (self.default_decode,)
        if decode == "all":
            return self.modes
        if decode not in self.modes:
            raise EvalError(f"{self.path}: decode {decode!r} impossible for this model (supports {self.modes})")
        return (decode,)


def load_runner(path: str | Path, threads: int = 0) -> Runner:
    """Open ``NAME.onnx`` (+ ``NAME.json``) or a training checkpoint ``.pt``.

    ``threads``: intra-op threads (0 = the library's default).
    Raises EvalError naming the file when it cannot be opened.
    """
    p = Path(path).expanduser()
    if p.suffix == ".onnx":
        from kpdesk.inference.detectors import DETECTOR_NAMES
        from kpdesk.inference.model import LandmarkModel, ModelLoadError

        try:
            lm = LandmarkModel.load(p, threads=threads)
        except ModelLoadError as exc:
            raise EvalError(str(exc)) from None
        m = lm.manifest
        return Runner(name=m.name, path=p, kind="onnx", schema=m.schema, input_size=m.input_size,
                      crop_scale=m.crop_scale, crop_offset=m.crop_offset,
                      heatmap_size=m.heatmap_size if m.heatmaps_output else None,
                      sigma=m.sigma, default_decode=m.decode, forward=lm.forward, mean=m.mean, std=m.std,
                      has_coords=m.coords_output is not None,
                      info={**m.info, "arch": m.arch, "file_size_bytes": p.stat().st_size},
                      detector_crop={d: lm.box_calibration(d) for d in DETECTOR_NAMES})
    if p.suffix in (".pt", ".pth"):
        import torch

        from training.jobs.checkpoints import model_from_checkpoint
        from training.jobs.engine import TrainingError

        if threads:
            torch.set_num_threads(threads)
        try:
            model, cfg, st = model_from_checkpoint(p)
        except TrainingError as exc:
            raise EvalError(str(exc)) from None
        mc = cfg.model
        has_hm = getattr(model, "hm_head", None) is not None and mc.heatmap_size > 0
        schema = schema_for_points(mc.num_points)

        @torch.no_grad()
        def forward(x: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
            out = model(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)))
            hm = out["heatmaps"].float().numpy() if "heatmaps" in out else None
            return out["coords"].float().numpy(), hm

        best = st.get("best") or {}
        decode = best.get("decode") or "regression"
        if decode not in DECODE_MODES or (decode != "regression" and not has_hm):
            decode = "regression"
        return Runner(name=p.stem, path=p, kind="checkpoint", schema=schema, input_size=mc.input_size,
                      crop_scale=schema.crop_scale, heatmap_size=mc.heatmap_size if has_hm else None,
                      sigma=cfg.train.sigma, default_decode=decode, forward=forward,
                      info={"arch": mc.arch, "epoch": st.get("epoch"), "tag": st.get("tag", ""),
                            "params": sum(q.numel() for q in model.parameters()),
                            "file_size_bytes": p.stat().st_size})
    raise EvalError(f"{p}: not a model (expected NAME.onnx with NAME.json beside it, or a checkpoint .pt)")


# -- data -------------------------------------------------------------------------------
def guess_format(root: Path, list_name: str) -> str:
    """The label format of ``root/list_name`` from its contents (``--format`` overrides)."""
    if list_name.lower().endswith(".csv"):
        return "csv"
    if (root / "list_landmarks_align_celeba.txt").is_file():
        return "celeba"
    lst = root / list_name
    try:
        with lst.open() as fh:
            first = next((ln for ln in fh if ln.strip() and not ln.startswith("#")), "")
    except OSError as exc:
        raise EvalError(f"{lst}: cannot read list: {exc.strerror}") from None
    n = len(first.split())
    if n >= 207:
        return "wflw"
    if n >= 11:
        return "face5"
    return "face68"


def load_samples(root: str | Path, list_name: str, fmt: str | None = None, on_error: str = "skip",
                 points_base: int = 0) -> tuple[list[Sample], KeypointSchema]:
    """One labelled split through the training loaders (same parsing, same error reports)."""
    root = Path(root).expanduser()
    fmt = fmt or guess_format(root, list_name)
    if fmt not in FORMATS:
        raise EvalError(f"unknown data format {fmt!r}; known: {FORMATS}")
    cfg = DataConfig(format=fmt, root=str(root), train_list=list_name, val_list=list_name,
                     on_error=on_error, points_base=points_base)
    return load_split(cfg, "val")


class ImageCache:
    """Decoded images by path, shared by several models and perturbations of one run."""

    def __init__(self) -> None:
        self._images: dict[str, np.ndarray] = {}

    def __call__(self, path: str) -> np.ndarray:
        img = self._images.get(path)
        if img is None:
            from training.data.torchdata import read_image

            img = read_image(path)
            self._images[path] = img
        return img


# A perturbation: (image, pts_img, canonical crop, sample index) -> (image, crop). It may
# paint the image (occlusion, blur, light) and / or change the crop (rotation); the labels
# follow through the crop matrix, so geometry always goes through kpdesk.vision.
Perturb = Callable[[np.ndarray, np.ndarray, CropSpec, int], tuple[np.ndarray, CropSpec]]


# -- evaluation -------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Predictions:
    """Predictions of one model on one split.

    Attributes:
        gt_crop: (N, K, 2) labels in crop pixels.
        pred_crop: decode mode -> (N, K, 2) predictions in crop pixels.
        conf: decode mode -> (N, K) per-point confidence.
        crop_matrix: (N, 2, 3) image -> crop maps.
        sources: N sub-set names.
        paths: N image paths.
    """

    schema: KeypointSchema
    input_size: int
    gt_crop: np.ndarray
    pred_crop: dict[str, np.ndarray]
    conf: dict[str, np.ndarray]
    crop_matrix: np.ndarray
    sources: list[str]
    paths: list[str]
    seconds: float = 0.0

    def pts_img(self, mode: str) -> np.ndarray:
        """(N, K, 2) predictions mapped back to image pixels."""
        return np.stack([apply_affine(p, invert_affine(m)) for p, m in zip(self.pred_crop[mode], self.crop_matrix)])

    def gt_img(self) -> np.ndarray:
        return np.stack([apply_affine(p, invert_affine(m)) for p, m in zip(self.gt_crop, self.crop_matrix)])

    def metrics(self, mode: str, groups: dict[str, tuple[str, ...]] | None = None) -> dict[str, Any]:
        return compute_metrics(self.pred_crop[mode], self.gt_crop, self.schema, self.sources, self.input_size,
                               groups=groups)


def compute_metrics(pred_crop: np.ndarray, gt_crop: np.ndarray, schema: KeypointSchema, sources: list[str],
                    input_size: int, groups: dict[str, tuple[str, ...]] | None = None) -> dict[str, Any]:
    """``metrics.summarize`` plus per-point NME, MSE of normalised coordinates, the same
    for every data source and for source groups (default ``SOURCE_GROUPS``: ``afw+helen``).
    pts (N, K, 2) crop px."""
    res = summarize(pred_crop, gt_crop, schema, sources if len(set(sources)) > 1 else None)
    main = "ion" if schema.ocular else ("ipn" if schema.pupils else "box")
    res["norm_main"] = main
    res["per_point_nme"] = [round(float(v), 4) for v in per_point_nme(pred_crop, gt_crop, schema, main)]
    reg = RegressionCodec(input_size)
    res["mse_norm"] = mse_normalised(reg.encode(pred_crop), reg.encode(gt_crop))
    src = np.asarray(sources)
    by = res.get("by_source", {})
    for s, d in by.items():
        m = src == s
        d["mse_norm"] = mse_normalised(reg.encode(pred_crop[m]), reg.encode(gt_crop[m]))
    for name, members in (SOURCE_GROUPS if groups is None else groups).items():
        m = np.isin(src, members)
        if len(set(sources)) > 1 and all(s in set(sources) for s in members):
            sub = summarize(pred_crop[m], gt_crop[m], schema)
            sub["mse_norm"] = mse_normalised(reg.encode(pred_crop[m]), reg.encode(gt_crop[m]))
            by[name] = sub
    return res


def _batches(n: int, size: int) -> Iterable[range]:
    for i in range(0, n, size):
        yield range(i, min(i + size, n))


def predict_samples(runner: Runner, samples: list[Sample], modes: tuple[str, ...], *,
                    images: ImageCache | None = None, perturb: Perturb | None = None, batch_size: int = 32,
                    cancel: Callable[[], bool] | None = None) -> Predictions:
    """Run ``runner`` over ``samples`` with the canonical validation crop (optionally
    perturbed); decode each of ``modes``. Raises EvalError on a point-count mismatch."""
    k = runner.schema.num_points
    if samples and len(samples[0].pts) != k:
        raise EvalError(f"{runner.path}: model predicts {k} points, the data has {len(samples[0].pts)}")
    for m in modes:
        if m not in runner.modes:
            raise EvalError(f"{runner.path}: decode {m!r} impossible for this model (supports {runner.modes})")
    images = images or ImageCache()
    s = runner.input_size
    decoders = {m: runner.decoder(m) for m in modes}
    gts, mats = [], []
    preds: dict[str, list[np.ndarray]] = {m: [] for m in modes}
    confs: dict[str, list[np.ndarray]] = {m: [] for m in modes}
    t0 = time.perf_counter()
    for idx in _batches(len(samples), batch_size):
        if cancel is not None and cancel():
            from training.jobs.engine import Cancelled

            raise Cancelled()
        crops = []
        for i in idx:
            smp = samples[i]
            img = images(smp.path)
            spec = runner.crop(smp.pts)
            if perturb is not None:
                img, spec = perturb(img, smp.pts, spec, i)
            mat = spec.matrix(s)
            crops.append(warp_crop(img, spec, s))
            mats.append(mat)
            gts.append(apply_affine(smp.pts, mat))
        coords, heatmaps = runner.forward(to_input(np.stack(crops), runner.mean, runner.std))
        for m, dec in decoders.items():
            pts, conf = dec.decode(coords, heatmaps)
            preds[m].append(pts)
            confs[m].append(np.asarray(conf, np.float32))
    empty = np.zeros((0, k, 2))
    return Predictions(
        schema=runner.schema, input_size=s, gt_crop=np.asarray(gts).reshape(-1, k, 2),
        pred_crop={m: np.concatenate(v) if v else empty for m, v in preds.items()},
        conf={m: np.concatenate(v) if v else np.zeros((0, k)) for m, v in confs.items()},
        crop_matrix=np.asarray(mats).reshape(-1, 2, 3), sources=[smp.source for smp in samples],
        paths=[smp.path for smp in samples], seconds=time.perf_counter() - t0)


# -- reports ----------------------------------------------------------------------------
def plot_ced(curves: dict[str, np.ndarray], path: str | Path, threshold: float = 0.10, norm: str = "ion",
             title: str = "") -> Path:
    """Cumulative error distributions (one per label, per-image NME as fractions) -> PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from training.metrics import auc, ced

    fig = Figure(figsize=(6.4, 4.8), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for label, nme in curves.items():
        xs, ys = ced(np.asarray(nme), threshold)
        ax.plot(100 * xs, ys, label=f"{label} (AUC {auc(np.asarray(nme), threshold):.3f})")
    ax.set_xlim(0, 100 * threshold)
    ax.set_ylim(0, 1)
    ax.set_xlabel(f"NME ({norm.upper()}, %)")
    ax.set_ylabel("fraction of images")
    ax.grid(True, alpha=0.3)
    ax.set_title(title or f"Cumulative error distribution (NME {norm.upper()})")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    return save_figure(fig, out)  # whole or not at all; OutputError names the file and why


def format_table(res: dict[str, dict[str, Any]]) -> str:
    """Human-readable lines for stderr: one block per decode mode."""
    lines = []
    for mode, r in res.items():
        main = r["norm_main"]
        norms = " ".join(f"{n.upper()} {r[f'nme_{n}']:.3f}%" for n in ("ion", "ipn", "box") if f"nme_{n}" in r)
        lines.append(f"[{mode}] n={r['n']}  NME {norms}  FR@8 {r[f'fr08_{main}']:.2f}%  FR@10 "
                     f"{r[f'fr10_{main}']:.2f}%  AUC@8 {r[f'auc08_{main}']:.4f}  AUC@10 {r[f'auc10_{main}']:.4f}"
                     f"  MSE(norm) {r['mse_norm']:.6f}")
        for s, d in (r.get("by_source") or {}).items():
            lines.append(f"    {s:<10} n={d['n']:<5} NME {main.upper()} {d[f'nme_{main}']:.3f}%")
    return "\n".join(lines)


def evaluate_file(model: str | Path, data: str | Path, list_name: str, fmt: str | None = None,
                  decode: str | None = None, out_dir: str | Path | None = None, *, threads: int = 0,
                  batch_size: int = 32, on_error: str = "skip", max_images: int = 0, points_base: int = 0,
                  cancel: Callable[[], bool] | None = None) -> dict[str, Any]:
    """Evaluate one model file on one labelled split; write the reports to ``out_dir``.

    Returns the JSON-ready summary (also written as ``out_dir/summary.json``).
    """
    runner = load_runner(model, threads=threads)
    modes = runner.resolve_modes(decode)
    samples, data_schema = load_samples(data, list_name, fmt, on_error, points_base)
    if data_schema.num_points != runner.schema.num_points:
        raise EvalError(f"{runner.path}: model predicts {runner.schema.num_points} points, "
                        f"{Path(data) / list_name} has {data_schema.num_points}")
    if max_images:
        samples = samples[:max_images]
    pred = predict_samples(runner, samples, modes, batch_size=batch_size, cancel=cancel)
    results = {m: pred.metrics(m) for m in modes}
    summary: dict[str, Any] = {
        "model": str(runner.path), "name": runner.name, "kind": runner.kind, "data": str(Path(data).expanduser()),
        "list": list_name, "format": fmt or guess_format(Path(data).expanduser(), list_name),
        "n": len(samples), "schema": runner.schema.name, "default_decode": runner.default_decode,
        "modes": list(modes), "results": results, "seconds": round(pred.seconds, 3),
    }
    if out_dir:
        out = Path(out_dir).expanduser()
        out.mkdir(parents=True, exist_ok=True)
        main = results[modes[0]]["norm_main"]
        from training.metrics import nme_per_image

        curves = {m: nme_per_image(pred.pred_crop[m], pred.gt_crop, pred.schema, main) for m in modes}
        files = {"ced": str(plot_ced(curves, out / "ced.png", norm=main, title=f"{runner.name}: CED ({main.upper()})")),
                 "summary": str(out / "summary.json"), "predictions": str(out / "predictions.npz")}
        save_npz(out / "predictions.npz", gt_img=pred.gt_img(), paths=np.asarray(pred.paths),
                 sources=np.asarray(pred.sources), **{f"pred_img_{m}": pred.pts_img(m) for m in modes},
                 **{f"conf_{m}": pred.conf[m] for m in modes})
        summary["files"] = files
        atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary


# -- command ----------------------------------------------------------------------------
def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="checkpoint .pt or exported NAME.onnx (+ NAME.json)")
    p.add_argument("--data", required=True, help="dataset folder")
    p.add_argument("--list", default="val.txt", help="list / label file inside --data (default val.txt)")
    p.add_argument("--format", choices=FORMATS, default=None, help="label format (default: guessed)")
    p.add_argument("--decode", choices=[*DECODE_MODES, "all", "default"], default="default",
                   help="decode mode (default: the model's own; all: every mode it supports)")
    p.add_argument("--out", default="", help="folder for summary.json, ced.png, predictions.npz")
    p.add_argument("--threads", type=int, default=0, help="inference threads (0 = library default)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-images", type=int, default=0, help="evaluate the first N faces only (0 = all)")
    p.add_argument("--points-base", type=int, default=0, help="1 for 1-based label files")
    p.add_argument("--on-error", choices=["skip", "fatal"], default="skip", help="bad labels / images")


def run(args: argparse.Namespace, events: Any, cancel: Any) -> dict[str, Any]:
    summary = evaluate_file(args.model, args.data, args.list, args.format, args.decode, args.out or None,
                            threads=args.threads, batch_size=args.batch_size, on_error=args.on_error,
                            max_images=args.max_images, points_base=args.points_base,
                            cancel=cancel.is_set if cancel is not None else None)
    print(f"{summary['name']} on {summary['data']}/{summary['list']} ({summary['n']} faces, "
          f"{summary['seconds']:.1f} s)\n" + format_table(summary["results"]), file=sys.stderr)
    print(json.dumps({"event": "done", "command": "eval", **summary}), flush=True)
    return summary


COMMANDS = {"eval": ("Evaluate a checkpoint or ONNX model on a labelled split (NME, FR, AUC, CED).", add_args, run)}

__all__ = ["EvalError", "ImageCache", "Predictions", "Runner", "compute_metrics", "evaluate_file", "load_runner",
           "load_samples", "plot_ced", "predict_samples"]
