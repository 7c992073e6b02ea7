"""Structured pruning: channel counts, ONNX parity, the reconstruction score (eq. 7) against
brute force, and the ``prune`` job end to end (CLI) and resumed after a cancel."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from fixtures import make_tiny_face68, run_cli, tiny_config_file, tiny_landmark_net, train_tiny
from torch import nn

S = 64


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def group_of(model, dg, name):
    mod = dict(model.named_modules())[name]
    pr = dg.get_pruner_of_module(mod)
    return dg.get_pruning_group(mod, pr.prune_out_channels, list(range(pr.get_out_channels(mod))))


# -- surgery ----------------------------------------------------------------------------
@pytest.mark.parametrize("alpha", [0.5, 0.75])
def test_prune_all_layers_runs_exports_and_has_expected_channels(alpha, tmp_path):
    from kpdesk.vision.schema import get_schema
    from training.jobs.onnx_export import export_model
    from training.prune.criterion import ReconstructionImportance
    from training.prune.plan import build_graph, keep_count, plan_layers, prune_layer

    m = tiny_landmark_net()
    dense = {n: mod.out_channels if isinstance(mod, nn.Conv2d) else getattr(mod, "out_features", None)
             for n, mod in m.named_modules()}
    imp = ReconstructionImportance(m, torch.randn(8, 3, S, S))
    dg = build_graph(m, S)  # one graph for all steps: Torch-Pruning keeps it in sync with the surgery
    plan = plan_layers(m, dg, S)
    assert plan[0].root.startswith("hm_head") and plan[-1].root == "backbone.features.0.0"  # last -> first
    assert all(ly.root not in ("reg_head.fc2", "hm_head.out") for ly in plan)
    for ly in plan:
        prune_layer(dg, dict(m.named_modules())[ly.root], imp, alpha)
    named = dict(m.named_modules())
    for ly in plan:
        for member in ly.members:
            mod = named[member]
            got = mod.out_channels if isinstance(mod, nn.Conv2d) else mod.out_features
            assert got == keep_count(ly.channels, alpha), (member, got, ly.channels)
    assert named["backbone.features.18.0"].out_channels == keep_count(dense["backbone.features.18.0"], alpha)
    assert named["reg_head.fc2"].out_features == 136 and named["hm_head.out"].out_channels == 68
    assert named["backbone.features.0.0"].in_channels == 3
    out = m(torch.randn(2, 3, S, S))
    assert out["coords"].shape == (2, 136) and out["heatmaps"].shape == (2, 68, 16, 16)
    man = export_model(m, get_schema("ibug68"), tmp_path / "p.onnx", input_size=S, heatmap_size=16, sigma=1.0,
                       decode="fusion", arch="mobilenetv2-tiny", tol=1e-4)
    assert max(man.info["parity_max_abs_diff"].values()) < 1e-4
    assert (tmp_path / "p.onnx").is_file()


def test_keep_count_rounds_to_the_channel_multiple():
    from training.prune.plan import keep_count

    assert keep_count(24, 0.5) == 12 and keep_count(24, 0.5, 16) == 16  # 12 -> the nearer multiple, 16
    assert keep_count(96, 0.5, 16) == 48 and keep_count(144, 0.5, 16) == 80  # 72 -> 80 (4.5 rounds up)
    assert keep_count(16, 0.75, 16) == 16  # never below one multiple...
    assert keep_count(6, 0.5, 16) == 6  # ...nor above the layer's own count
    with pytest.raises(ValueError, match="multiple"):
        keep_count(24, 0.5, 0)


def test_prune_with_a_channel_multiple_keeps_multiples(tmp_path):
    from training.prune.criterion import ReconstructionImportance
    from training.prune.plan import build_graph, keep_count, plan_layers, prune_layer

    m = tiny_landmark_net()
    imp = ReconstructionImportance(m, torch.randn(8, 3, S, S))
    dg = build_graph(m, S)
    plan = plan_layers(m, dg, S)
    for ly in plan:
        prune_layer(dg, dict(m.named_modules())[ly.root], imp, 0.6, multiple=8)
    named = dict(m.named_modules())
    for ly in plan:
        want = keep_count(ly.channels, 0.6, 8)
        assert want % 8 == 0 or want == ly.channels
        for member in ly.members:
            mod = named[member]
            assert (mod.out_channels if isinstance(mod, nn.Conv2d) else mod.out_features) == want, member
    assert m(torch.randn(2, 3, S, S))["coords"].shape == (2, 136)


def test_layer_alphas_take_the_longest_prefix_and_refuse_one_that_names_no_layer():
    from training.jobs.engine import TrainingError
    from training.prune.plan import PruneLayer, layer_alphas

    layers = [PruneLayer(r, (r,), i, 8) for i, r in enumerate(
        ["backbone.features.1.conv.0", "backbone.features.14.conv.2", "backbone.features.18.0", "reg_head.fc1"])]
    got = layer_alphas(layers, 0.75, {"backbone.features.1": 0.5, "backbone": 0.6, "backbone.features.18": 0.0})
    # "backbone.features.1" names features.1 only, not features.14 or .18 (whole module names, not text)
    assert got == {"backbone.features.1.conv.0": 0.5, "backbone.features.14.conv.2": 0.6,
                   "backbone.features.18.0": 0.0, "reg_head.fc1": 0.75}
    assert layer_alphas(layers, 0.75) == {ly.root: 0.75 for ly in layers}
    with pytest.raises(TrainingError, match="backbone.features.19"):
        layer_alphas(layers, 0.75, {"backbone.features.19": 0.5})


def test_per_layer_alphas_prune_each_layer_to_its_own_share():
    from training.prune.criterion import ReconstructionImportance
    from training.prune.plan import build_graph, keep_count, layer_alphas, plan_layers, prune_layer

    m = tiny_landmark_net()
    imp = ReconstructionImportance(m, torch.randn(8, 3, S, S))
    dg = build_graph(m, S)
    plan = plan_layers(m, dg, S)
    late = {f"backbone.features.{i}": 0.5 for i in range(14, 19)}
    alphas = layer_alphas(plan, 0.75, late)
    assert alphas["backbone.features.18.0"] == 0.5 and alphas["backbone.features.0.0"] == 0.75
    for ly in plan:
        prune_layer(dg, dict(m.named_modules())[ly.root], imp, alphas[ly.root])
    named = dict(m.named_modules())
    for ly in plan:
        mod = named[ly.root]
        got = mod.out_channels if isinstance(mod, nn.Conv2d) else mod.out_features
        assert got == keep_count(ly.channels, alphas[ly.root]), (ly.root, got)
    assert m(torch.randn(2, 3, S, S))["coords"].shape == (2, 136)


def test_alpha_by_prefix_is_checked_in_the_config():
    from training.config import ConfigError, config_from_dict, validate_config

    ok = config_from_dict({"prune": {"alpha_by_prefix": {"backbone.features.18": 0.5}}})
    validate_config(ok)
    for bad in ({"backbone.features.18": 1.0}, {"backbone.features.18": "half"}, {"": 0.5}, ["backbone"]):
        with pytest.raises(ConfigError, match="prune.alpha_by_prefix"):
            validate_config(config_from_dict({"prune": {"alpha_by_prefix": bad}}))


# -- the score ---------------------------------------------------------------------------
def brute_force_scores(m, group, calib):
    """Eq. 7 literally: for each channel i, zero it at every consumer's input and measure the
    mean squared change of the consumer's (conv + BN) output over the calibration images."""
    from training.prune.criterion import ReconstructionImportance

    imp = ReconstructionImportance(m, calib)
    inputs = {}
    cons = imp.consumers(group)
    hooks = [c.register_forward_pre_hook(lambda mod, inp: inputs.__setitem__(mod, inp[0].clone())) for c, _, _ in cons]
    with torch.no_grad():
        m(calib)
    for h in hooks:
        h.remove()
    n = len(group[0].idxs)
    score = torch.zeros(n, dtype=torch.float64)
    with torch.no_grad():
        for c, idxs, roots in cons:
            bn = imp._bn.get(c)

            def f(z, c=c, bn=bn):
                return bn(c(z)) if bn is not None else c(z)

            x = inputs[c]
            ref = f(x)
            for ci, r in zip(idxs, roots):
                xm = x.clone()
                xm[:, ci] = 0
                score[r] += float((f(xm) - ref).double().pow(2).mean())
    return score


