"""Run configuration: frozen dataclasses, read from and written to JSON.

A config file has the sections ``model``, ``data``, ``train``, ``augment`` and, for the
jobs that need them, ``distill`` and ``prune``. ``{data}`` in a path is replaced by the
data folder (env ``KPDESK_DATA``, else ``<repo>/../shared/data``); a relative path is
taken relative to the config file, never to the current directory.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import re
import sys
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from kpdesk.vision.files import atomic_write_text
from training.data.augment import AugmentConfig
from training.data.datasets import DataConfig
from training.nets.networks import ModelConfig
from training.paths import REPO_ROOT, default_data_dir

log = logging.getLogger(__name__)


class ConfigError(ValueError):
    """A config file or override is invalid. The message names the key."""


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings.

    ``lr_steps``: fractions of ``epochs`` at which the learning rate drops 10x (the
    paper: 0.01 dropped every 20 of 60 epochs = (1/3, 2/3)).
    ``max_steps_per_epoch`` / ``max_train_samples``: budget limits for quick runs (0 = all).
    ``decode_eval``: decode modes evaluated on val; ``select``: metric for best.pt.
    """

    epochs: int = 30
    batch_size: int = 32
    optimizer: str = "adamw"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 1e-4
    lr_steps: tuple[float, ...] = (0.67, 0.89)
    lambda_rh: float = 1.0
    sigma: float = 1.0
    seed: int = 0
    device: str = "auto"
    amp: bool = True  # float16 autocast on CUDA
    # bfloat16 autocast of the backbone on CPU: true, false, or "auto" = time a few steps of
    # both when the run starts and keep the faster (it has been 1.8x and 0.7x on the same kind of machine)
    cpu_bf16: bool | str = False
    channels_last: bool = True
    threads: int = 0
    num_workers: int = 0
    max_steps_per_epoch: int = 0
    max_train_samples: int = 0
    max_val_samples: int = 0
    pretrained: str = "imagenet"
    init_checkpoint: str = ""
    decode_eval: tuple[str, ...] = ("regression", "heatmap", "fusion")
    select: str = "nme_ion"
    # best.pt is chosen on these val sources only (face-count weighted), e.g. ["afw", "helen"]:
    # the human-labelled part when the rest follows another labelling convention. Empty = all.
    select_sources: tuple[str, ...] = ()
    grad_clip: float = 5.0
    # exponential moving average of the weights (0: off): validation, best.pt and last.pt hold the average,
    # training goes on with the raw weights (kept in the checkpoint for resuming). e.g. 0.99 ~ the last 100 steps
    ema_decay: float = 0.0
    # wall-clock budget of the run in seconds (0: none). After each epoch the run measures what one epoch
    # (training + validation) takes and keeps as many of ``epochs`` as fit; the lr steps follow that count,
    # so the schedule completes inside the budget instead of being cut off mid-way.
    time_budget_s: float = 0.0
    export_name: str = ""


@dataclass(frozen=True)
class DistillConfig:
    """Feature distillation (METHOD.md section 2)."""

    teacher: str = ""  # checkpoint (.pt) of the trained teacher
    lambda_dp: float = 1.0
    proj_dim: int = 256
    teacher_amp: bool = True  # frozen teacher forward in bfloat16 (CPU) / float16 (CUDA) autocast
    pool: str = "global"  # "global": the paper's pooled features; "spatial": per cell of the student's grid
    lambda_out: float = 0.0  # output distillation (not in the paper): the teacher's labels of every crop, weighted
    # The teacher averaged over the crop and its mirror image (training.nets.flip), its average moved by
    # teacher_label_offset crop pixels of the teacher (``python -m training label-offset``: dx_crop, dy_crop).
    teacher_flip: bool = False
    teacher_label_offset: tuple[float, ...] = (0.0, 0.0)


@dataclass(frozen=True)
class PruneConfig:
    """Layer-wise structured pruning (METHOD.md section 3)."""

    student: str = ""  # checkpoint of the (distilled) student to prune
    alpha: float = 0.75
    # per-layer pruning shares: module-name prefix -> alpha for the layers whose root it names (the longest
    # matching prefix wins; other layers take ``alpha``), e.g. {"backbone.features.18": 0.5}
    alpha_by_prefix: dict[str, float] = field(default_factory=dict)
    importance: str = "reconstruction"  # or "l1"
    calib_images: int = 64
    finetune_steps: int = 100  # after each prune step; capped at one pass over the training set (one epoch)
    final_epochs: int = 3
    layers_per_step: int = 1
    ignore: tuple[str, ...] = ()  # module-name prefixes never pruned (heads' outputs are always kept)
    channel_multiple: int = 1  # channels kept rounded to a multiple of this (16: int8 kernels' fast path)
    latency_runs: int = 200  # onnxruntime runs (1 thread, batch 1) per latency measurement


