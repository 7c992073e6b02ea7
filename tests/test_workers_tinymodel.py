"""A real (tiny) landmark model exported to ONNX with a manifest, for the worker and GUI tests.

``build_tiny_models(folder)`` writes ``teacher``, ``student`` and ``student-0.25x``:
small conv nets whose coordinate head is biased to the mean iBUG-68 face shape, with a
small input-dependent part, and whose heatmaps are Gaussians at the same places. They
run through onnxruntime exactly like trained models, so the whole app path is real.
The mouth points get low confidence (heatmap peak ~0.25) so occlusion marking shows.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fixtures import build_tiny_models

# Mean iBUG-68 shape: landmark box centred at 0, longer side 1 (from face68/train).

INPUT_SIZE = 64
HEATMAP_SIZE = 16



@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return build_tiny_models(tmp_path_factory.mktemp("models"))


def test_tiny_models_load_and_find_the_demo_face(tiny_models: dict[str, Path]) -> None:
    from kpdesk.inference.catalog import scan_models
    from kpdesk.inference.detectors import create_detector
    from kpdesk.inference.model import LandmarkModel
    from kpdesk.inference.pipeline import Pipeline, PipelineConfig
    from kpdesk.inference.sources import DemoSource

    entries = scan_models(next(iter(tiny_models.values())).parent)
    assert sorted(e.name for e in entries) == sorted(tiny_models) and all(e.ok for e in entries)
    model = LandmarkModel.load(tiny_models["student"], threads=1)
    det = create_detector("auto")
    try:
        res = Pipeline(model, det, PipelineConfig(max_faces=1)).process(DemoSource().frame(0), 0, 0.0)
    finally:
        det.close()
    assert len(res.faces) == 1
    face = res.faces[0]
    assert face.pts_img.shape == (68, 2)
    x0, y0, x1, y1 = face.box_xyxy
    inside = ((face.pts_img[:, 0] > x0 - 40) & (face.pts_img[:, 0] < x1 + 40)
              & (face.pts_img[:, 1] > y0 - 40) & (face.pts_img[:, 1] < y1 + 40))
    assert inside.mean() > 0.9
    assert face.conf[50] < 0.4 < face.conf[36]