@pytest.mark.parametrize("root", ["backbone.features.18.0", "hm_head.reduce.0", "backbone.features.16.conv.2",
                                  "backbone.features.5.conv.0.0"])
def test_reconstruction_score_matches_brute_force(root):
    from training.prune.criterion import ReconstructionImportance
    from training.prune.plan import build_graph

    m = tiny_landmark_net()
    calib = torch.randn(6, 3, S, S)
    group = group_of(m, build_graph(m, S), root)
    fast = ReconstructionImportance(m, calib, batch_size=4)(group).double()
    slow = brute_force_scores(m, group, calib)
    assert torch.allclose(fast, slow, rtol=1e-4, atol=1e-9), (fast[:5], slow[:5])
    assert fast.sum() > 0  # (channels dead under ReLU6 on this random net score exactly 0)


@pytest.mark.parametrize("root", ["hm_head.conv.0", "backbone.features.18.0"])
def test_reconstruction_score_of_zero_filter_is_zero(root):
    from training.prune.criterion import ReconstructionImportance
    from training.prune.plan import build_graph

    m = tiny_landmark_net()
    dg = build_graph(m, S)
    group = group_of(m, dg, root)
    calib = torch.randn(4, 3, S, S)
    before = ReconstructionImportance(m, calib)(group)
    i = int(before.argmax())  # the most important filter ...
    conv = dict(m.named_modules())[root]
    bn = ReconstructionImportance(m, calib)._bn[conv]
    with torch.no_grad():  # ... with its folded weights zeroed: conv kernel and BN affine
        conv.weight[i] = 0
        bn.weight[i] = 0
        bn.bias[i] = 0
    after = ReconstructionImportance(m, calib)(group)
    assert before[i] > 0 and after[i] == 0.0
    others = torch.arange(len(after)) != i
    assert torch.allclose(after[others], before[others])  # the other filters' scores are untouched


