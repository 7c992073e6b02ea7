"""Moves an exported model into the models folder atomically (Qt-free).

Write, verify, rename: both files are copied into a hidden staging folder on the same
file system, the copy is loaded with onnxruntime to prove it works, and only then are
they renamed into place (manifest first, graph last, since the catalog keys on
``*.onnx``), so the app never sees a half-written model.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)


class ModelInstallError(RuntimeError):
    """The exported model is missing, does not load, or cannot be moved into place."""


def install_model(onnx_path: str | Path, manifest_path: str | Path | None, models_dir: str | Path) -> Path:
    """Install ``NAME.onnx`` (+ ``NAME.json``) into ``models_dir``; returns the installed graph path."""
    from kpdesk.inference.model import LandmarkModel

    src = Path(onnx_path)
    man = Path(manifest_path) if manifest_path else src.with_suffix(".json")
    dest_dir = Path(models_dir)
    if not src.is_file():
        raise ModelInstallError(f"{src}: exported model not found")
    if not man.is_file():
        raise ModelInstallError(f"{man}: manifest of the exported model not found")
    dest_dir.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".incoming-", dir=dest_dir))
    try:
        staged_onnx = stage / src.name
        staged_man = stage / (src.stem + ".json")
        shutil.copyfile(src, staged_onnx)
        shutil.copyfile(man, staged_man)
        try:
            LandmarkModel.load(staged_onnx, threads=1)
        except Exception as exc:  # noqa: BLE001 - any failure means "do not install"
            raise ModelInstallError(f"{src.name}: exported model does not load: {exc}") from exc
        final_onnx = dest_dir / src.name
        os.replace(staged_man, dest_dir / staged_man.name)
        os.replace(staged_onnx, final_onnx)
        log.info("installed model %s", final_onnx)
        return final_onnx
    except OSError as exc:
        raise ModelInstallError(f"cannot install {src.name} into {dest_dir}: {exc}") from exc
    finally:
        shutil.rmtree(stage, ignore_errors=True)
