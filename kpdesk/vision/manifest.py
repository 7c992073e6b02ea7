"""The model card that travels beside every exported ``NAME.onnx`` as ``NAME.json``.

Pure data: written by ``training`` at export, read by ``kpdesk.inference``. A file alone
says how to pre-process for the model, how to decode it, and what it was trained on.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from kpdesk.vision.codecs import DECODE_MODES, LandmarkDecoder
from kpdesk.vision.schema import KeypointSchema

FORMAT = "kpdesk-landmark/1"


class ManifestError(ValueError):
    """A manifest file is missing, unreadable or inconsistent."""


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes (read in 1 MiB chunks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class Manifest:
    """Everything needed to run one landmark model.

    Attributes:
        name: model name (file stem).
        schema: the keypoint layout it predicts.
        input_size: S; the input is (B, 3, S, S) float32 RGB.
        mean, std: per-channel normalisation applied to [0, 1] RGB.
        crop_scale: crop side / longer side of the landmark bounding box it was trained on.
        coords_output: graph output name of the (B, 2K) sigmoid coordinates, or None.
        heatmaps_output: graph output name of the (B, K, H, H) heatmaps, or None.
        heatmap_size: H.
        sigma: std of the Gaussian targets in heatmap pixels.
        decode: default decode mode, one of ``DECODE_MODES``.
        arch: network name, e.g. ``mobilenetv2`` or ``resnet50``.
        onnx_sha256: sha256 of the ``NAME.onnx`` this manifest belongs to (checked when
            the model loads), or None for an unstamped manifest.
        detector_crop: how each face detector's box maps to this model's crop, per detector
            name: ``{"dx", "dy", "ratio"}`` (``kpdesk.inference.detectors.BoxCalibration``),
            measured on labelled faces by ``benchmarks/calibrate_detectors.py``; None when
            the manifest predates the field (iBUG-68 models then get the 68-point mapping,
            others are refused at load).
        info: free-form card fields (training data, licence, metrics, params, MACs,
            size, latency, command, wall time, ...).
    """

    name: str
    schema: KeypointSchema
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    crop_scale: float
    coords_output: str | None = "coords"
    heatmaps_output: str | None = "heatmaps"
    heatmap_size: int | None = None
    sigma: float = 1.5
    decode: str = "regression"
    arch: str = ""
    input_name: str = "input"
    onnx_sha256: str | None = None
    detector_crop: dict[str, dict[str, float]] | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.decode not in DECODE_MODES:
            raise ManifestError(f"manifest {self.name}: decode {self.decode!r} not in {DECODE_MODES}")
        if self.coords_output is None and self.heatmaps_output is None:
            raise ManifestError(f"manifest {self.name}: no outputs declared")
        if self.decode != "regression" and (self.heatmaps_output is None or not self.heatmap_size):
            raise ManifestError(f"manifest {self.name}: decode {self.decode!r} needs a heatmap output and size")
        if self.decode == "regression" and self.coords_output is None:
            raise ManifestError(f"manifest {self.name}: regression decoding needs a coords output")
        if self.detector_crop is not None and not isinstance(self.detector_crop, dict):
            raise ManifestError(f"manifest {self.name}: detector_crop must map detector names to "
                                f"{{dx, dy, ratio}}, got {self.detector_crop!r}")

    def decoder(self, mode: str | None = None) -> LandmarkDecoder:
        return LandmarkDecoder(
            input_size=self.input_size,
            mode=mode or self.decode,
            heatmap_size=self.heatmap_size if self.heatmaps_output else None,
            sigma=self.sigma,
        )

    def with_info(self, **kw: Any) -> Manifest:
        return replace(self, info={**self.info, **kw})

    def stamped(self, onnx_path: str | Path) -> Manifest:
        """This manifest bound to the graph file ``onnx_path`` (its sha256; the card's copy
        of the checksum and file size follow)."""
        digest, size = file_sha256(onnx_path), Path(onnx_path).stat().st_size
        info = dict(self.info)
        if "onnx_sha256" in info:
            info["onnx_sha256"] = digest
        if "file_size_bytes" in info:
            info["file_size_bytes"] = size
        return replace(self, onnx_sha256=digest, info=info)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["schema"] = self.schema.to_dict()
        d["mean"], d["std"] = list(self.mean), list(self.std)
        if d["detector_crop"] is None:
            del d["detector_crop"]
        return {"format": FORMAT, **d}

    def save(self, path: str | Path) -> None:
        """Write atomically (a temporary file beside it, then a rename)."""
        p = Path(path)
        tmp = p.with_name(f".{p.name}.tmp")
        try:
            tmp.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n")
            os.replace(tmp, p)
        finally:
            tmp.unlink(missing_ok=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "<dict>") -> Manifest:
        if d.get("format") != FORMAT:
            raise ManifestError(f"{source}: format is {d.get('format')!r}, expected {FORMAT!r}")
        try:
            return cls(
                name=str(d["name"]),
                schema=KeypointSchema.from_dict(d["schema"]),
                input_size=int(d["input_size"]),
                mean=tuple(float(v) for v in d["mean"]),
                std=tuple(float(v) for v in d["std"]),
                crop_scale=float(d["crop_scale"]),
                coords_output=d.get("coords_output"),
                heatmaps_output=d.get("heatmaps_output"),
                heatmap_size=int(d["heatmap_size"]) if d.get("heatmap_size") else None,
                sigma=float(d.get("sigma", 1.5)),
                decode=str(d.get("decode", "regression")),
                arch=str(d.get("arch", "")),
                input_name=str(d.get("input_name", "input")),
                # Older manifests carry the checksum in the card only.
                onnx_sha256=d.get("onnx_sha256") or dict(d.get("info") or {}).get("onnx_sha256") or None,
                detector_crop=d.get("detector_crop"),
                info=dict(d.get("info", {})),
            )
        except ManifestError:
            raise
        except KeyError as exc:
            raise ManifestError(f"{source}: invalid manifest: missing field {exc.args[0]!r}") from None
        except (TypeError, ValueError) as exc:
            raise ManifestError(f"{source}: invalid manifest: {exc}") from None

    @classmethod
    def load(cls, path: str | Path) -> Manifest:
        p = Path(path)
        try:
            d = json.loads(p.read_text())
        except FileNotFoundError:
            raise ManifestError(f"{p}: manifest not found") from None
        except (OSError, json.JSONDecodeError) as exc:
            raise ManifestError(f"{p}: cannot read manifest: {exc}") from exc
        if not isinstance(d, dict):
            raise ManifestError(f"{p}: manifest is not a JSON object")
        return cls.from_dict(d, source=str(p))