def test_l1_importance_is_filter_l1_norm():
    from training.prune.criterion import make_importance
    from training.prune.plan import build_graph

    m = tiny_landmark_net()
    group = group_of(m, build_graph(m, S), "backbone.features.18.0")
    got = make_importance("l1", m)(group)
    want = dict(m.named_modules())["backbone.features.18.0"].weight.detach().abs().flatten(1).sum(1)
    assert torch.allclose(got, want)


# -- the job --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> SimpleNamespace:
    tmp = tmp_path_factory.mktemp("prune")
    data = make_tiny_face68(tmp / "face68")
    return SimpleNamespace(tmp=tmp, data=data, teacher=train_tiny(tmp, data, "resnet18-bottleneck-tiny", "teacher"),
                           student=train_tiny(tmp, data, "mobilenetv2-tiny", "student"))


@pytest.fixture(scope="module")
def pruned(tiny) -> SimpleNamespace:
    cfg = tiny_config_file(tiny.tmp / "prune.json", tiny.data, distill={"teacher": str(tiny.teacher), "proj_dim": 16},
                      prune={"student": str(tiny.student), "alpha": 0.5, "calib_images": 8,
                             "finetune_steps": 1000,  # capped at one pass: 24 faces / 8 = 3 steps
                             "alpha_by_prefix": {"backbone.features.18": 0.25},
                             "final_epochs": 1, "layers_per_step": 14, "latency_runs": 5})
    run = tiny.tmp / "run_prune"
    rc, ev, err = run_cli("prune", "--config", str(cfg), "--run-dir", str(run))
    return SimpleNamespace(rc=rc, ev=ev, err=err, run=run)


