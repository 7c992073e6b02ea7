"""``python -m training ship``: promote a run's exported model into the shipped ``models/`` folder.

Copies ``RUN/export/X.onnx`` to ``models/NAME.onnx`` with a manifest whose card records how
the model was made (command, config, epochs, wall time, data, licence, validation
metrics). Checked as the app loads it, stamped with the graph's sha256 and renamed into
place; a model of the same name is never overwritten silently. The measured figures
(latency, bench metrics) are added by ``python -m training bench --update-cards``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from kpdesk.inference.install import Installed, ModelInstallError, install_model
from kpdesk.vision.manifest import Manifest, ManifestError
from training.jobs.engine import TrainingError
from training.paths import REPO_ROOT


def ship(run_dir: Path, name: str, models_dir: Path, command: str = "", decode: str | None = None,
         replace: bool = False) -> Installed:
    """Install RUN/export/X.onnx into ``models_dir`` as ``name`` (see ``kpdesk.inference.install``:
    checked like the app loads it, stamped, renamed into place; a model of that name is
    kept: the new one gets a free name, or with ``replace`` the old one moves to .backup/)."""
    exports = sorted(p for p in (run_dir / "export").glob("*.onnx") if not p.name.startswith("."))
    if len(exports) != 1:
        raise TrainingError(f"{run_dir}/export: expected one exported .onnx, found {len(exports)}")
    src = exports[0]
    try:
        man = Manifest.load(src.with_suffix(".json"))
        info = dict(man.info)
        wall = run_dir / "wall_time.json"
        if wall.is_file():
            info["wall_time_s"] = round(json.loads(wall.read_text())["seconds"], 1)
        events = run_dir / "events.jsonl"
        if events.is_file():
            metrics = [ln for ln in events.read_text().splitlines() if '"event": "metric"' in ln]
            info["epochs_run"] = len(metrics)
        if command:
            info["training_command"] = command
        info["run_dir_name"] = run_dir.name
        man = dataclasses.replace(man, name=name, info=info, decode=decode or man.decode)
    except (ManifestError, KeyError, ValueError) as exc:
        raise TrainingError(f"{src}: {exc}") from None
    try:
        return install_model(src, None, models_dir, name=name, replace=replace, manifest=man)
    except ModelInstallError as exc:
        raise TrainingError(str(exc)) from None


def _add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run-dir", required=True)
    p.add_argument("--name", required=True, help="shipped model name, e.g. teacher, student, student-0.25x")
    p.add_argument("--models-dir", default=str(REPO_ROOT / "models"))
    p.add_argument("--train-command", default="", help="the training command, recorded in the card")
    p.add_argument("--decode", choices=["regression", "heatmap", "fusion"], default=None)
    p.add_argument("--replace", action="store_true",
                   help="replace a model of that name (it is kept in MODELS_DIR/.backup/); "
                        "without it the new model gets a free name NAME-2, ...")


def _run(args, events, cancel) -> dict:
    res = ship(Path(args.run_dir), args.name, Path(args.models_dir), args.train_command, args.decode,
               replace=args.replace)
    if res.renamed or res.unchanged:
        print(f"warning: {res.describe()}", file=sys.stderr)
    out = {"event": "exported", "onnx": str(res.path), "manifest": str(res.path.with_suffix(".json")),
           "name": res.name, "backup": str(res.backup) if res.backup else None}
    print(json.dumps(out), flush=True)
    return out


COMMANDS = {"ship": ("Copy a run's exported model into models/ with its training card.", _add_args, _run)}
