"""``python -m training ship``: promote a run's exported model into the shipped ``models/`` folder.

Copies ``RUN/export/X.onnx`` to ``models/NAME.onnx`` with a manifest whose card records how
the model was made (command, config, epochs, wall time, data, licence, validation
metrics). Written atomically and verified by loading it back with onnxruntime. The
measured figures (latency, bench metrics) are added by ``python -m training bench
--update-cards``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

import onnxruntime as ort

from kpdesk.vision.manifest import Manifest
from training.config import REPO_ROOT
from training.engine import TrainingError
from training.export import sha256


def ship(run_dir: Path, name: str, models_dir: Path, command: str = "", decode: str | None = None) -> Path:
    exports = sorted((run_dir / "export").glob("*.onnx"))
    if len(exports) != 1:
        raise TrainingError(f"{run_dir}/export: expected one exported .onnx, found {len(exports)}")
    src = exports[0]
    man = Manifest.load(src.with_suffix(".json"))
    info = dict(man.info)
    wall = run_dir / "wall_time.json"
    if wall.is_file():
        info["wall_time_s"] = round(json.loads(wall.read_text())["seconds"], 1)
    events = run_dir / "events.jsonl"
    if events.is_file():
        metrics = [json.loads(ln) for ln in events.read_text().splitlines() if '"event": "metric"' in ln]
        info["epochs_run"] = len(metrics)
    if command:
        info["training_command"] = command
    info["run_dir_name"] = run_dir.name
    man = Manifest(**{**man.__dict__, "name": name, "info": info, "decode": decode or man.decode})
    models_dir.mkdir(parents=True, exist_ok=True)
    dst = models_dir / f"{name}.onnx"
    tmp_onnx, tmp_json = models_dir / f".{name}.tmp.onnx", models_dir / f".{name}.tmp.json"
    shutil.copyfile(src, tmp_onnx)
    if sha256(tmp_onnx) != info.get("onnx_sha256"):
        tmp_onnx.unlink()
        raise TrainingError(f"{src}: checksum differs from its manifest")
    ort.InferenceSession(str(tmp_onnx), providers=["CPUExecutionProvider"])  # loads?
    man.save(tmp_json)
    Manifest.load(tmp_json)
    os.replace(tmp_onnx, dst)
    os.replace(tmp_json, dst.with_suffix(".json"))
    return dst


def _add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run-dir", required=True)
    p.add_argument("--name", required=True, help="shipped model name, e.g. teacher, student, student-0.25x")
    p.add_argument("--models-dir", default=str(REPO_ROOT / "models"))
    p.add_argument("--train-command", default="", help="the training command, recorded in the card")
    p.add_argument("--decode", choices=["regression", "heatmap", "fusion"], default=None)


def _run(args, events, cancel) -> dict:
    dst = ship(Path(args.run_dir), args.name, Path(args.models_dir), args.train_command, args.decode)
    out = {"event": "exported", "onnx": str(dst), "manifest": str(dst.with_suffix(".json")), "name": args.name}
    print(json.dumps(out), flush=True)
    return out


COMMANDS = {"ship": ("Copy a run's exported model into models/ with its training card.", _add_args, _run)}
