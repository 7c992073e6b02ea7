"""``python -m training quantize``: an int8 copy of a float landmark model, shipped only when
it keeps the float model's accuracy and runs faster.

Static quantization by onnxruntime in the QDQ format: weights int8 per output channel,
activations uint8 with ranges calibrated on training crops (the canonical crop of each
labelled face, pre-processed as the app does, no augmentation). Before that the graph is
brought to float32 (weights exported as float16 + Cast are widened back: onnxruntime can
only quantize initializers) and through onnxruntime's pre-processing (shape inference,
BatchNorm folding); after it the int8 graph's tensors get short names
(``shorten_tensor_names``: the same graph, a file about a tenth smaller). ``--exclude first``
leaves the first convolution (the one that sees the image) in float, which helps narrow,
pruned networks; a name prefix ending in ``/`` leaves a whole block in float (the pruned
0.25x runs faster with ``/net/backbone/features.1/`` in float: onnxruntime's float kernel for
its narrow depthwise convolution at 64 x 64 beats the int8 one).

The gate: on the validation faces of the chosen sources (``--sources afw helen`` for the
AFW+HELEN figure), the int8 model's ION NME may exceed the float model's by at most
``--max-nme-rise`` (0.05 points), and on 1 thread in interleaved rounds
(``training.evaluation.latency``) its median forward time must beat the float model's by the factor
``--min-speedup`` (1.0: any gain). A model that passes is installed as ``NAME-int8.onnx`` +
``NAME-int8.json`` (manifest and card: parent model, calibration data, NME, size, latency)
with the models folder's write-verify-rename; one that fails is not written, the figures
are printed as a ``log`` event and the command exits non-zero naming the failed check.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import shlex
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from kpdesk.inference.model import LandmarkModel
from kpdesk.vision.transforms import crop_params_from_points, warp_crop
from training.data.datasets import Sample
from training.evaluation.evaluate import ImageCache, load_runner, load_samples, predict_samples

log = logging.getLogger(__name__)

QUANT_OPS = {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger",
             "DynamicQuantizeLinear"}
METHODS = ("minmax", "entropy", "percentile")
MAX_NME_RISE = 0.05
CALIB_IMAGES = 256


class QuantizeError(ValueError):
    """The model cannot be quantized, the data cannot calibrate it, or the int8 model
    failed the gate (the message names the check and the figures; ``report`` holds
    what was measured)."""

    def __init__(self, message: str, report: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.report = report


# -- the graph ------------------------------------------------------------------------------
def widen_fp16_weights(model: onnx.ModelProto) -> int:
    """Replace every ``Cast(float16 initializer) -> float`` by a float32 initializer under the
    Cast's output name (in place); returns how many. ``training.jobs.onnx_export`` stores weights that
    way, and onnxruntime's quantizer only quantizes weights that are initializers."""
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    keep, widened = [], 0
    for node in g.node:
        src = inits.get(node.input[0]) if node.op_type == "Cast" and node.input else None
        to = next((a.i for a in node.attribute if a.name == "to"), None)
        if src is not None and src.data_type == onnx.TensorProto.FLOAT16 and to == onnx.TensorProto.FLOAT:
            g.initializer.append(numpy_helper.from_array(numpy_helper.to_array(src).astype(np.float32),
                                                         node.output[0]))
            widened += 1
            continue
        keep.append(node)
    if widened:
        del g.node[:]
        g.node.extend(keep)
        used = {i for n in g.node for i in n.input} | {o.name for o in g.output}
        for init in [i for i in g.initializer if i.name not in used]:
            g.initializer.remove(init)
    return widened


