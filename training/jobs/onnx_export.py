"""Export a trained network to ``NAME.onnx`` + ``NAME.json`` (the kpdesk model format),
checked against PyTorch on random and real inputs, written atomically."""

from __future__ import annotations

import hashlib
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import numpy_helper
from torch import nn

from kpdesk.inference.detectors import LAYOUT_CALIBRATION
from kpdesk.vision.manifest import Manifest
from kpdesk.vision.preprocess import IMAGENET_MEAN, IMAGENET_STD
from kpdesk.vision.schema import KeypointSchema
from training.nets.networks import ExportWrapper, count_macs, count_params

log = logging.getLogger(__name__)


class ExportError(RuntimeError):
    """Export failed or the ONNX graph disagrees with PyTorch."""


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


FP16_TOL = 5e-3  # outputs (coords in [0, 1], heatmaps in [0, 1]) moved by rounding the weights to float16


def weights_to_fp16(path_in: Path, path_out: Path) -> None:
    """Store float weights (>= 1024 values) as float16 followed by a Cast back to float32.

    onnxruntime folds the casts when it loads the model, so the model still computes in
    float32 (same speed); only the weights are rounded to float16 (half the file size).
    """
    m = onnx.load(str(path_in))
    g = m.graph
    new_nodes = []
    for init in g.initializer:
        if init.data_type != onnx.TensorProto.FLOAT:
            continue
        arr = numpy_helper.to_array(init)
        if arr.size < 1024:
            continue
        name = init.name
        half = numpy_helper.from_array(arr.astype(np.float16), name + "__fp16")
        init.CopyFrom(half)
        new_nodes.append(onnx.helper.make_node("Cast", [name + "__fp16"], [name], to=onnx.TensorProto.FLOAT,
                                               name=name + "__cast"))
    for n in reversed(new_nodes):
        g.node.insert(0, n)
    onnx.checker.check_model(m)
    onnx.save(m, str(path_out))


