"""Importing a third-party landmark ONNX (``kpdesk models import``): a manifest written from
what the user says about the model and what the graph shows, the crop fitted on labelled
faces when asked, then the usual verified install (Qt-free, no torch).

What such models vary in, and where the manifest keeps it (``kpdesk.vision.manifest``):

    input      layout NCHW / NHWC (``input_layout``; "auto" reads it off the graph), size S,
               colour order RGB / BGR (``color``), (pixel - mean) / std with pixel in 0..255
               (stored as kpdesk's mean / std on [0, 1] RGB)
    output     coordinates in [0, 1] of the crop (``coords01``) or in crop pixels
               (``pixels``; ``coords_unit``), any shape with 2K values a face; or heatmaps
               (B, K, H, H) decoded by their peaks
    points     68 (iBUG order) or 5 (eyes, nose tip, mouth corners), or another count
    crop       side = ``crop_scale`` x the landmark box's longer side, centre moved by
               ``crop_offset`` x that side: given, or fitted by ``kpdesk.inference.calibrate``

Once installed, an imported model is a model like the others: the pipeline, the robustness
lab, Compare, ``kpdesk detect`` and ``training eval`` all go through ``LandmarkModel``,
which adapts the input and output (``LandmarkModel.forward``), and cut faces with
``Manifest.crop_for_points`` / the tracker's crop with the manifest's offset.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from kpdesk.inference.calibrate import CalibrationError, CropFit, diagnose, fit_crop, implausible_message
from kpdesk.inference.detectors import LAYOUT_CALIBRATION
from kpdesk.inference.install import Installed, ModelInstallError, install_model
from kpdesk.inference.model import LandmarkModel, ModelLoadError, graph_sha256
from kpdesk.vision.labels import LabelError, load_labelled_folder
from kpdesk.vision.manifest import Manifest, ManifestError
from kpdesk.vision.schema import KeypointSchema, schema_for_points

log = logging.getLogger(__name__)

OUTPUT_KINDS = ("coords01", "pixels", "heatmaps")
LAYOUT_CHOICES = ("auto", "nchw", "nhwc")


class ModelImportError(ValueError):
    """The graph cannot be imported as described (one line naming the file and the problem)."""


@dataclass(frozen=True)
class ImportOptions:
    """What the user says about a third-party model (the ``kpdesk models import`` options).

    Attributes:
        points: K (68, 5, ...); None: read off the output.
        size: input side S; None: read off the graph.
        color: ``rgb`` or ``bgr``, the channel order the model takes.
        layout: ``auto``, ``nchw`` or ``nhwc``.
        mean, std: one value or one per channel, in the model's channel order, on 0..255
            pixels: the model takes (pixel - mean) / std.
        output: ``coords01``, ``pixels`` or ``heatmaps``.
        output_name, input_name: which graph output / input, when there are several.
        crop_scale, crop_offset: the crop, when not calibrated (default: the schema's crop
            scale, centred).
        licence, origin: for the card (the model's licence; where it came from).
        command: the command line, for the card.
    """

    points: int | None = None
    size: int | None = None
    color: str = "rgb"
    layout: str = "auto"
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (255.0,)
    output: str = "coords01"
    output_name: str | None = None
    input_name: str | None = None
    crop_scale: float | None = None
    crop_offset: tuple[float, float] = (0.0, 0.0)
    licence: str = ""
    origin: str = ""
    command: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def layout_mapping(src: Path, schema: KeypointSchema) -> dict[str, dict[str, float]]:
    """The manifest's ``detector_crop`` for an imported model: the detector box -> landmark box
    mapping measured for its point layout (``LAYOUT_CALIBRATION``). It depends only on where
    the points lie on a face, not on the model; the model's own crop (``crop_scale`` and
    ``crop_offset``, what ``--calibrate`` fits) is applied on top of it.

    Raises:
        ModelImportError: for a layout with no measured mapping (the app would refuse the
            model at load: its crops from a detector box would be guesses).
    """
    table = LAYOUT_CALIBRATION.get(schema.name)
    if table is None or schema.num_points != {"ibug68": 68, "mtfl5": 5}.get(schema.name):
        known = ", ".join(sorted(LAYOUT_CALIBRATION))
        raise ModelImportError(f"{src}: no face-detector mapping is measured for a {schema.num_points}-point "
                               f"layout ({schema.name}); import supports {known}")
    return {name: cal.as_dict() for name, cal in table.items()}


def _dim(d: object) -> int | None:
    return d if isinstance(d, int) and d > 0 else None


def _per_channel(values: tuple[float, ...], what: str, bgr: bool) -> tuple[float, float, float]:
    """One or three values on 0..255 in the model's channel order -> three on [0, 1], RGB order."""
    v = [float(x) for x in values]
    if len(v) == 1:
        v = v * 3
    if len(v) != 3:
        raise ModelImportError(f"--{what} takes one value or three (one per channel), got {len(v)}")
    if not all(np.isfinite(v)):
        raise ModelImportError(f"--{what} values must be finite, got {values}")
    if what == "std" and any(x == 0 for x in v):
        raise ModelImportError("--std values must not be 0")
    if bgr:
        v = v[::-1]
    return (v[0] / 255.0, v[1] / 255.0, v[2] / 255.0)