@dataclass(frozen=True)
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    prune: PruneConfig = field(default_factory=PruneConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, path: Path) -> None:
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")


def _build(cls: type, d: dict[str, Any], where: str) -> Any:
    if not isinstance(d, dict):
        raise ConfigError(f"{where}: expected an object, got {type(d).__name__}")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(d) - set(known))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known: {sorted(known)}")
    kw = {}
    for k, v in d.items():
        default = getattr(cls(), k) if not dataclasses.is_dataclass(getattr(cls(), k)) else None
        if v == "auto" and k in AUTO_KEYS:
            pass
        elif isinstance(default, tuple) and isinstance(v, list):
            v = tuple(v)
        elif isinstance(default, bool) and not isinstance(v, bool):
            raise ConfigError(f"{where}.{k}: expected true/false, got {v!r}")
        elif isinstance(default, int) and not isinstance(default, bool) and not isinstance(v, int):
            raise ConfigError(f"{where}.{k}: expected an integer, got {v!r}")
        elif isinstance(default, float) and not isinstance(v, (int, float)):
            raise ConfigError(f"{where}.{k}: expected a number, got {v!r}")
        kw[k] = v
    return cls(**kw)


AUTO_KEYS = ("cpu_bf16",)  # booleans that may also be "auto"

SECTIONS = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig, "augment": AugmentConfig,
            "distill": DistillConfig, "prune": PruneConfig}


def _resolve_path(p: str, base: Path) -> str:
    if not p:
        return p
    p = p.replace("{data}", str(default_data_dir())).replace("{repo}", str(REPO_ROOT))
    q = Path(p).expanduser()
    return str(q if q.is_absolute() else (base / q).resolve())


def config_from_dict(d: dict[str, Any], base: Path | None = None) -> RunConfig:
    unknown = sorted(set(d) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"unknown section(s) {unknown}; known: {sorted(SECTIONS)}")
    parts = {k: _build(cls, d.get(k, {}), k) for k, cls in SECTIONS.items()}
    cfg = RunConfig(**parts)
    if base is not None:
        cfg = dataclasses.replace(
            cfg,
            data=dataclasses.replace(cfg.data, root=_resolve_path(cfg.data.root, base),
                                     extra_train=tuple(_resolve_path(r, base) for r in cfg.data.extra_train)),
            train=dataclasses.replace(
                cfg.train,
                init_checkpoint=_resolve_path(cfg.train.init_checkpoint, base),
                pretrained=cfg.train.pretrained if cfg.train.pretrained in ("", "imagenet", "none")
                else _resolve_path(cfg.train.pretrained, base),
            ),
            distill=dataclasses.replace(cfg.distill, teacher=_resolve_path(cfg.distill.teacher, base)),
            prune=dataclasses.replace(cfg.prune, student=_resolve_path(cfg.prune.student, base)),
        )
    return cfg