def torch_to_onnx(model: nn.Module, x: torch.Tensor, path: Path, outputs: list[str]) -> None:
    """The TorchScript-based export every ONNX file of the project goes through (opset 17,
    dynamic batch), warnings silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (x,), str(path), dynamo=False, opset_version=17, input_names=["input"], output_names=outputs,
            dynamic_axes={"input": {0: "batch"}, **{o: {0: "batch"} for o in outputs}}, do_constant_folding=True,
        )


def run_onnx(path: Path, x: np.ndarray, threads: int = 1) -> list[np.ndarray]:
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return sess.run(None, {"input": x})


def layout_detector_crop(schema: KeypointSchema) -> dict[str, dict[str, float]] | None:
    """The manifest's ``detector_crop`` for a new model: the mapping measured for its point
    layout (``kpdesk.inference.detectors.LAYOUT_CALIBRATION``), or None for a layout never
    measured; the app then refuses the model until ``benchmarks/calibrate_detectors.py
    --model ... --write`` has fitted one on labelled faces."""
    table = LAYOUT_CALIBRATION.get(schema.name)
    points = {"ibug68": 68, "mtfl5": 5}.get(schema.name)
    if table is None or points != schema.num_points:
        return None
    return {name: cal.as_dict() for name, cal in table.items()}


def export_model(model: nn.Module, schema: KeypointSchema, out_onnx: Path, *, input_size: int, heatmap_size: int,
                 sigma: float, decode: str, arch: str, info: dict[str, Any] | None = None,
                 real_inputs: np.ndarray | None = None, fp16_weights: bool = False, tol: float = 1e-3,
                 backup_existing: bool = False) -> Manifest:
    """Export ``model`` (forward -> dict with coords[, heatmaps]) and its manifest.

    Parity: the ONNX outputs are compared with PyTorch on 4 random inputs and on
    ``real_inputs`` (B, 3, S, S) when given; the max abs differences go into the
    manifest, and a difference over ``tol`` raises ``ExportError``. With ``fp16_weights`` that
    check is made on the float32 graph, then the weights are rounded and the outputs' move is
    recorded apart (``fp16_weights_max_abs_diff``, refused over ``FP16_TOL``). Files are written
    to temporary names, verified, then renamed, so a reader never sees half a model; with
    ``backup_existing`` a model already at ``out_onnx`` is first moved into ``.backup/``
    beside it (only once the new one is ready), otherwise it is replaced.
    """
    out_onnx = Path(out_onnx)
    for p in (out_onnx, out_onnx.with_suffix(".json")):
        if p.exists() and not p.is_file():  # e.g. /dev/full: a rename would replace the device itself
            raise ExportError(f"{p}: cannot write: not a regular file")
    out_onnx.parent.mkdir(parents=True, exist_ok=True)
    name = out_onnx.stem
    model = model.eval().cpu()
    wrapper = ExportWrapper(model).eval()
    has_hm = getattr(model, "hm_head", None) is not None
    outputs = ["coords", "heatmaps"] if has_hm else ["coords"]
    tmp = out_onnx.with_name(f".{name}.tmp.onnx")
    tmp_json = out_onnx.with_name(f".{name}.tmp.json")
    try:
        x = torch.randn(1, 3, input_size, input_size)
        torch_to_onnx(wrapper, x, tmp, outputs)
        onnx.checker.check_model(str(tmp))
        checks = {"random": np.random.default_rng(0).standard_normal((4, 3, input_size, input_size)).astype(np.float32)}
        if real_inputs is not None and len(real_inputs):
            checks["real"] = np.asarray(real_inputs[:16], dtype=np.float32)
        refs = {}
        for key, xin in checks.items():
            with torch.no_grad():
                ref = model(torch.from_numpy(xin))
            refs[key] = [ref["coords"].numpy()] + ([ref["heatmaps"].numpy()] if has_hm else [])

        def differences() -> dict[str, float]:
            return {key: max(float(np.abs(got - want).max()) for got, want in zip(run_onnx(tmp, xin), refs[key],
                                                                                   strict=True))
                    for key, xin in checks.items()}

        parity = differences()  # the float32 graph: the export itself
        worst = max(parity.values())
        if worst > tol:
            raise ExportError(f"{out_onnx}: ONNX differs from PyTorch by {worst:.2e} (> {tol:g}): {parity}")
        fp16_rounding = None
        if fp16_weights:  # then the rounding of the weights, judged apart (its accuracy cost is eval's to measure)
            weights_to_fp16(tmp, tmp)
            fp16_rounding = differences()
            worst16 = max(fp16_rounding.values())
            if worst16 > FP16_TOL:
                raise ExportError(f"{out_onnx}: float16 weights move the outputs by {worst16:.2e} (> {FP16_TOL:g}): "
                                  f"{fp16_rounding}; export without --fp16-weights")
        params = count_params(model)
        card = {
            "params": params,
            "macs": count_macs(model, input_size),
            "file_size_bytes": tmp.stat().st_size,
            "onnx_sha256": sha256(tmp),
            "weights_dtype": "float16 (computed in float32)" if fp16_weights else "float32",
            "parity_max_abs_diff": parity,
            **({"fp16_weights_max_abs_diff": fp16_rounding} if fp16_rounding else {}),
            **(info or {}),
        }
        manifest = Manifest(
            name=name, schema=schema, input_size=input_size, mean=IMAGENET_MEAN, std=IMAGENET_STD,
            crop_scale=schema.crop_scale, coords_output="coords", heatmaps_output="heatmaps" if has_hm else None,
            heatmap_size=heatmap_size if has_hm else None, sigma=sigma, decode=decode if has_hm else "regression",
            arch=arch, onnx_sha256=card["onnx_sha256"], info=card, detector_crop=layout_detector_crop(schema),
        )
        manifest.save(tmp_json)
        Manifest.load(tmp_json)  # verify it reads back
        if backup_existing:
            from kpdesk.inference.install import backup_model

            backup_model(out_onnx.parent, name)
        os.replace(tmp_json, out_onnx.with_suffix(".json"))  # manifest first: the catalog keys on *.onnx
        os.replace(tmp, out_onnx)
        log.info("exported %s (%.2f MB, parity %s)", out_onnx, card["file_size_bytes"] / 1e6, parity)
        return manifest
    finally:
        for p in (tmp, tmp_json):
            if p.exists():
                p.unlink()
