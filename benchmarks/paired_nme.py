"""How sure is a difference between two models? Paired per-face NME from `training eval --out` folders.

    .venv/bin/python benchmarks/paired_nme.py \
        /work/runs/eval_k_in0l5s0:/work/runs/eval_k_in1l5s0 /work/runs/eval_k_in0l5s1:/work/runs/eval_k_in1l5s1

Each argument is ``A:B``, two folders written by ``python -m training eval --out`` on the same face list (say model A
without distillation, B with it, on one seed). For every pair the script matches the faces by image path
(``--sources afw helen``: those sources' faces only), takes each face's ION NME under each model's own decoding, and
prints B - A: its mean (negative: B better), the share of faces B gets better, and a 95% interval of the mean from a
bootstrap over faces (what the choice of the val faces alone could move it by; seeds are the other source of spread,
which is why pairs from several seeds can be given). With several pairs it also prints the mean of the pairs'
differences with the same bootstrap, faces resampled jointly across pairs. Figures are percent of the inter-ocular
distance.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from kpdesk.vision.schema import SchemaError, schema_for_points  # noqa: E402
from training.metrics import nme_per_image  # noqa: E402


def per_face_nme(folder: Path, sources: tuple[str, ...] = ()) -> dict[str, float]:
    """Image path -> ION NME % of one eval folder (the decode its predictions.npz holds; the first if several),
    the faces of ``sources`` only when given."""
    path = folder / "predictions.npz"
    if not path.is_file():
        raise SystemExit(f"{path}: not found (run `python -m training eval ... --out {folder}` first)")
    d = np.load(path, allow_pickle=False)
    modes = sorted(k for k in d.files if k.startswith("pred_img_"))
    if not modes:
        raise SystemExit(f"{path}: no pred_img_* array (not a `training eval --out` file?)")
    gt, pred = d["gt_img"], d[modes[0]]
    try:
        nme = nme_per_image(pred, gt, schema_for_points(gt.shape[1]), "ion") * 100.0
    except SchemaError as e:
        raise SystemExit(f"{path}: {e} (ION NME needs the outer eye corners)") from None
    keep = np.isin(d["sources"], list(sources)) if sources else np.ones(len(nme), bool)
    return {str(p): v for p, v, k in zip(d["paths"], nme.tolist(), keep) if k}


def paired(a: Path, b: Path, sources: tuple[str, ...] = ()) -> np.ndarray:
    """Per-face B - A over the faces both folders hold, in a fixed (sorted path) order."""
    na, nb = per_face_nme(a, sources), per_face_nme(b, sources)
    common = sorted(set(na) & set(nb))
    if not common:
        raise SystemExit(f"{a} and {b} share no face: were they evaluated on the same list?")
    if len(common) < max(len(na), len(nb)):
        print(f"note: {a.name} / {b.name}: {len(common)} faces in common of {len(na)} / {len(nb)}")
    return np.array([nb[k] - na[k] for k in common])


def bootstrap_ci(diffs: np.ndarray, rounds: int, seed: int) -> tuple[float, float]:
    """95% interval of the mean over faces; diffs (pairs, faces) resampled by face, jointly across pairs."""
    rng = np.random.default_rng(seed)
    n = diffs.shape[1]
    idx = rng.integers(0, n, size=(rounds, n))
    means = diffs[:, idx].mean(axis=(0, 2))
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(lo), float(hi)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("pairs", nargs="+", help="A:B, two `training eval --out` folders (B - A is reported)")
    ap.add_argument("--rounds", type=int, default=10000, help="bootstrap rounds (default 10000)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sources", nargs="*", default=[], help="compare these sources' faces only (e.g. afw helen)")
    args = ap.parse_args(argv)
    rows = []
    for spec in args.pairs:
        if spec.count(":") != 1:
            ap.error(f"{spec!r}: expected A:B")
        a, b = (Path(p) for p in spec.split(":"))
        rows.append((a, b, paired(a, b, tuple(args.sources))))
    print("| A | B | faces | mean B - A | 95% interval (faces) | B better on |")
    print("|---|---|---|---|---|---|")
    for a, b, d in rows:
        lo, hi = bootstrap_ci(d[None], args.rounds, args.seed)
        print(f"| {a.name} | {b.name} | {d.size} | {d.mean():+.3f} | [{lo:+.3f}, {hi:+.3f}] | {(d < 0).mean():.0%} |")
    if len(rows) > 1:
        sizes = {d.size for *_, d in rows}
        if len(sizes) != 1:
            print("pairs hold different face counts: no pooled row")
            return 0
        diffs = np.stack([d for *_, d in rows])
        lo, hi = bootstrap_ci(diffs, args.rounds, args.seed)
        print(f"| mean of {len(rows)} pairs | | {diffs.shape[1]} | {diffs.mean():+.3f} | [{lo:+.3f}, {hi:+.3f}] | "
              f"{(diffs.mean(axis=0) < 0).mean():.0%} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
