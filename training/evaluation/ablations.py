"""Ablations of distillation and pruning (METHOD.md sections 2-3; the paper's Table 4 and sweeps).

* ``ablate-chain``: teacher; student; + distillation; + distillation + 50% pruning
  (and, by default, a control: the student fine-tuned for the distillation run's
  epochs WITHOUT the teacher, so "+ distillation" is not credited for extra epochs).
  The control follows the distillation run's own saved schedule when that run is
  reused (so the budget does not shorten it). Existing runs are reused with ``--teacher-run`` / ``--student-run`` /
  ``--distill-run`` / ``--prune-run`` (a run folder or a .pt); missing ones are
  trained here under the budget.
* ``ablate-lambda``: distillation with lambda_dp in {0.2, 0.5, 1, 2, 5}.
* ``ablate-rate``: pruning rates {10, 30, 50, 70, 90}%, reconstruction error vs L1.

Every model is evaluated on the SAME validation crops (``--val-samples`` first ones
of the base config's val list, default all) and measured the same way (params, MACs,
float32 ONNX size, onnxruntime latency at 1 thread / batch 1). Each command writes
``<name>.csv``, ``<name>.md`` and ``<name>.png`` into ``--run-dir``; the sub-runs live
in sub-folders and a re-run skips finished ones and resumes unfinished ones.

Budget: ``--budget F`` scales every sub-run's epochs (and pruning fine-tuning steps
and final epochs) by F; ``--epochs`` / ``--steps`` set them explicitly;
``--train-samples`` / ``--val-samples`` cut the data; ``--set`` applies to every
sub-run (e.g. ``--set train.threads=1``).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kpdesk.vision.files import atomic_write_text, save_figure
from training.config import DistillConfig, RunConfig, apply_overrides, config_from_dict, load_config
from training.events import EventStream
from training.jobs.engine import CancelFlag, TrainingError, evaluate, load_data, load_file, make_datasets, pick_device
from training.paths import CONFIGS_DIR

log = logging.getLogger(__name__)

CONFIGS = CONFIGS_DIR
COLUMNS = ("name", "arch", "nme_ion", "decode", "nme_ion_regression", "nme_ion_heatmap", "nme_ion_fusion", "params",
           "macs", "onnx_bytes", "latency_ms", "checkpoint")


# -- budget and sub-runs ---------------------------------------------------------------------
def apply_budget(cfg: RunConfig, args: argparse.Namespace) -> RunConfig:
    t, p = cfg.train, cfg.prune
    b = args.budget
    epochs = args.epochs if args.epochs is not None else max(1, round(t.epochs * b))
    train = dataclasses.replace(t, epochs=epochs)
    if args.train_samples:
        train = dataclasses.replace(train, max_train_samples=args.train_samples)
    prune = dataclasses.replace(
        p, finetune_steps=args.steps if args.steps is not None else max(1, round(p.finetune_steps * b)),
        final_epochs=args.epochs if args.epochs is not None else max(1, round(p.final_epochs * b)),
        latency_runs=args.latency_runs)
    return dataclasses.replace(cfg, train=train, prune=prune)


def base_config(path: str | Path, args: argparse.Namespace) -> RunConfig:
    return apply_budget(load_config(path, args.set), args)


def checkpoint_of(run: str | Path) -> Path:
    """A run folder (-> checkpoints/best.pt) or a checkpoint file."""
    p = Path(run).expanduser().resolve()
    ck = p / "checkpoints" / "best.pt" if p.is_dir() else p
    if not ck.is_file():
        raise TrainingError(f"{run}: no checkpoint (expected a run folder with checkpoints/best.pt, or a .pt)")
    return ck


def sub_run(run_dir: Path, job: Callable[..., dict], cfg: RunConfig, cancel: CancelFlag) -> Path:
    """Run (or resume, or skip when finished) one job in ``run_dir``; returns its best.pt."""
    done = run_dir / "ablation_done.json"
    if not done.is_file():
        resume = (run_dir / "checkpoints" / "last.pt").is_file()
        res = job(cfg, run_dir, resume=resume, cancel=cancel, export=False)
        atomic_write_text(done, json.dumps({k: v for k, v in res.items() if k != "best_metrics"}, default=str) + "\n")
    return run_dir / "checkpoints" / "best.pt"


# -- evaluation -------------------------------------------------------------------------------
class Bench:
    """The shared validation crops and the measurement of one checkpoint."""

    def __init__(self, cfg: RunConfig, val_samples: int, latency_runs: int) -> None:
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, max_train_samples=1,
                                                                 max_val_samples=val_samples))
        _, val, schema = load_data(cfg)
        _, self.val_ds = make_datasets(cfg, [], val, schema)
        self.input_size = cfg.model.input_size
        self.latency_runs = latency_runs
        self.device = pick_device(cfg.train.device)

    def row(self, name: str, ckpt: Path, **extra: Any) -> dict[str, Any]:
        from training.jobs.checkpoints import model_from_checkpoint
        from training.prune.job import measure

        model, mcfg, _ = model_from_checkpoint(ckpt)
        if mcfg.model.input_size != self.input_size:
            raise TrainingError(f"{ckpt}: input_size {mcfg.model.input_size}, the benchmark uses {self.input_size}")
        modes = ("regression", "heatmap", "fusion")
        res = evaluate(model.to(self.device), self.val_ds, self.device, modes, mcfg.model.heatmap_size,
                       mcfg.train.sigma)
        best = min(res, key=lambda k: res[k]["nme_ion"])
        row = {"name": name, "arch": mcfg.model.arch, "nme_ion": res[best]["nme_ion"], "decode": best,
               **{f"nme_ion_{k}": v["nme_ion"] for k, v in res.items()},
               **{k: v for k, v in measure(model, self.input_size, self.latency_runs).items() if k != "onnx_parity"},
               "checkpoint": str(ckpt), **extra}
        return row


def write_table(rows: list[dict], out: Path, columns: tuple[str, ...]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(out.with_suffix(".csv"), buf.getvalue())

    def fmt(k: str, v: Any) -> str:
        if v is None or v == "":
            return ""
        if k == "onnx_bytes":
            return f"{v / 1e6:.2f} MB"
        if k == "macs":
            return f"{v / 1e6:.1f} M"
        if k == "params":
            return f"{v / 1e6:.3f} M"
        if isinstance(v, float):
            return f"{v:.3f}"
        return str(v)

    shown = [c for c in columns if c != "checkpoint"]
    lines = ["| " + " | ".join(shown) + " |", "|" + "---|" * len(shown)]
    lines += ["| " + " | ".join(fmt(c, r.get(c)) for c in shown) + " |" for r in rows]
    atomic_write_text(out.with_suffix(".md"), "\n".join(lines) + "\n")


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# -- the commands --------------------------------------------------------------------------
def run_chain(args: argparse.Namespace, events: EventStream, cancel: CancelFlag) -> list[dict]:
    from training.distill.job import run_distill
    from training.jobs.train import run_train
    from training.prune.job import run_prune

    out = Path(args.run_dir).expanduser().resolve()
    tcfg = base_config(args.teacher_config, args)
    scfg = base_config(args.student_config, args)
    dcfg = base_config(args.distill_config, args)
    pcfg = base_config(args.prune_config, args)
    if args.student_run:  # evaluate on the reused student's own data and crop size
        saved = load_file(checkpoint_of(args.student_run))["run_config"]
        bench = Bench(config_from_dict(apply_overrides(saved, args.set)), args.val_samples, args.latency_runs)
    else:
        bench = Bench(scfg, args.val_samples, args.latency_runs)
    rows = []

    def get(flag: str | None, name: str, job, cfg) -> Path:
        if flag:
            return checkpoint_of(flag)
        events.emit("log", message=f"ablate-chain: training {name} in {out / name}")
        return sub_run(out / name, job, cfg, cancel)

    teacher = get(args.teacher_run, "teacher", run_train, tcfg)
    rows.append(bench.row("teacher", teacher))
    student = get(args.student_run, "student", run_train, scfg)
    rows.append(bench.row("student", student))
    dcfg = dataclasses.replace(dcfg, distill=dataclasses.replace(dcfg.distill, teacher=str(teacher)),
                               train=dataclasses.replace(dcfg.train, init_checkpoint=str(student)))
    if args.control:
        # The same schedule as the distillation run (its own saved config when it is
        # reused), from the same student, without the teacher.
        base = dcfg
        if args.distill_run:
            saved = load_file(checkpoint_of(args.distill_run))["run_config"]
            base = config_from_dict(apply_overrides(saved, args.set))
        ccfg = dataclasses.replace(base, distill=DistillConfig(), train=dataclasses.replace(
            base.train, init_checkpoint=str(student), export_name=""))
        control = sub_run(out / "control", run_train, ccfg, cancel)
        rows.append(bench.row("student + same extra epochs, no distillation", control))
    distilled = get(args.distill_run, "distill", run_distill, dcfg)
    rows.append(bench.row("+ distillation", distilled))
    pcfg = dataclasses.replace(pcfg, prune=dataclasses.replace(pcfg.prune, student=str(distilled), alpha=0.5),
                               distill=dataclasses.replace(pcfg.distill, teacher=str(teacher)))
    pruned = get(args.prune_run, "prune50", run_prune, pcfg)
    alpha = load_file(pruned)["run_config"]["prune"]["alpha"]
    rows.append(bench.row(f"+ distillation + {alpha:.0%} pruning", pruned))
    write_table(rows, out / "ablate_chain", COLUMNS)
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    ax.barh(range(len(rows)), [r["nme_ion"] for r in rows], color="tab:blue")
    ax.set_yticks(range(len(rows)), [r["name"] for r in rows], fontsize=8)
    for i, r in enumerate(rows):
        ax.annotate(f"{r['nme_ion']:.2f}%  {r['params'] / 1e6:.2f}M params  {r['latency_ms']:.1f} ms",
                    (r["nme_ion"], i), xytext=(3, -3), textcoords="offset points", fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.7 * max(r["nme_ion"] for r in rows))  # room for the annotations
    ax.set_xlabel("val NME (ION), %")
    ax.set_title("Distillation / pruning chain (same val crops)")
    fig.tight_layout()
    save_figure(fig, out / "ablate_chain.png")
    plt.close(fig)
    return rows


def run_lambda(args: argparse.Namespace, events: EventStream, cancel: CancelFlag) -> list[dict]:
    from training.distill.job import run_distill

    out = Path(args.run_dir).expanduser().resolve()
    cfg = base_config(args.config, args)
    bench = Bench(cfg, args.val_samples, args.latency_runs)
    rows = []
    for lam in args.lambdas:
        c = dataclasses.replace(cfg, distill=dataclasses.replace(cfg.distill, lambda_dp=lam))
        events.emit("log", message=f"ablate-lambda: lambda_dp {lam:g}")
        ck = sub_run(out / f"lambda_{lam:g}", run_distill, c, cancel)
        rows.append(bench.row(f"lambda_dp={lam:g}", ck, lambda_dp=lam))
    write_table(rows, out / "ablate_lambda", ("lambda_dp", *COLUMNS))
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    ax.plot([r["lambda_dp"] for r in rows], [r["nme_ion"] for r in rows], "-o")
    if all(r["lambda_dp"] > 0 for r in rows):
        ax.set_xscale("log")
    ax.set_xlabel("lambda_dp")
    ax.set_ylabel("val NME (ION), %")
    ax.set_title("Distillation weight sweep")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, out / "ablate_lambda.png")
    plt.close(fig)
    return rows


def run_rate(args: argparse.Namespace, events: EventStream, cancel: CancelFlag) -> list[dict]:
    from training.prune.job import run_prune

    out = Path(args.run_dir).expanduser().resolve()
    cfg = base_config(args.config, args)
    bench = Bench(cfg, args.val_samples, args.latency_runs)
    rows = []
    if args.include_dense:
        rows.append(bench.row("dense", checkpoint_of(cfg.prune.student), rate=0, importance="-"))
    for imp in args.importances:
        for rate in args.rates:
            c = dataclasses.replace(cfg, prune=dataclasses.replace(cfg.prune, alpha=rate / 100.0, importance=imp))
            events.emit("log", message=f"ablate-rate: {imp} {rate}%")
            ck = sub_run(out / f"{imp}_{rate}", run_prune, c, cancel)
            rows.append(bench.row(f"{imp} {rate}%", ck, rate=rate, importance=imp))
    write_table(rows, out / "ablate_rate", ("importance", "rate", *COLUMNS))
    plt = _plt()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4), dpi=120)
    for imp in args.importances:
        rs = [r for r in rows if r["importance"] == imp]
        a1.plot([r["rate"] for r in rs], [r["nme_ion"] for r in rs], "-o", label=imp)
        a2.plot([r["latency_ms"] for r in rs], [r["nme_ion"] for r in rs], "-o", label=imp)
    for r in rows:
        if r["importance"] == "-":
            a1.axhline(r["nme_ion"], color="gray", ls="--", lw=1, label="dense")
            a2.plot([r["latency_ms"]], [r["nme_ion"]], "k*", ms=10, label="dense")
    a1.set_xlabel("pruning rate alpha, %")
    a2.set_xlabel("onnxruntime latency, ms (1 thread, batch 1)")
    for a in (a1, a2):
        a.set_ylabel("val NME (ION), %")
        a.grid(alpha=0.3)
        a.legend(fontsize=8)
    fig.suptitle("Pruning rate: reconstruction error vs L1")
    fig.tight_layout()
    save_figure(fig, out / "ablate_rate.png")
    plt.close(fig)
    return rows


# -- CLI -------------------------------------------------------------------------------------
def _floats(s: str) -> list[float]:
    return [float(x) for x in s.split(",") if x.strip()]


def _ints(s: str) -> list[int]:
    return [int(x) for x in s.split(",") if x.strip()]


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run-dir", required=True, help="folder for the table, the plot and the sub-runs")
    p.add_argument("--budget", type=float, default=1.0,
                   help="fraction of each sub-run's epochs / fine-tuning steps (default 1 = the configs')")
    p.add_argument("--epochs", type=int, default=None, help="epochs of every sub-run (and prune.final_epochs)")
    p.add_argument("--steps", type=int, default=None, help="prune.finetune_steps of every pruning sub-run")
    p.add_argument("--train-samples", type=int, default=0, help="use only the first N training samples")
    p.add_argument("--val-samples", type=int, default=0, help="evaluate on the first N val samples (0 = all)")
    p.add_argument("--latency-runs", type=int, default=200, help="onnxruntime runs per latency median")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override for every sub-run, e.g. --set train.threads=1")


def _add_chain(p: argparse.ArgumentParser) -> None:
    _common(p)
    for name in ("teacher", "student", "distill", "prune"):
        p.add_argument(f"--{name}-run", default="", help=f"reuse this {name} run folder / checkpoint")
        p.add_argument(f"--{name}-config", default=str(CONFIGS / f"face68_{name}.json"),
                       help=f"config to train the {name} when --{name}-run is not given")
    p.add_argument("--no-control", dest="control", action="store_false",
                   help="skip the control run (student fine-tuned as long as the distillation, without teacher)")


def _add_lambda(p: argparse.ArgumentParser) -> None:
    _common(p)
    p.add_argument("--config", default=str(CONFIGS / "face68_distill.json"))
    p.add_argument("--lambdas", type=_floats, default=[0.2, 0.5, 1.0, 2.0, 5.0])


def _add_rate(p: argparse.ArgumentParser) -> None:
    _common(p)
    p.add_argument("--config", default=str(CONFIGS / "face68_prune.json"))
    p.add_argument("--rates", type=_ints, default=[10, 30, 50, 70, 90], help="pruning rates in percent")
    p.add_argument("--importances", type=lambda s: s.split(","), default=["reconstruction", "l1"])
    p.add_argument("--no-dense", dest="include_dense", action="store_false", help="no row for the unpruned student")


def _runner(fn: Callable, name: str) -> Callable:
    def run(args: argparse.Namespace, events: EventStream | None, cancel: CancelFlag) -> dict:
        out = Path(args.run_dir).expanduser().resolve()
        out.mkdir(parents=True, exist_ok=True)
        ev = events or EventStream(out)
        rows = fn(args, ev, cancel)
        res = {"table": str(out / f"{name}.csv"), "plot": str(out / f"{name}.png"),
               "rows": [{k: r.get(k) for k in ("name", "nme_ion", "params", "macs", "onnx_bytes", "latency_ms")}
                        for r in rows]}
        ev.emit("done", **res)
        return res

    return run


COMMANDS = {
    "ablate-chain": ("Ablation: teacher / student / + distillation / + 50%% pruning on the same val set.",
                     _add_chain, _runner(run_chain, "ablate_chain")),
    "ablate-lambda": ("Ablation: distillation weight lambda_dp sweep.", _add_lambda,
                      _runner(run_lambda, "ablate_lambda")),
    "ablate-rate": ("Ablation: pruning rate sweep, reconstruction error vs L1.", _add_rate,
                    _runner(run_rate, "ablate_rate")),
}
