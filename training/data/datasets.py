"""Landmark datasets: the shared data packs, 300W folders, CelebA, WFLW and CSV.

Every loader returns a list of ``Sample`` (image path + (K, 2) points in 0-based pixel
centres) and the keypoint schema. A bad label line, a missing image or a wrong point
count raises ``LabelError`` naming the file and line, or is skipped with a warning
when ``on_error="skip"``.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from kpdesk.vision.labels import LabelError as VisionLabelError
from kpdesk.vision.labels import SkipOrFail
from kpdesk.vision.labels import read_pts as _read_pts
from kpdesk.vision.schema import KeypointSchema, custom_schema, get_schema

log = logging.getLogger(__name__)

FORMATS = ("face68", "face5", "300w", "celeba", "wflw", "csv")


class LabelError(ValueError):
    """A label file, line or image is unusable. The message names file and line."""


@dataclass(frozen=True)
class DataConfig:
    """Where the data is and how to read it.

    Attributes:
        format: one of ``FORMATS``.
        root: dataset folder.
        train_list / val_list: list files relative to root (pack formats), or for
            ``300w`` sub-folders; for ``celeba`` the partition ids ("0", "1", "2").
        points_base: 1 for 1-based label files (genuine 300W .pts), else 0.
        on_error: ``skip`` (warn and drop the sample) or ``fatal``.
        num_points: for ``csv``: K (0 = infer from the header).
        extra_train: more training packs in the face68 layout (``train.txt`` + images
            with ``.pts``), e.g. pseudo-labelled faces from ``python -m training pseudo-label``.
            Never used for validation.
        extra_weight: loss weight of an extra-pack face relative to a face of ``root``.
        extra_max_samples: use at most this many faces of each extra pack (0 = all).
        extra_share: the share of every training batch drawn from the extra packs, the rest
            from ``root``'s faces (an epoch is then one pass over those); 0 = batches drawn from
            the pooled faces. Keeps the labelled faces of a step fixed however large a pack
            of unlabelled faces (``extra_weight`` 0) is.
        label_offsets: per source (``Sample.source``, e.g. ``"afw"``), the (dx, dy) image
            pixels between its labels and the mirror-symmetric position, as ``python -m
            training label-offset`` measures them; flip augmentation keeps that convention
            (``augment.flip_with_offset``). A source not named mirrors plainly.
        extra_label_shift: (dx, dy) as fractions of each face's landmark-box side, added to
            the labels of the extra packs and kept through flips: a pack labelled in the
            mirror-symmetric convention (flip-averaged labellers) moved into the offset one of
            the human labels (AFW/HELEN pooled: +0.0051 of the box side in x).
    """

    format: str = "face68"
    root: str = ""
    train_list: str = "train.txt"
    val_list: str = "val.txt"
    points_base: int = 0
    on_error: str = "skip"
    num_points: int = 0
    extra_train: tuple[str, ...] = ()
    extra_weight: float = 1.0
    extra_max_samples: int = 0
    extra_share: float = 0.0
    label_offsets: dict[str, tuple[float, float]] = field(default_factory=dict)
    extra_label_shift: tuple[float, ...] = (0.0, 0.0)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True, eq=False)
class Sample:
    path: str
    pts: np.ndarray  # (K, 2) 0-based pixel centres in the image
    source: str = ""  # sub-set name, e.g. "afw", "helen", "ytf" (for per-source metrics)
    attrs: tuple[int, ...] = ()
    weight: float = 1.0  # loss weight (extra packs: DataConfig.extra_weight)
    label_offset: tuple[float, float] = (0.0, 0.0)  # DataConfig.label_offsets of its source


def with_label_offsets(samples: list[Sample], offsets: dict[str, tuple[float, float]]) -> list[Sample]:
    """``samples`` with ``label_offset`` set from ``offsets`` (source -> (dx, dy)); others as they were."""
    if not offsets:
        return samples
    return [replace(s, label_offset=(float(offsets[s.source][0]), float(offsets[s.source][1])))
            if s.source in offsets else s for s in samples]


class _Collector(SkipOrFail):
    def __init__(self, on_error: str) -> None:
        super().__init__(on_error, LabelError, log)
        self.samples: list[Sample] = []

    def image_ok(self, img: Path, where: str, shown: object = None) -> bool:
        """False (after reporting ``where: problem: shown``) when the image is missing or unreadable."""
        problem = image_problem(img)
        if problem:
            self.bad(f"{where}: {problem}: {img if shown is None else shown}")
        return not problem


def read_pts(path: Path, base: int = 0) -> np.ndarray:
    """Read a 300W ``.pts`` file -> (K, 2) 0-based. Raises LabelError with file:line
    (the app's reader, ``kpdesk.vision.labels``, with training's exception type)."""
    try:
        return _read_pts(path, base)
    except VisionLabelError as exc:
        raise LabelError(str(exc)) from None


_IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"BM", b"II*\x00", b"MM\x00*", b"GIF8")
_MAGIC_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif")


def image_problem(path: Path) -> str | None:
    """Why ``path`` is unusable as an image ("image not found", empty, corrupt header), or
    None. Reads a few header bytes only (cheap for thousands of files); formats with
    no known signature are left to the decoder."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(12)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return "image not found"
    except OSError as exc:
        return f"cannot read image ({exc.strerror})"
    if not head:
        return "empty image file"
    if head.startswith(_IMAGE_MAGIC) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP"):
        return None
    if path.suffix.lower() in _MAGIC_SUFFIXES:
        return "corrupt image (not a JPEG/PNG/BMP/TIFF/WebP header)"
    return None