def _pick_input(src: Path, sess: ort.InferenceSession, opts: ImportOptions) -> tuple[str, list]:
    inputs = sess.get_inputs()
    if opts.input_name is not None:
        match = [i for i in inputs if i.name == opts.input_name]
        if not match:
            raise ModelImportError(f"{src}: no input {opts.input_name!r}; the graph's inputs: "
                                   f"{[i.name for i in inputs]}")
        inp = match[0]
    elif len(inputs) != 1:
        raise ModelImportError(f"{src}: the graph has {len(inputs)} inputs {[i.name for i in inputs]}: "
                               f"name the image input with --input-name")
    else:
        inp = inputs[0]
    if inp.type != "tensor(float)":
        raise ModelImportError(f"{src}: input {inp.name!r} is {inp.type}; only float32 image inputs are supported")
    if len(inp.shape) != 4:
        raise ModelImportError(f"{src}: input {inp.name!r} has shape {inp.shape}; expected an image batch "
                               f"(B, 3, S, S) or (B, S, S, 3)")
    return inp.name, list(inp.shape)


def _layout(src: Path, shape: list, asked: str) -> str:
    c1, c3 = _dim(shape[1]), _dim(shape[3])
    seen = "nchw" if c1 == 3 and c3 != 3 else "nhwc" if c3 == 3 and c1 != 3 else None
    if asked == "auto":
        if seen is None:
            log.info("%s: input %s does not show its layout; assuming NCHW", src, shape)
        return seen or "nchw"
    if seen is not None and seen != asked:
        raise ModelImportError(f"{src}: the graph's input {shape} is {seen.upper()}, not {asked.upper()}: "
                               f"use --layout {seen} (or auto)")
    return asked


def _size(src: Path, shape: list, layout: str, asked: int | None) -> int:
    h, w = (shape[2], shape[3]) if layout == "nchw" else (shape[1], shape[2])
    dh, dw = _dim(h), _dim(w)
    if dh is not None and dw is not None and dh != dw:
        raise ModelImportError(f"{src}: the input is {dh}x{dw}; only square inputs are supported")
    seen = dh or dw
    if asked is not None:
        if asked < 8:
            raise ModelImportError(f"--size must be at least 8, got {asked}")
        if seen is not None and seen != asked:
            raise ModelImportError(f"{src}: the graph takes {seen}x{seen} inputs, not --size {asked}")
        return asked
    if seen is None:
        raise ModelImportError(f"{src}: the graph's input size is not fixed ({shape}): give --size")
    return seen


def _probe(src: Path, sess: ort.InferenceSession, name: str, shape: list, layout: str, size: int) -> dict:
    batch = _dim(shape[0]) or 1
    x = np.zeros((batch, 3, size, size) if layout == "nchw" else (batch, size, size, 3), np.float32)
    try:
        outs = sess.run(None, {name: x})
    except Exception as exc:  # onnxruntime raises several private exception types
        msg = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelImportError(f"{src}: the graph fails on a {tuple(x.shape)} input: {msg}") from None
    return {o.name: np.asarray(a).shape for o, a in zip(sess.get_outputs(), outs)}


