"""Moves an exported model into the models folder (Qt-free): the GUI's entry to
``kpdesk.inference.install`` (verify, stamp, rename; never overwrite silently)."""

from __future__ import annotations

from pathlib import Path

from kpdesk.inference.install import Installed, ModelInstallError
from kpdesk.inference.install import install_model as _install

__all__ = ["Installed", "ModelInstallError", "install_model", "install_model_report"]


def install_model(onnx_path: str | Path, manifest_path: str | Path | None, models_dir: str | Path,
                  replace: bool = False) -> Path:
    """Install ``NAME.onnx`` (+ ``NAME.json``) into ``models_dir``; returns the installed graph
    path (``NAME-2.onnx``... when NAME is taken and ``replace`` is off)."""
    return _install(onnx_path, manifest_path, models_dir, replace=replace).path


def install_model_report(onnx_path: str | Path, manifest_path: str | Path | None, models_dir: str | Path,
                         replace: bool = False) -> Installed:
    """Like ``install_model``, with the details (new name, backup) for a message."""
    return _install(onnx_path, manifest_path, models_dir, replace=replace)
