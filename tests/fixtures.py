"""A tiny real landmark network, exported to ONNX with a manifest, for integration tests.

``export_tiny(folder, name)`` builds a small conv stack in torch (seeded), exports it
with the TorchScript-based exporter and writes ``NAME.json`` beside it. The coordinate
head is biased towards a ring around the crop centre whose bounding box is 2/3 of the
crop, so with the default crop scale 1.5 a tracked crop keeps its size. ``hm_bias``
shifts the heatmap logits, i.e. the confidence (+4 -> ~0.98 everywhere, -6 -> ~0.003).
``graph_points`` != ``points`` gives a graph that disagrees with its manifest.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

INPUT_SIZE = 64
HEATMAP_SIZE = 16


def export_tiny(folder: Path, name: str = "tiny", points: int = 68, graph_points: int | None = None,
                hm_bias: float = 0.0, decode: str = "fusion", input_size: int = INPUT_SIZE,
                dynamic_batch: bool = True, seed: int = 0) -> Path:
    """Write ``folder/NAME.onnx`` + ``folder/NAME.json``; return the .onnx path."""
    import torch
    from torch import nn

    from kpdesk.vision.manifest import Manifest
    from kpdesk.vision.preprocess import IMAGENET_MEAN, IMAGENET_STD
    from kpdesk.vision.schema import custom_schema, get_schema

    k = graph_points or points
    s, h = input_size, HEATMAP_SIZE
    ang = np.linspace(0, 2 * np.pi, k, endpoint=False)
    ring = 0.5 + np.stack([np.cos(ang), np.sin(ang)], axis=-1) / 3.0  # normalised; box = crop / 1.5

    class TinyLandmarkNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(seed)
            self.features = nn.Sequential(
                nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
            )
            self.hm_head = nn.Conv2d(16, k, 1)
            self.fc = nn.Linear(16, 2 * k)
            with torch.no_grad():
                self.hm_head.bias.fill_(hm_bias)
                self.fc.weight.mul_(0.05)
                p = torch.from_numpy(ring.reshape(-1)).float()
                self.fc.bias.copy_(torch.log(p / (1 - p)))

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            f = self.features(x)
            f = nn.functional.interpolate(f, size=(h, h), mode="bilinear", align_corners=False)
            heatmaps = torch.sigmoid(self.hm_head(f))
            coords = torch.sigmoid(self.fc(f.mean(dim=(2, 3))))
            return coords, heatmaps

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    onnx_path = folder / f"{name}.onnx"
    axes = {"input": {0: "batch"}, "coords": {0: "batch"}, "heatmaps": {0: "batch"}} if dynamic_batch else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(TinyLandmarkNet().eval(), (torch.zeros(1, 3, s, s),), str(onnx_path), dynamo=False,
                          opset_version=17, input_names=["input"], output_names=["coords", "heatmaps"],
                          dynamic_axes=axes)
    schema = get_schema("ibug68") if points == 68 else custom_schema(points)
    Manifest(name=name, schema=schema, input_size=s, mean=IMAGENET_MEAN, std=IMAGENET_STD,
             crop_scale=schema.crop_scale, heatmap_size=h, sigma=1.5, decode=decode, arch="tiny-test",
             info={"purpose": "tests only; untrained"}).save(folder / f"{name}.json")
    return onnx_path