def _pick_output(src: Path, shapes: dict, opts: ImportOptions) -> tuple[str, int, int | None]:
    """(output name, K, heatmap size or None)."""
    def describe() -> str:
        return ", ".join(f"{n} {tuple(s)}" for n, s in shapes.items())

    k = opts.points
    if opts.output == "heatmaps":
        def fits(s: tuple) -> bool:
            return len(s) == 4 and s[2] == s[3] and (k is None or s[1] == k)
    else:
        def fits(s: tuple) -> bool:
            n = int(np.prod(s[1:])) if len(s) >= 2 else 0
            return n > 0 and n % 2 == 0 and (k is None or n == 2 * k)
    if opts.output_name is not None:
        if opts.output_name not in shapes:
            raise ModelImportError(f"{src}: no output {opts.output_name!r}; the graph's outputs: {describe()}")
        cands = [opts.output_name] if fits(shapes[opts.output_name]) else []
        if not cands:
            raise ModelImportError(f"{src}: output {opts.output_name} {tuple(shapes[opts.output_name])} is not "
                                   f"{_wanted(opts)}")
    else:
        cands = [n for n, s in shapes.items() if fits(s)]
    if not cands:
        raise ModelImportError(f"{src}: no output is {_wanted(opts)}; the graph's outputs: {describe()} "
                               f"(see --output, --points)")
    if len(cands) > 1:
        raise ModelImportError(f"{src}: several outputs could be {_wanted(opts)}: "
                               f"{', '.join(f'{n} {tuple(shapes[n])}' for n in cands)}: choose one with --output-name")
    s = shapes[cands[0]]
    if opts.output == "heatmaps":
        return cands[0], int(s[1]), int(s[2])
    return cands[0], int(np.prod(s[1:])) // 2, None


def _wanted(opts: ImportOptions) -> str:
    k = opts.points
    if opts.output == "heatmaps":
        return f"heatmaps (B, {k or 'K'}, H, H)"
    return f"{2 * k} coordinates a face ({k} points)" if k else "an even number of coordinates a face"


