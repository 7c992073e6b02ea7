"""Feature distillation: loss3, the frozen teacher projection, and the ``distill`` job end to end
on a tiny generated 68-point data set (tiny backbones, CPU, a few seconds)."""

from __future__ import annotations

import json
import os
from types import SimpleNamespace

import pytest
import torch
from fixtures import make_tiny_face68, run_cli, tiny_config_file, train_tiny

pytestmark = pytest.mark.usefixtures("torch_one_thread")



@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> SimpleNamespace:
    tmp = tmp_path_factory.mktemp("distill")
    data = make_tiny_face68(tmp / "face68")
    teacher = train_tiny(tmp, data, "resnet18-bottleneck-tiny", "teacher")
    return SimpleNamespace(tmp=tmp, data=data, teacher=teacher)


# -- unit ------------------------------------------------------------------------------
def test_distill_loss_zero_for_identical_features():
    from training.distill.loss import FeatureDistiller, distill_loss

    v = torch.randn(4, 16)
    assert float(distill_loss(v, v)) == 0.0
    d = FeatureDistiller(32, 32, 16)
    feat = torch.rand(4, 32, 2, 2)
    d.calibrate(torch.rand(8, 32, 2, 2))
    with torch.no_grad():  # student projection = the frozen teacher projection (+ the centring)
        d.student_proj.weight.copy_(d.teacher_weight[:, :, None, None])
        d.student_proj.bias.copy_(-d.teacher_mean)
    with torch.no_grad():
        assert float(d(feat, feat)) < 1e-12
        assert float(d(feat, torch.rand(4, 32, 2, 2))) > 1e-4


def test_no_distillation_arm_does_not_run_the_teacher():
    """lambda_dp 0 and lambda_out 0: the loss is LOSS alone and the teacher's forward is skipped (a no-distillation
    arm costs what plain training costs); lambda_dp > 0 runs it once a step and adds its term."""
    from dataclasses import replace

    from training.config import DistillConfig, RunConfig
    from training.distill.loss import FeatureDistiller, make_distill_loss
    from training.nets.losses import landmark_loss

    calls = []
    teacher = SimpleNamespace(features=lambda x: calls.append(x.shape) or torch.rand(x.shape[0], 32, 2, 2))
    distiller = FeatureDistiller(8, 32, 16)
    out = {"coords": torch.rand(2, 10), "feat": torch.rand(2, 8, 2, 2)}
    batch = {"coords": torch.rand(2, 10), "image": torch.rand(2, 3, 32, 32)}
    plain, _ = landmark_loss(out, batch, RunConfig().train.lambda_rh)
    for lam, runs in ((0.0, 0), (1.0, 1)):
        cfg = replace(RunConfig(), distill=DistillConfig(lambda_dp=lam, lambda_out=0.0))
        loss, parts = make_distill_loss(cfg, teacher, distiller)(out, batch)
        assert len(calls) == runs and ("loss_distill" in parts) == bool(runs)
        assert (float(loss.detach()) == float(plain.detach())) == (not runs)


def test_spatial_distillation_sees_where_global_pooling_cannot():
    from training.distill.loss import FeatureDistiller

    g, sp = FeatureDistiller(32, 32, 16, grid=0), FeatureDistiller(32, 32, 16, grid=2)
    for d in (g, sp):
        d.calibrate(torch.rand(8, 32, 4, 4))
    assert sp.teacher_mean.shape == (16, 2, 2) and g.teacher_mean.shape == (16,)
    with torch.no_grad():  # student = the frozen teacher projection; no centring, so the two can agree exactly
        for d in (g, sp):
            d.teacher_mean.zero_()
            d.student_proj.weight.copy_(d.teacher_weight[:, :, None, None])
            d.student_proj.bias.zero_()
    feat = torch.rand(4, 32, 4, 4)
    moved = torch.roll(feat, shifts=2, dims=3)  # the same features, in other places
    with torch.no_grad():
        assert float(g(moved, feat)) < 1e-10  # one pooled vector: blind to where things are
        assert float(sp(feat, feat)) < 1e-10
        assert float(sp(moved, feat)) > 1e-3  # per cell: the move is seen
    x = torch.rand(4, 32, 4, 4, requires_grad=True)
    sp(x, feat).backward()
    assert float(sp.student_proj.weight.grad.abs().sum()) > 0 and float(x.grad.abs().sum()) > 0