def test_prune_cli_end_to_end(pruned):
    from training.prune.plan import keep_count

    rc, ev, err, run = pruned.rc, pruned.ev, pruned.err, pruned.run
    assert rc == 0, err
    steps = [e for e in ev if e["event"] == "step"]
    assert [s["step"] for s in steps] == [0, 1, 2, "final"]  # 27 layers, 14 per step
    for s in steps:
        for k in ("params", "macs", "onnx_bytes", "latency_ms", "nme_ion"):
            assert isinstance(s[k], (int, float)), (k, s)
    assert steps[-1]["params"] < steps[0]["params"] / 2
    rows = list(csv.DictReader((run / "prune_steps.csv").open()))
    assert len(rows) == 4 and rows[1]["layers"].startswith("hm_head.conv.0")
    assert [r["finetune_steps"] for r in rows] == ["0", "3", "3", "0"]
    assert any("one pass over the training set is 3 steps" in e.get("message", "") for e in ev if e["event"] == "log")
    layer_chans = {la: ch for r in rows[1:3] for la, ch in zip(r["layers"].split(";"), r["channels"].split(";"))}
    n18 = int(layer_chans["backbone.features.18.0"].split("->")[0])  # its own alpha (0.25), the rest at 0.5
    assert layer_chans["backbone.features.18.0"] == f"{n18}->{keep_count(n18, 0.25)}"
    assert all(ch == f"{ch.split('->')[0]}->{keep_count(int(ch.split('->')[0]), 0.5)}"
               for la, ch in layer_chans.items() if la != "backbone.features.18.0")
    assert (run / "prune_nme_latency.png").stat().st_size > 1000
    man = json.loads((run / "export" / "student-0.5x.json").read_text())
    assert man["info"]["params"] == steps[-1]["params"]
    assert man["info"]["pruned"]["alpha_by_prefix"] == {"backbone.features.18": 0.25}
    assert (run / "export" / "student-0.5x.onnx").is_file()
    assert {"exported", "done", "metric", "checkpoint"} <= {e["event"] for e in ev}


@pytest.mark.parametrize("start", ["checkpoints/best.pt", "export/student-0.5x.onnx"])
def test_a_pruned_model_starts_a_run_whole_and_stays_pruned(tiny, pruned, start, tmp_path):
    from training.config import load_config
    from training.events import EventStream
    from training.jobs.checkpoints import model_from_checkpoint
    from training.jobs.engine import TrainingError
    from training.jobs.train import run_train

    assert pruned.rc == 0, pruned.err
    init = pruned.run / start
    want = sum(p.numel() for p in model_from_checkpoint(pruned.run / "checkpoints" / "best.pt")[0].parameters())
    cfg = load_config(tiny_config_file(tmp_path / "ft.json", tiny.data, train={"init_checkpoint": str(init)}))
    run = tmp_path / "ft"
    run.mkdir()
    with open(os.devnull, "w") as null:
        run_train(cfg, run, events=EventStream(run, out=null), export=False)
    model, _, st = model_from_checkpoint(run / "checkpoints" / "best.pt")
    assert st.get("model_object") is not None  # saved whole: the dense class cannot hold it
    assert sum(p.numel() for p in model.parameters()) == want
    logs = [json.loads(ln) for ln in (run / "events.jsonl").read_text().splitlines()]
    assert any("whole pruned model" in e.get("message", "") for e in logs)
    bad = load_config(tiny_config_file(tmp_path / "bad.json", tiny.data, model={"input_size": 96},
                                       train={"init_checkpoint": str(init)}))
    (tmp_path / "bad").mkdir()
    with pytest.raises(TrainingError, match="model.input_size"):
        run_train(bad, tmp_path / "bad", events=EventStream(tmp_path / "bad", out=open(os.devnull, "w")),
                  export=False)