def build_manifest(onnx_path: str | Path, name: str, opts: ImportOptions) -> Manifest:
    """The manifest for a third-party graph, from ``opts`` and the graph's own shapes
    (one run on a blank input). Not stamped, not checked against labelled faces.

    Raises:
        ModelImportError: one line naming the file and what does not fit.
    """
    src = Path(onnx_path)
    if not src.is_file():
        raise ModelImportError(f"{src}: model file not found")
    if opts.output not in OUTPUT_KINDS:
        raise ModelImportError(f"--output must be one of {OUTPUT_KINDS}, got {opts.output!r}")
    if opts.layout not in LAYOUT_CHOICES:
        raise ModelImportError(f"--layout must be one of {LAYOUT_CHOICES}, got {opts.layout!r}")
    if opts.color not in ("rgb", "bgr"):
        raise ModelImportError(f"--color must be rgb or bgr, got {opts.color!r}")
    if opts.points is not None and opts.points < 1:
        raise ModelImportError(f"--points must be positive, got {opts.points}")
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.intra_op_num_threads = 1
    try:
        sess = ort.InferenceSession(str(src), sess_options=so, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises several private exception types
        msg = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelImportError(f"{src}: cannot load ONNX graph: {msg}") from None
    in_name, shape = _pick_input(src, sess, opts)
    layout = _layout(src, shape, opts.layout)
    size = _size(src, shape, layout, opts.size)
    out_name, k, hm_size = _pick_output(src, _probe(src, sess, in_name, shape, layout, size), opts)
    schema = schema_for_points(k)
    detector_crop = layout_mapping(src, schema)
    bgr = opts.color == "bgr"
    mean, std = _per_channel(opts.mean, "mean", bgr), _per_channel(opts.std, "std", bgr)
    heat = opts.output == "heatmaps"
    info: dict[str, Any] = {
        "source": "imported",
        "imported_from": src.name,
        "imported_sha256": graph_sha256(src),
        "origin": opts.origin,
        "licence": opts.licence or "not given at import (a third-party model: see where it came from)",
        "import_command": opts.command,
        "import_options": {"points": k, "size": size, "color": opts.color, "layout": layout,
                           "mean": [float(v) for v in opts.mean], "std": [float(v) for v in opts.std],
                           "output": opts.output, "output_name": out_name, "input_name": in_name},
        **opts.extra,
    }
    try:
        return Manifest(
            name=name, schema=schema, input_size=size, mean=mean, std=std,
            crop_scale=float(opts.crop_scale) if opts.crop_scale else schema.crop_scale,
            coords_output=None if heat else out_name, heatmaps_output=out_name if heat else None,
            heatmap_size=hm_size, decode="heatmap" if heat else "regression", arch="imported",
            input_name=in_name, info=info, input_layout=layout, color=opts.color,
            coords_unit="pixels" if opts.output == "pixels" else "norm",
            crop_offset=(float(opts.crop_offset[0]), float(opts.crop_offset[1])),
            detector_crop=detector_crop,
        )
    except ManifestError as exc:
        raise ModelImportError(str(exc)) from None


@dataclass(frozen=True)
class ImportResult:
    installed: Installed
    manifest: Manifest
    fit: CropFit | None


def calibrate_manifest(onnx_path: str | Path, manifest: Manifest, data: str | Path, list_name: str | None,
                       max_faces: int = 200, threads: int = 0,
                       progress: Callable[[str], None] | None = None) -> tuple[Manifest, CropFit]:
    """Fit the crop on the labelled faces of ``data`` / ``list_name``; the manifest with the
    fitted crop and the fit in its card.

    Raises:
        ModelImportError: the data cannot be read, the model does not load, or the best fit
            is implausible (naming the likely cause, see ``calibrate.diagnose``).
    """
    try:
        labelled = load_labelled_folder(data, list_name)
    except LabelError as exc:
        raise ModelImportError(f"--calibrate: {exc}") from None
    faces = labelled.faces
    try:
        model = LandmarkModel.load(onnx_path, threads=threads, manifest=manifest)
    except ModelLoadError as exc:
        raise ModelImportError(str(exc)) from None
    try:
        fit = fit_crop(model, faces, refine_faces=max_faces, progress=progress)
        if not fit.plausible:
            found = diagnose(onnx_path, manifest, faces, threads=threads, progress=progress)
            raise ModelImportError(f"{Path(onnx_path)}: {implausible_message(fit, found)}")
    except CalibrationError as exc:
        raise ModelImportError(f"--calibrate: {exc}") from None
    cal = {"data": str(Path(data)), "list": list_name or "", "labelled_faces": len(faces), **fit.to_dict()}
    fitted = replace(manifest, crop_scale=fit.scale, crop_offset=fit.offset).with_info(calibration=cal)
    return fitted, fit


def import_model(onnx_path: str | Path, models_dir: str | Path, name: str, opts: ImportOptions,
                 calibrate: str | Path | None = None, list_name: str | None = None, calibrate_faces: int = 200,
                 replace_existing: bool = False, threads: int = 0,
                 progress: Callable[[str], None] | None = None) -> ImportResult:
    """Build the manifest, fit the crop when ``calibrate`` names a labelled folder, and
    install the pair into ``models_dir`` (write, verify, rename; see ``install``).

    Raises:
        ModelImportError: one line; the models folder is unchanged.
    """
    manifest = build_manifest(onnx_path, name, opts)
    fit = None
    if calibrate is not None:
        manifest, fit = calibrate_manifest(onnx_path, manifest, calibrate, list_name, calibrate_faces, threads,
                                           progress)
    try:
        installed = install_model(onnx_path, None, models_dir, name=name, replace=replace_existing,
                                  manifest=manifest)
    except ModelInstallError as exc:
        raise ModelImportError(str(exc)) from None
    return ImportResult(installed, manifest, fit)


def card_lines(m: Manifest) -> list[str]:
    """The imported model's card, a few lines for the terminal."""
    opt = m.info.get("import_options", {})
    cal = m.info.get("calibration")
    lines = [
        f"{m.name}: imported from {m.info.get('imported_from', '?')} (sha256 {m.onnx_sha256 or '?'})",
        f"  input {opt.get('layout', m.input_layout).upper()} {m.input_size}x{m.input_size} "
        f"{m.color.upper()}, (pixel - {opt.get('mean')}) / {opt.get('std')}; "
        f"output {opt.get('output')} {opt.get('output_name')!r}, {m.schema.num_points} points ({m.schema.name})",
        f"  crop: scale {m.crop_scale:.3f} x the landmark box, centre offset "
        f"({m.crop_offset[0]:+.3f}, {m.crop_offset[1]:+.3f}) box sides",
    ]
    if cal:
        lines.append(f"  calibrated on {cal['faces']} faces of {cal['data']} {cal['list']}: ION NME "
                     f"{cal['nme_ion']:.2f}% ({cal['evaluations']} settings, {cal['seconds']} s)")
    else:
        lines.append("  not calibrated: the crop is as given (--crop-scale / --crop-offset)")
    lines.append(f"  licence: {m.info.get('licence')}")
    return lines