def shorten_tensor_names(model: onnx.ModelProto) -> int:
    """Rename every tensor but the graph's inputs and outputs to a short ``t<n>`` and drop the
    shape annotations (``value_info``) that onnxruntime infers again on load (in place). The
    QDQ graph carries each weight's name four times over (``..._quantized``, ``_scale``,
    ``_zero_point``, the dequantized output), which is a tenth of a small int8 model's file.
    Node names stay (they are what ``--exclude`` and profiles show). Returns the bytes saved;
    0 and nothing changed for a graph with subgraphs (If / Loop bodies read outer names)."""
    g = model.graph
    if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for n in g.node for a in n.attribute):
        return 0
    before = model.ByteSize()
    keep = {v.name for v in g.input} | {v.name for v in g.output} | {""}  # "": an omitted optional input
    short: dict[str, str] = {}

    def rename(name: str) -> str:
        if name in keep:
            return name
        if name not in short:
            short[name] = f"t{len(short)}"
        return short[name]

    for init in g.initializer:
        init.name = rename(init.name)
    for node in g.node:
        node.input[:] = [rename(i) for i in node.input]
        node.output[:] = [rename(o) for o in node.output]
    del g.value_info[:]
    return before - model.ByteSize()


def is_quantized(model: onnx.ModelProto) -> bool:
    return any(n.op_type in QUANT_OPS for n in model.graph.node)


def first_conv(model: onnx.ModelProto, input_name: str) -> str:
    """The name of the first convolution on the path from the graph input (the layer that
    sees the image). Raises QuantizeError when there is none."""
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    frontier, seen = [input_name], set()
    while frontier:  # breadth first: the nearest Conv to the input
        nxt = []
        for t in frontier:
            for n in consumers.get(t, []):
                if id(n) in seen:
                    continue
                seen.add(id(n))
                if n.op_type == "Conv":
                    return n.name
                nxt.extend(n.output)
        frontier = nxt
    raise QuantizeError(f"--exclude first: the graph has no convolution fed by its input {input_name!r}")


def resolve_exclude(model: onnx.ModelProto, input_name: str, exclude: list[str]) -> list[str]:
    """``--exclude`` values -> node names: ``first`` (see ``first_conv``), a node name of the
    pre-processed graph, or a name prefix ending in ``/`` (every node under it, e.g.
    ``/net/backbone/features.1/``: a whole block). Each node once, in the order named."""
    names = [n.name for n in model.graph.node]
    out: list[str] = []
    for e in exclude:
        if e == "first":
            found = [first_conv(model, input_name)]
        elif e.endswith("/"):
            found = [n for n in names if n.startswith(e)]
        else:
            found = [e] if e in names else []
        if found:
            out.extend(n for n in found if n not in out)
        else:
            convs = [n.name for n in model.graph.node if n.op_type == "Conv"][:3]
            raise QuantizeError(f"--exclude {e}: no node of that name in the graph (use 'first', a node name such "
                                f"as {', '.join(convs) or 'none'}, or a prefix ending in '/')")
    return out


# -- calibration data -----------------------------------------------------------------------
def pick_samples(samples: list[Sample], sources: list[str], n: int, seed: int, what: str) -> list[Sample]:
    """The samples of ``sources`` (all when empty); ``n`` of them drawn with ``seed`` (0: all).
    Raises QuantizeError when a source has no face (naming the sources present)."""
    present = sorted({s.source for s in samples})
    missing = [s for s in sources if s not in present]
    if missing:
        raise QuantizeError(f"{what}: no face from source(s) {', '.join(missing)} (sources there: "
                            f"{', '.join(present) or 'none'})")
    chosen = [s for s in samples if s.source in sources] if sources else list(samples)
    if not chosen:
        raise QuantizeError(f"{what}: no labelled face")
    if n and n < len(chosen):
        idx = np.sort(np.random.default_rng(seed).choice(len(chosen), size=n, replace=False))
        chosen = [chosen[i] for i in idx]
    return chosen


def calibration_inputs(model: LandmarkModel, samples: list[Sample], images: ImageCache) -> np.ndarray:
    """The canonical crop of each face, pre-processed by ``model`` as the app does:
    (N, 3, S, S) float32."""
    s = model.input_size
    crops = [warp_crop(images(smp.path), crop_params_from_points(smp.pts, model.manifest.crop_scale), s)
             for smp in samples]
    return model.preprocess(np.stack(crops))


