"""A compact copy of the training data for a lent GPU machine (its working tree travels, 64 MiB at most).

Copies the faces that listed files name, in the face68 layout the loaders read (``images/<source>/*.jpg`` with
the ``.pts`` beside each, list files relative to the folder), re-encoded as WebP (about 0.45x the bytes of a
JPEG of the same quality on these crops; ``--format jpg`` for JPEG) at ``--quality``, and each
pseudo-label pack (its ``train.txt`` faces) the same way. Sources stay the folder names, so per-source label
offsets and metrics work on the copy as on the original. The copy goes into a folder that git ignores
(``.gpu/`` by default): data never enters the repository.

    python scripts/gpu/pack_data.py --face68 ../shared/data/face68 --lists LISTS/train_afw_helen.txt val.txt \
        --packs /work/pseudo/face5-ens5a /work/pseudo/face5-ens5b --out .gpu/data --quality 90
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import cv2

FLAGS = {"webp": cv2.IMWRITE_WEBP_QUALITY, "jpg": cv2.IMWRITE_JPEG_QUALITY}


def copy_face(src_root: Path, rel: str, dst_root: Path, fmt: str, quality: int) -> int:
    """One image + its .pts, re-encoded; returns the bytes written."""
    src, dst = src_root / rel, (dst_root / rel).with_suffix("." + fmt)
    img = cv2.imread(str(src), cv2.IMREAD_COLOR)
    if img is None:
        raise SystemExit(f"pack_data: {src}: cannot decode image")
    dst.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode("." + fmt, img, [FLAGS[fmt], quality])
    if not ok:
        raise SystemExit(f"pack_data: {src}: cannot encode")
    dst.write_bytes(buf.tobytes())
    shutil.copyfile(src.with_suffix(".pts"), dst.with_suffix(".pts"))
    return len(buf) + dst.with_suffix(".pts").stat().st_size


def copy_list(src_root: Path, list_file: Path, dst_root: Path, dst_list: Path, fmt: str,
              quality: int) -> tuple[int, int]:
    lines = [ln.split()[0] for ln in list_file.read_text().splitlines() if ln.strip()]
    total = sum(copy_face(src_root, rel, dst_root, fmt, quality) for rel in lines)
    dst_list.parent.mkdir(parents=True, exist_ok=True)
    dst_list.write_text("".join(str(Path(rel).with_suffix("." + fmt)) + "\n" for rel in lines))
    return len(lines), total


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--face68", type=Path, required=True, help="the face68 pack")
    ap.add_argument("--lists", nargs="+", required=True,
                    help="list files (absolute, or relative to --face68); each is written under its own name")
    ap.add_argument("--packs", nargs="*", default=[], type=Path, help="pseudo-label packs (a train.txt each)")
    ap.add_argument("--out", type=Path, default=Path(".gpu/data"))
    ap.add_argument("--format", choices=sorted(FLAGS), default="webp")
    ap.add_argument("--quality", type=int, default=90)
    a = ap.parse_args(argv)
    if a.out.exists():
        shutil.rmtree(a.out)
    grand = 0
    for name in a.lists:
        lf = Path(name) if Path(name).is_absolute() else a.face68 / name
        n, b = copy_list(a.face68, lf, a.out / "face68", a.out / "face68" / lf.name, a.format,
                         a.quality)
        print(f"face68 {lf.name}: {n} faces, {b / 2**20:.1f} MiB")
        grand += b
    for pack in a.packs:
        n, b = copy_list(pack, pack / "train.txt", a.out / pack.name, a.out / pack.name / "train.txt", a.format,
                         a.quality)
        print(f"pack {pack.name}: {n} faces, {b / 2**20:.1f} MiB")
        grand += b
    print(f"total {grand / 2**20:.1f} MiB in {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
