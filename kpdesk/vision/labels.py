"""Labelled face folders, read without torch or the training package (the app's robustness
lab evaluates on them; ``training/data/datasets.py`` reads the same formats for training).

Formats:
    face68   a list file (e.g. ``val.txt``) of image paths relative to the folder, each image
             with a 300W-style ``.pts`` file beside it (68 points, 0-based pixel centres).
    300w     no list file: every image under the folder (recursively) that has a ``.pts``
             beside it. Genuine 300W / iBUG ``.pts`` files are 1-based (``points_base=1``).
    face5    a list file with one face a line: ``path x1..x5 y1..y5 [attributes]`` (MTFL).

A ``.pts`` file is ``version: 1``, ``n_points: 68``, ``{``, one ``x y`` line per point, ``}``.
Every problem names the file and line; bad samples are skipped (and counted) or raise.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
FORMATS = ("face68", "300w", "face5")
ALL_PTS = ""  # list name meaning "every image with a .pts beside it" (300W folders)


class LabelError(ValueError):
    """A label file or line is unusable. The message names the file (and line)."""


@dataclass(frozen=True, eq=False)
class LabelledFace:
    """One labelled face: ``pts_img`` (K, 2) in 0-based pixel centres of the image at ``path``;
    ``source`` is the sub-set (first folder below ``images/``, e.g. ``afw``)."""

    path: str
    pts_img: np.ndarray
    source: str = ""


@dataclass(frozen=True, eq=False)
class LabelledSet:
    """Faces read from one folder; ``skipped`` lists why samples were dropped."""

    root: Path
    fmt: str
    faces: tuple[LabelledFace, ...]
    num_points: int
    skipped: tuple[str, ...] = ()


def read_pts(path: str | Path, base: int = 0) -> np.ndarray:
    """A 300W ``.pts`` file -> (K, 2) float64, 0-based (``base`` is subtracted).

    Raises:
        LabelError: naming the file and line (missing braces, a bad 'x y' line, a point
            count that disagrees with ``n_points``, non-finite values).
    """
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise LabelError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise LabelError(f"{path}: not a text file") from None
    try:
        start = next(i for i, ln in enumerate(lines) if ln.strip() == "{")
        end = next(i for i, ln in enumerate(lines) if ln.strip() == "}")
    except StopIteration:
        raise LabelError(f"{path}: no '{{ ... }}' block") from None
    n_decl = None
    for i, ln in enumerate(lines[:start]):
        if ln.strip().startswith("n_points"):
            try:
                n_decl = int(ln.split(":")[1])
            except (IndexError, ValueError):
                raise LabelError(f"{path}:{i + 1}: bad n_points line {ln!r}") from None
    pts = []
    for i in range(start + 1, end):
        parts = lines[i].split()
        try:
            if len(parts) != 2:
                raise ValueError
            pts.append((float(parts[0]), float(parts[1])))
        except ValueError:
            raise LabelError(f"{path}:{i + 1}: expected 'x y', got {lines[i]!r}") from None
    arr = np.asarray(pts, dtype=np.float64).reshape(-1, 2)
    if n_decl is not None and len(arr) != n_decl:
        raise LabelError(f"{path}: n_points says {n_decl}, found {len(arr)}")
    if not np.all(np.isfinite(arr)):
        raise LabelError(f"{path}: non-finite coordinates")
    return arr - base


def write_pts(path: str | Path, pts: np.ndarray, base: int = 0) -> None:
    """Write (K, 2) points as a 300W ``.pts`` file (adding ``base``)."""
    p = np.asarray(pts, dtype=np.float64) + base
    body = "\n".join(f"{x:.3f} {y:.3f}" for x, y in p)
    Path(path).write_text(f"version: 1\nn_points: {len(p)}\n{{\n{body}\n}}\n")


def list_files(folder: str | Path) -> list[str]:
    """The candidate list files of a folder (``*.txt``, sorted, ``val``/``test`` first)."""
    root = Path(folder)
    if not root.is_dir():
        return []
    names = sorted(p.name for p in root.glob("*.txt") if p.is_file() and not p.name.startswith("."))
    return sorted(names, key=lambda n: (not n.startswith(("val", "test")), n))


def guess_format(folder: str | Path, list_name: str) -> str:
    """``300w`` without a list; otherwise ``face5`` when the first line has >= 11 fields, else ``face68``."""
    if list_name == ALL_PTS:
        return "300w"
    lst = Path(folder) / list_name
    try:
        with lst.open() as fh:
            first = next((ln for ln in fh if ln.strip() and not ln.startswith("#")), "")
    except OSError as exc:
        raise LabelError(f"{lst}: cannot read list: {exc.strerror}") from None
    return "face5" if len(first.split()) >= 11 else "face68"


def _source_of(rel: Path) -> str:
    parts = rel.parts
    if len(parts) > 2 and parts[0] == "images":
        return parts[1]
    return parts[0] if len(parts) > 1 else ""


def _read_list(lst: Path) -> list[str]:
    try:
        return lst.read_text().splitlines()
    except OSError as exc:
        raise LabelError(f"{lst}: cannot read list: {exc.strerror}") from None


class SkipOrFail:
    """What a loader does with a bad label: ``on_error="fatal"`` raises ``error(msg)``,
    ``"skip"`` logs it on ``logger`` and keeps the message in ``skipped``."""

    def __init__(self, on_error: str, error: type[Exception] = LabelError,
                 logger: logging.Logger | None = None) -> None:
        if on_error not in ("skip", "fatal"):
            raise ValueError(f"on_error must be 'skip' or 'fatal', got {on_error!r}")
        self.on_error = on_error
        self.error = error
        self.log = logger or log
        self.skipped: list[str] = []

    def bad(self, msg: str) -> None:
        if self.on_error == "fatal":
            raise self.error(msg)
        self.log.warning("skipping: %s", msg)
        self.skipped.append(msg)


class _Faces(SkipOrFail):
    def __init__(self, on_error: str, k: int | None) -> None:
        super().__init__(on_error)
        self.k = k
        self.faces: list[LabelledFace] = []

    def add(self, img: Path, pts: np.ndarray, source: str, where: str) -> None:
        if not img.is_file():
            self.bad(f"{where}: image not found: {img}")
            return
        if self.k is None:
            self.k = len(pts)
        if len(pts) != self.k:
            self.bad(f"{where}: {len(pts)} points, the others have {self.k}")
            return
        self.faces.append(LabelledFace(str(img), pts, source))


def load_labelled_folder(folder: str | Path, list_name: str | None = None, fmt: str | None = None,
                         points_base: int | None = None, on_error: str = "skip",
                         max_faces: int = 0) -> LabelledSet:
    """Read the labelled faces of ``folder``.

    Args:
        folder: the dataset folder.
        list_name: a list file in it; None picks the first of ``list_files`` (or, if there
            is none, every image with a ``.pts`` beside it); ``ALL_PTS`` forces the latter.
        fmt: ``face68`` / ``300w`` / ``face5``; None guesses from the list.
        points_base: subtracted from ``.pts`` coordinates; None = 1 for ``300w`` (genuine
            300W files are 1-based), 0 for the list-file packs.
        on_error: ``skip`` (warn, count) or ``fatal`` (raise ``LabelError``).
        max_faces: keep N faces spread evenly over the list (0 = all).

    Raises:
        LabelError: the folder or list cannot be read, or no usable face is left.
    """
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise LabelError(f"{root}: folder not found")
    if list_name is None:
        lists = list_files(root)
        list_name = lists[0] if lists else ALL_PTS
    fmt = fmt or guess_format(root, list_name)
    if fmt not in FORMATS:
        raise LabelError(f"unknown label format {fmt!r}; known: {FORMATS}")
    base = points_base if points_base is not None else (1 if fmt == "300w" else 0)
    acc = _Faces(on_error, 5 if fmt == "face5" else None)
    if fmt == "300w" and list_name == ALL_PTS:
        images = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES
                        and p.with_suffix(".pts").is_file())
        for img in images:
            where = str(img.with_suffix(".pts"))
            try:
                acc.add(img, read_pts(img.with_suffix(".pts"), base), _source_of(img.relative_to(root)), where)
            except LabelError as exc:
                acc.bad(str(exc))
    elif fmt in ("face68", "300w"):
        lst = root / list_name
        for ln_no, ln in enumerate(_read_list(lst), 1):
            rel = ln.strip()
            if not rel or rel.startswith("#"):
                continue
            img = root / rel
            try:
                pts = read_pts(img.with_suffix(".pts"), base)
            except LabelError as exc:
                acc.bad(f"{lst}:{ln_no}: {exc}")
                continue
            acc.add(img, pts, _source_of(Path(rel)), f"{lst}:{ln_no}")
    else:  # face5
        lst = root / list_name
        for ln_no, ln in enumerate(_read_list(lst), 1):
            parts = ln.split()
            if not parts or parts[0].startswith("#"):
                continue
            where = f"{lst}:{ln_no}"
            if len(parts) < 11:
                acc.bad(f"{where}: expected 'path x1..x5 y1..y5', got {len(parts)} fields")
                continue
            try:
                v = np.asarray([float(x) for x in parts[1:11]])
            except ValueError:
                acc.bad(f"{where}: non-numeric coordinate")
                continue
            rel = Path(parts[0].replace("\\", "/"))
            acc.add(root / rel, np.stack([v[:5], v[5:]], axis=1) - base, _source_of(rel), where)
    if not acc.faces:
        if list_name == ALL_PTS:
            imgs = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
            example = f" (e.g. {imgs[0].relative_to(root).with_suffix('.pts')})" if imgs else ""
            looked = (f"looked for a list file (*.txt) and for a NAME.pts beside each of its {len(imgs)} "
                      f"images{example}; found neither")
            where = root
        else:
            where = root / list_name
            looked = (f"its lines name images with a NAME.pts beside each ({fmt} list)" if fmt != "face5"
                      else "its lines carry the points ('path x1..x5 y1..y5', face5 list)")
        skipped = f"; {len(acc.skipped)} skipped, first: {acc.skipped[0]}" if acc.skipped else ""
        raise LabelError(f"{where}: no usable labelled face: {looked}{skipped}")
    faces = acc.faces
    if max_faces and max_faces < len(faces):
        faces = [faces[i] for i in np.linspace(0, len(faces) - 1, max_faces).round().astype(int)]
    return LabelledSet(root, fmt, tuple(faces), int(acc.k or 0), tuple(acc.skipped))
