"""Data-parallel training under ``torchrun`` (2 CPU processes, gloo): the run completes,
each rank trains on its half of every epoch, and only rank 0 writes events, checkpoints
and the export (one of each, not one per rank)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from fixtures import make_face68, tiny_config

REPO = Path(__file__).resolve().parents[1]


def test_torchrun_two_processes(tmp_path: Path) -> None:
    root = make_face68(tmp_path / "face68")  # 16 train faces: 2 steps of 4 per rank per epoch
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps(tiny_config(root, epochs=1)))
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    p = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                        "-m", "training", "train", "--config", str(cfg), "--run-dir", str(run)],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL)
    assert p.returncode == 0, p.stderr[-3000:]
    events = [json.loads(ln) for ln in p.stdout.splitlines() if ln.startswith("{")]
    kinds = [e["event"] for e in events]
    assert kinds.count("start") == 1 and kinds.count("done") == 1 and kinds[-1] == "done", kinds
    assert events[0]["world"] == 2
    assert {e["steps"] for e in events if e["event"] == "progress"} == {2}
    ckpts = [Path(e["path"]).name for e in events if e["event"] == "checkpoint"]
    assert sorted(ckpts) == ["best.pt", "last.pt"]
    assert kinds.count("exported") == 1 and (run / "export" / "tiny.onnx").is_file()
    assert sorted(q.name for q in (run / "checkpoints").iterdir()) == ["best.pt", "last.pt"]
    st = torch.load(run / "checkpoints" / "last.pt", weights_only=False)
    assert (st["epoch"], st["step_in_epoch"]) == (1, 0)
    # a DDP-wrapped model would save "module."-prefixed keys that the dense class cannot load
    assert not any(k.startswith("module.") for k in st["model_state"])
