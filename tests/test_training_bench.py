"""``python -m training bench --quick`` over a folder of models (in-process ``training.cli.main``):
reports written, a perfect predictor scores 0 clean and under photometric perturbations
and exactly the analytic error under rotation (so the labels really are rotated with the
image), broken models are listed not fatal, and the run is deterministic."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from fixtures import INPUT_SIZE as S
from fixtures import export_constant_model, run_bench, same_face_pack, same_face_pack5

from kpdesk.inference.reference import available as reference_available
from kpdesk.vision.schema import get_schema
from kpdesk.vision.transforms import apply_affine, crop_params_from_points
from training.evaluation.bench import PERTURBATIONS, _rms_motion, jitter_frames, make_perturbation

pytestmark = pytest.mark.usefixtures("no_signal_handlers")


@pytest.fixture(scope="module")
def bench_dirs(tmp_path_factory: pytest.TempPathFactory, tiny_model_path: Path) -> tuple[Path, Path, np.ndarray]:
    tmp = tmp_path_factory.mktemp("bench")
    root, pts_crop = same_face_pack(tmp / "data" / "face68")
    models = tmp / "models"
    export_constant_model(models / "perfect.onnx", get_schema("ibug68"), pts_crop)
    for suffix in (".onnx", ".json"):
        shutil.copy(tiny_model_path.with_suffix(suffix), models / f"random{suffix}")
    (models / "broken.onnx").write_bytes(b"not onnx")
    _, pts5 = same_face_pack5(tmp / "data" / "face5")
    spec = crop_params_from_points(pts5, get_schema("mtfl5").crop_scale)
    export_constant_model(models / "five.onnx", get_schema("mtfl5"), apply_affine(pts5, spec.matrix(S)) + [0.05 * S, 0],
                          decode="regression", with_heatmaps=False)
    shutil.copy(models / "perfect.json", models / "broken.json")
    return tmp / "data", models, pts_crop



def test_bench_quick(bench_dirs: tuple[Path, Path, np.ndarray], tmp_path: Path,
                     capsys: pytest.CaptureFixture) -> None:
    data, models, pts_crop = bench_dirs
    res = run_bench(capsys, data, models, tmp_path / "out")
    assert res["meta"]["splits"]["mtfl5"]["n"] == 4 and res["meta"]["splits"]["ibug68"]["n"] == 6
    recs = {r["name"]: r for r in res["models"]}
    assert set(recs) == {"perfect", "random", "broken", "five"}
    five = recs["five"]
    assert five["split"] == "face5/test.txt" and five["accuracy"]["regression"]["mse_norm"] == pytest.approx(0.00125)
    assert not recs["broken"]["ok"] and "broken.onnx" in recs["broken"]["error"]

    perfect = recs["perfect"]
    for mode in ("regression", "heatmap", "fusion"):
        a = perfect["accuracy"][mode]
        assert a["nme_ion"] < 1e-3 and a["by_source"]["afw+helen"]["nme_ion"] < 1e-3
    rob = perfect["robustness"]
    assert set(rob) == {"n", "clean", *PERTURBATIONS}
    for name in ("occlusion20", "occlusion40", "blur", "lowlight"):
        assert rob[name]["regression"]["nme_ion"] < 1e-3, name  # output ignores the pixels
    schema = get_schema("ibug68")
    r = np.linalg.norm(pts_crop - (S - 1) / 2.0, axis=1)  # the crop turns about its centre
    for deg in (30, 45):
        expect = 100 * np.mean(2 * r * math.sin(math.radians(deg) / 2)) / schema.interocular(pts_crop)
        assert rob[f"rotate{deg}"]["regression"]["nme_ion"] == pytest.approx(expect, rel=1e-6)
    for t in ("threads_1", "threads_all"):
        lat = perfect["latency"][t]
        assert 0 < lat["median_ms"] <= lat["p95_ms"] and lat["runs"] == 20
    jit = perfect["jitter"]
    assert jit["input_rms_pct_iod"] > 0
    assert 0 <= jit["smoothed"]["rms_pct_iod"] <= jit["raw"]["rms_pct_iod"] + 1e-9
    assert recs["random"]["accuracy"]["fusion"]["nme_ion"] > 1.0
    assert perfect["params"] == 0 and perfect["file_size_bytes"] > 0

    md = (tmp_path / "out" / "bench.md").read_text()
    for heading in ("## Accuracy: face68/val.txt", "## Accuracy: face5/test.txt", "MSE (norm.)",
                    "## Size and speed", "## Robustness", "## Jitter",
                    "## Not benchmarked", "AFW+HELEN"):
        assert heading in md, heading
    assert (tmp_path / "out" / "ced_face68.png").stat().st_size > 0
    ref = res["reference"]
    if reference_available():  # MediaPipe in the same run: its record and the ratio section
        assert ref["name"] == "mediapipe" and ref["accuracy"]["n"] == 6
        assert ref["latency"]["image_ms"] > 0 and ref["latency"]["video_ms"] > 0
        assert set(ref["robustness"]) == {"n", "clean", *PERTURBATIONS}
        assert "## Against the MediaPipe reference" in md and "| `perfect` |" in md.split("MediaPipe reference")[1]
    else:
        assert ref is None

    # deterministic: the same numbers again (timings aside)
    again = run_bench(capsys, data, models, tmp_path / "out2", "--only", "random", "--no-jitter", "--no-reference")
    assert again["reference"] is None
    rec2 = again["models"][0]
    assert rec2["name"] == "random"
    assert rec2["accuracy"] == recs["random"]["accuracy"]
    assert rec2["robustness"] == recs["random"]["robustness"]


def test_perturbations_are_deterministic_and_keep_labels_consistent() -> None:
    from fixtures import face_image, face_shape68

    pts = face_shape68() * 50 + 48
    img = face_image(pts, 96, np.random.default_rng(0))
    from kpdesk.vision.transforms import crop_params_from_points

    spec = crop_params_from_points(pts, 1.5)
    for name in PERTURBATIONS:
        f = make_perturbation(name, seed=3)
        a, sa = f(img, pts, spec, 5)
        b, sb = f(img, pts, spec, 5)
        assert np.array_equal(a, b) and sa == sb, name
        assert a.shape == img.shape and a.dtype == np.uint8
    occ, _ = make_perturbation("occlusion40")(img, pts, spec, 0)
    lo, hi = pts.min(0), pts.max(0)
    changed = np.any(occ != img, axis=2)
    box_area = (hi - lo).prod()
    assert changed.sum() == pytest.approx(0.4 * box_area, rel=0.1)
    _, rot = make_perturbation("rotate30")(img, pts, spec, 1)
    assert rot.angle_deg == -30 and rot.side == spec.side


def test_jitter_input_motion() -> None:
    img = np.full((40, 40, 3), 100, np.uint8)
    pts = np.array([[10.0, 10.0], [30.0, 20.0]])
    seq = np.array([p for _, p in jitter_frames(img, pts, 400, 0, 0, 0.5, 90)])
    # uniform(-0.5, 0.5) per axis: frame-to-frame difference has E|d|^2 = 2 * 2 / 12
    assert _rms_motion(seq) == pytest.approx(math.sqrt(1 / 3), rel=0.08)
    seq[5] = np.nan  # a lost frame drops its two differences, not the whole measurement
    assert math.isfinite(_rms_motion(seq))


@pytest.mark.data
def test_bench_quick_on_the_real_validation_split(tiny_model_path: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture) -> None:
    from conftest import data_root

    models = tmp_path / "models"
    models.mkdir()
    for suffix in (".onnx", ".json"):
        shutil.copy(tiny_model_path.with_suffix(suffix), models / f"tiny{suffix}")
    res = run_bench(capsys, data_root(), models, tmp_path / "out", "--no-jitter", "--no-robustness")
    rec = res["models"][0]
    by = rec["accuracy"][rec["decode"]]["by_source"]
    assert {"afw", "helen", "ytf", "afw+helen"} <= set(by)
    assert sum(by[s]["n"] for s in ("afw", "helen", "ytf")) == rec["accuracy"][rec["decode"]]["n"] == 24
    if reference_available():  # MediaPipe finds real faces and is scored through its view
        acc = res["reference"]["accuracy"]
        assert acc["n"] == 24 and acc["found"] >= 20 and acc["nme_ion"] < 15.0
