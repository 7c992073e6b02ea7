"""Putting a model into the models folder without ever losing one (Qt-free, no torch).

Write, verify, rename: the graph and its manifest are copied into a hidden staging
folder on the same file system, the manifest is named and stamped with the graph's
sha256, the pair is loaded and checked like the app does, and only then renamed into
place (manifest first, graph last, since the catalog keys on ``*.onnx``). A failure at
any step leaves the folder as it was: the staging folder is removed.

A model of the same name is never overwritten silently: the new one gets a free name
(``NAME-2``, ``NAME-3``, ...) unless ``replace`` is asked for, and then the old pair is
first moved into ``.backup/`` (hidden, so the catalog does not list it).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from kpdesk.inference.model import LandmarkModel, graph_sha256, manifest_path_for
from kpdesk.vision.manifest import Manifest, ManifestError

log = logging.getLogger(__name__)

BACKUP_DIR = ".backup"


class ModelInstallError(RuntimeError):
    """The model is missing, does not load, or cannot be moved into place."""


@dataclass(frozen=True)
class Installed:
    """Where a model went.

    Attributes:
        path: the installed ``NAME.onnx``.
        name: its name (differs from the requested one when that was taken).
        requested: the name asked for.
        backup: where the replaced model's graph was moved, when one was replaced.
        unchanged: the very same graph was already installed under that name.
    """

    path: Path
    name: str
    requested: str
    backup: Path | None = None
    unchanged: bool = False

    @property
    def renamed(self) -> bool:
        return self.name != self.requested

    def describe(self) -> str:
        """One line for the user."""
        if self.unchanged:
            return f"model {self.name} is already installed (same graph)"
        if self.renamed:
            return (f"installed as {self.name}: a model named {self.requested} already exists "
                    f"(ask to replace it to overwrite; the old one is then kept in {BACKUP_DIR}/)")
        if self.backup is not None:
            return f"installed {self.name}; the model it replaced is kept as {self.backup}"
        return f"installed {self.name}"


def free_name(models_dir: Path, name: str) -> str:
    """``name`` if no ``NAME.onnx`` / ``NAME.json`` is in the folder, else the first free
    ``NAME-2``, ``NAME-3``, ..."""
    def taken(n: str) -> bool:
        return (models_dir / f"{n}.onnx").exists() or (models_dir / f"{n}.json").exists()

    if not taken(name):
        return name
    i = 2
    while taken(f"{name}-{i}"):
        i += 1
    return f"{name}-{i}"


def backup_model(models_dir: Path, name: str) -> Path | None:
    """Move ``NAME.onnx`` + ``NAME.json`` into ``models_dir/.backup/NAME-<time>.*``; returns
    the backed-up graph's path (None when there was nothing to move)."""
    onnx, man = models_dir / f"{name}.onnx", models_dir / f"{name}.json"
    if not onnx.exists() and not man.exists():
        return None
    bdir = models_dir / BACKUP_DIR
    bdir.mkdir(exist_ok=True)
    stem = f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    i = 1
    while (bdir / f"{stem}.onnx").exists() or (bdir / f"{stem}.json").exists():
        i += 1
        stem = f"{name}-{time.strftime('%Y%m%d-%H%M%S')}-{i}"
    # Graph first: from here the catalog no longer lists the old model.
    if onnx.exists():
        os.replace(onnx, bdir / f"{stem}.onnx")
    if man.exists():
        os.replace(man, bdir / f"{stem}.json")
    log.info("backed up %s to %s", name, bdir / stem)
    return bdir / f"{stem}.onnx"


def install_model(onnx_path: str | Path, manifest_path: str | Path | None, models_dir: str | Path,
                  name: str | None = None, replace: bool = False, manifest: Manifest | None = None) -> Installed:
    """Install a graph and its manifest into ``models_dir`` as ``name`` (default: the
    graph's file stem).

    Args:
        onnx_path: the graph to install.
        manifest_path: its manifest (default: beside the graph); ignored with ``manifest``.
        models_dir: the models folder (created if missing).
        name: the wanted name; when taken, the first free ``NAME-N`` (or see ``replace``).
        replace: replace a model of that name, keeping it in ``models_dir/.backup/``.
        manifest: the manifest to write (it is renamed and stamped; e.g. with a card
            filled in by ``training ship``).

    Raises:
        ModelInstallError: one line naming the file; the models folder is unchanged.
    """
    src = Path(onnx_path)
    dest_dir = Path(models_dir)
    if not src.is_file():
        raise ModelInstallError(f"{src}: model file not found")
    if manifest is None:
        man_path = Path(manifest_path) if manifest_path else manifest_path_for(src)
        try:
            manifest = Manifest.load(man_path)
        except ManifestError as exc:
            hint = (f" (a landmark model from elsewhere, with no manifest: `kpdesk models import {src}` writes "
                    f"one)") if not man_path.exists() else ""
            raise ModelInstallError(f"{exc}{hint}") from None
    want = name or src.stem
    if not want or "/" in want or want.startswith(".") or want != want.strip():
        raise ModelInstallError(f"{want!r} is not a usable model name")
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=".incoming-", dir=dest_dir))
    except OSError as exc:
        raise ModelInstallError(f"cannot install into {dest_dir}: {exc.strerror or exc}") from None
    try:
        staged = stage / "model.onnx"
        shutil.copyfile(src, staged)
        try:  # the checks the app makes (shapes, outputs, one real run), the checksum aside
            LandmarkModel.load(staged, threads=1, optimize=False, manifest=manifest.stamped(staged))
        except Exception as exc:  # noqa: BLE001 - ModelLoadError, or anything onnxruntime raises
            raise ModelInstallError(f"{src}: does not load: {exc}") from None
        digest = graph_sha256(staged)
        if manifest.onnx_sha256 and manifest.onnx_sha256 != digest:
            raise ModelInstallError(f"{src}: the graph does not match its manifest's sha256 "
                                    f"(a corrupt copy, or the manifest of another graph)")
        existing = dest_dir / f"{want}.onnx"
        if existing.is_file() and graph_sha256(existing) == digest:
            return Installed(existing, want, want, unchanged=True)
        final = want
        backup = None
        if (existing.exists() or existing.with_suffix(".json").exists()) and not replace:
            final = free_name(dest_dir, want)
        stamped = Manifest(**{**manifest.__dict__, "name": final}).stamped(staged)
        stamped.save(stage / "model.json")
        if replace:
            backup = backup_model(dest_dir, final)
        dst = dest_dir / f"{final}.onnx"
        os.replace(stage / "model.json", dst.with_suffix(".json"))
        os.replace(staged, dst)
        log.info("installed model %s", dst)
        return Installed(dst, final, want, backup=backup)
    except OSError as exc:
        raise ModelInstallError(f"cannot install {src.name} into {dest_dir}: {exc.strerror or exc}") from None
    finally:
        shutil.rmtree(stage, ignore_errors=True)
