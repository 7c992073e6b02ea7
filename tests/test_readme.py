"""The README's figures and examples match what the project measures and prints: the
default-model prose and the paper table against the manifests' bench figures, the
astronaut example and the record example against a real run."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


def _card(name: str) -> dict:
    path = REPO / "models" / f"{name}.json"
    if not path.is_file():
        pytest.skip(f"{path} not shipped here")
    return json.loads(path.read_text())


def _val(name: str) -> dict:
    """The model's face68 val figures: its bench run's, else those written at training."""
    info = _card(name)["info"]
    return (info.get("bench") or {}).get("val") or info["val_metrics"]


def _afw_helen(v: dict) -> float:
    src = v["by_source"]
    if "afw+helen" in src:
        return src["afw+helen"]["nme_ion"]
    parts = [src[k] for k in ("afw", "helen")]
    return sum(p["nme_ion"] * p["n"] for p in parts) / sum(p["n"] for p in parts)


def _ms(name: str) -> float:
    return _card(name)["info"]["bench"]["latency_ms"]["threads_1"]["median_ms"]


def _paragraph(start: str) -> str:
    i = README.index(start)
    return " ".join(README[i:README.index("\n\n", i)].split())


def test_default_model_prose_matches_the_manifests() -> None:
    s, t, q = _val("student"), _val("teacher"), _val("student-0.25x")
    text = _paragraph("The default model is")
    wants = [f"{s['nme_ion']:.2f}% ION NME on face68 val", f"({_afw_helen(s):.2f}% on its AFW+HELEN part)",
             f"a face in {_ms('student'):.2f} ms on one CPU thread",
             f"is {_ms('student') / _ms('student-0.25x'):.1f} times faster but "
             f"{q['nme_ion'] - s['nme_ion']:.2f} points",
             f"scores {t['nme_ion']:.2f}% on val ({_afw_helen(t):.2f}% on AFW+HELEN)"]
    teacher = _card("teacher")
    if "bench" not in teacher["info"]:  # said so, with what can be said
        wants.append(f"at {teacher['info']['macs'] / _card('student')['info']['macs']:.1f} times the student's MACs")
        wants.append("bench figures (latency, robustness) are not measured yet")
    for want in wants:
        assert want in text, (want, text)


def test_the_paper_table_matches_the_manifests() -> None:
    rows = {"mobile-distill-prune-1X": "student", "mobile-distill-prune-0.25X": "student-0.25x",
            "ours: the 0.5x, int8 (not in the paper)": "student-0.5x-int8",
            "ours: the student at 160 px, int8 (not in the paper)": "student-160-int8"}
    if _card("teacher")["arch"] == "resnet50":
        rows["ResNet-50 teacher"] = "teacher"  # the row describes the shipped teacher only while it is that one
    for label, name in rows.items():
        b = _card(name)["info"]["bench"]
        line = next(ln for ln in README.splitlines() if ln.startswith(f"| {label} |"))
        ours = f"{_afw_helen(b['val']):.2f} AFW+HELEN / {b['val']['nme_ion']:.2f} all"
        assert ours in line, (ours, line)
        shown_ms = float(re.search(r"/ ([0-9.]+) ms \|\s*$", line).group(1))  # as rounded in the table
        assert shown_ms == pytest.approx(_ms(name), rel=0.02, abs=0.006), line


@pytest.fixture(scope="module")
def astronaut_record(astronaut_bgr: np.ndarray) -> dict:
    """The README's astronaut example, run as ``kpdesk detect`` runs it (default model, default detector)."""
    from kpdesk.inference.catalog import default_entry, scan_models
    from kpdesk.inference.detectors import available_detectors, create_detector
    from kpdesk.inference.model import LandmarkModel
    from kpdesk.inference.pipeline import Pipeline, PipelineConfig
    from kpdesk.vision.records import frame_record

    if "blazeface" not in available_detectors():
        pytest.skip("the README example uses BlazeFace, whose asset is not fetched here")
    entry = default_entry(scan_models(REPO / "models", validate=False))
    if entry is None or entry.name != "student":
        pytest.skip("the shipped student model is not here")
    det = create_detector("auto")
    try:
        res = Pipeline(LandmarkModel.load(entry.onnx_path, threads=1), det,
                       PipelineConfig(smoothing=False)).process(astronaut_bgr, 0, 0.0)
    finally:
        det.close()
    return frame_record(res, source_file="astronaut.png", timestamp=0.0)


def test_the_astronaut_pose_in_the_quickstart(astronaut_record: dict) -> None:
    m = re.search(r'`"pose": (\{[^`]*\})`', README)
    assert m, "the Quickstart's pose example is gone"
    shown = json.loads(m.group(1))
    got = astronaut_record["faces"][0]["pose"]
    assert shown["rough"] == got["rough"]
    for k in ("yaw", "pitch", "roll"):
        assert shown[k] == pytest.approx(got[k], abs=0.05), (k, shown, got)


def test_the_record_example_is_a_real_record(astronaut_record: dict) -> None:
    block = README[README.index("### Landmark records"):]
    block = block[block.index("```json") + 7:]
    shown = json.loads(block[:block.index("```")])
    got = astronaut_record
    assert set(shown) == set(got)
    assert set(shown["faces"][0]) == set(got["faces"][0])
    assert set(shown["timings_ms"]) == set(got["timings_ms"])
    for key in ("format", "frame", "t", "file", "model", "detector", "mirrored", "frame_size"):
        assert shown[key] == got[key], key
    sf, gf = shown["faces"][0], got["faces"][0]
    assert sf["box_xyxy"] == pytest.approx(gf["box_xyxy"], abs=0.05)
    assert sf["pts_img"][0] == pytest.approx(gf["pts_img"][0], abs=0.05)
    assert sf["conf"][0] == pytest.approx(gf["conf"][0], abs=0.002)
    assert sf["detector_score"] == pytest.approx(gf["detector_score"], abs=0.002)
    assert sf["tracked"] == gf["tracked"] and sf["pose"]["rough"] == gf["pose"]["rough"]
    for k in ("yaw", "pitch", "roll"):
        assert sf["pose"][k] == pytest.approx(gf["pose"][k], abs=0.05)