def test_teacher_projection_is_frozen_and_orthogonal():
    from training.distill.loss import FeatureDistiller

    d = FeatureDistiller(24, 64, 16)
    names = [n for n, _ in d.named_parameters()]
    assert names == ["student_proj.weight", "student_proj.bias"]  # the teacher side is a buffer
    w = d.teacher_weight
    assert torch.allclose(w @ w.t(), torch.eye(16), atol=1e-5)
    assert "teacher_weight" in d.state_dict() and "teacher_mean" in d.state_dict()


def test_geometry_mismatch_is_refused():
    from training.config import RunConfig
    from training.distill.teacher import check_geometry
    from training.jobs.engine import TrainingError
    from training.nets.networks import ModelConfig

    teacher = SimpleNamespace(path="t.pt", cfg=RunConfig(model=ModelConfig(input_size=96)))
    with pytest.raises(TrainingError, match="input_size 96"):
        check_geometry(RunConfig(model=ModelConfig(input_size=128)), teacher)
    # A larger teacher is accepted: it reads the student's crop resized to its own input.
    big = SimpleNamespace(path="t.pt", cfg=RunConfig(model=ModelConfig(input_size=192)))
    check_geometry(RunConfig(model=ModelConfig(input_size=128)), big)


def test_larger_teacher_sees_the_crop_at_its_own_size(tmp_path):
    import torch.nn.functional as F

    from training.config import RunConfig
    from training.distill.teacher import FrozenTeacher
    from training.nets.networks import ModelConfig, build_model

    cfg = ModelConfig(arch="mobilenetv2-tiny", num_points=68, input_size=96, heatmap_size=12)
    net = build_model(cfg).eval()
    ckpt = tmp_path / "t.pt"
    run_cfg = RunConfig(model=cfg)
    torch.save({"format": "kpdesk-ckpt/1", "model_state": net.state_dict(), "model_config": cfg.to_dict(),
                "run_config": run_cfg.to_dict()},
               ckpt)
    teacher = FrozenTeacher(str(ckpt), torch.device("cpu"), amp=False, channels_last=False)
    x = torch.rand(2, 3, 64, 64)
    got = teacher.features(x)
    want = teacher.model.backbone(F.interpolate(x, size=(96, 96), mode="bilinear", align_corners=False))[1]
    assert got.shape == want.shape == (2, net.backbone.out_channels, 3, 3)
    assert torch.allclose(got, want.float(), atol=1e-5)



def test_flip_averaged_teacher_labels_with_plain_features(tmp_path):
    """``distill.teacher_flip``: the teacher's outputs are its flip average moved by the label offset;
    its features stay the plain forward's; an offset without the flip is refused."""
    from kpdesk.vision.schema import get_schema
    from training.config import ConfigError, RunConfig, load_config
    from training.distill.teacher import FrozenTeacher
    from training.nets.networks import ModelConfig, build_model

    cfg = ModelConfig(arch="mobilenetv2-tiny", num_points=68, input_size=64, heatmap_size=16)
    net = build_model(cfg).eval()
    ckpt = tmp_path / "t.pt"
    torch.save({"format": "kpdesk-ckpt/1", "model_state": net.state_dict(), "model_config": cfg.to_dict(),
                "run_config": RunConfig(model=cfg).to_dict()}, ckpt)
    plain = FrozenTeacher(str(ckpt), torch.device("cpu"), amp=False, channels_last=False)
    flip = FrozenTeacher(str(ckpt), torch.device("cpu"), amp=False, channels_last=False, flip=True,
                         label_offset=(0.5, 0.0))
    x = torch.rand(2, 3, 64, 64)
    a = plain.outputs(x)["coords"].reshape(2, 68, 2).numpy() * 64 - 0.5
    b = plain.outputs(torch.flip(x, dims=[3]))["coords"].reshape(2, 68, 2).numpy() * 64 - 0.5
    want = (a + get_schema("ibug68").flip_points(b, 64)) / 2 + [0.5, 0.0]
    got = flip.outputs(x)["coords"].reshape(2, 68, 2).numpy() * 64 - 0.5
    assert abs(got - want).max() < 1e-4
    assert torch.allclose(flip.features(x), plain.features(x))
    with pytest.raises(ConfigError, match="teacher_flip"):
        load_config(tiny_config_file(tmp_path / "c.json", tmp_path), ["distill.teacher_label_offset=[0.5,0]"])


