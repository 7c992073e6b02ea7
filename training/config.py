"""Run configuration: frozen dataclasses, read from and written to JSON.

A config file has the sections ``model``, ``data``, ``train``, ``augment`` and, for the
jobs that need them, ``distill`` and ``prune``. ``{data}`` in a path is replaced by the
data folder (env ``KPDESK_DATA``, else ``<repo>/../shared/data``); a relative path is
taken relative to the config file, never to the current directory.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from training.augment import AugmentConfig
from training.datasets import DataConfig
from training.networks import ModelConfig

REPO_ROOT = Path(__file__).resolve().parent.parent


class ConfigError(ValueError):
    """A config file or override is invalid. The message names the key."""


def default_data_dir() -> Path:
    env = os.environ.get("KPDESK_DATA")
    return Path(env).expanduser() if env else (REPO_ROOT.parent / "shared" / "data")


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
    grad_clip: float = 5.0
    export_name: str = ""


@dataclass(frozen=True)
class DistillConfig:
    """Feature distillation (METHOD.md section 2)."""

    teacher: str = ""  # checkpoint (.pt) of the trained teacher
    lambda_dp: float = 1.0
    proj_dim: int = 256
    teacher_amp: bool = True  # frozen teacher forward in bfloat16 (CPU) / float16 (CUDA) autocast


@dataclass(frozen=True)
class PruneConfig:
    """Layer-wise structured pruning (METHOD.md section 3)."""

    student: str = ""  # checkpoint of the (distilled) student to prune
    alpha: float = 0.75
    importance: str = "reconstruction"  # or "l1"
    calib_images: int = 64
    finetune_steps: int = 100
    final_epochs: int = 3
    layers_per_step: int = 1
    ignore: tuple[str, ...] = ()  # module-name prefixes never pruned (heads' outputs are always kept)
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
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")


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
    p = Path(path)
    try:
        d = json.loads(p.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{p}: config file not found") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{p}:{exc.lineno}: invalid JSON: {exc.msg}") from None
    return config_from_dict(apply_overrides(d, overrides or []), base=p.resolve().parent)
