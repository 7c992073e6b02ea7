"""``python -m training label-offset``: how far a data set's labels sit from the mirror-symmetric
position, per source, read through a trained model.

A model trained with flip augmentation cannot learn a label convention that is not mirror
symmetric: it sees every face both ways, so it answers in the symmetric convention. Run it on a
face and on the mirrored face (answer mirrored back): the mean of the two is that symmetric answer
with the model's own left/right bias cancelled, and its mean difference from the labels is the
labels' offset. On face68 this finds AFW and HELEN annotated about 0.8 and 0.5 px to the right
(image pixels of the 192 px packs) and the YouTube-Faces labels elsewhere again; the figures go
into ``data.label_offsets`` so flip augmentation keeps each source's convention
(``training.data.augment.flip_with_offset``). Measure it on training faces, never on val.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import numpy as np

from kpdesk.vision.schema import KeypointSchema
from training.evaluation.evaluate import EvalError, load_runner, load_samples, predict_samples
from training.metrics import nme_per_image


def mirrored_forward(forward):  # noqa: ANN001, ANN201 - Runner.forward in, the same kind out
    """``forward`` on the horizontally mirrored input (outputs are of the mirrored face)."""
    return lambda x: forward(np.ascontiguousarray(x[..., ::-1]))


def crop_to_image_vectors(vec_crop: np.ndarray, matrices: np.ndarray) -> np.ndarray:
    """Displacements (N, K, 2) in crop pixels -> image pixels, through each face's crop matrix (N, 2, 3)."""
    inv = np.linalg.inv(np.asarray(matrices, np.float64)[:, :, :2])
    return np.einsum("nij,nkj->nki", inv, vec_crop)


def offsets_by_source(plain: np.ndarray, mirrored_back: np.ndarray, gt: np.ndarray, matrices: np.ndarray,
                      sources: list[str], schema: KeypointSchema) -> dict[str, dict[str, Any]]:
    """Per source, from a model's answers on the faces (``plain``) and on their mirror images mapped
    back (``mirrored_back``), all (N, K, 2) crop pixels like ``gt``, with each face's crop matrix:
    faces, the labels' (dx, dy) offset from the symmetric answer (image px; ``dx_crop``, ``dy_crop``:
    the same in this model's crop pixels, what ``export --flip-average --label-offset`` takes;
    ``all``: every face pooled, when there are several sources), the model's own
    left/right bias (crop px) and NME ION of the plain, the flip-averaged and the flip-averaged
    answer moved by the offset (for reading only: the offset comes from these same faces)."""
    sym = (plain + mirrored_back) / 2
    resid_img = crop_to_image_vectors(gt - sym, matrices)  # labels minus the symmetric answer
    src = np.asarray(sources)

    def nme(pred: np.ndarray, m: np.ndarray) -> float:
        return float(nme_per_image(pred[m], gt[m], schema, "ion").mean() * 100)

    out: dict[str, dict[str, Any]] = {}
    groups = [(str(name), src == name) for name in sorted(set(src))]
    if len(groups) > 1:
        groups.append(("all", np.ones(len(src), bool)))
    for name, m in groups:
        off = resid_img[m].reshape(-1, 2).mean(axis=0)
        off_crop = np.einsum("nij,j->ni", np.asarray(matrices)[m][:, :, :2], off)
        moved = sym.copy()
        moved[m] += off_crop[:, None, :]
        out[name] = {"n": int(m.sum()), "dx": round(float(off[0]), 3), "dy": round(float(off[1]), 3),
                     "dx_crop": round(float(off_crop[:, 0].mean()), 3),
                     "dy_crop": round(float(off_crop[:, 1].mean()), 3),
                     "model_bias_x_crop": round(float(((plain[m] - mirrored_back[m]) / 2)[..., 0].mean()), 3),
                     "nme_ion_plain": round(nme(plain, m), 3), "nme_ion_flip_avg": round(nme(sym, m), 3),
                     "nme_ion_flip_avg_offset": round(nme(moved, m), 3)}
    return out


def measure(model: str, data: str, list_name: str, *, threads: int = 0, max_images: int = 0) -> dict[str, Any]:
    """``offsets_by_source`` of ``model`` on the faces of ``data``/``list_name`` (its own crops and decode)."""
    runner = load_runner(model, threads=threads)
    samples, schema = load_samples(data, list_name)
    if schema.num_points != runner.schema.num_points:
        raise EvalError(f"{runner.path}: model predicts {runner.schema.num_points} points, the data has "
                        f"{schema.num_points}")
    if not runner.schema.ocular or list(runner.schema.flip_perm) == list(range(schema.num_points)):
        raise EvalError(f"{runner.path}: schema {runner.schema.name} has no mirror pairs or no ocular points")
    if max_images:
        samples = samples[:max_images]
    mode = runner.default_decode
    plain = predict_samples(runner, samples, (mode,))
    runner.forward = mirrored_forward(runner.forward)
    flipped = predict_samples(runner, samples, (mode,))
    mirrored_back = runner.schema.flip_points(flipped.pred_crop[mode], runner.input_size)
    out = offsets_by_source(plain.pred_crop[mode], mirrored_back, plain.gt_crop, plain.crop_matrix,
                            plain.sources, runner.schema)
    return {"model": str(runner.path), "data": data, "list": list_name, "decode": mode, "sources": out,
            "label_offsets": {k: [v["dx"], v["dy"]] for k, v in out.items() if k != "all"}}


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="a trained model: checkpoint .pt or NAME.onnx (+ NAME.json)")
    p.add_argument("--data", required=True, help="dataset folder")
    p.add_argument("--list", default="train.txt", help="list inside --data (default train.txt: never val)")
    p.add_argument("--threads", type=int, default=0, help="inference threads (0 = library default)")
    p.add_argument("--max-images", type=int, default=0, help="the first N faces only (0 = all)")


def run(args: argparse.Namespace, events: Any, cancel: Any) -> dict[str, Any]:
    res = measure(args.model, args.data, args.list, threads=args.threads, max_images=args.max_images)
    lines = [f"{'source':<10}{'faces':>6}{'dx px':>8}{'dy px':>8}{'dx crop':>9}{'dy crop':>9}{'NME plain':>11}"
             f"{'flip avg':>10}{'+offset':>9}"]
    for name, r in res["sources"].items():
        lines.append(f"{name:<10}{r['n']:>6}{r['dx']:>8.3f}{r['dy']:>8.3f}{r['dx_crop']:>9.3f}{r['dy_crop']:>9.3f}"
                     f"{r['nme_ion_plain']:>11.3f}"
                     f"{r['nme_ion_flip_avg']:>10.3f}{r['nme_ion_flip_avg_offset']:>9.3f}")
    print("\n".join(lines) + "\ndata.label_offsets = " + json.dumps(res["label_offsets"]), file=sys.stderr)
    print(json.dumps({"event": "done", "command": "label-offset", **res}), flush=True)
    return res


COMMANDS = {"label-offset": ("Measure each source's label offset from the mirror-symmetric position.", add_args, run)}