# -- end to end ------------------------------------------------------------------------
def test_distill_cli_end_to_end_and_resume(tiny):
    cfg = tiny_config_file(tiny.tmp / "distill.json", tiny.data, distill={"teacher": str(tiny.teacher), "proj_dim": 16})
    run = tiny.tmp / "run_distill"
    rc, ev, err = run_cli("distill", "--config", str(cfg), "--run-dir", str(run))
    assert rc == 0, err
    kinds = [e["event"] for e in ev]
    for k in ("start", "progress", "metric", "checkpoint", "exported", "done"):
        assert k in kinds, (k, kinds)
    prog = next(e for e in ev if e["event"] == "progress")
    assert "loss_distill" in prog and "loss_landmark" in prog
    assert (run / "export" / "student.onnx").is_file() and (run / "export" / "student.json").is_file()
    manifest = json.loads((run / "export" / "student.json").read_text())
    assert manifest["info"]["distilled_from"] == "best.pt"
    st = torch.load(run / "checkpoints" / "last.pt", map_location="cpu", weights_only=False)
    assert "student_proj.weight" in st["aux_state"] and "teacher_weight" in st["aux_state"]

    # resume (in-process: the CLI path is the same function) for one more epoch
    from training.config import load_config
    from training.distill.job import run_distill
    from training.events import EventStream

    with open(os.devnull, "w") as null:
        events = EventStream(run, out=null)
        run_distill(load_config(cfg, ["train.epochs=2"]), run, resume=True, events=events, export=False)
    ev = [json.loads(ln) for ln in (run / "events.jsonl").read_text().splitlines()]
    start = [e for e in ev if e["event"] == "start"][-1]
    assert start["start_epoch"] == 1 and start["epochs"] == 2
    st2 = torch.load(run / "checkpoints" / "last.pt", map_location="cpu", weights_only=False)
    assert st2["epoch"] == 2
    # the frozen teacher projection survived the resume unchanged
    assert torch.equal(st2["aux_state"]["teacher_weight"], st["aux_state"]["teacher_weight"])


def test_no_distillation_run_is_plain_training(tiny, tmp_path):
    """lambda_dp 0 and lambda_out 0: the distill job does not load the teacher and learns exactly what `training
    train` learns from the same config (the no-distillation arm of a comparison is plain training); a missing
    teacher file is still refused, at any lambda, before the run folder is made."""
    from training.config import load_config
    from training.distill.job import run_distill
    from training.events import EventStream
    from training.jobs.engine import TrainingError
    from training.jobs.train import run_train

    cfg = load_config(tiny_config_file(tmp_path / "c.json", tiny.data, train={"epochs": 2},
                                       distill={"teacher": str(tiny.teacher), "proj_dim": 16, "lambda_dp": 0}))
    runs = {}
    with open(os.devnull, "w") as null:
        for name, job in (("kd0", run_distill), ("plain", run_train)):
            runs[name] = tmp_path / name
            runs[name].mkdir()
            job(cfg, runs[name], events=EventStream(runs[name], out=null), export=False)
        kd0 = torch.load(runs["kd0"] / "checkpoints" / "last.pt", map_location="cpu", weights_only=False)
        plain = torch.load(runs["plain"] / "checkpoints" / "last.pt", map_location="cpu", weights_only=False)
        assert kd0["aux_state"] is None
        for k, v in plain["model_state"].items():
            assert torch.equal(kd0["model_state"][k], v), k
        logs = [json.loads(ln).get("message", "") for ln in (runs["kd0"] / "events.jsonl").read_text().splitlines()]
        assert any("teacher is not loaded" in m for m in logs)
        for lam in (0, 1):
            bad = load_config(tiny_config_file(tmp_path / "b.json", tiny.data,
                                               distill={"teacher": str(tmp_path / "gone.pt"), "lambda_dp": lam}))
            with pytest.raises(TrainingError, match="distill.teacher: .*gone.pt: checkpoint not found"):
                run_distill(bad, tmp_path / "bad", events=EventStream(tmp_path, out=null), export=False)
            assert not (tmp_path / "bad").exists()