def _read_lines(list_file: Path) -> list[str]:
    try:
        return list_file.read_text().splitlines()
    except OSError as exc:
        raise LabelError(f"{list_file}: cannot read list: {exc.strerror}") from None


def _rows(col: _Collector, list_file: Path, lines: list[str], first: int, fields: int | range,
          expected: str):
    """(where, fields) of each non-empty line whose field count is ``fields`` (a number or a range);
    any other count is reported to ``col`` as ``expected``."""
    ok = range(fields, fields + 1) if isinstance(fields, int) else fields
    for ln_no, ln in enumerate(lines, first):
        parts = ln.split()
        if not parts:
            continue
        where = f"{list_file}:{ln_no}"
        if len(parts) not in ok:
            col.bad(f"{where}: expected {expected}, got {len(parts)} fields")
            continue
        yield where, parts


def _check_count(col: _Collector, pts: np.ndarray, k: int, where: str) -> bool:
    if len(pts) != k:
        col.bad(f"{where}: {len(pts)} points, schema expects {k}")
        return False
    return True


def _load_pts_list(root: Path, list_file: Path, schema: KeypointSchema, base: int, col: _Collector,
                   lines: list[str] | None = None) -> None:
    """The images named in ``list_file`` (or, given, ``lines``: image paths relative to
    ``root``, e.g. a folder's listing made in memory) with their ``.pts`` labels."""
    lines = _read_lines(list_file) if lines is None else lines
    for ln_no, ln in enumerate(lines, 1):
        rel = ln.strip()
        if not rel or rel.startswith("#"):
            continue
        img = root / rel
        if not col.image_ok(img, f"{list_file}:{ln_no}"):
            continue
        try:
            pts = read_pts(img.with_suffix(".pts"), base)
        except LabelError as exc:
            col.bad(f"{list_file}:{ln_no}: {exc}")
            continue
        if _check_count(col, pts, schema.num_points, f"{img.with_suffix('.pts')}"):
            parts = Path(rel).parts
            source = parts[1] if len(parts) > 2 and parts[0] == "images" else (parts[0] if len(parts) > 1 else "")
            col.samples.append(Sample(str(img), pts, source))


