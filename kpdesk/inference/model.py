"""A landmark model: an ONNX graph plus the manifest that says how to feed and decode it."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from kpdesk.inference.detectors import CALIBRATED_LAYOUT, CALIBRATION, DETECTOR_NAMES, BoxCalibration
from kpdesk.vision.codecs import DECODE_MODES, LandmarkDecoder
from kpdesk.vision.manifest import Manifest, ManifestError, file_sha256
from kpdesk.vision.preprocess import to_input
from kpdesk.vision.schema import KeypointSchema

log = logging.getLogger(__name__)


class ModelLoadError(Exception):
    """A model file is missing, corrupt, or disagrees with its manifest. Names the file."""


def max_threads() -> int:
    """The most intra-op threads worth asking for: the CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def cap_threads(threads: int) -> int:
    """``threads`` capped at ``max_threads()`` (0, onnxruntime's own choice, stays 0): a
    pool far larger than the machine only thrashes (9999 threads hung for minutes)."""
    limit = max_threads()
    if threads > limit:
        log.warning("%d onnxruntime threads asked for, this machine has %d CPUs: using %d", threads, limit, limit)
        return limit
    return threads


@dataclass(frozen=True, eq=False)
class ModelOutput:
    """One batch through the model.

    Attributes:
        pts_crop: (B, K, 2) keypoints in crop pixels.
        conf: (B, K) per-point confidence in [0, 1].
        heatmaps: (B, K, H, H) raw heatmaps, or None when the graph has none.
        coords: (B, 2K) raw normalised coordinates, or None when the graph has none.
    """

    pts_crop: np.ndarray
    conf: np.ndarray
    heatmaps: np.ndarray | None
    coords: np.ndarray | None


def _dim(d: object) -> int | None:
    """A concrete graph dimension, or None for a symbolic / unknown one."""
    return d if isinstance(d, int) and d > 0 else None


def manifest_path_for(onnx_path: str | Path) -> Path:
    return Path(onnx_path).with_suffix(".json")


_SHA_CACHE: dict[tuple[str, int, int], str] = {}


