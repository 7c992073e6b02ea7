"""Rebuilding a PyTorch model from a shipped NAME.onnx + NAME.json (training.jobs.onnx_import):
tiny exports (dense, fp16 weights, pruned, ResNet) and the models in models/ match
onnxruntime; unmatched tensors are named; folded BatchNorms are recalibrated without
changing the function; distill / prune / init_checkpoint start from an .onnx."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from fixtures import make_tiny_face68, tiny_config_file, tiny_landmark_net
from torch import nn

from kpdesk.vision.schema import get_schema
from training.config import RunConfig
from training.jobs.onnx_import import OnnxImportError, import_onnx, onnx_parity, recalibrate_folded_bn
from training.nets.networks import LandmarkNet, count_macs, count_params

REPO = Path(__file__).resolve().parents[1]
S = 64

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def export(model: LandmarkNet, path: Path, fp16: bool = False, run_config: bool = True) -> Path:
    from training.jobs.onnx_export import export_model

    info = {"run_config": RunConfig(model=model.cfg).to_dict()} if run_config else {}
    export_model(model, get_schema("ibug68"), path, input_size=S, heatmap_size=16, sigma=1.0, decode="fusion",
                 arch=model.cfg.arch, info=info, fp16_weights=fp16, tol=1e-4)
    return path


def n_conv_bn_pairs(model: nn.Module) -> int:
    return sum(1 for m in model.modules() if isinstance(m, nn.BatchNorm2d))


@pytest.mark.parametrize("arch,fp16", [("mobilenetv2-tiny", False), ("mobilenetv2-tiny", True),
                                       ("resnet18-bottleneck-tiny", False)])
def test_tiny_export_rebuilds_exactly(tmp_path: Path, arch: str, fp16: bool) -> None:
    ref = tiny_landmark_net(arch)
    path = export(ref, tmp_path / "m.onnx", fp16=fp16)
    imp = import_onnx(path)
    assert not imp.resized and len(imp.folded_bn) == n_conv_bn_pairs(ref)  # every conv's BN was folded
    # against onnxruntime on other inputs than the built-in check
    par = onnx_parity(imp.model, path, S, batch=3, seed=7)
    assert max(par.values()) < 1e-5, par
    if not fp16:  # and against the original PyTorch model
        x = torch.randn(3, 3, S, S)
        with torch.no_grad():
            a, b = ref(x), imp.model(x)
        for k in ("coords", "heatmaps", "feat"):
            assert (a[k] - b[k]).abs().max() < 1e-5, k
        # tensors the exporter does not fold keep their names and values
        sd, rd = imp.model.state_dict(), ref.state_dict()
        for k in ("reg_head.fc2.weight", "reg_head.fc2.bias", "hm_head.out.weight", "reg_head.fc1.weight",
                  "reg_head.bn1.running_var"):
            assert torch.equal(sd[k], rd[k]), k
    assert count_params(imp.model) == count_params(ref)


def test_manifest_without_run_config_uses_the_onnx_shapes(tmp_path: Path) -> None:
    """Head widths differ from the defaults (16 / 32 vs 64 / 256): taken from the tensors."""
    path = export(tiny_landmark_net(), tmp_path / "m.onnx", run_config=False)
    imp = import_onnx(path)
    assert "hm_head.out" in imp.resized and "reg_head.fc1" in imp.resized
    assert imp.model.hm_head.out.in_channels == 16 and imp.model.reg_head.fc2.in_features == 32
    assert max(imp.parity.values()) < 1e-5


def test_pruned_model_rebuilds_with_its_shapes(tmp_path: Path) -> None:
    from training.jobs.checkpoints import model_from_checkpoint, read_checkpoint
    from training.prune.criterion import make_importance
    from training.prune.plan import build_graph, plan_layers, prune_layer

    m = tiny_landmark_net()
    dg = build_graph(m, S)
    for ly in plan_layers(m, dg, S):
        prune_layer(dg, dict(m.named_modules())[ly.root], make_importance("l1", m), 0.5)
    path = export(m, tmp_path / "p.onnx")
    st = read_checkpoint(path)
    assert st["format"] == "kpdesk-ckpt/1" and st["model_object"] is not None and st["resized"]
    model, cfg, _ = model_from_checkpoint(path)
    assert cfg.model.arch == "mobilenetv2-tiny"
    pruned = {n: tuple(p.shape) for n, p in m.state_dict().items()}
    assert {n: tuple(p.shape) for n, p in model.state_dict().items()} == pruned
    assert count_params(model) == count_params(m) and count_macs(model, S) == count_macs(m, S)
    x = torch.randn(2, 3, S, S)
    with torch.no_grad():
        assert (model(x)["heatmaps"] - m(x)["heatmaps"]).abs().max() < 1e-5


@pytest.mark.parametrize("name", ["student-0.25x", "student", "teacher"])
def test_shipped_models_rebuild(name: str) -> None:
    """The models in models/ (0.25x: pruned shapes, fp16 weights; teacher: 192 px input)."""
    path = REPO / "models" / f"{name}.onnx"
    imp = import_onnx(path)
    manifest = json.loads(path.with_suffix(".json").read_text())
    info = manifest["info"]
    assert max(imp.parity.values()) < 1e-5, imp.parity
    size = manifest["input_size"]
    assert count_params(imp.model) == info["params"] and count_macs(imp.model, size) == info["macs"]
    assert bool(imp.resized) == (name == "student-0.25x")


def test_unmatched_tensors_are_named(tmp_path: Path) -> None:
    path = export(tiny_landmark_net(), tmp_path / "m.onnx")
    g = onnx.load(str(path))
    conv = next(n for n in g.graph.node if n.op_type == "Conv" and "features.3" in n.name)
    conv.name = "Conv_without_scope"
    onnx.save(g, str(tmp_path / "bad.onnx"))
    (tmp_path / "bad.json").write_text(path.with_suffix(".json").read_text())
    with pytest.raises(OnnxImportError) as ei:
        import_onnx(tmp_path / "bad.onnx")
    msg = str(ei.value)
    assert "Conv_without_scope" in msg and conv.input[1] in msg  # the node and its weight
    assert "backbone.features.3.conv.0.0" in msg  # the module nothing filled

    # a manifest describing another head: the graph's lateral branch names no module
    man = json.loads(path.with_suffix(".json").read_text())
    man["info"]["run_config"]["model"]["hm_source"] = "last"
    (tmp_path / "m.json").write_text(json.dumps(man))
    with pytest.raises(OnnxImportError, match=r"hm_head/lateral"):
        import_onnx(path)


def test_missing_manifest_and_file_are_clean_errors(tmp_path: Path) -> None:
    from training.jobs.engine import TrainingError

    path = export(tiny_landmark_net(), tmp_path / "m.onnx")
    path.with_suffix(".json").unlink()
    with pytest.raises(TrainingError, match="manifest"):
        import_onnx(path)
    with pytest.raises(TrainingError, match="not found"):
        import_onnx(tmp_path / "nothing.onnx")


def test_recalibrated_batchnorm_keeps_eval_and_fixes_train_mode(tmp_path: Path) -> None:
    imp = import_onnx(export(tiny_landmark_net(), tmp_path / "m.onnx"))
    model = imp.model
    x = torch.randn(16, 3, S, S)

    def run(m: nn.Module, train: bool) -> torch.Tensor:
        m = copy.deepcopy(m).train(train)
        with torch.no_grad():
            return m(x)["heatmaps"]  # heatmap path: only folded BatchNorms

    before_eval, before_train = run(model, False), run(model, True)
    assert (before_train - before_eval).abs().max() > 1e-2  # identity BN statistics: train mode is wrong
    assert recalibrate_folded_bn(model, imp.folded_bn, x, batch_size=16) == len(imp.folded_bn)
    after_eval, after_train = run(model, False), run(model, True)
    assert (after_eval - before_eval).abs().max() < 1e-5  # same function
    assert (after_train - after_eval).abs().max() < 1e-4  # batch statistics = running statistics
    bn = model.backbone.features[0][1]
    assert bn.running_var.min() > 0 and not torch.allclose(bn.running_mean, torch.zeros_like(bn.running_mean))


# -- the jobs start from an .onnx --------------------------------------------------------
@pytest.fixture(scope="module")
def onnx_start(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("onnx_start")
    data = make_tiny_face68(tmp / "face68", n_train=16, n_val=8)
    student = export(tiny_landmark_net(), tmp / "models" / "student.onnx")
    teacher = export(tiny_landmark_net("resnet18-bottleneck-tiny", seed=1), tmp / "models" / "teacher.onnx", fp16=True)
    return tmp, data, student, teacher


def test_distill_from_shipped_teacher_and_init_from_onnx(onnx_start) -> None:
    from training.config import load_config
    from training.distill.job import run_distill
    from training.events import EventStream

    tmp, data, student, teacher = onnx_start
    cfg = load_config(tiny_config_file(tmp / "d.json", data, distill={"teacher": str(teacher), "proj_dim": 16},
                                  train={"init_checkpoint": str(student), "max_steps_per_epoch": 1}))
    run = tmp / "run_distill"
    run.mkdir()
    logs: list[str] = []

    class Capture(EventStream):
        def emit(self, event, **fields):
            if event == "log":
                logs.append(fields["message"])
            return super().emit(event, **fields)

    with open(os.devnull, "w") as null:
        res = run_distill(cfg, run, events=Capture(run, out=null), export=False)
    assert np.isfinite(res["best_metrics"]["nme_ion"])
    assert any("initialised" in m and str(student) in m for m in logs)
    assert any("BatchNorm layers folded in the ONNX model recalibrated" in m for m in logs)
    assert any(f"teacher {teacher}" in m and "resnet18-bottleneck-tiny" in m for m in logs)


def test_prune_from_shipped_student(onnx_start) -> None:
    from training.config import load_config
    from training.events import EventStream
    from training.prune.job import run_prune

    tmp, data, student, _ = onnx_start
    cfg = load_config(tiny_config_file(tmp / "p.json", data,
                                  prune={"student": str(student), "alpha": 0.5, "importance": "reconstruction",
                                         "calib_images": 8, "finetune_steps": 1, "final_epochs": 0,
                                         "layers_per_step": 40, "latency_runs": 2}))
    run = tmp / "run_prune"
    run.mkdir()
    with open(os.devnull, "w") as null:
        res = run_prune(cfg, run, events=EventStream(run, out=null), export=False)
    dense = count_params(tiny_landmark_net())
    assert res["dense"]["params"] == dense and res["final"]["params"] < dense / 2
    assert np.isfinite(res["final"]["nme_ion"])


def test_fp16_export_records_the_rounding_apart(tmp_path: Path) -> None:
    """``fp16_weights``: parity is judged on the float32 graph; the rounding's move is its own card field."""
    path = export(tiny_landmark_net("mobilenetv2-tiny"), tmp_path / "m.onnx", fp16=True)
    info = json.loads(path.with_suffix(".json").read_text())["info"]
    assert max(info["parity_max_abs_diff"].values()) < 1e-4
    rounding = max(info["fp16_weights_max_abs_diff"].values())
    assert 0 < rounding < 5e-3