def _load_mtfl(root: Path, list_file: Path, col: _Collector) -> None:
    for where, parts in _rows(col, list_file, _read_lines(list_file), 1, range(11, 1 << 16),
                              "'path x1..x5 y1..y5 [attrs]'"):
        try:
            vals = np.asarray([float(v) for v in parts[1:11]])
            attrs = tuple(int(v) for v in parts[11:15])
        except ValueError:
            col.bad(f"{where}: non-numeric coordinate in {' '.join(parts)!r}")
            continue
        img = root / parts[0].replace("\\", "/")
        if not col.image_ok(img, where):
            continue
        pts = np.stack([vals[:5], vals[5:]], axis=1)
        source = Path(parts[0]).parts[1] if len(Path(parts[0]).parts) > 2 else ""
        col.samples.append(Sample(str(img), pts, source, attrs))


def _load_celeba(root: Path, partition: str, col: _Collector) -> None:
    lm_file = root / "list_landmarks_align_celeba.txt"
    part_file = root / "list_eval_partition.txt"
    img_dir = root / "img_align_celeba"
    for f in (lm_file, part_file):
        if not f.is_file():
            raise LabelError(f"{f}: not found (CelebA needs list_landmarks_align_celeba.txt and "
                             "list_eval_partition.txt)")
    parts = {}
    for ln_no, ln in enumerate(_read_lines(part_file), 1):
        p = ln.split()
        if len(p) == 2:
            parts[p[0]] = p[1]
        elif p:
            col.bad(f"{part_file}:{ln_no}: expected 'image partition', got {ln!r}")
    # other partitions' lines become blank ones: skipped, and the line numbers stay the file's
    mine = [ln if parts.get(next(iter(ln.split()), "")) == partition else "" for ln in _read_lines(lm_file)[2:]]
    for where, p in _rows(col, lm_file, mine, 3, 11, "image + 10 numbers"):
        try:
            v = np.asarray([float(x) for x in p[1:]]).reshape(5, 2)
        except ValueError:
            col.bad(f"{where}: non-numeric value in {' '.join(p)!r}")
            continue
        img = img_dir / p[0]
        if not col.image_ok(img, where):
            continue
        col.samples.append(Sample(str(img), v, "celeba"))


def _load_wflw(root: Path, list_file: Path, col: _Collector) -> None:
    """WFLW annotation lines: 196 coords, 4 box values, 6 attributes, image path."""
    for where, p in _rows(col, list_file, _read_lines(list_file), 1, 207,
                          "207 fields (196 coords, box, 6 attrs, path)"):
        try:
            v = np.asarray([float(x) for x in p[:196]]).reshape(98, 2)
            attrs = tuple(int(x) for x in p[200:206])
        except ValueError:
            col.bad(f"{where}: non-numeric value")
            continue
        img = root / "WFLW_images" / p[206]
        if not img.is_file():
            img = root / p[206]
        if not col.image_ok(img, where, p[206]):
            continue
        col.samples.append(Sample(str(img), v, p[206].split("/")[0], attrs))


def _load_csv(root: Path, list_file: Path, k: int, base: int, col: _Collector) -> int:
    """CSV: header ``image,x0,y0,x1,y1,...``; image paths relative to root."""
    try:
        fh = list_file.open(newline="")
    except OSError as exc:
        raise LabelError(f"{list_file}: cannot read: {exc.strerror}") from None
    with fh:
        rows = csv.reader(fh)
        header = next(rows, None)
        if not header or len(header) < 3 or (len(header) - 1) % 2:
            raise LabelError(f"{list_file}:1: header must be 'image,x0,y0,x1,y1,...'")
        k = k or (len(header) - 1) // 2
        for ln_no, row in enumerate(rows, 2):
            if not row:
                continue
            where = f"{list_file}:{ln_no}"
            if len(row) != 1 + 2 * k:
                col.bad(f"{where}: {(len(row) - 1) / 2:g} points, expected {k}")
                continue
            try:
                v = np.asarray([float(x) for x in row[1:]]).reshape(k, 2) - base
            except ValueError:
                col.bad(f"{where}: non-numeric coordinate")
                continue
            img = root / row[0]
            if not col.image_ok(img, where):
                continue
            col.samples.append(Sample(str(img), v, ""))
    return k


