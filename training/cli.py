"""``python -m training <command>``: train, export (and the commands other modules register).

Every job prints one JSON object per line on stdout; errors are one ``error`` event
and a non-zero exit code, never a traceback (``--debug`` shows it).
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from training.config import ConfigError, load_config
from training.jobs.engine import CancelFlag, Cancelled, DivergedError, TrainingError
from training.events import EventStream

EXIT_ERROR, EXIT_DIVERGED = 2, 3

# Commands in other modules register themselves here: name -> (module, add_args, run).
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("training.cli", "Train a landmark network (teacher or student)."),
    "export": ("training.cli", "Export a checkpoint to ONNX + manifest, checked against PyTorch."),
}
OPTIONAL = ("training.distill.job", "training.prune.job", "training.evaluation.evaluate", "training.evaluation.bench", "training.evaluation.ablations",
            "training.jobs.ship", "training.data.pseudolabel")


def _add_job_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="run config JSON (see training/configs/)")
    p.add_argument("--run-dir", required=True, help="folder for config, checkpoints, events and exports")
    p.add_argument("--resume", action="store_true", help="continue from RUN_DIR/checkpoints/last.pt")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a config value, e.g. --set train.epochs=3")
    p.add_argument("--no-export", action="store_true", help="do not export the best model at the end")


def cmd_train(args: argparse.Namespace, events: EventStream | None, cancel: CancelFlag) -> dict:
    from training.jobs.train import run_train

    cfg = load_config(args.config, args.set)
    run_dir = Path(args.run_dir).expanduser().resolve()
    return run_train(cfg, run_dir, resume=args.resume, cancel=cancel, export=not args.no_export)


def cmd_export(args: argparse.Namespace, events: EventStream | None, cancel: CancelFlag) -> dict:
    import dataclasses

    from training.jobs.checkpoints import model_from_checkpoint
    from training.jobs.engine import load_data, make_datasets
    from training.jobs.onnx_export import export_model
    from training.jobs.train import LICENCE_NOTE, real_batch

    out_path = _export_target(Path(args.out).expanduser(), args.replace)
    model, cfg, st = model_from_checkpoint(args.checkpoint)
    if args.data:
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, root=args.data))
    _, val, schema = load_data(cfg)
    _, va = make_datasets(cfg, val[:16], val[:16], schema)
    best = st.get("best", {})
    decode = args.decode or best.get("decode") or "regression"
    m = export_model(model, schema, out_path, input_size=cfg.model.input_size,
                     heatmap_size=cfg.model.heatmap_size, sigma=cfg.train.sigma, decode=decode, arch=cfg.model.arch,
                     real_inputs=real_batch(va), fp16_weights=args.fp16_weights, backup_existing=args.replace,
                     info={"licence": LICENCE_NOTE, "checkpoint": Path(args.checkpoint).name,
                           "val_metrics": best.get("metrics", {}).get(decode, {}), "best_epoch": best.get("epoch"),
                           "run_config": cfg.to_dict()})
    out = {"onnx": str(out_path), "manifest": str(out_path.with_suffix(".json")),
           "parity": m.info["parity_max_abs_diff"], "size_bytes": m.info["file_size_bytes"]}
    print(json.dumps({"event": "exported", **out}), flush=True)
    return out


def _export_target(out: Path, replace: bool) -> Path:
    """Where ``export --out`` writes: never over an existing model silently. A taken name
    gives the first free ``NAME-N`` (with a warning), unless ``replace``: then the old pair
    moves into ``.backup/`` beside it first."""
    from kpdesk.inference.install import free_name

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


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, Callable]]:
    ap = argparse.ArgumentParser(prog="python -m training", description=__doc__.splitlines()[0])
    ap.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = ap.add_subparsers(dest="subcommand", required=True)
    runners: dict[str, Callable] = {}
    p = sub.add_parser("train", help=COMMANDS["train"][1])
    _add_job_args(p)
    runners["train"] = cmd_train
    p = sub.add_parser("export", help=COMMANDS["export"][1])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--out", required=True, help="NAME.onnx (NAME.json is written beside it)")
    p.add_argument("--decode", choices=["regression", "heatmap", "fusion"], default=None)
    p.add_argument("--data", default="", help="data folder (default: the one in the checkpoint's config)")
    p.add_argument("--fp16-weights", action="store_true", help="store weights as float16 (computed in float32)")
    p.add_argument("--replace", action="store_true",
                   help="replace an existing --out (it is kept in .backup/ beside it); without it a taken "
                        "name exports to NAME-2.onnx, ...")
    runners["export"] = cmd_export
    for modname in OPTIONAL:
        try:
            mod = importlib.import_module(modname)
        except ModuleNotFoundError as exc:
            if exc.name != modname:
                raise
            continue
        for name, (help_, add_args, run) in getattr(mod, "COMMANDS", {}).items():
            p = sub.add_parser(name, help=help_)
            add_args(p)
            runners[name] = run
    return ap, runners


CONFIG_JOBS = ("train", "distill", "prune")  # jobs whose --config is checked here before any work


def _check_inputs(args: argparse.Namespace) -> None:
    """Everything checkable before work starts: the job's config (every value), files given
    as checkpoints that are not checkpoints, and a thread count far above the machine's."""
    from training.config import checkpoint_files, checkpoint_problem, max_threads

    if args.subcommand in CONFIG_JOBS and getattr(args, "config", None):
        cfg = load_config(args.config, getattr(args, "set", []))
        for key, path in checkpoint_files(cfg):
            problem = checkpoint_problem(path)
            if problem and Path(path).exists():  # a missing one may be made by an earlier job
                raise ConfigError(f"{key}: {path}: {problem}")
    for attr in ("checkpoint", "model"):
        path = getattr(args, attr, None)
        if isinstance(path, str) and Path(path).suffix.lower() in (".pt", ".pth", ".ckpt"):
            problem = checkpoint_problem(path)
            if problem:
                raise ConfigError(f"{path}: {problem}")
    threads = getattr(args, "threads", None)
    if isinstance(threads, int):
        if threads < 0:
            raise ConfigError(f"--threads must be >= 0, got {threads}")
        if threads > max_threads():
            print(f"warning: --threads {threads} is more than this machine's {max_threads()} CPUs: "
                  f"using {max_threads()}", file=sys.stderr)
            args.threads = max_threads()


def _expected_errors() -> tuple[type[BaseException], ...]:
    """Failures reported as one line (``--debug`` shows the traceback)."""
    import pickle
    import zipfile

    from kpdesk.inference.install import ModelInstallError
    from kpdesk.inference.model import ModelLoadError

    errors: list[type[BaseException]] = [TrainingError, ConfigError, ValueError, OSError, ModelLoadError,
                                         ModelInstallError, pickle.UnpicklingError, zipfile.BadZipFile]
    export = sys.modules.get("training.jobs.onnx_export")
    if export is not None:
        errors.append(export.ExportError)
    return tuple(errors)


def main(argv: list[str] | None = None) -> int:
    ap, runners = build_parser()
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.debug else logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    cancel = CancelFlag()
    cancel.listen()
    try:
        _check_inputs(args)
        runners[args.subcommand](args, None, cancel)
        return 0
    except Cancelled:
        return 0
    except DivergedError as exc:
        print(json.dumps({"event": "error", "kind": "diverged", "message": str(exc)}), flush=True)
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_DIVERGED
    except Exception as exc:
        if args.debug or not isinstance(exc, _expected_errors()):
            raise
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(json.dumps({"event": "error", "kind": type(exc).__name__, "message": msg}), flush=True)
        print(f"error: {msg}", file=sys.stderr)
        return EXIT_ERROR