# -- output distillation (distill.lambda_out, not in the paper) -------------------------
def _labels_for(decode: str):
    from training.config import RunConfig, TrainConfig
    from training.distill.outputs import TeacherLabels
    from training.nets.networks import ModelConfig

    teacher = SimpleNamespace(decode=decode, cfg=RunConfig(model=ModelConfig(input_size=192, heatmap_size=24),
                                                             train=TrainConfig(sigma=1.0)))
    student = RunConfig(model=ModelConfig(input_size=128, heatmap_size=16), train=TrainConfig(sigma=1.0))
    return TeacherLabels(teacher, student)


@pytest.mark.parametrize("decode", ["regression", "fusion"])
def test_teacher_labels_land_on_the_students_pixels(decode):
    """A teacher at 192 px that answers exactly where a point is, read on the student's 128 px crop
    (resized, pixel centres kept), gives the student's pixel back: (p + 0.5) * 1.5 - 0.5, not p * 1.5."""
    import numpy as np

    from kpdesk.vision.codecs import HeatmapCodec, RegressionCodec

    rng = np.random.default_rng(0)
    pts_s = rng.uniform(20, 108, size=(3, 68, 2))
    pts_t = (pts_s + 0.5) * 1.5 - 0.5
    out_t = {"coords": torch.from_numpy(RegressionCodec(192).encode(pts_t).reshape(3, -1).astype(np.float32)),
             "heatmaps": torch.from_numpy(np.stack([HeatmapCodec(192, 24, 1.0).encode(p)[0] for p in pts_t]))}
    labels = _labels_for(decode)
    got = labels.points(out_t)
    assert np.abs(got - pts_s).max() < 0.02
    tgt = labels.targets(out_t)
    assert tgt["coords"].shape == (3, 136) and tgt["heatmaps"].shape == (3, 68, 16, 16)
    assert np.allclose(tgt["coords"].numpy(), RegressionCodec(128).encode(pts_s).reshape(3, -1), atol=2e-4)
    peak = tgt["heatmaps"].flatten(2).argmax(2)  # each map peaks on the point's own heatmap cell
    want = np.round(HeatmapCodec(128, 16, 1.0).crop_to_hm(pts_s)).astype(int)
    assert torch.equal(peak, torch.from_numpy(want[..., 1] * 16 + want[..., 0]))


def test_output_distillation_teaches_faces_without_labels(tiny, tmp_path):
    """lambda_out > 0 with a pack whose faces weigh 0 in the landmark loss: every step logs the loss against
    the teacher's labels (computed on all faces), no feature term at lambda_dp 0; a negative weight is refused."""
    pack = make_tiny_face68(tmp_path / "pack")
    cfg = tiny_config_file(tmp_path / "kd.json", tiny.data,
                           distill={"teacher": str(tiny.teacher), "proj_dim": 16, "lambda_dp": 0, "lambda_out": 1})
    d = json.loads(cfg.read_text())
    d["data"].update(extra_train=[str(pack)], extra_weight=0)
    cfg.write_text(json.dumps(d))
    rc, ev, err = run_cli("distill", "--config", str(cfg), "--run-dir", str(tmp_path / "run"), "--no-export")
    assert rc == 0, err
    prog = [e for e in ev if e["event"] == "progress"]
    assert all("loss_teacher_labels" in e and "loss_distill" not in e for e in prog)
    assert all(e["loss_teacher_labels"] > 0 for e in prog)
    rc, _, err = run_cli("distill", "--config", str(cfg), "--run-dir", str(tmp_path / "bad"), "--no-export",
                         "--set", "distill.lambda_out=-1")
    assert rc != 0 and "distill.lambda_out" in err
