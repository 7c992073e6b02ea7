"""``training eval`` and the model cards take an imported third-party model like their own:
its input / output conventions through ``LandmarkModel``, its crop offset in every crop."""

from __future__ import annotations

from pathlib import Path

import pytest
from thirdparty_models import synthetic_faces, write_model

from kpdesk.cli import main as kpdesk_main
from kpdesk.vision.manifest import Manifest
from training.evaluation.cards import card_section
from training.evaluation.evaluate import evaluate_file, load_runner


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("imported")
    faces = synthetic_faces(base / "faces", n=12)
    graph = write_model(base / "third.onnx", layout="nhwc", output="pixels")
    models = base / "models"
    for name, crop in (("fitted", ("--crop-scale", "1.7", "--crop-offset", "0.05,0.12")), ("centred", ())):
        rc = kpdesk_main(["models", "import", str(graph), "--name", name, "--output", "pixels", "--models-dir",
                          str(models), "--licence", "MIT (test)", *crop])
        assert rc == 0
    return {"faces": faces, "fitted": models / "fitted.onnx", "centred": models / "centred.onnx"}


def test_training_eval_cuts_an_imported_models_crop(installed: dict[str, Path]) -> None:
    runner = load_runner(installed["fitted"], threads=1)
    assert runner.crop_offset == (0.05, 0.12) and runner.crop_scale == 1.7
    good = evaluate_file(installed["fitted"], installed["faces"], "val.txt", threads=1)
    bad = evaluate_file(installed["centred"], installed["faces"], "val.txt", threads=1)
    assert good["n"] == 12 and good["modes"] == ["regression"]
    assert good["results"]["regression"]["nme_ion"] < 0.6 < 3.0 < bad["results"]["regression"]["nme_ion"]


def test_an_imported_model_gets_its_own_card(installed: dict[str, Path]) -> None:
    man = Manifest.load(installed["fitted"].with_suffix(".json"))
    rec = {"decode": "regression", "file_size_bytes": 4096,
           "accuracy": {"regression": {"n": 12, "nme_ion": 0.4, "by_source": {"synth": {"nme_ion": 0.4, "n": 12}}}}}
    card = card_section(man, rec, {"date": "today"})
    assert card.startswith("### fitted\n")
    assert "**Imported** from `third.onnx`" in card and "kpdesk models import" in card
    assert "64 px NHWC RGB" in card and "**output** pixels `landmarks`" in card
    assert "centre offset (+0.050, +0.120)" in card and "given at import, not calibrated" in card
    assert "**Licence**: MIT (test)" in card and "ION NME 0.40%" in card and "synth 0.40% (n=12)" in card


@pytest.mark.usefixtures("no_signal_handlers")
def test_training_bench_measures_imported_models_in_the_same_run(installed: dict[str, Path], tmp_path: Path,
                                                                capsys: pytest.CaptureFixture) -> None:
    from fixtures import run_bench

    data = tmp_path / "data"
    synthetic_faces(data / "face68", n=12, seed=1)
    res = run_bench(capsys, data, installed["fitted"].parent, tmp_path / "out", "--no-jitter", "--no-reference")
    recs = {r["name"]: r for r in res["models"]}
    assert set(recs) == {"fitted", "centred"} and all(r["ok"] for r in recs.values())
    good, bad = (recs[n]["accuracy"]["regression"]["nme_ion"] for n in ("fitted", "centred"))
    assert good < 0.6 < 3.0 < bad  # the imported crop is cut the same way in the bench as in training eval
    assert recs["fitted"]["latency"]["threads_1"]["median_ms"] > 0
    md = (tmp_path / "out" / "bench.md").read_text()
    assert "| fitted |" in md and "| centred |" in md
