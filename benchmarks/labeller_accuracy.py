"""How close each pseudo-labeller (and each ensemble of them) comes to the human labels, on labelled faces the
labellers never trained on: ION NME % of the flip-averaged, box-refined answer ``training pseudo-label`` would
write, starting from the box the face5 pack gives it (the human 5 points, here derived from the 68). Needs the
face68 pack and, for dlib, the training extra (``pip install dlib-bin face_recognition_models``).

    .venv/bin/python benchmarks/labeller_accuracy.py --data ../shared/data/face68 --list val.txt \
        --sources afw helen --labellers dlib model:student model:teacher

Every non-empty subset of the labellers is scored as a plain mean (what ``--labeller A+B`` does); ``--weights``
adds weighted means to try, e.g. ``--weights 1,1,2``.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.data.datasets import DataConfig, load_split  # noqa: E402
from training.data.pseudolabel import box_from_five, five_points, ion, make_labeller  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="face68 pack folder")
    ap.add_argument("--list", default="val.txt")
    ap.add_argument("--sources", nargs="*", default=["afw", "helen"], help="keep faces of these sources (empty: all)")
    ap.add_argument("--labellers", nargs="+", default=["dlib", "model:student", "model:teacher"])
    ap.add_argument("--weights", action="append", default=[], help="comma-separated weights, one per labeller")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    samples, _ = load_split(DataConfig(root=args.data, val_list=args.list), "val")
    if args.sources:
        samples = [s for s in samples if s.source in args.sources]
    if not samples:
        sys.exit(f"{args.data}/{args.list}: no faces of sources {args.sources}")
    labellers = [make_labeller(spec, args.threads).labellers[0] for spec in args.labellers]
    answers = np.zeros((len(labellers), len(samples), 68, 2))
    gts = np.stack([s.pts for s in samples])
    t0 = time.perf_counter()
    for i, s in enumerate(samples):
        img = cv2.imread(str(s.path), cv2.IMREAD_COLOR)
        if img is None:
            sys.exit(f"{s.path}: cannot decode image")
        box = box_from_five(five_points(s.pts))
        for j, lb in enumerate(labellers):
            answers[j, i] = lb.label(img, box)[0]
    print(f"{len(samples)} faces ({', '.join(args.sources) or 'all sources'}) labelled in "
          f"{time.perf_counter() - t0:.1f} s")
    iods = np.array([ion(g) for g in gts])

    def score(w: np.ndarray) -> float:
        mean = np.tensordot(w / w.sum(), answers, axes=1)
        return float((np.linalg.norm(mean - gts, axis=2).mean(axis=1) / iods).mean() * 100)

    names = [lb.name for lb in labellers]
    rows = []
    for k in range(1, len(labellers) + 1):
        for combo in itertools.combinations(range(len(labellers)), k):
            w = np.zeros(len(labellers))
            w[list(combo)] = 1
            rows.append(("+".join(names[c] for c in combo), score(w)))
    for spec in args.weights:
        w = np.array([float(v) for v in spec.split(",")])
        if len(w) != len(labellers) or (w < 0).any() or w.sum() == 0:
            sys.exit(f"--weights {spec}: need {len(labellers)} weights >= 0, not all zero")
        rows.append((" ".join(f"{v:g}*{n}" for v, n in zip(w, names)), score(w)))
    print("| labeller | ION NME % |\n|---|---|")
    for name, v in rows:
        print(f"| {name} | {v:.3f} |")


if __name__ == "__main__":
    main()