def test_prune_cancel_and_resume(tiny):
    from training.config import load_config
    from training.events import EventStream
    from training.jobs.checkpoints import model_from_checkpoint
    from training.jobs.engine import CancelFlag, Cancelled
    from training.prune.job import run_prune

    cfg = load_config(tiny_config_file(tiny.tmp / "prune_l1.json", tiny.data,
                                  prune={"student": str(tiny.student), "alpha": 0.75, "importance": "l1",
                                         "calib_images": 4, "finetune_steps": 2, "final_epochs": 1,
                                         "layers_per_step": 14, "latency_runs": 2}))
    run = tiny.tmp / "run_prune_resume"

    class CancelAtStep(EventStream):
        """Asks to cancel during the fine-tuning of pruning step 1."""

        def __init__(self, *a, flag: CancelFlag, **kw) -> None:
            super().__init__(*a, **kw)
            self.flag = flag

        def emit(self, event, **fields):
            super().emit(event, **fields)
            if event == "start" and fields.get("tag") == "prune-step-1":
                self.flag.set()

    flag = CancelFlag()
    with open(os.devnull, "w") as null:
        run.mkdir()
        with pytest.raises(Cancelled):
            run_prune(cfg, run, cancel=flag, events=CancelAtStep(run, out=null, flag=flag), export=False)
        st = torch.load(run / "checkpoints" / "last.pt", map_location="cpu", weights_only=False)
        assert st["extra"]["done"] == 1 and st["step_in_epoch"] == 0 and len(st["extra"]["rows"]) == 1
        res = run_prune(cfg, run, resume=True, events=EventStream(run, out=null), export=True)
    rows = list(csv.DictReader((run / "prune_steps.csv").open()))
    assert [r["step"] for r in rows] == ["0", "1", "2", "final"]
    assert res["final"]["params"] < res["dense"]["params"] / 4
    m, _, _ = model_from_checkpoint(run / "checkpoints" / "best.pt")
    assert m.backbone.features[18][0].out_channels == 16  # 64 * 0.25
    assert np.isfinite(res["final"]["nme_ion"]) and (run / "export" / "student-0.25x.onnx").is_file()


def test_a_pruned_checkpoint_written_before_training_was_split_still_loads(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A pruned checkpoint pickles the model whole, by its classes' modules: one written while
    training/ was flat names ``training.networks`` and ``training.backbones``; it still loads
    (and resumes, exports, distils) after the move."""
    import sys
    import zipfile

    import training.nets.backbones as backbones
    import training.nets.networks as networks
    from training.config import RunConfig
    from training.jobs.checkpoints import model_from_checkpoint

    m = tiny_landmark_net()
    old_names = {networks.__name__: "training.networks", backbones.__name__: "training.backbones"}
    with monkeypatch.context() as mp:  # pickle as the flat layout did
        for mod in (networks, backbones):
            for cls in [v for v in vars(mod).values() if isinstance(v, type) and v.__module__ == mod.__name__]:
                mp.setattr(cls, "__module__", old_names[mod.__name__])
        mp.setitem(sys.modules, "training.networks", networks)
        mp.setitem(sys.modules, "training.backbones", backbones)
        path = tmp_path / "pruned-before-the-move.pt"
        torch.save({"format": "kpdesk-ckpt/1", "run_config": RunConfig().to_dict(), "model_object": m,
                    "model_state": m.state_dict()}, path)
    assert "training.networks" not in sys.modules and networks.LandmarkNet.__module__ == "training.nets.networks"
    with zipfile.ZipFile(path) as z:
        pickled = z.read(next(n for n in z.namelist() if n.endswith("data.pkl")))
    assert b"training.networks" in pickled and b"training.nets.networks" not in pickled
    model, _, _ = model_from_checkpoint(path)
    assert type(model) is networks.LandmarkNet
    x = torch.randn(1, 3, S, S)
    with torch.no_grad():
        assert torch.equal(model(x)["coords"], m(x)["coords"])
