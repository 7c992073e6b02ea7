"""Helpers shared by the test files, in one place (``from fixtures import ...``; the fixtures
pytest injects are in conftest.py):

- tiny ONNX landmark models: ``export_tiny`` (one untrained model), ``build_tiny_models``
  (``teacher``, ``student``, ``student-0.25x`` biased to the mean face, for the app, the
  workers and the GUI), ``export_constant_model`` (predicts fixed points);
- tiny torch networks: ``tiny_landmark_net``;
- tiny data packs: ``make_face68`` (drawn faces), ``make_tiny_face68`` (random images),
  ``make_face68_val``, ``same_face_pack`` / ``same_face_pack5``, ``make_tiny_dataset``
  (CSV, 5 points) and the configs that train on them (``tiny_config``, ``tiny_config_file``,
  ``TINY_OVERRIDES``);
- running training: ``train_tiny`` (in-process), ``run_cli`` (``python -m training`` in a
  child process), ``run_bench`` (``training bench --quick`` in-process);
- the import walker of the layering tests (``imports_in``).

``export_tiny(folder, name)`` builds a small conv stack in torch (seeded), exports it
with the TorchScript-based exporter and writes ``NAME.json`` beside it. The coordinate
head is biased towards a ring around the crop centre whose bounding box is 2/3 of the
crop, so with the default crop scale 1.5 a tracked crop keeps its size. ``hm_bias``
shifts the heatmap logits, i.e. the confidence (+4 -> ~0.98 everywhere, -6 -> ~0.003).
``graph_points`` != ``points`` gives a graph that disagrees with its manifest.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest

from kpdesk.vision.labels import write_pts
from kpdesk.vision.schema import KeypointSchema, get_schema
from kpdesk.vision.transforms import apply_affine, crop_params_from_points

INPUT_SIZE = 64
HEATMAP_SIZE = 16
SIGMA = 1.0  # of export_constant_model's heatmaps
REPO = Path(__file__).resolve().parents[1]


def export_tiny(folder: Path, name: str = "tiny", points: int = 68, graph_points: int | None = None,
                hm_bias: float = 0.0, decode: str = "fusion", input_size: int = INPUT_SIZE,
                dynamic_batch: bool = True, seed: int = 0,
                detector_crop: dict | None | str = "identity", layout: str | None = None) -> Path:
    """Write ``folder/NAME.onnx`` + ``folder/NAME.json``; return the .onnx path.

    ``detector_crop``: the manifest's detector mapping; ``"identity"`` (the default) gives
    every detector dx = dy = 0, ratio 1 to a model of another layout than iBUG 68 (which
    needs none); None leaves it out. ``layout``: a named schema (e.g. ``mtfl5``) instead of
    iBUG 68 / a custom one."""
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
    schema = get_schema(layout) if layout else get_schema("ibug68") if points == 68 else custom_schema(points)
    if detector_crop == "identity":
        detector_crop = None if points == 68 else {d: {"dx": 0.0, "dy": 0.0, "ratio": 1.0}
                                                   for d in ("blazeface", "haar")}
    Manifest(name=name, schema=schema, input_size=s, mean=IMAGENET_MEAN, std=IMAGENET_STD,
             crop_scale=schema.crop_scale, heatmap_size=h, sigma=1.5, decode=decode, arch="tiny-test",
             detector_crop=detector_crop, info={"purpose": "tests only; untrained"}).save(folder / f"{name}.json")
    return onnx_path


# -- the import walker of the layering tests -----------------------------------------------------
def import_from_base(node: ast.ImportFrom, pkg: str) -> str:
    """The absolute module of ``from X import ...`` written inside package ``pkg``."""
    if not node.level:
        return node.module or ""
    base = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def imports_in(source: str, pkg: str) -> list[str]:
    """Absolute dotted names of every module a source imports, anywhere (inside functions
    too), for a module of package ``pkg``; ``from m import a`` gives ``m`` and ``m.a``."""
    names = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            mod = import_from_base(node, pkg)
            names.append(mod)
            names += [f"{mod}.{a.name}" for a in node.names]  # `from PySide6 import QtWidgets`
    return names


# -- tiny torch networks ---------------------------------------------------------------------
def tiny_landmark_net(arch: str = "mobilenetv2-tiny", seed: int = 0, hm_source: str = "fpn"):  # noqa: ANN201
    """A tiny ``training`` LandmarkNet (64 px input) with non-trivial BatchNorm statistics and
    affine, in eval mode."""
    import torch
    from torch import nn

    from training.nets.networks import LandmarkNet, ModelConfig

    torch.manual_seed(seed)
    m = LandmarkNet(ModelConfig(arch=arch, input_size=INPUT_SIZE, heatmap_size=HEATMAP_SIZE, hm_source=hm_source,
                                head_channels=16, reg_hidden=32))
    for mod in m.modules():
        if isinstance(mod, nn.modules.batchnorm._BatchNorm):
            mod.running_mean.uniform_(-0.3, 0.3)
            mod.running_var.uniform_(0.5, 2.0)
            mod.weight.data.uniform_(0.5, 1.5)
            mod.bias.data.uniform_(-0.2, 0.2)
    return m.eval()


# -- tiny ONNX models for the app, the workers and the GUI ---------------------------------------
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


# -- tiny data packs and the configs that train on them ------------------------------------------
def make_tiny_dataset(root: Path, n: int = 16) -> Path:
    """A CSV landmark data set of random 64 px images with 5 points; returns its folder."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        cv2.imwrite(str(root / "images" / f"{i}.png"), (rng.random((64, 64, 3)) * 255).astype(np.uint8))
        pts = rng.uniform(16, 48, (5, 2))
        rows.append(f"images/{i}.png," + ",".join(f"{v:.1f}" for v in pts.reshape(-1)))
    header = "image," + ",".join(f"x{i},y{i}" for i in range(5))
    (root / "train.csv").write_text(header + "\n" + "\n".join(rows[: n * 3 // 4]) + "\n")
    (root / "val.csv").write_text(header + "\n" + "\n".join(rows[n * 3 // 4:]) + "\n")
    return root


TINY_OVERRIDES = ("model.arch=mobilenetv2-tiny", "model.num_points=5", "model.input_size=64",
                  "model.heatmap_size=16", "train.batch_size=4", "train.pretrained=none", "train.amp=false",
                  "train.threads=1", "train.device=cpu")


def make_face68_val(root: Path, n: int = 5, sources: tuple[str, ...] = ("afw", "helen")) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    all_pts, lines = [], []
    for i in range(n):
        src = sources[i % len(sources)]
        rel = Path("images") / src / f"{i:03d}.jpg"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / rel), np.full((64, 64, 3), 100, np.uint8))
        pts = rng.uniform(5, 60, size=(68, 2))
        write_pts((root / rel).with_suffix(".pts"), pts)
        all_pts.append(pts)
        lines.append(str(rel))
    (root / "val.txt").write_text("\n".join(lines) + "\n")
    return all_pts


def face_shape68() -> np.ndarray:
    """A plausible iBUG-68 layout (68, 2), landmark box centred at 0, longer side ~1."""
    p = np.zeros((68, 2))
    a = np.linspace(np.pi, 0.0, 17)
    p[0:17] = np.stack([0.45 * np.cos(a), 0.05 + 0.45 * np.sin(a)], axis=1)  # jaw, image-left to right
    p[17:22] = np.stack([np.linspace(-0.4, -0.08, 5), -0.42 + 0.04 * np.sin(np.linspace(0, np.pi, 5))], 1)
    p[22:27] = np.stack([np.linspace(0.08, 0.4, 5), -0.42 + 0.04 * np.sin(np.linspace(0, np.pi, 5))], 1)
    p[27:31] = np.stack([np.zeros(4), np.linspace(-0.3, -0.05, 4)], axis=1)
    p[31:36] = np.stack([np.linspace(-0.09, 0.09, 5), np.full(5, 0.03)], axis=1)
    e = np.array([np.pi, 2.2, 1.0, 0.0, -1.0, -2.2])  # outer corner, top, inner corner, bottom
    p[36:42] = np.stack([-0.2 + 0.1 * np.cos(e), -0.22 - 0.04 * np.sin(e)], axis=1)
    e2 = np.array([np.pi, 2.2, 1.0, 0.0, -1.0, -2.2])
    p[42:48] = np.stack([0.2 + 0.1 * np.cos(e2), -0.22 - 0.04 * np.sin(e2)], axis=1)
    m = np.linspace(np.pi, -np.pi, 12, endpoint=False)
    p[48:60] = np.stack([0.2 * np.cos(m), 0.25 - 0.08 * np.sin(m)], axis=1)
    m2 = np.linspace(np.pi, -np.pi, 8, endpoint=False)
    p[60:68] = np.stack([0.11 * np.cos(m2), 0.25 - 0.03 * np.sin(m2)], axis=1)
    return p


def face_image(pts: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Noise background with smooth blobs at the landmarks (BGR uint8, size x size)."""
    img = rng.integers(60, 140, size=(size // 8, size // 8, 3)).astype(np.uint8)
    img = cv2.resize(img, (size, size), interpolation=cv2.INTER_CUBIC).astype(np.float32)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    colours = {range(0, 17): (40, 60, 200), range(17, 27): (20, 20, 20), range(27, 36): (200, 120, 60),
               range(36, 48): (250, 250, 250), range(48, 68): (30, 30, 160)}
    for idx, col in colours.items():
        for i in idx:
            g = np.exp(-((xx - pts[i, 0]) ** 2 + (yy - pts[i, 1]) ** 2) / (2 * 1.5**2))[..., None]
            img = img * (1 - 0.8 * g) + 0.8 * g * np.asarray(col, np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def make_face68(root: Path, n_train: int = 16, n_val: int = 8, size: int = 96, seed: int = 0,
                vary: bool = True) -> Path:
    """A tiny 300W-style ``face68`` pack in ``root``: images/{afw,helen}/*.jpg + .pts,
    train.txt, val.txt. ``vary=False``: every face has exactly the same landmarks."""
    rng = np.random.default_rng(seed)
    base = face_shape68()
    root.mkdir(parents=True, exist_ok=True)
    lists: dict[str, list[str]] = {"train": [], "val": []}
    for split, n in (("train", n_train), ("val", n_val)):
        for i in range(n):
            src = "afw" if i % 2 == 0 else "helen"
            side = size / 1.8 * (rng.uniform(0.85, 1.1) if vary else 1.0)
            centre = size / 2 + (rng.uniform(-4, 4, size=2) if vary else 0.0)
            pts = base * side + centre + (rng.normal(0, 0.6, size=(68, 2)) if vary else 0.0)
            rel = f"images/{src}/{split}_{i:03d}.jpg"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / rel), face_image(pts, size, rng), [cv2.IMWRITE_JPEG_QUALITY, 95])
            write_pts((root / rel).with_suffix(".pts"), pts)
            lists[split].append(rel)
    for split, rels in lists.items():
        (root / f"{split}.txt").write_text("\n".join(rels) + "\n")
    return root


def tiny_config(root: Path, arch: str = "mobilenetv2-tiny", **train) -> dict:
    """A run config (as a dict) for a tiny network on a generated pack: 64 px input,
    16 px heatmaps, no ImageNet weights, CPU, one thread."""
    return {
        "model": {"arch": arch, "num_points": 68, "input_size": 64, "heatmap_size": 16, "head_channels": 16,
                  "reg_hidden": 32},
        "data": {"format": "face68", "root": str(root)},
        "train": {"epochs": 2, "batch_size": 4, "lr": 2e-3, "pretrained": "none", "device": "cpu", "threads": 1,
                  "seed": 0, "export_name": "tiny", **train},
    }


def make_tiny_face68(root: Path, n_train: int = 24, n_val: int = 8, size: int = 80, seed: int = 0) -> Path:
    """A 300W-style pack: random images + .pts (68 points, 0-based), train.txt / val.txt."""
    rng = np.random.default_rng(seed)
    ang = np.linspace(0, 2 * np.pi, 68, endpoint=False)
    template = np.stack([np.cos(ang), 0.8 * np.sin(ang)], axis=1)
    for split, n in (("train", n_train), ("val", n_val)):
        lines = []
        for i in range(n):
            rel = f"images/afw/{split}_{i:03d}.jpg"
            img = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
            pts = size / 2 + size * 0.22 * template * rng.uniform(0.9, 1.1) + rng.normal(0, 0.6, (68, 2))
            for x, y in pts.astype(int):
                cv2.circle(img, (int(x), int(y)), 1, (255, 255, 255), -1)
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / rel), img)
            body = "\n".join(f"{x:.3f} {y:.3f}" for x, y in pts)
            (root / rel).with_suffix(".pts").write_text(f"version: 1\nn_points: 68\n{{\n{body}\n}}\n")
            lines.append(rel)
        (root / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return root


def tiny_config_file(path: Path, data: Path, arch: str = "mobilenetv2-tiny", **sections) -> Path:
    cfg = {
        "model": {"arch": arch, "num_points": 68, "input_size": 64, "heatmap_size": 16, "hm_source": "fpn",
                  "head_channels": 16, "reg_hidden": 32},
        "data": {"format": "face68", "root": str(data)},
        "train": {"epochs": 1, "batch_size": 8, "lr": 0.001, "pretrained": "none", "threads": 1,
                  "max_steps_per_epoch": 2, "channels_last": False},
    }
    for k, v in sections.items():
        cfg.setdefault(k, {}).update(v)
    path.write_text(json.dumps(cfg))
    return path


# -- running training in tests -------------------------------------------------------------------
def train_tiny(tmp: Path, data: Path, arch: str, name: str) -> Path:
    """Train a tiny network in-process for 2 steps; return its best.pt."""
    from training.config import load_config
    from training.events import EventStream
    from training.jobs.train import run_train

    cfg = load_config(tiny_config_file(tmp / f"{name}.json", data, arch))
    run = tmp / name
    run.mkdir()
    with open(os.devnull, "w") as null:
        run_train(cfg, run, events=EventStream(run, out=null), export=False)
    return run / "checkpoints" / "best.pt"


def events_of(stdout: str) -> list[dict]:
    return [json.loads(ln) for ln in stdout.splitlines() if ln.startswith("{")]


def run_cli(*args: str) -> tuple[int, list[dict], str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    p = subprocess.run([sys.executable, "-m", "training", *args], capture_output=True, text=True, env=env,
                       cwd=str(REPO), timeout=240)
    return p.returncode, events_of(p.stdout), p.stderr


# -- models that predict fixed points, and packs of one face -------------------------------------
def _layout_mapping(schema: KeypointSchema) -> dict | None:
    """A manifest's detector_crop for a test model: none for iBUG 68 (the app's default), the
    measured one for a known layout, identity for a custom one."""
    from kpdesk.inference.detectors import DETECTOR_NAMES, LAYOUT_CALIBRATION

    if schema.name == "ibug68":
        return None
    known = LAYOUT_CALIBRATION.get(schema.name)
    if known is not None:
        return {d: c.as_dict() for d, c in known.items()}
    return {d: {"dx": 0.0, "dy": 0.0, "ratio": 1.0} for d in DETECTOR_NAMES}


def export_constant_model(path: Path, schema: KeypointSchema, pts_crop: np.ndarray, decode: str = "fusion",
                          with_heatmaps: bool = True) -> Path:
    """``NAME.onnx`` + manifest whose outputs are always ``pts_crop`` (K, 2) in a 64 px crop:
    coords = their normalised values, heatmaps = their Gaussian targets (sigma 1)."""
    import torch
    from torch import nn

    from kpdesk.vision.codecs import HeatmapCodec, RegressionCodec
    from kpdesk.vision.manifest import Manifest
    from kpdesk.vision.preprocess import IMAGENET_MEAN, IMAGENET_STD

    coords = torch.from_numpy(RegressionCodec(INPUT_SIZE).encode(pts_crop).reshape(1, -1).astype(np.float32))
    hm = torch.from_numpy(HeatmapCodec(INPUT_SIZE, HEATMAP_SIZE, SIGMA).encode(pts_crop)[0][None])

    class Constant(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("coords", coords)
            self.register_buffer("hm", hm)

        def forward(self, x: torch.Tensor):
            z = x.mean(dim=(1, 2, 3)) * 0.0  # depends on the input only through its batch size
            c = self.coords + z[:, None]
            return (c, self.hm + z[:, None, None, None]) if with_heatmaps else c

    outs = ["coords", "heatmaps"] if with_heatmaps else ["coords"]
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Constant().eval(), (torch.zeros(1, 3, INPUT_SIZE, INPUT_SIZE),), str(path), dynamo=False,
                          opset_version=17, input_names=["input"], output_names=outs,
                          dynamic_axes={n: {0: "batch"} for n in ["input", *outs]})
    Manifest(name=path.stem, schema=schema, input_size=INPUT_SIZE, mean=IMAGENET_MEAN, std=IMAGENET_STD,
             crop_scale=schema.crop_scale, heatmaps_output="heatmaps" if with_heatmaps else None,
             heatmap_size=HEATMAP_SIZE if with_heatmaps else None, sigma=SIGMA,
             decode=decode if with_heatmaps else "regression", detector_crop=_layout_mapping(schema),
             arch="constant-test", info={"params": 0, "macs": 0}).save(path.with_suffix(".json"))
    return path


def same_face_pack(root: Path) -> tuple[Path, np.ndarray]:
    """A face68 pack whose faces all have identical landmarks; returns (root, pts_crop)."""
    make_face68(root, n_train=2, n_val=6, size=96, vary=False)
    pts = np.loadtxt((root / (root / "val.txt").read_text().split()[0]).with_suffix(".pts"), skiprows=3,
                     max_rows=68)
    spec = crop_params_from_points(pts, get_schema("ibug68").crop_scale)
    return root, apply_affine(pts, spec.matrix(INPUT_SIZE))


def same_face_pack5(root: Path, n: int = 4) -> tuple[Path, np.ndarray]:
    """An MTFL-style face5 pack (test.txt) whose faces share their 5 landmarks; (root, pts_img)."""
    pts = np.array([[30.0, 35], [50, 35], [40, 45], [32, 55], [48, 55]])
    lines = []
    rng = np.random.default_rng(0)
    for i in range(n):
        rel = f"images/aflw/{i}.jpg"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        big = np.zeros((68, 2)) + 1e9  # face_image wants 68 points: only the first 5 are drawn
        big[:5] = pts
        cv2.imwrite(str(root / rel), face_image(big, 80, rng))
        lines.append(rel + " " + " ".join(f"{v:g}" for v in [*pts[:, 0], *pts[:, 1]]) + " 1 2 2 3")
    (root / "test.txt").write_text("\n".join(lines) + "\n")
    return root, pts


def run_bench(capsys: pytest.CaptureFixture, data: Path, models: Path, out: Path, *extra: str) -> dict:
    """``training bench --quick`` in-process; its bench.json."""
    from training.cli import main as training_main

    rc = training_main(["bench", "--quick", "--models-dir", str(models), "--data", str(data), "--out", str(out),
                        "--threads", "1", *extra])
    assert rc == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert json.loads(lines[-1])["event"] == "done"
    return json.loads((out / "bench.json").read_text())