def graph_sha256(path: Path) -> str:
    """sha256 of a graph file, cached per (path, size, mtime): model switches re-open
    the same files over and over, and hashing a 50 MB graph costs ~0.1 s."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    digest = _SHA_CACHE.get(key)
    if digest is None:
        digest = _SHA_CACHE[key] = file_sha256(path)
        while len(_SHA_CACHE) > 64:
            _SHA_CACHE.pop(next(iter(_SHA_CACHE)))
    return digest


def check_checksum(path: Path, m: Manifest) -> None:
    """Raise ModelLoadError when the manifest is stamped for another graph file."""
    if not m.onnx_sha256:
        return
    actual = graph_sha256(path)
    if actual != m.onnx_sha256:
        raise ModelLoadError(
            f"{path}: the graph does not belong to its manifest {manifest_path_for(path).name} (sha256 "
            f"{actual[:12]}…, manifest says {m.onnx_sha256[:12]}…); if you changed the graph on purpose, "
            f"re-stamp it: kpdesk models --restamp {path}")


def _check_outputs(path: Path, m: Manifest, outputs: dict[str, list]) -> None:
    """Output shapes (graph-declared, possibly symbolic, or actual) against the manifest."""
    k = m.schema.num_points
    for out in (m.coords_output, m.heatmaps_output):
        if out is not None and out not in outputs:
            raise ModelLoadError(f"{path}: manifest names output {out!r}, graph has {sorted(outputs)}")
    if m.coords_output is not None:
        shape = outputs[m.coords_output]
        if len(shape) < 2:
            raise ModelLoadError(f"{path}: coords output has shape {shape}, expected (B, {2 * k})")
        dims = [_dim(d) for d in shape[1:]]
        n = int(np.prod(dims)) if None not in dims else None  # values a face; (B, 2K) or e.g. (B, K, 2)
        if n is not None and n != 2 * k:
            pts = f"{n // 2}" if n % 2 == 0 else f"{n} values (odd)"
            raise ModelLoadError(f"{path}: manifest says {k} points, graph outputs {pts}")
    if m.heatmaps_output is not None:
        shape = outputs[m.heatmaps_output]
        if len(shape) != 4:
            raise ModelLoadError(f"{path}: heatmaps output has shape {shape}, expected (B, {k}, H, H)")
        n = _dim(shape[1])
        if n is not None and n != k:
            raise ModelLoadError(f"{path}: manifest says {k} points, graph outputs {n} heatmaps")
        for d in shape[2:]:
            if m.heatmap_size and _dim(d) not in (m.heatmap_size, None):
                raise ModelLoadError(
                    f"{path}: manifest says heatmap size {m.heatmap_size}, graph outputs {shape[2]}x{shape[3]}")


def input_shape(m: Manifest, batch: int) -> tuple[int, int, int, int]:
    """The shape of a batch as the graph takes it (``m.input_layout``)."""
    s = m.input_size
    return (batch, 3, s, s) if m.input_layout == "nchw" else (batch, s, s, 3)


def _check_graph(path: Path, m: Manifest, sess: ort.InferenceSession) -> None:
    """Raise ModelLoadError where the graph disagrees with the manifest: first on the
    declared shapes, then on the shapes of one real run (exporters often leave output
    dimensions symbolic)."""
    inputs = {i.name: i.shape for i in sess.get_inputs()}
    if m.input_name not in inputs:
        raise ModelLoadError(f"{path}: manifest says input {m.input_name!r}, graph has {sorted(inputs)}")
    shape = inputs[m.input_name]
    ch, spatial = (1, (2, 3)) if m.input_layout == "nchw" else (3, (1, 2))
    want = "(B, 3, S, S)" if m.input_layout == "nchw" else "(B, S, S, 3)"
    if len(shape) != 4 or _dim(shape[ch]) not in (3, None):
        raise ModelLoadError(f"{path}: graph input {m.input_name!r} has shape {shape}, expected {want} "
                             f"({m.input_layout.upper()})")
    for d in (shape[i] for i in spatial):
        if _dim(d) not in (m.input_size, None):
            raise ModelLoadError(f"{path}: manifest says input size {m.input_size}, graph takes "
                                 f"{shape[spatial[0]]}x{shape[spatial[1]]}")
    _check_outputs(path, m, {o.name: o.shape for o in sess.get_outputs()})
    names = [o for o in (m.coords_output, m.heatmaps_output) if o is not None]
    probe = np.zeros(input_shape(m, _dim(shape[0]) or 1), np.float32)
    try:
        actual = sess.run(names, {m.input_name: probe})
    except Exception as exc:  # onnxruntime raises several private exception types
        msg = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelLoadError(f"{path}: graph fails on a {m.input_size}x{m.input_size} input: {msg}") from None
    _check_outputs(path, m, {n: list(a.shape) for n, a in zip(names, actual)})


def detector_mapping(path: Path, m: Manifest) -> dict[str, BoxCalibration]:
    """Per detector name, how its box maps to this model's crop (the manifest's
    ``detector_crop``; the measured 68-point mapping for an iBUG-68 manifest without one).

    Raises:
        ModelLoadError: one line, when the mapping is missing (for any other layout) or
            implausible, or leaves out one of the app's detectors: the model would run on
            wrongly cut crops and look right only on easy faces.
    """
    fix = (f"measure it on labelled faces: python benchmarks/calibrate_detectors.py --pack PACK --split train "
           f"--model {path} --write")
    json_name = manifest_path_for(path).name
    if m.detector_crop is None:
        if m.schema.name == CALIBRATED_LAYOUT and m.schema.num_points == 68:
            return dict(CALIBRATION)
        raise ModelLoadError(f"{path}: {json_name} has no detector_crop (how a face detector's box maps to this "
                             f"{m.schema.num_points}-point model's crop); {fix}")
    out = {}
    for name in DETECTOR_NAMES:
        if name not in m.detector_crop:
            raise ModelLoadError(f"{path}: {json_name} detector_crop has no {name!r} entry; {fix}")
        try:
            out[name] = BoxCalibration.from_dict(m.detector_crop[name], f"detector_crop.{name}")
        except ValueError as exc:
            raise ModelLoadError(f"{path}: {json_name} {exc}; {fix}") from None
    return out


class LandmarkModel:
    """An ONNX landmark model ready to run on BGR crops.

    Not thread-safe for concurrent ``run`` calls on one instance from several threads
    (onnxruntime sessions are, but ``decode_mode`` is plain state): use one per thread.
    """

    def __init__(self, path: Path, manifest: Manifest, session: ort.InferenceSession) -> None:
        self.path = path
        self._manifest = manifest
        self._session = session
        batch = session.get_inputs()[[i.name for i in session.get_inputs()].index(manifest.input_name)].shape[0]
        self._fixed_batch = _dim(batch)
        self._outputs = [o for o in (manifest.coords_output, manifest.heatmaps_output) if o is not None]
        self._decode_mode = manifest.decode
        self._decoders: dict[str, LandmarkDecoder] = {}
        self._detector_crop = detector_mapping(path, manifest)

    @classmethod
    def load(cls, onnx_path: str | Path, threads: int = 0, providers: list[str] | None = None,
             optimize: bool = True, manifest: Manifest | None = None) -> LandmarkModel:
        """Open ``NAME.onnx`` and its manifest ``NAME.json``; check that they agree.

        Args:
            onnx_path: the graph file.
            threads: intra-op threads for onnxruntime; 0 lets onnxruntime choose.
            providers: execution providers; default CPU.
            optimize: graph optimisations on (off only makes loading faster, e.g. to validate).
            manifest: check the graph against this manifest instead of ``NAME.json``.

        Raises:
            ModelLoadError: naming the file, for a missing / corrupt graph or manifest,
                or a manifest that disagrees with the graph.
        """
        path = Path(onnx_path)
        if not path.is_file():
            raise ModelLoadError(f"{path}: model file not found")
        if manifest is None:
            try:
                manifest = Manifest.load(manifest_path_for(path))
            except ManifestError as exc:
                raise ModelLoadError(str(exc)) from None
        check_checksum(path, manifest)
        detector_mapping(path, manifest)  # refused before the (slow) session is built
        opts = ort.SessionOptions()
        if threads < 0:
            raise ModelLoadError(f"{path}: threads must be >= 0, got {threads}")
        threads = cap_threads(threads)
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        if not optimize:
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        try:
            session = ort.InferenceSession(str(path), sess_options=opts,
                                           providers=providers or ["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises several private exception types
            msg = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ModelLoadError(f"{path}: cannot load ONNX graph: {msg}") from None
        _check_graph(path, manifest, session)
        return cls(path, manifest, session)

    # -- properties -------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self._manifest.name

    @property
    def manifest(self) -> Manifest:
        return self._manifest

    @property
    def schema(self) -> KeypointSchema:
        return self._manifest.schema

    @property
    def input_size(self) -> int:
        return self._manifest.input_size

    def box_calibration(self, detector_name: str) -> BoxCalibration | None:
        """How detector ``detector_name``'s box maps to this model's crop (None: a detector
        the manifest does not know, e.g. a test's; it then uses its own)."""
        return self._detector_crop.get(detector_name)

    @property
    def has_heatmaps(self) -> bool:
        return self._manifest.heatmaps_output is not None and bool(self._manifest.heatmap_size)

    @property
    def decode_mode(self) -> str:
        return self._decode_mode

    @decode_mode.setter
    def decode_mode(self, mode: str | None) -> None:
        mode = mode or self._manifest.decode
        if mode not in DECODE_MODES:
            raise ValueError(f"decode mode {mode!r} not in {DECODE_MODES}")
        if mode != "regression" and not self.has_heatmaps:
            raise ValueError(f"model {self.name} has no heatmap output: decode mode {mode!r} impossible")
        if mode == "regression" and self._manifest.coords_output is None:
            raise ValueError(f"model {self.name} has no coordinate output: decode mode 'regression' impossible")
        self._decode_mode = mode

    def decoder(self) -> LandmarkDecoder:
        mode = self._decode_mode
        if mode not in self._decoders:
            self._decoders[mode] = self._manifest.decoder(mode)
        return self._decoders[mode]

    # -- running ----------------------------------------------------------------------
    def forward(self, x: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Normalised RGB input (B, 3, S, S) float32 -> raw (coords (B, 2K) in [0, 1] of the
        crop, heatmaps (B, K, H, H)).

        A graph that takes BGR or NHWC input, or gives coordinates in crop pixels or as
        (B, K, 2) (an imported model, see the manifest), is adapted here, so every caller
        (pipeline, evaluation, robustness lab) feeds and reads every model the same way.
        """
        if self._fixed_batch is not None and x.shape[0] != self._fixed_batch:
            parts = [self.forward(x[i:i + 1]) for i in range(x.shape[0])]
            cat = [np.concatenate([p[j] for p in parts]) if parts[0][j] is not None else None for j in (0, 1)]
            return cat[0], cat[1]
        m = self._manifest
        if m.color == "bgr":
            x = x[:, ::-1]
        if m.input_layout == "nhwc":
            x = x.transpose(0, 2, 3, 1)
        if not x.flags.c_contiguous:
            x = np.ascontiguousarray(x)
        res = dict(zip(self._outputs, self._session.run(self._outputs, {m.input_name: x})))
        coords = res[m.coords_output] if m.coords_output else None
        heatmaps = res[m.heatmaps_output] if m.heatmaps_output else None
        if coords is not None:
            if coords.ndim != 2:
                coords = coords.reshape(coords.shape[0], -1)
            if m.coords_unit == "pixels":
                coords = coords * np.float32(1.0 / m.input_size)
        return coords, heatmaps

    def preprocess(self, crops_bgr: np.ndarray) -> np.ndarray:
        """BGR uint8 crops (B, S, S, 3) -> normalised float32 input (B, 3, S, S)."""
        x = np.asarray(crops_bgr)
        s = self.input_size
        if x.ndim == 3:
            x = x[None]
        if x.shape[1:3] != (s, s):
            raise ValueError(f"model {self.name} takes {s}x{s} crops, got {x.shape}")
        return to_input(x, self._manifest.mean, self._manifest.std)

    def decode(self, coords: np.ndarray | None, heatmaps: np.ndarray | None) -> ModelOutput:
        pts, conf = self.decoder().decode(coords, heatmaps)
        return ModelOutput(pts_crop=pts, conf=np.asarray(conf, dtype=np.float32), heatmaps=heatmaps, coords=coords)

    def run(self, crops_bgr: np.ndarray) -> ModelOutput:
        """BGR uint8 crops (B, S, S, 3) -> keypoints in crop pixels and confidences."""
        coords, heatmaps = self.forward(self.preprocess(crops_bgr))
        return self.decode(coords, heatmaps)

    def __repr__(self) -> str:
        k, s = self.schema.num_points, self.input_size
        return f"LandmarkModel({self.name!r}, K={k}, S={s}, decode={self.decode_mode})"
