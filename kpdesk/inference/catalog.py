"""The model folder: every ``NAME.onnx`` with its ``NAME.json`` manifest."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from kpdesk.inference.model import LandmarkModel, ModelLoadError, manifest_path_for
from kpdesk.vision.manifest import Manifest, ManifestError


@dataclass(frozen=True)
class CatalogEntry:
    """One model file. A broken model is listed with ``error`` set instead of raising."""

    name: str
    onnx_path: Path
    manifest: Manifest | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def default_models_dir() -> Path:
    """``$KPDESK_MODELS``, else the repository's ``models/`` folder."""
    env = os.environ.get("KPDESK_MODELS")
    if env:
        return Path(env).expanduser()
    return Path(__file__).resolve().parents[2] / "models"


def is_model_file(p: Path) -> bool:
    """A ``NAME.onnx`` the catalog lists: not hidden (``.NAME.tmp.onnx`` is a write in
    progress or a leftover of a failed one; backups live in the hidden ``.backup/``)."""
    return p.suffix == ".onnx" and not p.name.startswith(".") and ".tmp." not in p.name and p.is_file()


def model_files(root: Path) -> list[Path]:
    return sorted(p for p in root.glob("*.onnx") if is_model_file(p))


def scan_models(folder: str | Path | None = None, validate: bool = True,
                extra: tuple[str | Path, ...] = ()) -> list[CatalogEntry]:
    """List the models in ``folder`` (default ``default_models_dir()``), sorted by name,
    then the model files ``extra`` (named on the command line, from elsewhere).

    With ``validate`` each graph is opened (without optimisation) and checked against its
    manifest, so a corrupt or inconsistent file shows its error here, not at switch time.
    A missing folder gives an empty list.
    """
    root = Path(folder) if folder is not None else default_models_dir()
    files = model_files(root) if root.is_dir() else []
    seen = {p.resolve() for p in files}
    files += [Path(p) for p in extra if Path(p).resolve() not in seen]
    return [check_model_file(p, validate) for p in files]


def check_model_file(p: Path, validate: bool = True) -> CatalogEntry:
    """One model file as a catalog entry (``error`` set when it cannot be used)."""
    p = Path(p)
    if not p.is_file():
        return CatalogEntry(p.stem, p, None, f"{p}: model file not found")
    try:
        if validate:
            manifest = LandmarkModel.load(p, threads=1, optimize=False).manifest
        else:
            manifest = Manifest.load(p.with_suffix(".json"))
        return CatalogEntry(p.stem, p, manifest)
    except (ModelLoadError, ValueError) as exc:  # ManifestError is a ValueError
        return CatalogEntry(p.stem, p, None, str(exc))


def scan_catalog(folder: str | Path | None = None, validate: bool = True,
                 extra: tuple[str | Path, ...] = ()) -> list[CatalogEntry]:
    """``scan_models`` and, last, the MediaPipe reference (``mediapipe``) when MediaPipe and its
    Face Landmarker bundle are there: what the app's model pickers offer."""
    from kpdesk.inference.reference import REFERENCE_NAME, reference_entry

    entries = scan_models(folder, validate, extra)
    ref = None if any(e.name == REFERENCE_NAME for e in entries) else reference_entry()
    return entries + ([ref] if ref is not None else [])


def resolve_model(name_or_path: str | Path, folder: str | Path | None = None) -> Path:
    """A model argument -> its ``.onnx`` path: an existing file, or ``NAME`` in the folder;
    ``mediapipe`` (when the folder has no model of that name) -> the MediaPipe reference's
    ``.task`` bundle in the asset cache.

    Raises:
        ModelLoadError: no such file / no model of that name (listing the known names), or
            ``mediapipe`` without MediaPipe or its bundle (saying how to fetch it).
    """
    from kpdesk.inference.reference import REFERENCE_NAME, ReferenceUnavailable, task_path

    p = Path(name_or_path).expanduser()
    if p.suffix in (".onnx", ".task") or p.is_file() or os.sep in str(name_or_path):
        if p.is_file():
            return p
        raise ModelLoadError(f"{p}: model file not found")
    root = Path(folder) if folder is not None else default_models_dir()
    cand = root / f"{name_or_path}.onnx"
    if cand.is_file():
        return cand
    if str(name_or_path) == REFERENCE_NAME:
        try:
            return task_path()
        except ReferenceUnavailable as exc:
            raise ModelLoadError(f"{REFERENCE_NAME}: {exc}") from None
    known = [q.stem for q in model_files(root)] if root.is_dir() else []
    raise ModelLoadError(f"{name_or_path}: no such model in {root} (known: {', '.join(known) or 'none'})")


def restamp_model(onnx_path: str | Path) -> Manifest:
    """Bind ``NAME.json`` to the current ``NAME.onnx`` (after changing the graph on purpose):
    write the graph's sha256 into the manifest, then check that the graph still agrees
    with the manifest's shapes and outputs. Returns the new manifest.

    Raises:
        ModelLoadError: no such graph, an unreadable manifest, or a graph that disagrees
            with the manifest (the manifest is left as it was).
    """
    path = Path(onnx_path)
    if not path.is_file():
        raise ModelLoadError(f"{path}: model file not found")
    man_path = manifest_path_for(path)
    try:
        old = Manifest.load(man_path)
    except ManifestError as exc:
        raise ModelLoadError(str(exc)) from None
    new = old.stamped(path)
    LandmarkModel.load(path, threads=1, optimize=False, manifest=new)  # the graph against the new manifest
    new.save(man_path)  # atomic
    return new

# The model used when none is named (the app's Live tab and ``kpdesk detect``): the first of
# these that is present and usable, else the first usable model by name. ``student`` is the
# most accurate shipped model and runs a face in ~2 ms on one CPU thread (README, Models).
PREFERRED_MODELS = ("student", "student-0.25x", "teacher")


def default_entry(entries: list[CatalogEntry]) -> CatalogEntry | None:
    """The catalog entry to use when the user names no model (None: no usable model)."""
    ok = {e.name: e for e in entries if e.ok}
    for name in PREFERRED_MODELS:
        if name in ok:
            return ok[name]
    return next(iter(ok.values()), None)
