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


def _bench(name: str) -> dict:
    path = REPO / "models" / f"{name}.json"
    if not path.is_file():
        pytest.skip(f"{path} not shipped here")
    return json.loads(path.read_text())["info"]["bench"]


def _paragraph(start: str) -> str:
    i = README.index(start)
    return " ".join(README[i:README.index("\n\n", i)].split())


def test_default_model_prose_matches_the_manifests() -> None:
    s, t, q = _bench("student"), _bench("teacher"), _bench("student-0.25x")

    def ion(b: dict, part: str | None = None) -> float:
        v = b["val"] if part is None else b["val"]["by_source"][part]
        return v["nme_ion"]

    def ms(b: dict) -> float:
        return b["latency_ms"]["threads_1"]["median_ms"]

    text = _paragraph("The default model is")
    for want in (f"{ion(s):.2f}% ION NME on face68 val", f"{ion(s, 'afw+helen'):.2f}% on its AFW+HELEN part",
                 f"teacher's {ion(t):.2f}% / {ion(t, 'afw+helen'):.2f}%", f"runs a face in {ms(s):.2f} ms",
                 f"is {ms(s) / ms(q):.1f} times faster but {ion(q) - ion(s):.2f} points less accurate",
                 f"the teacher is {ms(t) / ms(s):.1f} times slower"):
        assert want in text, (want, text)
    assert ion(s) < min(ion(t), ion(q))  # "the most accurate shipped model"


def test_the_paper_table_matches_the_manifests() -> None:
    rows = {"ResNet-50 teacher": "teacher", "mobile-distill-prune-1X": "student",
            "mobile-distill-prune-0.25X": "student-0.25x"}
    for label, name in rows.items():
        b = _bench(name)
        line = next(ln for ln in README.splitlines() if ln.startswith(f"| {label} |"))
        ours = f"{b['val']['by_source']['afw+helen']['nme_ion']:.2f} AFW+HELEN / {b['val']['nme_ion']:.2f} all"
        assert ours in line, (ours, line)
        shown_ms = float(re.search(r"/ ([0-9.]+) ms \|\s*$", line).group(1))  # as rounded in the table
        assert shown_ms == pytest.approx(b["latency_ms"]["threads_1"]["median_ms"], rel=0.02, abs=0.006), line


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
