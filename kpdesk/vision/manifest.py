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
from kpdesk.vision.transforms import CropSpec, crop_params_from_points

FORMAT = "kpdesk-landmark/1"
# Written when a manifest uses a field version 1 does not have (an imported model's input
# layout, colour order, pixel coordinates or crop offset), so an older kpdesk refuses it
# instead of feeding the model the wrong input.
FORMAT_2 = "kpdesk-landmark/2"
FORMATS = (FORMAT, FORMAT_2)

LAYOUTS = ("nchw", "nhwc")
COLORS = ("rgb", "bgr")
COORD_UNITS = ("norm", "pixels")


class ManifestError(ValueError):
    """A manifest file is missing, unreadable or inconsistent."""


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes (read in 1 MiB chunks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _pair(v: Any) -> tuple[float, float]:
    x, y = v  # ValueError / TypeError: reported as an invalid manifest
    return (float(x), float(y))


@dataclass(frozen=True)
class Manifest:
    """Everything needed to run one landmark model.

    Attributes:
        name: model name (file stem).
        schema: the keypoint layout it predicts.
        input_size: S; the input is (B, 3, S, S) float32 RGB (see ``input_layout``, ``color``).
        mean, std: per-channel normalisation applied to [0, 1] RGB (in R, G, B order).
        crop_scale: crop side / longer side of the landmark bounding box it was trained on.
        coords_output: graph output name of the (B, 2K) sigmoid coordinates (x0, y0, x1, ...),
            or None; any shape with 2K values a face is accepted (e.g. (B, K, 2)).
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
        input_layout: ``nchw`` (B, 3, S, S) or ``nhwc`` (B, S, S, 3), what the graph takes.
        color: channel order the graph takes, ``rgb`` or ``bgr``.
        coords_unit: ``norm`` (coordinates in [0, 1] of the crop) or ``pixels`` (0..S).
        crop_offset: (dx, dy) crop centre minus landmark-box centre, in units of the box's
            longer side, in the face's own frame (``crop_params_from_points``).

    The last four exist for imported third-party models (``kpdesk models import``); kpdesk's
    own models keep the defaults, and a manifest with defaults is written as format 1.
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
    input_layout: str = "nchw"
    color: str = "rgb"
    coords_unit: str = "norm"
    crop_offset: tuple[float, float] = (0.0, 0.0)

    def __post_init__(self) -> None:
        for label, value, allowed in (("input_layout", self.input_layout, LAYOUTS), ("color", self.color, COLORS),
                                      ("coords_unit", self.coords_unit, COORD_UNITS)):
            if value not in allowed:
                raise ManifestError(f"manifest {self.name}: {label} {value!r} not in {allowed}")
        if len(self.crop_offset) != 2 or not all(abs(float(v)) < 10 for v in self.crop_offset):
            raise ManifestError(f"manifest {self.name}: crop_offset {self.crop_offset!r} is not a small (dx, dy)")
        if not 0 < self.crop_scale < 100:
            raise ManifestError(f"manifest {self.name}: crop_scale {self.crop_scale!r} is not positive")
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

    @property
    def plain(self) -> bool:
        """True when the graph takes kpdesk's own conventions (NCHW RGB, [0, 1]
        coordinates, a crop centred on the landmark box): nothing to adapt."""
        return (self.input_layout, self.color, self.coords_unit) == ("nchw", "rgb", "norm") \
            and tuple(self.crop_offset) == (0.0, 0.0)

    def crop_for_points(self, pts_img: Any) -> CropSpec:
        """The crop this model was trained on for a face with landmarks ``pts_img`` (K, 2)."""
        return crop_params_from_points(pts_img, self.crop_scale, offset=self.crop_offset)

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
        d["crop_offset"] = [float(v) for v in self.crop_offset]
        for key in ("input_layout", "color", "coords_unit", "crop_offset"):  # format-1 fields only when plain
            if self.plain:
                d.pop(key)
        if d["detector_crop"] is None:
            del d["detector_crop"]
        return {"format": FORMAT if self.plain else FORMAT_2, **d}

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
        if d.get("format") not in FORMATS:
            raise ManifestError(f"{source}: format is {d.get('format')!r}, expected one of {FORMATS} "
                                f"(written by a newer kpdesk?)")
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
                input_layout=str(d.get("input_layout", "nchw")),
                color=str(d.get("color", "rgb")),
                coords_unit=str(d.get("coords_unit", "norm")),
                crop_offset=_pair(d.get("crop_offset", (0.0, 0.0))),
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
