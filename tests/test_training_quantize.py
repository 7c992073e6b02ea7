"""``python -m training quantize`` on the tiny test network and a generated face68 pack (no
../shared needed): the int8 graph is installed like any model and loads in the app, its card
names its parent and calibration data, a model that fails the gate is not written, bad input
is one line. Plus the pieces: float16 weights widened exactly, the first convolution found,
the gate's arithmetic, the interleaved timing helper, ``benchmarks/int8_speed.py`` and
``benchmarks/int8_float_blocks.py``."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from fixtures import export_tiny, make_face68, tiny_landmark_net
from onnx import numpy_helper

from training.cli import main as training_main
from training.evaluation.quantize import (
    QuantizeError,
    first_conv,
    is_quantized,
    judge,
    resolve_exclude,
    shorten_tensor_names,
    widen_fp16_weights,
)

REPO = Path(__file__).resolve().parents[1]
FAST = ["--rounds", "2", "--runs", "3", "--calib-images", "8", "--threads", "1"]


@pytest.fixture(autouse=True)
def _no_signal_handlers(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process ``training.cli.main`` would install SIGINT/SIGTERM handlers in pytest."""
    monkeypatch.setattr("training.cli.CancelFlag.listen", lambda self: None)


@pytest.fixture(scope="module")
def pack(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(models folder with tiny.onnx, face68 pack with afw + helen train / val faces)."""
    root = tmp_path_factory.mktemp("quant")
    export_tiny(root / "models", "tiny")
    return root / "models", make_face68(root / "face68", n_train=12, n_val=6, size=80)


def _quantize(capsys: pytest.CaptureFixture, models: Path, data: Path, out: Path, *extra: str) -> tuple[int, list]:
    rc = training_main(["quantize", "--model", "tiny", "--models-dir", str(models), "--calibrate", str(data),
                        "--list", "train.txt", "--sources", "afw", "helen", "--val-list", "val.txt", "--out", str(out),
                        *FAST, *extra])
    lines = [json.loads(ln) for ln in capsys.readouterr().out.splitlines() if ln.startswith("{")]
    return rc, lines


@pytest.fixture(scope="module")
def shipped(pack: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """tiny-int8 installed with the gate opened wide (an untrained 16-channel net gains no
    speed from int8), the first convolution left in float."""
    models, data = pack
    out = tmp_path_factory.mktemp("int8")
    mp = pytest.MonkeyPatch()
    mp.setattr("training.cli.CancelFlag.listen", lambda self: None)
    try:
        rc = training_main(["quantize", "--model", str(models / "tiny.onnx"), "--calibrate", str(data),
                            "--sources", "afw", "helen", "--out", str(out), "--exclude", "first",
                            "--max-nme-rise", "100", "--min-speedup", "0", *FAST])
    finally:
        mp.undo()
    assert rc == 0
    return out / "tiny-int8.onnx", json.loads((out / "tiny-int8.json").read_text())


def test_int8_model_installs_and_loads_like_any_model(shipped: tuple[Path, dict], pack: tuple[Path, Path]) -> None:
    from kpdesk.inference.catalog import scan_models
    from kpdesk.inference.model import LandmarkModel

    path, man = shipped
    (entry,) = scan_models(path.parent)
    assert entry.ok and entry.name == "tiny-int8"
    model = onnx.load(str(path))
    assert is_quantized(model) and sum(n.op_type == "QuantizeLinear" for n in model.graph.node) >= 3
    q = LandmarkModel.load(path, threads=1)
    f = LandmarkModel.load(pack[0] / "tiny.onnx", threads=1)
    x = np.random.default_rng(0).integers(0, 255, (2, 64, 64, 3), dtype=np.uint8)
    cq, hq = q.forward(q.preprocess(x))
    cf, hf = f.forward(f.preprocess(x))
    assert cq.shape == cf.shape and hq.shape == hf.shape
    assert np.abs(cq - cf).max() < 0.05 and np.abs(cq - cf).max() > 0  # quantized, yet close
    assert q.run(x).pts_crop.shape == (2, 68, 2)


def test_card_names_parent_calibration_gate_and_float_first_conv(shipped: tuple[Path, dict]) -> None:
    path, man = shipped
    info, qi = man["info"], man["info"]["quantization"]
    assert man["name"] == "tiny-int8" and info["weights_dtype"].startswith("int8")
    assert qi["parent"] == "tiny" and qi["format"] == "QDQ"
    assert qi["calibration"]["faces"] == 8 and qi["calibration"]["sources"] == ["afw", "helen"]
    assert qi["val"]["n"] == 6 and qi["gate"]["passed"] is True
    assert qi["size_bytes"]["int8"] == path.stat().st_size == info["file_size_bytes"]
    assert qi["latency_1thread"]["int8"]["rounds"] == 2 and qi["latency_1thread"]["int8"]["runs"] == 6
    # --exclude first: that convolution's weight is a plain float initializer, not dequantized.
    graph = onnx.load(str(path)).graph
    (conv,) = [n for n in graph.node if n.name == qi["excluded_nodes"][0]]
    inits = {i.name for i in graph.initializer}
    assert conv.op_type == "Conv" and conv.input[1] in inits
    others = [n for n in graph.node if n.op_type == "Conv" and n is not conv]
    assert others and all(n.input[1] not in inits for n in others)

    from kpdesk.vision.manifest import Manifest
    from training.evaluation.cards import card_section

    text = card_section(Manifest.load(path.with_suffix(".json")), {"params": 1, "macs": 1}, {})
    assert "**Quantization**: int8 copy of `tiny`" in text and "8 training crops" in text


def test_failed_gate_writes_nothing_and_says_why(pack: tuple[Path, Path], tmp_path: Path,
                                                 capsys: pytest.CaptureFixture) -> None:
    rc, events = _quantize(capsys, *pack, tmp_path / "out", "--min-speedup", "1000")
    assert rc == 2
    assert events[-1]["event"] == "error" and "not shipped" in events[-1]["message"]
    assert "speed-up" in events[-1]["message"] and "x1000" in events[-1]["message"]
    measured = [e for e in events if e.get("measured")]
    assert measured and measured[-1]["measured"]["gate"]["passed"] is False
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_bad_input_is_one_line(pack: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    models, data = pack
    rc = training_main(["quantize", "--model", "tiny", "--models-dir", str(models), "--calibrate", str(data),
                        "--sources", "ytf", "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "ytf" in err[0] and "afw, helen" in err[0]
    rc = training_main(["quantize", "--model", "nosuch", "--models-dir", str(models), "--calibrate", str(data)])
    assert rc == 2 and "nosuch" in capsys.readouterr().err
    rc, events = _quantize(capsys, models, data, tmp_path, "--exclude", "conv_that_is_not_there")
    assert rc == 2 and "conv_that_is_not_there" in events[-1]["message"]
    assert not list(tmp_path.glob("*.onnx"))


def test_an_int8_model_is_not_quantized_again(shipped: tuple[Path, dict], pack: tuple[Path, Path],
                                              capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    rc = training_main(["quantize", "--model", str(shipped[0]), "--calibrate", str(pack[1]), "--out", str(tmp_path),
                        *FAST])
    assert rc == 2 and "already quantized" in capsys.readouterr().err


def test_float16_weights_are_widened_exactly(pack: tuple[Path, Path], tmp_path: Path) -> None:
    from training.jobs.onnx_export import weights_to_fp16

    half = tmp_path / "half.onnx"
    weights_to_fp16(pack[0] / "tiny.onnx", half)
    m = onnx.load(str(half))
    n16 = sum(i.data_type == onnx.TensorProto.FLOAT16 for i in m.graph.initializer)
    assert n16 >= 1
    assert widen_fp16_weights(m) == n16
    assert not any(i.data_type == onnx.TensorProto.FLOAT16 for i in m.graph.initializer)
    assert not any(n.op_type == "Cast" for n in m.graph.node)
    wide = tmp_path / "wide.onnx"
    onnx.save(m, str(wide))
    x = np.random.default_rng(1).standard_normal((2, 3, 64, 64)).astype(np.float32)
    a = ort.InferenceSession(str(half), providers=["CPUExecutionProvider"]).run(None, {"input": x})
    b = ort.InferenceSession(str(wide), providers=["CPUExecutionProvider"]).run(None, {"input": x})
    assert all(np.array_equal(p, q) for p, q in zip(a, b))


def test_short_tensor_names_keep_the_graph_and_its_interface(shipped: tuple[Path, dict], pack: tuple[Path, Path],
                                                            tmp_path: Path) -> None:
    # The installed int8 graph: every inner tensor renamed, the interface as it was.
    path, man = shipped
    assert man["info"]["quantization"]["tensor_names_shortened_bytes"] > 0
    m = onnx.load(str(path))
    io = {v.name for v in m.graph.input} | {v.name for v in m.graph.output}
    assert io == {"input", "coords", "heatmaps"}
    inner = {t for n in m.graph.node for t in [*n.input, *n.output]} - io - {""}
    assert inner and all(t.startswith("t") and t[1:].isdigit() for t in inner)
    assert not m.graph.value_info
    # The float export (torch's long names): same outputs bit for bit, smaller file, idempotent.
    long = pack[0] / "tiny.onnx"
    g = onnx.load(str(long))
    assert shorten_tensor_names(g) > 0 and shorten_tensor_names(g) == 0
    onnx.checker.check_model(g)
    short = tmp_path / "short.onnx"
    onnx.save(g, str(short))
    assert short.stat().st_size < long.stat().st_size
    x = np.random.default_rng(2).random((1, 3, 64, 64), dtype=np.float32)
    a = ort.InferenceSession(str(long), providers=["CPUExecutionProvider"]).run(None, {"input": x})
    b = ort.InferenceSession(str(short), providers=["CPUExecutionProvider"]).run(None, {"input": x})
    assert len(a) == 2 and all(np.array_equal(p, q) for p, q in zip(a, b))


def test_first_conv_is_the_one_fed_by_the_input(pack: tuple[Path, Path]) -> None:
    m = onnx.load(str(pack[0] / "tiny.onnx"))
    name = first_conv(m, "input")
    (node,) = [n for n in m.graph.node if n.name == name]
    inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    assert node.op_type == "Conv" and inits[node.input[1]].shape[1] == 3  # takes the 3-channel image
    assert resolve_exclude(m, "input", ["first", name]) == [name]  # each node once
    with pytest.raises(QuantizeError, match="no node of that name"):
        resolve_exclude(m, "input", ["nope"])
    with pytest.raises(QuantizeError, match="a prefix ending in '/'"):
        resolve_exclude(m, "input", ["/no/such/block/"])


def test_exclude_prefix_names_every_node_of_a_block(pack: tuple[Path, Path]) -> None:
    m = onnx.load(str(pack[0] / "tiny.onnx"))
    names = [n.name for n in m.graph.node]
    block = next(n.rsplit("/", 2)[0] + "/" for n in names if n.count("/") >= 3)
    under = [n for n in names if n.startswith(block)]
    assert len(under) >= 2 and len(under) < len(names)
    assert resolve_exclude(m, "input", [block]) == under
    assert resolve_exclude(m, "input", [under[0], block]) == under  # a node named twice is excluded once


def test_gate_arithmetic() -> None:
    assert judge(4.11, 4.15, 3.0, 1.3).ok
    v = judge(4.11, 4.17, 3.0, 1.3)
    assert not v.ok and len(v.reasons) == 1 and "+0.060" in v.reasons[0]
    v = judge(4.11, 4.11, 1.0, 1.1)
    assert not v.ok and "x0.91" in v.reasons[0]
    assert not judge(4.11, float("nan"), 3.0, 1.0).ok
    assert judge(4.11, 4.0, 3.0, 1.0, min_speedup=2.5).ok and not judge(4.11, 4.0, 3.0, 1.5, min_speedup=2.5).ok


def test_interleaved_latency_pools_every_round(pack: tuple[Path, Path]) -> None:
    from training.evaluation.latency import interleaved_latency

    p = pack[0] / "tiny.onnx"
    x = np.zeros((1, 3, 64, 64), np.float32)
    t = interleaved_latency({"a": p, "b": p}, x, rounds=3, runs_per_round=4, warmup=1)
    assert set(t) == {"a", "b"} and t["a"].runs == 12 and len(t["b"].round_medians_ms) == 3
    assert t["a"].wins + t["b"].wins == 3 and 0 < t["a"].min_ms <= t["a"].median_ms <= t["a"].p95_ms
    with pytest.raises(ValueError, match="rounds"):
        interleaved_latency({"a": p}, x, rounds=0)


def test_int8_speed_script_times_each_pair(shipped: tuple[Path, dict], pack: tuple[Path, Path], tmp_path: Path,
                                           capsys: pytest.CaptureFixture) -> None:
    import shutil

    for f in ("tiny-int8.onnx", "tiny-int8.json"):
        shutil.copy(shipped[0].parent / f, tmp_path / f)
    spec = importlib.util.spec_from_file_location("int8_speed", REPO / "benchmarks" / "int8_speed.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(["--models-dir", str(tmp_path), "--rounds", "2", "--runs", "2"]) == 1  # parent absent
    assert "no int8 model" in capsys.readouterr().err
    for f in ("tiny.onnx", "tiny.json"):
        shutil.copy(pack[0] / f, tmp_path / f)
    js = tmp_path / "speed.json"
    assert mod.main(["--models-dir", str(tmp_path), "--rounds", "2", "--runs", "2", "--json", str(js)]) == 0
    row = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("| `tiny-int8`")]
    assert len(row) == 1 and "| `tiny` |" in row[0]
    (pair,) = json.loads(js.read_text())["pairs"]
    assert pair["float"] == "tiny" and pair["int8_ms"]["runs"] == 4


def test_int8_float_blocks_script_times_each_copy(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """``benchmarks/int8_float_blocks.py`` on a tiny MobileNetV2: the float model and one int8 copy per
    choice of float blocks, timed together; each copy leaves more nodes in float than the one before."""
    from kpdesk.vision.schema import get_schema
    from training.jobs.onnx_export import export_model

    m = tiny_landmark_net("mobilenetv2-tiny")
    path = tmp_path / "mnv2.onnx"
    export_model(m, get_schema("ibug68"), path, input_size=m.cfg.input_size, heatmap_size=m.cfg.heatmap_size,
                 sigma=1.0, decode="fusion", arch=m.cfg.arch, tol=1e-4)
    spec = importlib.util.spec_from_file_location("int8_float_blocks", REPO / "benchmarks" / "int8_float_blocks.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert list(mod.variants(2).values()) == [["first"], ["first", "/net/backbone/features.1/"],
                                             ["first", "/net/backbone/features.1/", "/net/backbone/features.2/"]]
    js = tmp_path / "blocks.json"
    assert mod.main(["--model", str(path), "--blocks", "2", "--rounds", "2", "--runs", "2", "--json", str(js)]) == 0
    rows = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("| float") or ln.startswith("| int8")]
    assert len(rows) == 4
    res = json.loads(js.read_text())
    floats = [len(v["excluded_nodes"]) for k, v in res["info"].items() if k != "float"]
    assert floats[0] == 1 and floats[0] < floats[1] < floats[2]
    assert all(t["runs"] == 4 for t in res["timing"].values())
    with pytest.raises(SystemExit):
        mod.main(["--model", str(tmp_path / "absent.onnx")])
