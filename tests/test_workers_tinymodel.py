"""A real (tiny) landmark model exported to ONNX with a manifest, for the worker and GUI tests.

``build_tiny_models(folder)`` writes ``teacher``, ``student`` and ``student-0.25x``:
small conv nets whose coordinate head is biased to the mean iBUG-68 face shape, with a
small input-dependent part, and whose heatmaps are Gaussians at the same places. They
run through onnxruntime exactly like trained models, so the whole app path is real.
The mouth points get low confidence (heatmap peak ~0.25) so occlusion marking shows.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

# Mean iBUG-68 shape: landmark box centred at 0, longer side 1 (from face68/train).
MEAN_SHAPE_68 = np.array([
    [-0.476, -0.265], [-0.472, -0.139], [-0.457, -0.013], [-0.43, 0.109], [-0.378, 0.222], [-0.298, 0.319],
    [-0.203, 0.398], [-0.099, 0.459], [0.016, 0.473], [0.129, 0.451], [0.227, 0.385], [0.317, 0.303],
    [0.39, 0.205], [0.437, 0.092], [0.461, -0.029], [0.472, -0.151], [0.476, -0.275], [-0.388, -0.364],
    [-0.329, -0.419], [-0.247, -0.438], [-0.16, -0.428], [-0.08, -0.4], [0.078, -0.406], [0.161, -0.435],
    [0.246, -0.445], [0.326, -0.426], [0.381, -0.373], [0.003, -0.299], [0.004, -0.219], [0.006, -0.141],
    [0.008, -0.06], [-0.095, 0.001], [-0.045, 0.018], [0.007, 0.031], [0.058, 0.016], [0.103, 0.0],
    [-0.291, -0.279], [-0.237, -0.31], [-0.175, -0.309], [-0.121, -0.271], [-0.176, -0.26], [-0.239, -0.259],
    [0.119, -0.274], [0.176, -0.315], [0.238, -0.315], [0.289, -0.286], [0.242, -0.266], [0.18, -0.264],
    [-0.179, 0.154], [-0.109, 0.122], [-0.039, 0.108], [0.005, 0.118], [0.055, 0.107], [0.125, 0.122],
    [0.19, 0.149], [0.127, 0.217], [0.06, 0.248], [0.007, 0.254], [-0.042, 0.249], [-0.112, 0.221],
    [-0.151, 0.157], [-0.04, 0.148], [0.006, 0.152], [0.056, 0.147], [0.162, 0.153], [0.056, 0.188],
    [0.006, 0.194], [-0.041, 0.19],
], dtype=np.float64)

TINY_NAMES = {"teacher": 1.0, "student": 1.0, "student-0.25x": 1.0}
INPUT_SIZE = 64
HEATMAP_SIZE = 16


def export_tiny_model(out_onnx: Path, shape_scale: float = 1.0, seed: int = 0) -> Path:
    """Export one tiny 68-point model (+ its manifest) to ``out_onnx``; returns the path."""
    import torch
    from torch import nn

    from kpdesk.vision.codecs import HeatmapCodec
    from kpdesk.vision.manifest import Manifest
    from kpdesk.vision.preprocess import IMAGENET_MEAN, IMAGENET_STD
    from kpdesk.vision.schema import get_schema

    schema = get_schema("ibug68")
    s, h = INPUT_SIZE, HEATMAP_SIZE
    # Level the eyes and re-normalise so the template's landmark box is exactly centred with
    # longer side 1: otherwise tracking (next crop = landmark box x crop_scale, turned to
    # level the eyes) would shrink, drift or slowly roll the crop.
    d = MEAN_SHAPE_68[42:48].mean(axis=0) - MEAN_SHAPE_68[36:42].mean(axis=0)
    a = -np.arctan2(d[1], d[0])
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    shape = MEAN_SHAPE_68 @ rot.T
    lo, hi = shape.min(axis=0), shape.max(axis=0)
    shape = (shape - (lo + hi) / 2) / float((hi - lo).max())
    pts_norm = 0.5 + shape * shape_scale / schema.crop_scale
    pts_crop = pts_norm * s - 0.5
    hm, _ = HeatmapCodec(s, h, 1.5).encode(pts_crop)
    peak = np.full(68, 0.9, dtype=np.float32)
    peak[48:68] = 0.25  # the mouth reads as "occluded"

    class Tiny(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            g = torch.Generator().manual_seed(seed)
            self.conv = nn.Conv2d(3, 8, 3, stride=4, padding=1)
            self.fc = nn.Linear(8, 136)
            with torch.no_grad():
                self.conv.weight.copy_(torch.randn(self.conv.weight.shape, generator=g) * 0.1)
                self.fc.weight.copy_(torch.randn(self.fc.weight.shape, generator=g) * 0.05)
                p = torch.from_numpy(pts_norm.reshape(-1)).float().clamp(1e-3, 1 - 1e-3)
                self.fc.bias.copy_(torch.log(p / (1 - p)))
            self.register_buffer("hm", torch.from_numpy(hm * peak[:, None, None])[None])

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            f = torch.relu(self.conv(x)).mean(dim=(2, 3))
            coords = torch.sigmoid(self.fc(f))
            heatmaps = self.hm.expand(x.shape[0], -1, -1, -1) * (1.0 + 0.0 * f[:, :1, None, None])
            return coords, heatmaps

    out_onnx = Path(out_onnx)
    out_onnx.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Tiny().eval(), (torch.zeros(1, 3, s, s),), str(out_onnx), dynamo=False, opset_version=17,
                          input_names=["input"], output_names=["coords", "heatmaps"],
                          dynamic_axes={"input": {0: "batch"}, "coords": {0: "batch"}, "heatmaps": {0: "batch"}})
    Manifest(name=out_onnx.stem, schema=schema, input_size=s, mean=IMAGENET_MEAN, std=IMAGENET_STD,
             crop_scale=schema.crop_scale, heatmap_size=h, sigma=1.5, decode="fusion", arch="tiny-test",
             info={"note": "test model: mean face shape, not trained"}).save(out_onnx.with_suffix(".json"))
    return out_onnx


def build_tiny_models(folder: Path) -> dict[str, Path]:
    """``teacher``, ``student``, ``student-0.25x`` in ``folder``; name -> onnx path."""
    return {name: export_tiny_model(Path(folder) / f"{name}.onnx", scale, seed=i)
            for i, (name, scale) in enumerate(TINY_NAMES.items())}


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
