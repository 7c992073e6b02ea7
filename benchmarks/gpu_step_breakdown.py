"""Where a training step's time goes on an accelerator: the data loader alone, the network's step alone, and the two
together, so a lease knows which one to spend on (more workers, augmenting on the GPU, or a bigger batch).

- loader: img/s of ``worker_loader`` over the run's training faces (augmentation on, as in training) for each
  ``--workers`` count, nothing else running;
- step: img/s of forward + loss + backward + AdamW on one real batch used again and again (no loading), float16
  autocast and channels_last as ``training train`` runs on CUDA, for each ``--batch``;
- both: the two together, as a run sees them (the loader's batches moved to the device).

    python benchmarks/gpu_step_breakdown.py --config training/configs/face68_teacher.json \
        --set 'data.root="D/face68"' ... --workers 7 14 --batch 64 128 --seconds 8

Prints one JSON line per measurement. Figures from a lease: docs/results/chain_session12.md.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from training.config import load_config
from training.jobs.engine import batches_for_epoch, load_data, make_datasets, pick_device, worker_loader
from training.nets.losses import landmark_loss
from training.nets.networks import build_model


def timed(it, seconds: float, batch: int, warm: int = 5) -> float:
    """img/s over the items of ``it`` after ``warm`` of them, stopping after ``seconds``."""
    n, t0 = 0, None
    for k, _ in enumerate(it):
        if k == warm:
            t0 = time.perf_counter()
        elif k > warm:
            n += batch
            if time.perf_counter() - t0 > seconds:
                break
    return n / (time.perf_counter() - t0) if t0 and n else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--set", action="append", default=[], dest="overrides")
    ap.add_argument("--workers", type=int, nargs="+", default=[7, 14])
    ap.add_argument("--batch", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--seconds", type=float, default=8.0)
    a = ap.parse_args()
    cfg = load_config(a.config, a.overrides)
    device = pick_device(cfg.train.device)
    train, val, schema = load_data(cfg)
    tr, _ = make_datasets(cfg, train, val[:8], schema)
    epochs = iter(range(1000))

    def batches(bs: int) -> list[list[int]]:
        return batches_for_epoch(len(tr), bs, 0, next(epochs))

    for w in a.workers:
        rate = timed(worker_loader(tr, batches(64), w), a.seconds, 64)
        print(json.dumps({"what": "loader", "workers": w, "batch": 64, "img_s": round(rate, 1)}), flush=True)

    model = build_model(cfg.model).to(device).to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    amp = device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=amp)

    def step(b: dict) -> None:
        img = b["image"].contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
            out = model(img)
        loss, _ = landmark_loss(out, b, cfg.train.lambda_rh)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    def steps_on(batch: dict):
        while True:
            step(batch)
            if amp:
                torch.cuda.synchronize()
            yield None

    for bs in a.batch:
        one = next(iter(worker_loader(tr, batches(bs)[:1], 1)))
        one = {k: v.to(device) for k, v in one.items()}
        rate = timed(steps_on(one), a.seconds, bs)
        print(json.dumps({"what": "step", "arch": cfg.model.arch, "input": cfg.model.input_size, "batch": bs,
                          "img_s": round(rate, 1)}), flush=True)

    def both(bs: int, w: int):
        for b in worker_loader(tr, batches(bs), w, device.type == "cuda"):
            step({k: v.to(device, non_blocking=True) for k, v in b.items()})
            yield None

    for bs in a.batch:
        w = max(a.workers)
        rate = timed(both(bs, w), a.seconds, bs)
        print(json.dumps({"what": "both", "arch": cfg.model.arch, "workers": w, "batch": bs,
                          "img_s": round(rate, 1)}), flush=True)


if __name__ == "__main__":
    main()
