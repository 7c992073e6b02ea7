"""The training engine in-process on a generated 300W-style pack with tiny networks:
overfitting one batch, cancel + resume (same epoch and step, same weights as an
uninterrupted run), divergence (DivergedError, last good checkpoint kept), config errors,
export parity."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures import make_face68, tiny_config

from training.config import ConfigError, config_from_dict, load_config, validate_config
from training.events import EventStream
from training.jobs.engine import CancelFlag, Cancelled, DivergedError, Trainer, load_data, make_datasets
from training.jobs.train import run_train
from training.nets.losses import landmark_loss
from training.nets.networks import build_model


@pytest.fixture(scope="module")
def pack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(1)
    return make_face68(tmp_path_factory.mktemp("data") / "face68")


def _quiet() -> EventStream:
    return EventStream(None, out=io.StringIO(), progress_bar=False)


def _events(run_dir: Path) -> list[dict]:
    return [json.loads(ln) for ln in (run_dir / "events.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("arch", ["mobilenetv2-tiny", "resnet18-bottleneck-tiny"])
def test_loss_decreases_when_overfitting_one_batch(pack: Path, arch: str) -> None:
    cfg = config_from_dict(tiny_config(pack, arch=arch))
    train, val, schema = load_data(cfg)
    _, va = make_datasets(cfg, train, val, schema)  # augmentation off: a fixed batch
    batch = {k: torch.stack([va[i][k] for i in range(4)]) for k in va[0]}
    torch.manual_seed(0)
    model = build_model(cfg.model).train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(25):
        loss, _ = landmark_loss(model(batch["image"]), batch, 1.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert all(np.isfinite(losses))
    assert losses[-1] < 0.5 * losses[0], losses


class CancelAfter(CancelFlag):
    """Cancels when the engine checks for the (n+1)-th time, i.e. before step n+1 overall."""

    def __init__(self, steps: int) -> None:
        super().__init__()
        self.steps, self.calls = steps, 0

    def is_set(self) -> bool:
        self.calls += 1
        return self.calls > self.steps or super().is_set()


def test_cancel_mid_epoch_then_resume_matches_an_uninterrupted_run(pack: Path, tmp_path: Path) -> None:
    cfg = config_from_dict(tiny_config(pack, epochs=2))  # 16 faces / batch 4 = 4 steps per epoch
    ref = run_train(cfg, tmp_path / "ref", events=_quiet(), export=False)

    run = tmp_path / "run"
    with pytest.raises(Cancelled):
        run_train(cfg, run, cancel=CancelAfter(6), export=False)  # 4 steps of epoch 1 + 2 of epoch 2
    st = torch.load(run / "checkpoints" / "last.pt", weights_only=False)
    assert (st["epoch"], st["step_in_epoch"]) == (1, 2)
    assert [e["event"] for e in _events(run)][-1] == "cancelled"

    res = run_train(cfg, run, resume=True, export=False)
    ev = _events(run)
    starts = [i for i, e in enumerate(ev) if e["event"] == "start"]
    assert len(starts) == 2 and ev[starts[1]]["start_epoch"] == 1
    first = next(e for e in ev[starts[1]:] if e["event"] == "progress")
    assert first["epoch"] == 2 and first["step"] >= 3  # continued inside epoch 2, not from its start
    assert ev[-1]["event"] == "done"
    st = torch.load(run / "checkpoints" / "last.pt", weights_only=False)
    assert (st["epoch"], st["step_in_epoch"]) == (2, 0) and len(st["history"]) == 2
    assert res["best"]["epoch"] in (1, 2)
    ref_st = torch.load(tmp_path / "ref" / "checkpoints" / "last.pt", weights_only=False)
    for k, v in ref_st["model_state"].items():
        torch.testing.assert_close(st["model_state"][k], v, rtol=0, atol=1e-6, msg=k)
    assert ref["best"]["epoch"] == res["best"]["epoch"]


def test_nan_loss_stops_with_diverged_error_and_keeps_last_good_checkpoint(pack: Path, tmp_path: Path) -> None:
    cfg = config_from_dict(tiny_config(pack, epochs=3))
    train, val, schema = load_data(cfg)
    tr, va = make_datasets(cfg, train, val, schema)
    calls = 0

    def nan_after_one_epoch(out, batch):
        nonlocal calls
        calls += 1
        loss, parts = landmark_loss(out, batch, 1.0)
        return (loss * float("nan") if calls == 6 else loss), parts

    torch.manual_seed(0)
    trainer = Trainer(cfg, build_model(cfg.model), tmp_path, _quiet(), tr, va, loss_fn=nan_after_one_epoch,
                      device=torch.device("cpu"))
    with pytest.raises(DivergedError, match=r"loss became nan at epoch 2 step 2.*last good checkpoint"):
        trainer.fit()
    st = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=False)
    assert (st["epoch"], st["step_in_epoch"]) == (1, 0)
    assert all(torch.isfinite(v).all() for v in st["model_state"].values() if v.is_floating_point())


def test_a_time_budget_keeps_the_epochs_that_fit_and_moves_the_lr_steps_with_them(pack: Path, tmp_path: Path) -> None:
    cfg = config_from_dict(tiny_config(pack, epochs=6, lr_steps=[0.5], time_budget_s=1e-3))
    train, val, schema = load_data(cfg)
    tr, va = make_datasets(cfg, train, val, schema)
    events = EventStream(tmp_path, out=io.StringIO(), progress_bar=False)
    trainer = Trainer(cfg, build_model(cfg.model), tmp_path, events, tr, va, device=torch.device("cpu"))
    assert (trainer.lr_at(2), trainer.lr_at(3)) == (pytest.approx(2e-3), pytest.approx(2e-4))  # 6 epochs: drop at 3
    trainer.fit()  # one epoch is more than a millisecond: it is all that fits
    assert trainer.epoch == 1 and len(trainer.history) == 1
    told = [e for e in _events(tmp_path) if e["event"] == "log" and "time_budget_s" in e.get("message", "")]
    assert [e["epochs"] for e in told] == [1] and "1 of 6 epochs fit" in told[0]["message"]
    assert trainer.epochs == 1 and trainer.lr_at(2) == pytest.approx(2e-4)  # the drop moved with the schedule
    # the estimate: whole epochs of the first one's length, never fewer than the one done nor more than asked
    assert trainer._epochs_in_budget(0, 6, epoch_s=0.3e-3) == 3
    assert trainer._epochs_in_budget(0, 3, epoch_s=0.1e-3) == 3
    assert trainer._epochs_in_budget(1, 6, epoch_s=0.1e-3, left_s=0.45e-3, now=2) == 5  # the second look: longer
    assert trainer._epochs_in_budget(2, 6, epoch_s=0.6e-3) == 3
    assert trainer._epochs_in_budget(1, 3, epoch_s=0.3e-3, left_s=0.7e-3) == 3


def test_config_errors_name_the_key(tmp_path: Path) -> None:
    p = tmp_path / "cfg.json"
    p.write_text(json.dumps({"train": {"epochz": 3}}))
    with pytest.raises(ConfigError, match=r"train: unknown key\(s\) \['epochz'\]"):
        load_config(p)
    p.write_text(json.dumps({"trian": {}}))
    with pytest.raises(ConfigError, match=r"unknown section\(s\) \['trian'\]"):
        load_config(p)
    p.write_text(json.dumps({"train": {"epochs": "many"}}))
    with pytest.raises(ConfigError, match=r"train.epochs: expected an integer"):
        load_config(p)
    p.write_text("{}")
    with pytest.raises(ConfigError, match=r"model: unknown key\(s\) \['depth'\]"):
        load_config(p, ["model.depth=3"])
    with pytest.raises(ConfigError, match="expected section.key=value"):
        load_config(p, ["epochs=3"])
    p.write_text('{"train": {')
    with pytest.raises(ConfigError, match=r"cfg.json:1: invalid JSON"):
        load_config(p)


def test_export_parity(pack: Path, tmp_path: Path) -> None:
    from kpdesk.inference.model import LandmarkModel
    from training.jobs.onnx_export import export_model
    from training.jobs.train import real_batch

    cfg = config_from_dict(tiny_config(pack, arch="resnet18-bottleneck-tiny"))
    train, val, schema = load_data(cfg)
    _, va = make_datasets(cfg, train, val, schema)
    torch.manual_seed(1)
    model = build_model(cfg.model).eval()
    x = real_batch(va, 4)
    m = export_model(model, schema, tmp_path / "tiny.onnx", input_size=64, heatmap_size=16, sigma=1.0,
                     decode="fusion", arch=cfg.model.arch, real_inputs=x)
    assert max(m.info["parity_max_abs_diff"].values()) < 1e-4
    lm = LandmarkModel.load(tmp_path / "tiny.onnx", threads=1)
    coords, hms = lm.forward(x)
    with torch.no_grad():
        ref = model(torch.from_numpy(x))
    assert np.abs(coords - ref["coords"].numpy()).max() < 1e-4
    assert np.abs(hms - ref["heatmaps"].numpy()).max() < 1e-4
    assert lm.manifest.decode == "fusion" and lm.manifest.info["macs"] > 0


def test_weight_average_follows_its_formula_and_swaps_back() -> None:
    from training.jobs.ema import WeightAverage

    net = torch.nn.Sequential(torch.nn.Linear(2, 1), torch.nn.BatchNorm1d(1))
    with torch.no_grad():
        net[0].weight.fill_(1.0)
    avg = WeightAverage(net, 0.9)
    expect = torch.ones(1, 2)
    for n, w in enumerate([3.0, -2.0, 5.0]):
        d = min(0.9, (1 + n) / (10 + n))
        assert avg.rate() == pytest.approx(d)
        with torch.no_grad():
            net[0].weight.fill_(w)
            net[1].num_batches_tracked.fill_(n + 7)
        avg.update(net)
        expect = d * expect + (1 - d) * w
    torch.testing.assert_close(avg.avg["0.weight"], expect)
    assert int(avg.avg["1.num_batches_tracked"]) == 9  # integer buffers are copied, not averaged
    with avg.swapped_in(net):
        torch.testing.assert_close(net[0].weight.detach(), expect)
    assert float(net[0].weight.detach()[0, 0]) == 5.0


def test_ema_checkpoints_hold_the_average_and_resume_matches_an_uninterrupted_run(pack: Path, tmp_path: Path) -> None:
    d = tiny_config(pack, epochs=2)
    d["train"]["ema_decay"] = 0.8
    cfg = config_from_dict(d)
    run_train(cfg, tmp_path / "ref", events=_quiet(), export=False)
    ref = torch.load(tmp_path / "ref" / "checkpoints" / "last.pt", weights_only=False)
    raw = ref["ema"]["raw_model_state"]
    assert ref["ema"]["updates"] == 8
    assert any(not torch.equal(v, raw[k]) for k, v in ref["model_state"].items() if v.is_floating_point())

    # the val record is that of the average: evaluating the checkpoint's weights gives the same NME
    train, val, schema = load_data(cfg)
    _, va = make_datasets(cfg, train, val, schema)
    model = build_model(cfg.model)
    model.load_state_dict(ref["model_state"])
    from training.jobs.engine import evaluate

    res = evaluate(model, va, torch.device("cpu"), cfg.train.decode_eval, cfg.model.heatmap_size, cfg.train.sigma)
    assert res["fusion"]["nme_ion"] == pytest.approx(ref["history"][-1]["val"]["fusion"]["nme_ion"], rel=1e-5)

    run = tmp_path / "run"
    with pytest.raises(Cancelled):
        run_train(cfg, run, cancel=CancelAfter(6), export=False)
    run_train(cfg, run, resume=True, export=False)
    st = torch.load(run / "checkpoints" / "last.pt", weights_only=False)
    assert st["ema"]["updates"] == 8
    for k, v in ref["model_state"].items():
        torch.testing.assert_close(st["model_state"][k], v, rtol=0, atol=1e-6, msg=k)
        torch.testing.assert_close(st["ema"]["raw_model_state"][k], raw[k], rtol=0, atol=1e-6, msg=k)


def test_ema_decay_out_of_range_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "cfg.json"
    p.write_text("{}")
    with pytest.raises(ConfigError, match=r"train.ema_decay: must be a number in \[0, 1\)"):
        load_config(p, ["train.ema_decay=1.0"])
    with pytest.raises(ConfigError, match=r"train.time_budget_s: must be seconds >= 0"):
        load_config(p, ["train.time_budget_s=-5"])


def test_a_pruned_start_may_change_its_input_size_but_not_its_stride(tmp_path: Path) -> None:
    import dataclasses

    from fixtures import HEATMAP_SIZE, INPUT_SIZE, tiny_landmark_net

    from training.jobs.engine import TrainingError
    from training.jobs.train import pruned_start

    net = tiny_landmark_net()
    st = {"model_object": net, "model_state": net.state_dict(),
          "model_config": {"arch": "mobilenetv2-tiny", "num_points": 68, "input_size": INPUT_SIZE,
                           "heatmap_size": HEATMAP_SIZE}}
    cfg = config_from_dict(tiny_config(tmp_path))
    small = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, arch="mobilenetv2-tiny", num_points=68,
                                                               input_size=INPUT_SIZE * 3 // 4,
                                                               heatmap_size=HEATMAP_SIZE * 3 // 4))
    model = pruned_start(small, st, "ckpt.pt")
    out = model.eval()(torch.zeros(1, 3, INPUT_SIZE * 3 // 4, INPUT_SIZE * 3 // 4))
    assert out["heatmaps"].shape[-2:] == (HEATMAP_SIZE * 3 // 4,) * 2 and out["coords"].shape == (1, 136)
    off = dataclasses.replace(small, model=dataclasses.replace(small.model, heatmap_size=HEATMAP_SIZE))
    with pytest.raises(TrainingError, match=r"keep model.input_size / model.heatmap_size at 64/16"):
        pruned_start(off, st, "ckpt.pt")
    other = dataclasses.replace(small, model=dataclasses.replace(small.model, num_points=5))
    with pytest.raises(TrainingError, match="num_points"):
        pruned_start(other, st, "ckpt.pt")


def test_mixed_batches_hold_a_fixed_share_of_extra_faces_and_sample_a_large_pack_across_epochs() -> None:
    from training.jobs.engine import mixed_batches_for_epoch

    base, extra = list(range(10)), list(range(100, 130))
    ep0 = mixed_batches_for_epoch(base, extra, 6, 2, seed=3, epoch=0)
    assert len(ep0) == 2  # 10 base faces, 4 a batch: one pass, the incomplete batch dropped
    assert all(len(b) == 6 and sum(i >= 100 for i in b) == 2 for b in ep0)
    assert len({i for b in ep0 for i in b if i < 100}) == 8
    assert ep0 == mixed_batches_for_epoch(base, extra, 6, 2, seed=3, epoch=0)
    seen = {i for e in range(8) for b in mixed_batches_for_epoch(base, extra, 6, 2, 3, e) for i in b if i >= 100}
    assert len(seen) > 12  # a fresh extra order every epoch, not the same 4 faces
    small = mixed_batches_for_epoch(base, [100], 6, 2, seed=3, epoch=0)  # a pack shorter than the need cycles
    assert all(b[-2:] == [100, 100] for b in small)
    ranks = [mixed_batches_for_epoch(base, extra, 3, 1, 3, 0, rank=r, world=2) for r in (0, 1)]
    flat = [[i for b in r for i in b if i < 100] for r in ranks]
    assert not set(flat[0]) & set(flat[1])
    assert mixed_batches_for_epoch(base, extra, 6, 2, 3, 0, max_steps=1) == ep0[:1]
    tiny = [mixed_batches_for_epoch(base, [100], 3, 1, 3, 0, rank=r, world=2) for r in (0, 1)]
    assert all(b[-1] == 100 for r in tiny for b in r) and all(len(r) == 2 for r in tiny)


def test_extra_share_fixes_the_batches_of_a_run_and_is_checked(tmp_path: Path) -> None:
    pack, extra = make_face68(tmp_path / "face68"), make_face68(tmp_path / "extra")
    d = tiny_config(pack, epochs=1)  # 16 faces, batch 4
    d["data"]["extra_train"] = [str(extra)]
    d["data"]["extra_weight"] = 0
    d["data"]["extra_share"] = 0.25  # 3 faces of the data set and 1 extra a batch: 16 // 3 = 5 steps
    run_train(config_from_dict(d), tmp_path / "run", export=False)
    assert {e["steps"] for e in _events(tmp_path / "run") if e["event"] == "progress"} == {5}  # pooled: 32 // 4 = 8
    d["data"]["extra_share"] = 0.1  # rounds to no extra face in a batch of 4
    with pytest.raises(ConfigError, match="data.extra_share: must leave at least one face of each kind"):
        validate_config(config_from_dict(d))
    d["data"]["extra_share"], d["data"]["extra_train"] = 0.5, []
    with pytest.raises(ConfigError, match="data.extra_share: needs data.extra_train packs"):
        validate_config(config_from_dict(d))
