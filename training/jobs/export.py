"""The export job (``python -m training export``): a checkpoint (.pt, or a shipped .onnx) to
ONNX + manifest, checked against PyTorch on real crops (the mechanics are in onnx_export.py)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from kpdesk.inference.install import free_name
from training.config import ConfigError
from training.events import EventStream
from training.jobs.checkpoints import model_from_checkpoint
from training.jobs.engine import CancelFlag, load_data, make_datasets
from training.jobs.onnx_export import export_model
from training.jobs.train import LICENCE_NOTE, real_batch


def cmd_export(args: argparse.Namespace, events: EventStream | None, cancel: CancelFlag) -> dict:
    out_path = export_target(Path(args.out).expanduser(), args.replace)
    model, cfg, st = model_from_checkpoint(args.checkpoint)
    if args.data:
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, root=args.data))
    _, val, schema = load_data(cfg)
    _, va = make_datasets(cfg, val[:16], val[:16], schema)
    best = st.get("best", {})
    decode = args.decode or best.get("decode") or "regression"
    extra = {}
    if args.flip_average:
        from training.nets.flip import FlipAveraged

        model = FlipAveraged(model.eval(), schema.flip_perm, cfg.model.input_size, tuple(args.label_offset))
        extra["flip_average"] = {"label_offset_crop_px": list(args.label_offset),
                                 "note": "two forwards (crop and mirror image), averaged, moved by the label offset"}
    elif any(args.label_offset):
        raise ConfigError("--label-offset moves the flip average: give --flip-average with it")
    m = export_model(model, schema, out_path, input_size=cfg.model.input_size,
                     heatmap_size=cfg.model.heatmap_size, sigma=cfg.train.sigma, decode=decode, arch=cfg.model.arch,
                     real_inputs=real_batch(va), fp16_weights=args.fp16_weights, backup_existing=args.replace,
                     info={"licence": LICENCE_NOTE, "checkpoint": Path(args.checkpoint).name,
                           "val_metrics": best.get("metrics", {}).get(decode, {}), "best_epoch": best.get("epoch"),
                           "run_config": cfg.to_dict(), **extra})
    out = {"onnx": str(out_path), "manifest": str(out_path.with_suffix(".json")),
           "parity": m.info["parity_max_abs_diff"], "size_bytes": m.info["file_size_bytes"]}
    print(json.dumps({"event": "exported", **out}), flush=True)
    return out


def export_target(out: Path, replace: bool) -> Path:
    """Where ``export --out`` writes: never over an existing model silently. A taken name
    gives the first free ``NAME-N`` (with a warning), unless ``replace``: then the old pair
    moves into ``.backup/`` beside it first."""
    if out.suffix != ".onnx":
        raise ConfigError(f"--out {out}: expected a NAME.onnx path")
    if not (out.exists() or out.with_suffix(".json").exists()):
        return out
    if replace:
        print(f"warning: {out} exists: replacing it; the old one goes to {out.parent / '.backup'}/", file=sys.stderr)
        return out
    new = out.with_name(f"{free_name(out.parent, out.stem)}.onnx")
    print(f"warning: {out} exists: exporting to {new} instead (--replace replaces it, keeping a backup)",
          file=sys.stderr)
    return new


def add_export_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--out", required=True, help="NAME.onnx (NAME.json is written beside it)")
    p.add_argument("--decode", choices=["regression", "heatmap", "fusion"], default=None)
    p.add_argument("--data", default="", help="data folder (default: the one in the checkpoint's config)")
    p.add_argument("--fp16-weights", action="store_true", help="store weights as float16 (computed in float32)")
    p.add_argument("--flip-average", action="store_true",
                   help="export the average of the model on the crop and on its mirror image (two forwards: "
                        "for an offline model such as the teacher)")
    p.add_argument("--label-offset", type=float, nargs=2, default=(0.0, 0.0), metavar=("DX", "DY"),
                   help="with --flip-average: move the average by this many crop pixels (the labels' offset "
                        "from the mirror-symmetric position: 'python -m training label-offset', dx_crop/dy_crop)")
    p.add_argument("--replace", action="store_true",
                   help="replace an existing --out (it is kept in .backup/ beside it); without it a taken "
                        "name exports to NAME-2.onnx, ...")


COMMANDS = {
    "export": ("Export a checkpoint to ONNX + manifest, checked against PyTorch.", add_export_args, cmd_export),
}
