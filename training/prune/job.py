"""Layer-wise structured filter pruning with distillation (METHOD.md section 3).

``python -m training prune --config C --run-dir D [--resume] [--set ...]``

Where things are: the criterion that scores the channels (``reconstruction``, the paper's
eq. 7, or ``l1``) is in ``training/prune/criterion.py``; the dependency graph, the order of
the layers and the removal itself in ``training/prune/plan.py``. This module runs the job:
steps of pruning and fine-tuning, measurements, checkpoints, the final export.

Per step (and for the dense start and the final model) a row goes to
``prune_steps.csv`` and a ``step`` event: params, MACs, ONNX size, onnxruntime latency
(1 thread, batch 1, median of ``prune.latency_runs`` runs after 20 warm-up runs),
validation ION NME, and the scoring time. At the end: ``prune_nme_latency.png`` and
the ONNX export of the best final model (``train.export_name``, default
``student-<keep>x``, e.g. ``student-0.25x`` for alpha = 0.75). Checkpoints hold the
whole pruned model; ``--resume`` continues at the step / fine-tuning position saved.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import io
import json
import logging
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from kpdesk.vision.files import atomic_write_text, save_figure
from training.config import RunConfig, load_config
from training.distill.job import single_process_only, unaugmented
from training.distill.loss import FeatureDistiller, build_distiller, make_distill_loss
from training.distill.teacher import FrozenTeacher, check_geometry
from training.events import EventStream
from training.jobs.engine import (
    CancelFlag,
    Cancelled,
    Trainer,
    TrainingError,
    evaluate,
    load_data,
    make_datasets,
    pick_device,
)
from training.jobs.onnx_export import run_onnx, torch_to_onnx
from training.jobs.train import add_job_args, export_best, prepare_run_dir
from training.nets.networks import ExportWrapper, count_macs, count_params
from training.prune.criterion import IMPORTANCES, make_importance
from training.prune.plan import build_graph, layer_alphas, plan_layers, prune_layer

log = logging.getLogger(__name__)

CSV_COLUMNS = ("step", "layers", "channels", "params", "macs", "onnx_bytes", "latency_ms", "nme_ion", "decode",
               "score_time_s", "score_cpu_s", "prune_time_s", "finetune_steps", "finetune_time_s")


# -- measurement ---------------------------------------------------------------------------
def onnx_latency_ms(path: Path, input_size: int, runs: int = 200, warmup: int = 20) -> float:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((1, 3, input_size, input_size)).astype(np.float32)
    for _ in range(warmup):
        sess.run(None, {"input": x})
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        sess.run(None, {"input": x})
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e3)


def measure(model: nn.Module, input_size: int, latency_runs: int = 200) -> dict[str, Any]:
    """params, MACs, ONNX file size (float32 weights) and onnxruntime latency (1 thread, batch 1)."""
    m = copy.deepcopy(model).cpu().float().eval().to(memory_format=torch.contiguous_format)
    res: dict[str, Any] = {"params": count_params(m), "macs": count_macs(m, input_size)}
    outputs = ["coords", "heatmaps"] if getattr(m, "hm_head", None) is not None else ["coords"]
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "m.onnx"
        torch_to_onnx(ExportWrapper(m).eval(), torch.randn(1, 3, input_size, input_size), p, outputs)
        res["onnx_bytes"] = p.stat().st_size
        res["latency_ms"] = onnx_latency_ms(p, input_size, latency_runs) if latency_runs > 0 else float("nan")
        with torch.no_grad():
            x = torch.randn(2, 3, input_size, input_size)
            ref = m(x)["coords"].numpy()
        res["onnx_parity"] = float(np.abs(run_onnx(p, x.numpy())[0] - ref).max())
    return res


def val_record(metrics: dict[str, dict], select: str = "nme_ion") -> dict[str, Any]:
    mode, rec = min(metrics.items(), key=lambda kv: kv[1][select])
    return {"nme_ion": rec[select], "decode": mode}


def write_csv(rows: list[dict], path: Path) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({k: (";".join(map(str, r[k])) if isinstance(r.get(k), (list, tuple)) else r.get(k, ""))
                    for k in CSV_COLUMNS})
    atomic_write_text(path, buf.getvalue())


def plot_nme_latency(rows: list[dict], path: Path, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=120)
    xs = [r["latency_ms"] for r in rows]
    ys = [r["nme_ion"] for r in rows]
    ax.plot(xs, ys, "-o", ms=3, lw=1, color="tab:blue", label="after each step")
    for r in rows:
        if r["step"] in (0, "final"):
            ax.annotate("dense" if r["step"] == 0 else "final", (r["latency_ms"], r["nme_ion"]), fontsize=8,
                        xytext=(4, 4), textcoords="offset points")
    if rows and rows[-1]["step"] == "final":
        ax.plot([xs[-1]], [ys[-1]], "*", ms=12, color="tab:red", label="final (after fine-tuning)")
    ax.set_xlabel("onnxruntime latency, ms (1 thread, batch 1)")
    ax.set_ylabel("val NME (ION), %")
    ax.set_title(title or "pruning: NME vs latency")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


# -- the job -------------------------------------------------------------------------------
def default_export_name(alpha: float) -> str:
    return f"student-{round(1.0 - alpha, 4):g}x"


def _check_prune_cfg(cfg: RunConfig) -> None:
    p = cfg.prune
    if not 0.0 <= p.alpha < 1.0:
        raise TrainingError(f"prune.alpha must be in [0, 1), got {p.alpha}")
    if p.importance not in IMPORTANCES:
        raise TrainingError(f"prune.importance must be one of {IMPORTANCES}, got {p.importance!r}")
    if p.layers_per_step < 1 or p.finetune_steps < 0 or p.final_epochs < 0 or p.calib_images < 1:
        raise TrainingError("prune: layers_per_step >= 1, finetune_steps >= 0, final_epochs >= 0, calib_images >= 1")


def run_prune(cfg: RunConfig, run_dir: Path, resume: bool = False, cancel: CancelFlag | None = None,
              events: EventStream | None = None, export: bool = True) -> dict:
    """Prune ``prune.student`` layer by layer with fine-tuning; see the module docstring."""
    from training.jobs.checkpoints import model_from_checkpoint, read_checkpoint

    single_process_only("prune")
    _check_prune_cfg(cfg)
    p = cfg.prune
    t0 = time.time()
    device = pick_device(cfg.train.device)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    torch.manual_seed(cfg.train.seed)
    ckpt = run_dir / "checkpoints" / "last.pt"
    st: dict[str, Any] = {}
    if resume:
        if not ckpt.is_file():
            raise TrainingError(f"{run_dir}: nothing to resume (no checkpoints/last.pt)")
        st = read_checkpoint(ckpt)
        model = st["model_object"]
        model.load_state_dict(st["model_state"])
        state = st["extra"]
        cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, **st["model_config"]))
        student_aux = None
        folded_bn = []
    else:
        if not p.student:
            raise TrainingError("prune.student is empty: set it to the (distilled) student's checkpoint (.pt) "
                                "or shipped .onnx")
        model, scfg, sst = model_from_checkpoint(p.student)
        if scfg.model.num_points != cfg.model.num_points:
            raise TrainingError(f"{p.student} predicts {scfg.model.num_points} points, the config says "
                                f"{cfg.model.num_points}")
        cfg = dataclasses.replace(cfg, model=scfg.model)  # the student's own architecture is authoritative
        student_aux = sst.get("aux_state")
        folded_bn = sst.get("folded_bn") or []  # a shipped .onnx student: BatchNorms to recalibrate
        state = {"format": "kpdesk-prune/1", "plan": [], "steps": [], "done": 0, "rows": [], "phase": "prune",
                 "student": p.student}
    prepare_run_dir(run_dir, cfg, resume)
    events = events or EventStream(run_dir)
    cancel = cancel or CancelFlag()
    model.to(device).train()
    for q in model.parameters():
        q.requires_grad_(True)
    s_in = cfg.model.input_size

    train, val, schema = load_data(cfg)
    tr_ds, va_ds = make_datasets(cfg, train, val, schema)
    teacher = distiller = None
    if cfg.distill.teacher:
        teacher = FrozenTeacher(cfg.distill.teacher, device, cfg.distill.teacher_amp, cfg.train.channels_last,
                                flip=cfg.distill.teacher_flip, label_offset=cfg.distill.teacher_label_offset)
        check_geometry(cfg, teacher)
        if resume:
            distiller = FeatureDistiller(model.backbone.out_channels, teacher.feat_channels, cfg.distill.proj_dim)
            distiller.load_state_dict(st["aux_state"])
        else:
            distiller = build_distiller(cfg, model, teacher, unaugmented(cfg, train[:128], schema))
            if student_aux is not None:
                try:  # keep the distilled student's projection (same teacher, same dims)
                    distiller.load_state_dict(student_aux)
                    events.emit("log", message="distillation projections taken from the student checkpoint")
                except RuntimeError:
                    pass
        distiller.to(device)
    rng = np.random.default_rng((cfg.train.seed, 11))
    calib_idx = rng.permutation(len(train))[: p.calib_images]
    calib_ds = unaugmented(cfg, [train[i] for i in calib_idx], schema)
    calib = torch.stack([calib_ds[i]["image"] for i in range(len(calib_ds))]).to(device)
    if folded_bn:
        from training.jobs.onnx_import import recalibrate_folded_bn

        k = recalibrate_folded_bn(model, folded_bn, calib)
        events.emit("log", message=f"{k} BatchNorm layers folded in {p.student} recalibrated on {len(calib)} crops")
    importance = make_importance(p.importance, model, calib)
    loss_fn = make_distill_loss(cfg, teacher, distiller)
    proj = distiller.student_proj if distiller is not None else None

    def snapshot() -> dict:
        return json.loads(json.dumps(state))

    def new_trainer(tcfg: RunConfig, tag: str) -> Trainer:
        return Trainer(tcfg, model, run_dir, events, tr_ds, va_ds, loss_fn=loss_fn, aux=distiller, cancel=cancel,
                       device=device, checkpoint_extra=snapshot, save_whole_model=True, tag=tag)

    def log_row(row: dict) -> None:
        state["rows"].append(row)
        write_csv(state["rows"], run_dir / "prune_steps.csv")
        events.emit("step", **row, steps=len(state["steps"]))

    keep = 1.0 - p.alpha
    if not resume:
        dg = build_graph(model, s_in, proj)
        extra_ign = [proj] if proj is not None else []
        plan = plan_layers(model, dg, s_in, p.ignore, extra_ign)
        state["plan"] = [asdict(ly) for ly in plan]
        state["alphas"] = layer_alphas(plan, p.alpha, p.alpha_by_prefix)
        state["steps"] = [[ly.root for ly in plan[i:i + p.layers_per_step]]
                          for i in range(0, len(plan), p.layers_per_step)]
        own = {r: a for r, a in state["alphas"].items() if a != p.alpha}
        events.emit("log", message=f"{len(plan)} prunable layers in {len(state['steps'])} steps, "
                                   f"alpha {p.alpha} (keep {keep:.0%}), importance {p.importance}"
                                   + (f"; own alpha for {len(own)}: {own}" if own else ""))
        m0 = measure(model, s_in, p.latency_runs)
        v0 = val_record(evaluate(model, va_ds, device, cfg.train.decode_eval, cfg.model.heatmap_size, cfg.train.sigma),
                        cfg.train.select)
        log_row({"step": 0, "layers": [], "channels": [], **m0, **v0, "score_time_s": 0.0, "score_cpu_s": 0.0,
                 "prune_time_s": 0.0, "finetune_steps": 0, "finetune_time_s": 0.0})

    ft_cfg = dataclasses.replace(cfg, train=dataclasses.replace(
        cfg.train, epochs=1, max_steps_per_epoch=p.finetune_steps, lr_steps=()))

    def finish_step(trainer: Trainer, info: dict) -> None:
        t1 = time.time()
        ran = trainer.epoch_steps(0) if p.finetune_steps > 0 else 0  # also when a resume finds it done
        if ran < p.finetune_steps and not state.get("cap_logged"):
            state["cap_logged"] = True
            events.emit("log", message=f"prune.finetune_steps {p.finetune_steps}: one pass over the "
                                       f"training set is {ran} steps, so each prune step fine-tunes {ran}")
        if trainer.epoch < 1:
            if p.finetune_steps > 0:
                trainer.fit(1)
            else:  # no fine-tuning: just validate and checkpoint
                val = trainer.validate()
                mode = min(val, key=lambda k: val[k][cfg.train.select])
                trainer.best = {"score": val[mode][cfg.train.select], "epoch": 1, "decode": mode, "metrics": val}
                trainer.epoch = 1
                trainer.save("last.pt")
                trainer.save("best.pt")
        row = {**info, **measure(model, s_in, p.latency_runs), **val_record(trainer.best["metrics"], cfg.train.select),
               "finetune_steps": ran, "finetune_time_s": time.time() - t1}
        log_row(row)

    trainer: Trainer | None = None
    n_steps = len(state["steps"])
    if resume and state["phase"] == "prune" and state["done"] > len(state["rows"]) - 1:
        trainer = new_trainer(ft_cfg, f"prune-step-{state['done']}")
        trainer.resume(ckpt)
        finish_step(trainer, state["pending"])
    while state["phase"] == "prune" and state["done"] < n_steps:
        if cancel.is_set():
            events.emit("cancelled", epoch=0, step=state["done"], checkpoint=str(ckpt))
            raise Cancelled()
        k = state["done"]
        dg = build_graph(model, s_in, proj)
        named = dict(model.named_modules())
        layers, chans, t_score, c_score, t_prune = [], [], 0.0, 0.0, 0.0
        for root in state["steps"][k]:
            r = prune_layer(dg, named[root], importance, state.get("alphas", {}).get(root, p.alpha),
                            p.channel_multiple)
            layers.append(root)
            chans.append(f"{r['before']}->{r['after']}")
            t_score += r["score_time_s"]
            c_score += r["score_cpu_s"]
            t_prune += r["prune_time_s"]
        state["done"] = k + 1
        state["pending"] = {"step": k + 1, "layers": layers, "channels": chans, "score_time_s": t_score,
                            "score_cpu_s": c_score, "prune_time_s": t_prune}
        trainer = new_trainer(ft_cfg, f"prune-step-{k + 1}")
        finish_step(trainer, state["pending"])

    if state["phase"] == "prune":
        state["phase"] = "final"
        resume_final = False
    else:
        resume_final = resume
    if p.final_epochs > 0 or trainer is None:
        fcfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, epochs=max(p.final_epochs, 1)))
        trainer = new_trainer(fcfg, "prune-final")
        if resume_final:
            trainer.resume(ckpt)
        if p.final_epochs > 0:
            trainer.fit(p.final_epochs)
        else:
            trainer.best = read_checkpoint(run_dir / "checkpoints" / "best.pt").get("best", {})
    best_model = read_checkpoint(run_dir / "checkpoints" / "best.pt")["model_object"]
    fin = {"step": "final", "layers": [], "channels": [], **measure(best_model, s_in, p.latency_runs),
           **val_record(trainer.best["metrics"], cfg.train.select), "score_time_s": 0.0, "score_cpu_s": 0.0,
           "prune_time_s": 0.0, "finetune_steps": 0, "finetune_time_s": 0.0}
    if state["rows"][-1].get("step") != "final":
        log_row(fin)
    plot_nme_latency(state["rows"], run_dir / "prune_nme_latency.png",
                     f"{p.importance} pruning, alpha {p.alpha} (keep {keep:.0%})")
    wall = time.time() - t0
    dense = state["rows"][0]
    result = {"final": {k: fin[k] for k in ("params", "macs", "onnx_bytes", "latency_ms", "nme_ion", "decode")},
              "dense": {k: dense[k] for k in ("params", "macs", "onnx_bytes", "latency_ms", "nme_ion", "decode")},
              "steps": n_steps, "csv": str(run_dir / "prune_steps.csv"), "wall_time_s": wall,
              "score_time_s_per_layer": _per_layer(state["rows"], "score_time_s"),
              "score_cpu_s_per_layer": _per_layer(state["rows"], "score_cpu_s")}
    atomic_write_text(run_dir / "prune_summary.json", json.dumps(result, indent=2) + "\n")
    if export:
        name = cfg.train.export_name or default_export_name(p.alpha)
        out = export_best(trainer, run_dir, name, {"pruned": {"alpha": p.alpha, "importance": p.importance,
                                                              **({"alpha_by_prefix": dict(p.alpha_by_prefix)}
                                                                 if p.alpha_by_prefix else {}),
                                                              "from": Path(state["student"]).name,
                                                              "dense_params": dense["params"]},
                                                   "wall_time_s": round(wall, 1)}, model=best_model)
        result["onnx"] = str(out)
    events.emit("done", **result)
    return result


def _per_layer(rows: list[dict], key: str) -> float:
    n = sum(len(r["layers"]) for r in rows)
    return sum(r.get(key, 0.0) for r in rows if r["layers"]) / max(n, 1)


def cmd_prune(args, events: EventStream | None, cancel: CancelFlag) -> dict:
    cfg = load_config(args.config, args.set)
    return run_prune(cfg, Path(args.run_dir).expanduser().resolve(), resume=args.resume, cancel=cancel,
                     export=not args.no_export)


COMMANDS = {
    "prune": ("Prune the student layer by layer (reconstruction error or L1) with distillation fine-tuning.",
              add_job_args, cmd_prune),
}