def apply_overrides(d: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """``section.key=value`` overrides (value parsed as JSON, else a string)."""
    out = json.loads(json.dumps(d))
    for ov in overrides:
        if "=" not in ov or "." not in ov.split("=", 1)[0]:
            raise ConfigError(f"override {ov!r}: expected section.key=value")
        key, val = ov.split("=", 1)
        sec, name = key.split(".", 1)
        try:
            v = json.loads(val)
        except json.JSONDecodeError:
            v = val
        out.setdefault(sec, {})[name] = v
    return out


def load_config(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """Read, override, resolve paths and validate (``validate_config``) a run config."""
    p = Path(path)
    try:
        d = json.loads(p.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{p}: config file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{p}: is a folder, not a config file") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: not a JSON config file (binary content)") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{p}:{exc.lineno}: invalid JSON: {exc.msg}") from None
    if not isinstance(d, dict):
        raise ConfigError(f"{p}: expected a JSON object with sections {sorted(SECTIONS)}")
    return validate_config(config_from_dict(apply_overrides(d, overrides or []), base=p.resolve().parent))


# ---- validation: every value checked before any work starts -------------------------------
KNOWN_ARCHS = ("mobilenetv2", "resnet50", "mobilenetv2-tiny", "resnet18-bottleneck-tiny")
DATA_FORMATS = ("face68", "face5", "300w", "celeba", "wflw", "csv")
DECODES = ("regression", "heatmap", "fusion")


def max_threads() -> int:
    """CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def checkpoint_problem(path: str | Path) -> str | None:
    """Why ``path`` cannot be a checkpoint (missing, empty, a folder, text), or None. Only
    the first bytes are read: ``torch.save`` writes a zip archive (legacy: a pickle)."""
    p = Path(path)
    if p.is_dir():
        return "is a folder, not a checkpoint"
    if not p.is_file():
        return "checkpoint not found"
    if p.suffix.lower() == ".onnx":
        return None  # a shipped model; training.jobs.onnx_import checks it
    try:
        with open(p, "rb") as f:
            head = f.read(4)
    except OSError as exc:
        return f"cannot read: {exc.strerror or exc}"
    if not head:
        return "empty file, not a checkpoint"
    if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80":
        return None
    kind = "a text file" if all(32 <= b < 127 or b in (9, 10, 13) for b in head) else "unknown content"
    return f"not a PyTorch checkpoint ({kind})"


def checkpoint_files(cfg: RunConfig) -> list[tuple[str, str]]:
    """(key, path) of the checkpoints the config names."""
    return [(k, v) for k, v in (("train.init_checkpoint", cfg.train.init_checkpoint),
                                ("distill.teacher", cfg.distill.teacher), ("prune.student", cfg.prune.student)) if v]


def validate_config(cfg: RunConfig) -> RunConfig:
    """Check every value; raise ConfigError naming the first bad key. ``train.threads`` above
    the CPU count is capped (with a warning). Returns the (possibly capped) config.

    Files are not looked at here (a chain of runs names checkpoints that do not exist
    yet); ``checkpoint_problem`` checks one that should."""
    def need(ok: bool, key: str, rule: str) -> None:
        if not ok:
            section, name = key.split(".")
            value = getattr(getattr(cfg, section), name)
            raise ConfigError(f"{key}: {rule}, got {value!r}")

    def num(v: object) -> bool:
        return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)

    def pair(v: object, bound: float) -> bool:  # [dx, dy]: two finite numbers, each below bound in size
        return isinstance(v, list | tuple) and len(v) == 2 and all(num(x) and abs(x) < bound for x in v)

    m, d, t, a, dl, pr = cfg.model, cfg.data, cfg.train, cfg.augment, cfg.distill, cfg.prune
    need(m.arch in KNOWN_ARCHS, "model.arch", f"must be one of {', '.join(KNOWN_ARCHS)}")
    need(m.num_points >= 1, "model.num_points", "must be >= 1")
    need(m.input_size >= 32 and m.input_size % 32 == 0, "model.input_size", "must be a multiple of 32, >= 32")
    need(0 <= m.heatmap_size <= m.input_size, "model.heatmap_size", "must be 0 (no heatmap head) .. input_size")
    need(m.hm_source in ("last", "fpn"), "model.hm_source", "must be 'last' or 'fpn'")
    need(m.head_channels >= 1, "model.head_channels", "must be >= 1")
    need(m.reg_hidden >= 1, "model.reg_hidden", "must be >= 1")

    need(d.format in DATA_FORMATS, "data.format", f"must be one of {', '.join(DATA_FORMATS)}")
    need(d.on_error in ("skip", "fatal"), "data.on_error", "must be 'skip' or 'fatal'")
    need(d.points_base in (0, 1), "data.points_base", "must be 0 or 1")
    need(d.num_points >= 0, "data.num_points", "must be >= 0 (0: from the format)")
    need(num(d.extra_weight) and d.extra_weight >= 0, "data.extra_weight", "must be a number >= 0")
    need(d.extra_max_samples >= 0, "data.extra_max_samples", "must be >= 0")
    need(num(d.extra_share) and 0 <= d.extra_share < 1, "data.extra_share", "must be a fraction in [0, 1)")
    need(d.extra_share == 0 or bool(d.extra_train), "data.extra_share", "needs data.extra_train packs")
    need(d.extra_share == 0 or 1 <= round(d.extra_share * t.batch_size) < t.batch_size, "data.extra_share",
         f"must leave at least one face of each kind in a batch of train.batch_size={t.batch_size}")
    need(pair(dl.teacher_label_offset, 16), "distill.teacher_label_offset",
         "must be [dx, dy] crop pixels, each below 16 in size")
    need(dl.teacher_flip or not any(dl.teacher_label_offset), "distill.teacher_label_offset",
         "moves the flip average: set distill.teacher_flip too")
    need(pair(d.extra_label_shift, 0.1), "data.extra_label_shift",
         "must be [dx, dy], fractions of the landmark box side below 0.1 in size")
    need(isinstance(d.label_offsets, dict)
         and all(isinstance(k, str) and pair(v, 16) for k, v in d.label_offsets.items()),
         "data.label_offsets", "must map source names to [dx, dy] image pixels (each below 16 in size)")

    need(t.epochs >= 1, "train.epochs", "must be >= 1")
    need(t.batch_size >= 2, "train.batch_size", "must be >= 2 (batch normalisation needs 2 samples)")
    need(t.optimizer in ("sgd", "adamw"), "train.optimizer", "must be 'sgd' or 'adamw'")
    need(num(t.lr) and t.lr > 0, "train.lr", "must be a number > 0")
    need(num(t.momentum) and 0 <= t.momentum < 1, "train.momentum", "must be in [0, 1)")
    need(num(t.weight_decay) and t.weight_decay >= 0, "train.weight_decay", "must be a number >= 0")
    need(all(num(v) and 0 < v <= 1 for v in t.lr_steps), "train.lr_steps", "must be fractions of the epochs in (0, 1]")
    need(num(t.lambda_rh) and t.lambda_rh >= 0, "train.lambda_rh", "must be a number >= 0")
    need(num(t.sigma) and t.sigma > 0, "train.sigma", "must be a number > 0")
    need(t.device == "auto" or re.fullmatch(r"cpu|cuda(:\d+)?|mps", t.device) is not None, "train.device",
         "must be auto, cpu, cuda or cuda:N")
    need(t.cpu_bf16 in (True, False, "auto"), "train.cpu_bf16", 'must be true, false or "auto"')
    need(t.threads >= 0, "train.threads", "must be >= 0 (0: the library default)")
    need(t.num_workers >= 0, "train.num_workers", "must be >= 0")
    for key in ("max_steps_per_epoch", "max_train_samples", "max_val_samples"):
        need(getattr(t, key) >= 0, f"train.{key}", "must be >= 0 (0: no limit)")
    need(len(t.decode_eval) > 0 and all(v in DECODES for v in t.decode_eval), "train.decode_eval",
         f"must list decode modes from {', '.join(DECODES)}")
    need(re.fullmatch(r"nme_\w+|fr\d+_\w+", str(t.select)) is not None, "train.select",
         "must be a lower-is-better metric such as nme_ion, nme_box or fr10_ion")
    need(num(t.grad_clip) and t.grad_clip >= 0, "train.grad_clip", "must be a number >= 0 (0: off)")
    need(num(t.ema_decay) and 0 <= t.ema_decay < 1, "train.ema_decay", "must be a number in [0, 1) (0: off)")
    need(num(t.time_budget_s) and t.time_budget_s >= 0, "train.time_budget_s", "must be seconds >= 0 (0: none)")
    need(t.export_name == "" or re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+-]*", t.export_name) is not None,
         "train.export_name", "must be a plain file name (letters, digits, . _ + -)")

    for key in ("scale", "shift", "rotate_deg"):
        need(num(getattr(a, key)) and getattr(a, key) >= 0, f"augment.{key}", "must be a number >= 0")
    need(a.scale < 1, "augment.scale", "must be < 1")
    for key in ("rotate_p", "flip_p", "color_p", "blur_p", "occlusion_p", "gray_p"):
        need(num(getattr(a, key)) and 0 <= getattr(a, key) <= 1, f"augment.{key}", "must be a probability in [0, 1]")

    need(num(dl.lambda_dp) and dl.lambda_dp >= 0, "distill.lambda_dp", "must be a number >= 0")
    need(num(dl.lambda_out) and dl.lambda_out >= 0, "distill.lambda_out", "must be a number >= 0")
    need(dl.proj_dim >= 1, "distill.proj_dim", "must be >= 1")
    need(dl.pool in ("global", "spatial"), "distill.pool", "must be 'global' or 'spatial'")
    need(num(pr.alpha) and 0 < pr.alpha < 1, "prune.alpha", "must be in (0, 1) (the fraction of filters pruned)")
    need(isinstance(pr.alpha_by_prefix, dict)
         and all(isinstance(k, str) and k and num(v) and 0 <= v < 1 for k, v in pr.alpha_by_prefix.items()),
         "prune.alpha_by_prefix", "must map module-name prefixes to pruning shares in [0, 1)")
    need(pr.importance in ("reconstruction", "l1"), "prune.importance", "must be 'reconstruction' or 'l1'")
    need(pr.calib_images >= 1, "prune.calib_images", "must be >= 1")
    need(pr.finetune_steps >= 0, "prune.finetune_steps", "must be >= 0")
    need(pr.final_epochs >= 0, "prune.final_epochs", "must be >= 0")
    need(pr.layers_per_step >= 1, "prune.layers_per_step", "must be >= 1")
    need(type(pr.channel_multiple) is int and pr.channel_multiple >= 1, "prune.channel_multiple",
         "must be an integer >= 1")
    need(pr.latency_runs >= 1, "prune.latency_runs", "must be >= 1")

    limit = max_threads()
    if t.threads > limit:
        log.warning("train.threads=%d is more than this machine's %d CPUs: using %d", t.threads, limit, limit)
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(t, threads=limit))
    return cfg


CONFIG_JOBS = ("train", "distill", "prune")  # jobs whose --config is checked before any work


def check_inputs(args: Any) -> None:
    """Everything checkable before a command's work starts (``args``: its parsed arguments):
    the job's config (every value), files given as checkpoints that are not checkpoints, and
    a thread count far above the machine's (capped, with a warning)."""
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
