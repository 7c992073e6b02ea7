"""Training throughput (img/s) of the landmark networks on this machine, float32 vs the
bfloat16-backbone autocast that ``train.cpu_bf16`` enables.

    .venv/bin/python benchmarks/train_throughput.py [--threads 2] [--batch 32] [--steps 4]
"""

from __future__ import annotations

import argparse
import time

import torch

from training.nets.networks import ModelConfig, build_model


def measure(arch: str, bf16: bool, batch: int, steps: int) -> float:
    torch.manual_seed(0)
    m = build_model(ModelConfig(arch=arch)).to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(m.parameters())
    x = torch.randn(batch, 3, 128, 128).contiguous(memory_format=torch.channels_last)
    times = []
    for _ in range(steps + 1):
        t = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = m(x)
        loss = out["coords"].mean() + out["heatmaps"].mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t)
    return batch / min(times[1:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=4)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    print(f"| arch | float32 img/s | bf16 backbone img/s |  (batch {a.batch}, {a.threads} threads, 128 px)")
    print("|---|---|---|")
    for arch in ("resnet50", "mobilenetv2"):
        fp32, bf16 = measure(arch, False, a.batch, a.steps), measure(arch, True, a.batch, a.steps)
        print(f"| {arch} | {fp32:.1f} | {bf16:.1f} |")


if __name__ == "__main__":
    main()