def load_split(cfg: DataConfig, split: str) -> tuple[list[Sample], KeypointSchema]:
    """Read the ``train`` or ``val`` split. Raises LabelError on a fatal problem, and
    when nothing usable is left."""
    if cfg.format not in FORMATS:
        raise LabelError(f"unknown data format {cfg.format!r}; known: {FORMATS}")
    root = Path(cfg.root).expanduser()
    if not root.is_dir():
        raise LabelError(f"{root}: data folder not found")
    lst = cfg.train_list if split == "train" else cfg.val_list
    col = _Collector(cfg.on_error)
    if cfg.format in ("face68", "300w"):
        schema = get_schema("ibug68")
        if cfg.format == "300w" and (root / lst).is_dir():
            # A folder as the split: its images, listed in memory (the user's data folder is
            # read-only to us: nothing is written into it).
            found = sorted(p.relative_to(root) for p in (root / lst).rglob("*") if p.suffix.lower() in (".jpg", ".png"))
            _load_pts_list(root, root / lst, schema, cfg.points_base, col, lines=[str(p) for p in found])
        else:
            _load_pts_list(root, root / lst, schema, cfg.points_base, col)
    elif cfg.format == "face5":
        schema = get_schema("mtfl5")
        _load_mtfl(root, root / lst, col)
    elif cfg.format == "celeba":
        schema = get_schema("mtfl5")
        _load_celeba(root, lst, col)
    elif cfg.format == "wflw":
        schema = get_schema("wflw98")
        _load_wflw(root, root / lst, col)
    else:
        k = _load_csv(root, root / lst, cfg.num_points, cfg.points_base, col)
        schema = get_schema("ibug68") if k == 68 else (get_schema("mtfl5") if k == 5 else custom_schema(k))
    if not col.samples:
        raise LabelError(f"{root / lst}: no usable samples ({len(col.skipped)} skipped)")
    if col.skipped:
        log.warning("%s split %s: %d samples skipped", root, split, len(col.skipped))
    return col.samples, schema


EXTRA_SOURCE_PREFIX = "extra:"


def is_extra(sample: Sample) -> bool:
    """Whether ``sample`` came from a ``data.extra_train`` pack (``load_extra_train``)."""
    return sample.source.startswith(EXTRA_SOURCE_PREFIX)


def load_extra_train(cfg: DataConfig, schema: KeypointSchema) -> list[Sample]:
    """The faces of ``cfg.extra_train`` packs, weighted by ``cfg.extra_weight``; each
    source is prefixed ``extra:`` so per-source metrics never mix them with human labels."""
    if cfg.extra_weight < 0:
        raise LabelError(f"data.extra_weight must be >= 0, got {cfg.extra_weight}")
    out: list[Sample] = []
    for root in cfg.extra_train:
        pack = DataConfig(format="face68", root=root, train_list="train.txt", on_error=cfg.on_error)
        samples, sch = load_split(pack, "train")
        if sch.num_points != schema.num_points:
            raise LabelError(f"{root}: extra pack has {sch.num_points} points, the main data {schema.num_points}")
        if cfg.extra_max_samples:
            samples = samples[: cfg.extra_max_samples]
        fx, fy = (float(v) for v in cfg.extra_label_shift)
        for s in samples:
            shift = (0.0, 0.0)
            if fx or fy:
                side = float(np.ptp(s.pts, axis=0).max())
                shift = (fx * side, fy * side)
            out.append(Sample(s.path, s.pts + np.asarray(shift), EXTRA_SOURCE_PREFIX + s.source, s.attrs,
                              cfg.extra_weight, shift))
    return out