def _reader(input_name: str, x: np.ndarray, batch: int):
    from onnxruntime.quantization import CalibrationDataReader

    class Crops(CalibrationDataReader):
        def __init__(self) -> None:
            self._it: Iterator[int] = iter(range(0, len(x), batch))

        def get_next(self) -> dict[str, np.ndarray] | None:
            i = next(self._it, None)
            return None if i is None else {input_name: x[i:i + batch]}

    return Crops()


def quantize_graph(src: Path, dst: Path, calib: np.ndarray, input_name: str, *, exclude: list[str] = (),
                   method: str = "minmax") -> dict[str, Any]:
    """Write the int8 QDQ graph of the float graph ``src`` to ``dst``, activations calibrated
    on ``calib`` (N, 3, S, S). Returns what was done (for the card)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if method not in METHODS:
        raise QuantizeError(f"--method {method}: expected one of {', '.join(METHODS)}")
    try:
        model = onnx.load(str(src))
    except Exception as exc:  # noqa: BLE001 - onnx raises DecodeError and others
        raise QuantizeError(f"{src}: cannot read the ONNX graph: {exc}") from None
    if is_quantized(model):
        raise QuantizeError(f"{src}: already quantized (it has QuantizeLinear / integer nodes)")
    widened = widen_fp16_weights(model)
    batch_dim = next((i.type.tensor_type.shape.dim[0] for i in model.graph.input if i.name == input_name), None)
    batch = 16 if batch_dim is None or not batch_dim.dim_value else batch_dim.dim_value
    with tempfile.TemporaryDirectory(prefix="kpdesk-quant-") as tmp:
        f32, pre = Path(tmp) / "float32.onnx", Path(tmp) / "pre.onnx"
        onnx.save(model, str(f32))
        try:
            quant_pre_process(str(f32), str(pre))
        except Exception as exc:  # noqa: BLE001 - shape inference and onnxruntime raise many types
            raise QuantizeError(f"{src}: onnxruntime's pre-processing failed: {_first_line(exc)}") from None
        prepared = onnx.load(str(pre))
        nodes = resolve_exclude(prepared, input_name, list(exclude))
        calib_method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                        "percentile": CalibrationMethod.Percentile}[method]
        try:
            quantize_static(str(pre), str(dst), _reader(input_name, calib, batch), quant_format=QuantFormat.QDQ,
                            per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            calibrate_method=calib_method, nodes_to_exclude=nodes)
            q = onnx.load(str(dst))
            saved = shorten_tensor_names(q)
            onnx.checker.check_model(q)
            onnx.save(q, str(dst))
        except Exception as exc:  # noqa: BLE001 - the quantizer and onnxruntime raise many types
            raise QuantizeError(f"{src}: quantization failed: {_first_line(exc)}") from None
    return {"format": "QDQ", "weights": "int8, per output channel", "activations": "uint8, per tensor",
            "calibration_method": method, "float16_weights_widened": widened, "excluded_nodes": nodes,
            "quantize_linear_nodes": sum(1 for n in q.graph.node if n.op_type == "QuantizeLinear"),
            "tensor_names_shortened_bytes": saved,
            "onnxruntime": __import__("onnxruntime").__version__}


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


# -- the gate -------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Verdict:
    """Whether an int8 model may ship, and why not."""

    ok: bool
    reasons: tuple[str, ...]


def judge(nme_float: float, nme_int8: float, ms_float: float, ms_int8: float, *, max_nme_rise: float = MAX_NME_RISE,
          min_speedup: float = 1.0, what: str = "val") -> Verdict:
    """The shipping rule: NME(int8) <= NME(float) + ``max_nme_rise`` and
    ms(float) / ms(int8) > ``min_speedup``."""
    reasons = []
    rise = nme_int8 - nme_float
    if not rise <= max_nme_rise:  # NaN fails too
        reasons.append(f"{what} ION NME {nme_int8:.3f}% against {nme_float:.3f}% for the float model: "
                       f"+{rise:.3f} points, more than the {max_nme_rise:g} allowed")
    speedup = ms_float / ms_int8 if ms_int8 > 0 else float("nan")
    if not speedup > min_speedup:
        reasons.append(f"1-thread median {ms_int8:.3f} ms against {ms_float:.3f} ms for the float model: "
                       f"speed-up x{speedup:.2f}, not above x{min_speedup:g}")
    return Verdict(not reasons, tuple(reasons))


def nme_on(path: Path, samples: list[Sample], images: ImageCache, threads: int) -> float:
    """ION NME (%) of a model on ``samples`` with its own default decoding (``training eval``'s code)."""
    runner = load_runner(path, threads=threads)
    pred = predict_samples(runner, samples, (runner.default_decode,), images=images)
    m = pred.metrics(runner.default_decode, groups={})
    return float(m[f"nme_{m['norm_main']}"])


# -- the job --------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class QuantizeConfig:
    model: str
    data: str
    train_list: str = "train.txt"
    val_list: str = "val.txt"
    sources: tuple[str, ...] = ()
    calib_images: int = CALIB_IMAGES
    method: str = "minmax"
    exclude: tuple[str, ...] = ()
    name: str = ""
    models_dir: str = ""
    out: str = ""
    max_nme_rise: float = MAX_NME_RISE
    min_speedup: float = 1.0
    rounds: int = 30
    runs_per_round: int = 20
    threads: int = 0
    seed: int = 0
    replace: bool = False
    command: str = ""


def run_quantize(cfg: QuantizeConfig, emit: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Quantize, measure, judge and (when it passes) install; returns the report. Raises
    QuantizeError on bad input and when the int8 model fails the gate (nothing written)."""
    from kpdesk.inference.catalog import default_models_dir, resolve_model
    from kpdesk.inference.install import ModelInstallError, install_model
    from training.evaluation.latency import interleaved_latency

    emit = emit or (lambda msg: log.info("%s", msg))
    if cfg.calib_images < 0:
        raise QuantizeError(f"--calib-images must be >= 0 (0: every face), got {cfg.calib_images}")
    if cfg.max_nme_rise < 0 or cfg.min_speedup < 0:
        raise QuantizeError("--max-nme-rise and --min-speedup must be >= 0")
    models_dir = Path(cfg.models_dir).expanduser() if cfg.models_dir else default_models_dir()
    src = resolve_model(cfg.model, models_dir)
    parent = LandmarkModel.load(src, threads=1)
    man = parent.manifest
    name = cfg.name or f"{src.stem}-int8"
    data = Path(cfg.data).expanduser()
    what = f"{data}/{cfg.train_list}"
    train, schema = load_samples(data, cfg.train_list)
    if schema.num_points != man.schema.num_points:
        raise QuantizeError(f"{src}: model predicts {man.schema.num_points} points, {what} has {schema.num_points}")
    calib_samples = pick_samples(train, list(cfg.sources), cfg.calib_images, cfg.seed, what)
    val, _ = load_samples(data, cfg.val_list)
    val_samples = pick_samples(val, list(cfg.sources), 0, cfg.seed, f"{data}/{cfg.val_list}")
    images = ImageCache()
    emit(f"calibration: {len(calib_samples)} training crops of {what}"
         + (f" ({'+'.join(cfg.sources)})" if cfg.sources else ""))
    calib = calibration_inputs(parent, calib_samples, images)
    out_dir = Path(cfg.out).expanduser() if cfg.out else models_dir
    with tempfile.TemporaryDirectory(prefix="kpdesk-int8-") as tmp:
        q_path = Path(tmp) / f"{name}.onnx"
        t0 = time.time()
        qinfo = quantize_graph(src, q_path, calib, man.input_name, exclude=list(cfg.exclude), method=cfg.method)
        emit(f"quantized in {time.time() - t0:.1f} s ({qinfo['quantize_linear_nodes']} QuantizeLinear nodes, "
             f"excluded: {', '.join(qinfo['excluded_nodes']) or 'none'})")
        q_man = dataclasses.replace(man, name=name, info={}).stamped(q_path)
        q_man.save(q_path.with_suffix(".json"))
        group = "+".join(cfg.sources) if cfg.sources else "all"
        emit(f"val NME on {len(val_samples)} faces ({group}), float and int8")
        nme_f = nme_on(src, val_samples, images, cfg.threads)
        nme_q = nme_on(q_path, val_samples, images, cfg.threads)
        emit(f"1-thread latency, {cfg.rounds} interleaved rounds x {cfg.runs_per_round} runs")
        timing = interleaved_latency({"float": src, "int8": q_path}, calib[:1], threads=1, rounds=cfg.rounds,
                                     runs_per_round=cfg.runs_per_round)
        v = judge(nme_f, nme_q, timing["float"].median_ms, timing["int8"].median_ms, max_nme_rise=cfg.max_nme_rise,
                  min_speedup=cfg.min_speedup, what=f"{group} val" if cfg.sources else "val")
        measured = {
            "val": {"list": cfg.val_list, "sources": list(cfg.sources), "n": len(val_samples),
                    "nme_ion_float": round(nme_f, 4), "nme_ion_int8": round(nme_q, 4),
                    "nme_rise": round(nme_q - nme_f, 4)},
            "latency_1thread": {"float": timing["float"].to_dict(), "int8": timing["int8"].to_dict(),
                                "speedup": round(timing["float"].median_ms / timing["int8"].median_ms, 3)},
            "size_bytes": {"float": src.stat().st_size, "int8": q_path.stat().st_size},
            "gate": {"max_nme_rise": cfg.max_nme_rise, "min_speedup": cfg.min_speedup, "passed": v.ok,
                     "reasons": list(v.reasons)},
        }
        emit(f"{name}: NME {nme_q:.3f}% vs {nme_f:.3f}% float; 1-thread median {timing['int8'].median_ms:.3f} vs "
             f"{timing['float'].median_ms:.3f} ms (min {timing['int8'].min_ms:.3f} vs {timing['float'].min_ms:.3f}); "
             f"{measured['size_bytes']['int8'] / 1e6:.2f} vs "
             f"{measured['size_bytes']['float'] / 1e6:.2f} MB")
        report = {"name": name, "parent": src.stem, "measured": measured}
        if not v.ok:
            raise QuantizeError(f"{name} not shipped: " + "; ".join(v.reasons), report)
        card = {k: val for k, val in man.info.items()
                if k not in ("bench", "val_metrics", "val_by_decode", "parity_max_abs_diff")}
        card.update({
            "weights_dtype": "int8 (QDQ: int8 weights per channel, uint8 activations)",
            "file_size_bytes": q_path.stat().st_size,
            "quantization": {
                **qinfo, "parent": src.stem, "parent_sha256": man.onnx_sha256 or "",
                "parent_weights_dtype": man.info.get("weights_dtype", "float32"),
                "calibration": {"data": data.name, "list": cfg.train_list, "sources": list(cfg.sources),
                                "faces": len(calib_samples), "seed": cfg.seed,
                                "crop": "canonical crop of the labels, no augmentation"},
                **measured, "command": cfg.command, "date": time.strftime("%Y-%m-%d %H:%M:%S"),
            },
        })
        q_man = dataclasses.replace(q_man, info=card)
        try:
            inst = install_model(q_path, None, out_dir, name=name, replace=cfg.replace, manifest=q_man)
        except ModelInstallError as exc:
            raise QuantizeError(str(exc)) from None
    if inst.renamed or inst.unchanged:
        emit(f"warning: {inst.describe()}")
    report.update({"onnx": str(inst.path), "manifest": str(inst.path.with_suffix(".json")), "installed": inst.name,
                   "backup": str(inst.backup) if inst.backup else None})
    return report


# -- command --------------------------------------------------------------------------------
def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="float model: a NAME in --models-dir or a NAME.onnx path "
                                                   "(with NAME.json beside it)")
    p.add_argument("--calibrate", required=True, metavar="DATA", help="labelled data folder (e.g. face68)")
    p.add_argument("--list", default="train.txt", help="list inside DATA whose faces calibrate (default train.txt)")
    p.add_argument("--val-list", default="val.txt", help="list inside DATA the gate is judged on (default val.txt)")
    p.add_argument("--sources", nargs="*", default=[],
                   help="data sources to use for both lists, e.g. afw helen (default: every face)")
    p.add_argument("--calib-images", type=int, default=CALIB_IMAGES,
                   help=f"training faces for calibration, drawn with --seed (default {CALIB_IMAGES}; 0: all)")
    p.add_argument("--method", choices=METHODS, default="minmax", help="activation range calibration")
    p.add_argument("--exclude", nargs="*", default=[],
                   help="nodes kept in float: 'first' (the first convolution), node names, and/or name "
                        "prefixes ending in '/' (every node under one, e.g. /net/backbone/features.1/)")
    p.add_argument("--name", default="", help="installed name (default: the model's name + '-int8')")
    p.add_argument("--models-dir", default="", help="where --model is looked up (default: $KPDESK_MODELS or the "
                                                    "repository's models/)")
    p.add_argument("--out", default="", help="folder the int8 model is installed into (default: --models-dir)")
    p.add_argument("--max-nme-rise", type=float, default=MAX_NME_RISE,
                   help=f"largest val ION NME rise allowed, in points (default {MAX_NME_RISE})")
    p.add_argument("--min-speedup", type=float, default=1.0,
                   help="float / int8 1-thread median time must exceed this (default 1.0: any gain)")
    p.add_argument("--rounds", type=int, default=30, help="interleaved timing rounds (default 30)")
    p.add_argument("--runs", type=int, default=20, help="timed forwards per model per round (default 20)")
    p.add_argument("--threads", type=int, default=0, help="threads for the NME runs (0 = library default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--replace", action="store_true",
                   help="replace an installed model of that name (kept in .backup/); without it a taken name "
                        "installs as NAME-2, ...")


def command_line(argv: list[str]) -> str:
    """The command as a user types it (``python -m training quantize ...``), from the process's
    arguments; "" when the job was not started from the command line (e.g. from tests)."""
    return "python -m training " + shlex.join(argv) if argv[:1] == ["quantize"] else ""


def run(args: argparse.Namespace, events: Any, cancel: Any) -> dict[str, Any]:
    from training.events import EventStream

    ev = events or EventStream(None)
    if args.rounds < 1 or args.runs < 1:
        raise QuantizeError(f"--rounds and --runs must be >= 1, got {args.rounds} and {args.runs}")
    cfg = QuantizeConfig(
        model=args.model, data=args.calibrate, train_list=args.list, val_list=args.val_list,
        sources=tuple(args.sources), calib_images=args.calib_images, method=args.method, exclude=tuple(args.exclude),
        name=args.name, models_dir=args.models_dir, out=args.out, max_nme_rise=args.max_nme_rise,
        min_speedup=args.min_speedup, rounds=args.rounds, runs_per_round=args.runs, threads=args.threads,
        seed=args.seed, replace=args.replace, command=command_line(sys.argv[1:]))
    try:
        report = run_quantize(cfg, emit=lambda msg: ev.emit("log", message=msg))
    except QuantizeError as exc:
        if exc.report is not None:  # what was measured, for the note, before the one-line error
            ev.emit("log", message=f"{exc.report['name']}: measured, not shipped", **exc.report)
        raise
    ev.emit("exported", **report)
    ev.emit("done", command="quantize", **report)
    return report


COMMANDS = {"quantize": ("int8 copy of a float model (onnxruntime static QDQ, calibrated on training crops), "
                         "installed only if as accurate (val NME) and faster (1 thread).", add_args, run)}
