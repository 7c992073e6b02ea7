"""training.jobs.engine.worker_loader: forked data-loader workers after the parent's OpenCV pool has run.

Setting OpenCV's thread count inside a forked worker deadlocks once the parent's pool has run (the second epoch
of every run hung on a 16-core GPU machine). The loader sets it in the parent; this runs the failing pattern in
a child process with a time limit, so a regression shows up as a timeout, not a hung suite."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent("""
    import cv2, numpy as np, torch
    from torch.utils.data import Dataset
    from training.jobs.engine import worker_loader

    class Blur(Dataset):
        def __len__(self):
            return 8
        def __getitem__(self, i):
            a = np.full((1200, 1200, 3), float(i), np.float32)
            return torch.tensor(float(cv2.GaussianBlur(a, (15, 15), 0).mean()))

    big = np.random.default_rng(0).random((2500, 2500, 3), dtype=np.float32)
    cv2.setNumThreads(4)
    for epoch in range(3):
        for _ in range(2):
            cv2.GaussianBlur(big, (31, 31), 0)  # the parent's pool runs between epochs, as validation does
        got = sorted(round(v, 3) for b in worker_loader(Blur(), [[0, 1, 2, 3], [4, 5, 6, 7]], 3) for v in b.tolist())
        assert got == [float(i) for i in range(8)], got
    print("three epochs")
""")


def test_workers_survive_the_parents_opencv_pool() -> None:
    proc = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "three epochs" in proc.stdout
