"""Training-speed choices: the bf16 probe and the colour jitter's fused colour matrix."""

from __future__ import annotations

import numpy as np
import pytest

from training.data import augment


def _reference_color(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The colour jitter applied step by step in float (what the fused version replaced)."""
    x = img.astype(np.float64)
    x = x * rng.uniform(0.6, 1.4) + rng.uniform(-30, 30)
    mean = x.mean(axis=2, keepdims=True)
    x = mean + (x - mean) * rng.uniform(0.6, 1.4)
    x *= rng.uniform(0.9, 1.1, size=3)
    x = np.clip(x, 0, 255)
    if rng.random() < 0.3:
        x = 255.0 * (x / 255.0) ** rng.uniform(0.5, 2.2)
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


def test_fused_colour_jitter_matches_the_step_by_step_one():
    img = (np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)
    for seed in range(40):
        a = _reference_color(img, np.random.default_rng(seed)).astype(int)
        b = augment._color(img, np.random.default_rng(seed)).astype(int)
        # the gamma curve is applied after rounding to uint8: a few levels apart where it is steep
        assert np.abs(a - b).max() <= 8, seed
        assert np.abs(a - b).mean() < 1.0, seed


def test_config_accepts_auto_bf16_only_for_cpu_bf16():
    from training.config import ConfigError, config_from_dict

    assert config_from_dict({"train": {"cpu_bf16": "auto"}}).train.cpu_bf16 == "auto"
    with pytest.raises(ConfigError, match="cpu_bf16"):
        config_from_dict({"train": {"cpu_bf16": "maybe"}})
    with pytest.raises(ConfigError, match="channels_last"):
        config_from_dict({"train": {"channels_last": "auto"}})


def test_bf16_probe_leaves_the_model_and_rng_alone(torch_one_thread):
    import torch

    from training.jobs.engine import measure_bf16
    from training.nets.networks import ModelConfig, build_model

    torch.manual_seed(0)
    m = build_model(ModelConfig(arch="mobilenetv2", input_size=64, heatmap_size=8)).train()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    rng = torch.get_rng_state()
    res = measure_bf16(m, 64, 4, steps=1)
    assert set(res) == {"bf16", "fp32_img_s", "bf16_img_s"}
    assert res["fp32_img_s"] > 0 and res["bf16_img_s"] > 0
    assert res["bf16"] == (res["bf16_img_s"] > res["fp32_img_s"])
    assert torch.equal(torch.get_rng_state(), rng)
    for k, v in m.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_a_run_with_auto_bf16_reports_its_choice_and_trains_on_an_extra_pack(tmp_path, torch_one_thread):
    import json

    from fixtures import make_face68, tiny_config

    from training.config import config_from_dict
    from training.jobs.train import run_train

    pack = make_face68(tmp_path / "face68")
    extra = make_face68(tmp_path / "extra")
    d = tiny_config(pack, epochs=1)
    d["train"]["cpu_bf16"] = "auto"
    d["data"]["extra_train"] = [str(extra)]
    d["data"]["extra_weight"] = 0.5
    run = tmp_path / "run"
    run_train(config_from_dict(d), run, export=False)
    ev = [json.loads(ln) for ln in (run / "events.jsonl").read_text().splitlines()]
    choice = [e for e in ev if e["event"] == "log" and "bf16_choice" in e]
    assert len(choice) == 1 and isinstance(choice[0]["bf16_choice"]["bf16"], bool)
    start = next(e for e in ev if e["event"] == "start")
    n = len((pack / "train.txt").read_text().split())
    assert start["train_samples"] == n + len((extra / "train.txt").read_text().split())
    assert ev[-1]["event"] == "done"


def test_best_epoch_can_be_chosen_on_some_val_sources():
    from training.jobs.engine import TrainingError, selection_score

    m = {"nme_ion": 6.0, "by_source": {"afw": {"nme_ion": 5.0, "n": 1}, "helen": {"nme_ion": 4.0, "n": 3},
                                       "ytf": {"nme_ion": 7.0, "n": 6}}}
    assert selection_score(m, "nme_ion") == 6.0
    assert selection_score(m, "nme_ion", ("afw", "helen")) == pytest.approx(4.25)
    with pytest.raises(TrainingError, match="lfw"):
        selection_score(m, "nme_ion", ("lfw",))
