"""Rebuild a model from a checkpoint alone (every checkpoint carries its config), or from a
shipped ``NAME.onnx`` + ``NAME.json`` (``training.jobs.onnx_import``): wherever a checkpoint path
is accepted (``distill.teacher``, ``prune.student``, ``train.init_checkpoint``, ``export``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from training.config import RunConfig, config_from_dict
from training.jobs.engine import TrainingError, load_file
from training.nets.networks import LandmarkNet, ModelConfig


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise TrainingError(f"{p}: checkpoint not found")
    if p.suffix.lower() == ".onnx":
        from training.jobs.onnx_import import checkpoint_from_onnx

        return checkpoint_from_onnx(p)
    try:
        st = load_file(p)
    except (OSError, RuntimeError, EOFError, ValueError) as exc:
        raise TrainingError(f"{p}: cannot load checkpoint: {exc}") from None
    if not isinstance(st, dict) or st.get("format") != "kpdesk-ckpt/1":
        raise TrainingError(f"{p}: not a kpdesk checkpoint")
    return st


def model_from_checkpoint(path: str | Path) -> tuple[nn.Module, RunConfig, dict[str, Any]]:
    """(model in eval mode, its run config, the raw checkpoint). Pruned models are stored
    whole (``model_object``) because their layers no longer match the dense class."""
    st = read_checkpoint(path)
    cfg = config_from_dict(st["run_config"])
    if st.get("model_object") is not None:
        model = st["model_object"]
        model.load_state_dict(st["model_state"])
    else:
        model = LandmarkNet(ModelConfig(**st["model_config"]))
        model.load_state_dict(st["model_state"])
    return model.eval(), cfg, st
