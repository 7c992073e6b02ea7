"""Images per second of the real training loop (data path included) on face68 train.

Times ``Trainer.train_epoch`` for ``--steps`` steps after a warm-up epoch that fills the
image cache, for each architecture and each setting asked for; the settings take turns
(``--rounds``) so a busy machine slows them alike. Needs the face68 pack.

    .venv/bin/python benchmarks/train_loop_speed.py --arch mobilenetv2 resnet50 \
        --settings fp32 bf16 workers1 --steps 12 --rounds 2
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time
from pathlib import Path

import torch

from training.config import load_config
from training.events import EventStream
from training.jobs.engine import Trainer, load_data, make_datasets
from training.nets.networks import build_model

REPO = Path(__file__).resolve().parent.parent
CONFIGS = {"mobilenetv2": "face68_student.json", "resnet50": "face68_teacher.json"}
SETTINGS = {
    "fp32": {"cpu_bf16": False},
    "bf16": {"cpu_bf16": True},
    "workers1": {"cpu_bf16": False, "num_workers": 1},
    "bf16_workers1": {"cpu_bf16": True, "num_workers": 1},
    "fp32_nchw": {"cpu_bf16": False, "channels_last": False},
}


def time_setting(arch: str, setting: str, steps: int, threads: int) -> float:
    cfg = load_config(REPO / "training" / "configs" / CONFIGS[arch],
                      ["train.pretrained=none", f"train.max_steps_per_epoch={steps}"])
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, **SETTINGS[setting]))
    torch.set_num_threads(threads)
    train, val, schema = load_data(cfg)
    n = steps * cfg.train.batch_size
    tr, va = make_datasets(cfg, train[:n], val[:8], schema)
    for i in range(len(tr)):
        tr.image(i)  # the run's first epoch fills this cache; later epochs never decode
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as d:
        t = Trainer(cfg, build_model(cfg.model), Path(d), EventStream(None, open(os.devnull, "w"), progress_bar=False),
                    tr, va)
        t.train_epoch()  # warm-up: allocator, oneDNN kernels
        t0 = time.perf_counter()
        t.train_epoch()
        return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", nargs="+", default=["mobilenetv2", "resnet50"], choices=sorted(CONFIGS))
    ap.add_argument("--settings", nargs="+", default=["fp32", "bf16", "workers1"], choices=sorted(SETTINGS))
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    a = ap.parse_args()
    res: dict[tuple[str, str], list[float]] = {}
    for _ in range(a.rounds):
        for arch in a.arch:
            for s in a.settings:
                res.setdefault((arch, s), []).append(time_setting(arch, s, a.steps, a.threads))
    print(f"load average {os.getloadavg()[0]:.2f}; {a.threads} threads, batch 32, {a.steps} steps, "
          f"best of {a.rounds} rounds")
    print("| arch | " + " | ".join(a.settings) + " |")
    print("|---" * (len(a.settings) + 1) + "|")
    for arch in a.arch:
        print(f"| {arch} | " + " | ".join(f"{max(res[(arch, s)]):.1f}" for s in a.settings) + " |")


if __name__ == "__main__":
    main()
