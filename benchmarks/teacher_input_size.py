"""What a teacher trained at a larger input size loses when it reads the student's smaller crop resized up
to its own size (as ``training distill`` feeds it): regression-head ION NME % on val faces, native crop vs the
student-size crop resized. Needs the face68 pack.

    .venv/bin/python benchmarks/teacher_input_size.py --checkpoint runs/teacher192/checkpoints/best.pt \
        --student-size 128 --sources afw helen
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np
import torch
import torch.nn.functional as F

from training.jobs.checkpoints import model_from_checkpoint
from training.jobs.engine import load_data, make_datasets


def nme(model, cfg, val, schema, size: int, teacher_size: int, batch: int = 48) -> float:
    c = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, input_size=size))
    ds = make_datasets(c, [], val, schema)[1]
    errs = []
    with torch.no_grad():
        for i in range(0, len(ds), batch):
            items = [ds[j] for j in range(i, min(i + batch, len(ds)))]
            x = torch.stack([it["image"] for it in items])
            if size != teacher_size:
                x = F.interpolate(x, size=(teacher_size, teacher_size), mode="bilinear", align_corners=False)
            pred = model(x)["coords"].reshape(len(items), -1, 2).numpy()
            for it, q in zip(items, pred):
                g = it["pts_crop"].numpy() / size
                iod = np.linalg.norm(g[schema.ocular[1]] - g[schema.ocular[0]])
                errs.append(np.linalg.norm(q - g, axis=1).mean() / iod * 100)
    return float(np.mean(errs))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", required=True, help="the teacher's checkpoint (.pt)")
    ap.add_argument("--student-size", type=int, default=128)
    ap.add_argument("--sources", nargs="*", default=["afw", "helen"], help="val sources (none: all)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, cfg, _ = model_from_checkpoint(args.checkpoint)
    _, val, schema = load_data(cfg)
    if args.sources:
        val = [s for s in val if s.source in args.sources]
    t = cfg.model.input_size
    native = nme(model, cfg, val, schema, t, t)
    small = nme(model, cfg, val, schema, args.student_size, t)
    print(f"{len(val)} faces, regression head ION NME: native {t} px {native:.2f}%, "
          f"{args.student_size} px resized to {t} px {small:.2f}%")


if __name__ == "__main__":
    main()
