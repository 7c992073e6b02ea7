"""The fast per-frame paths against the reference maths they replaced (issue 11, item 5).

Each reference below is the implementation as it was before the speed work, kept verbatim:
warp_crop + to_input for preprocessing, the whole-map log-heatmap decode, and a 3 x 3
matrix inverse. The fast paths must give the same numbers (bit for bit where the float
operations are the same, ~1e-12 px where the closed-form inverse rounds differently).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kpdesk.inference.detectors import Detection, FaceDetector
from kpdesk.inference.model import LandmarkModel
from kpdesk.inference.pipeline import Pipeline, PipelineConfig
from kpdesk.inference.sources import DemoSource
from kpdesk.vision.codecs import HeatmapCodec, LandmarkDecoder
from kpdesk.vision.preprocess import InputPacker, normalisation_tables, to_input
from kpdesk.vision.transforms import CropSpec, apply_affine, invert_affine, warp_crop

REPO = Path(__file__).resolve().parents[1]


# ---- the reference implementations (before the speed work) ---------------------------
def ref_heatmap_decode(codec: HeatmapCodec, heatmaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    hm = np.asarray(heatmaps, dtype=np.float32)
    lead = hm.shape[:-2]
    h, w = hm.shape[-2:]
    flat = hm.reshape(-1, h, w)
    n = flat.shape[0]
    idx = flat.reshape(n, -1).argmax(axis=1)
    py, px = np.divmod(idx, w)
    conf = flat[np.arange(n), py, px]
    logh = np.log(np.maximum(flat, 1e-10))
    x0, x1, x2 = np.clip(px - 1, 0, w - 1), px, np.clip(px + 1, 0, w - 1)
    y0, y1, y2 = np.clip(py - 1, 0, h - 1), py, np.clip(py + 1, 0, h - 1)
    r = np.arange(n)
    c = logh[r, y1, x1]
    dx = 0.5 * (logh[r, y1, x2] - logh[r, y1, x0])
    dy = 0.5 * (logh[r, y2, x1] - logh[r, y0, x1])
    dxx = logh[r, y1, x2] - 2 * c + logh[r, y1, x0]
    dyy = logh[r, y2, x1] - 2 * c + logh[r, y0, x1]
    dxy = 0.25 * (logh[r, y2, x2] - logh[r, y2, x0] - logh[r, y0, x2] + logh[r, y0, x0])
    det = dxx * dyy - dxy * dxy
    interior = (px > 0) & (px < w - 1) & (py > 0) & (py < h - 1) & (det > 1e-8) & (dxx < 0) & (dyy < 0)
    safe = np.where(interior, det, 1.0)
    ox = np.where(interior, -(dyy * dx - dxy * dy) / safe, 0.0)
    oy = np.where(interior, -(dxx * dy - dxy * dx) / safe, 0.0)
    ox = np.clip(ox, -0.5, 0.5)
    oy = np.clip(oy, -0.5, 0.5)
    pts_hm = np.stack([px + ox, py + oy], axis=-1)
    pts_crop = codec.hm_to_crop(pts_hm)
    return pts_crop.reshape(*lead, 2), conf.reshape(lead)


def ref_decoder_decode(dec: LandmarkDecoder, coords: np.ndarray | None,
                       heatmaps: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    reg = dec.regression.decode(coords) if coords is not None else None
    if heatmaps is not None and dec.heatmap_size:
        hm_pts, conf = ref_heatmap_decode(HeatmapCodec(dec.input_size, dec.heatmap_size, dec.sigma), heatmaps)
    else:
        hm_pts, conf = None, None
    if dec.mode == "regression" or hm_pts is None:
        assert reg is not None
        return reg, conf if conf is not None else np.ones(reg.shape[:-1], dtype=np.float32)
    if dec.mode == "heatmap" or reg is None:
        return hm_pts, conf
    w = np.clip((conf - dec.fusion_lo) / (dec.fusion_hi - dec.fusion_lo), 0.0, 1.0)[..., None]
    return w * hm_pts + (1.0 - w) * reg, conf


def ref_invert_affine(m: np.ndarray) -> np.ndarray:
    a = np.vstack([np.asarray(m, dtype=np.float64), [0.0, 0.0, 1.0]])
    return np.linalg.inv(a)[:2]


# ---- preprocessing -------------------------------------------------------------------
def test_normalisation_tables_are_to_input_per_value() -> None:
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    t = normalisation_tables(mean, std)
    v = np.arange(256, dtype=np.uint8)
    crop = np.stack([v, v, v], axis=-1).reshape(16, 16, 3)
    ref = to_input(crop, mean, std)[0]  # (3, 16, 16), RGB
    for c in range(3):
        # BGR input: RGB channel c comes from BGR channel 2 - c, here all equal to v.
        assert np.array_equal(t[c][v].reshape(16, 16), ref[c])
    assert t.dtype == np.float32 and t.shape == (3, 256)


@pytest.mark.parametrize("size", [64, 128])
def test_input_packer_equals_warp_crop_then_to_input(size: int) -> None:
    rng = np.random.default_rng(size)
    frame = rng.integers(0, 256, size=(480, 640, 3), dtype=np.uint8)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    packer = InputPacker(size, mean, std)
    specs = [CropSpec(320, 240, 250, 12.0), CropSpec(630, 10, 300, -35.0),  # partly outside: zero border
             CropSpec(100, 400, 60, 0.0), CropSpec(200, 200, 900, 90.0)]
    for batch in (1, 4, 2, 1):  # the buffers grow, then are reused
        chosen = specs[:batch]
        x = packer.pack(frame, [s.matrix(size) for s in chosen])
        ref = to_input(np.stack([warp_crop(frame, s, size) for s in chosen]), mean, std)
        assert x.shape == ref.shape == (batch, 3, size, size) and x.dtype == np.float32
        assert np.array_equal(x, ref)
    # A non-contiguous frame (e.g. a mirrored view) and a float frame take the same maths.
    mirrored = frame[:, ::-1]
    assert np.array_equal(packer.pack(mirrored, [specs[0].matrix(size)]),
                          to_input(warp_crop(np.ascontiguousarray(mirrored), specs[0], size), mean, std))
    as_float = frame.astype(np.float32)
    assert np.array_equal(packer.pack(as_float, [specs[1].matrix(size)]),
                          to_input(warp_crop(as_float, specs[1], size), mean, std))


# ---- decoding ------------------------------------------------------------------------
def _heatmap_cases() -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    codec = HeatmapCodec(128, 16, 1.5)
    cases = [rng.uniform(-0.2, 1.0, size=(2, 68, 16, 16)).astype(np.float32)]
    for _ in range(20):
        pts = rng.uniform(-8.0, 136.0, size=(68, 2))  # some peaks on / beyond the border
        hm = codec.encode(pts)[0] * rng.uniform(0.01, 1.0) + rng.normal(0, 0.01, (68, 16, 16))
        cases.append(hm.astype(np.float32)[None])
    flat = np.full((1, 5, 16, 16), 0.5, np.float32)  # ties everywhere: argmax picks the first
    flat[0, 1, 0, 0] = flat[0, 2, 15, 15] = flat[0, 3, 0, 15] = 0.9  # corner peaks
    cases.append(flat)
    holes = rng.uniform(0, 1, size=(1, 68, 16, 16)).astype(np.float32)
    holes[0, 3, 4, 5] = np.nan
    holes[0, 4] = 0.0
    cases.append(holes)
    cases.append(rng.uniform(0, 1, size=(3, 2, 68, 8, 12)).astype(np.float32))  # extra leading dims, not square
    return cases


def test_heatmap_decode_is_bit_identical_to_the_whole_map_reference() -> None:
    for hm in _heatmap_cases():
        codec = HeatmapCodec(128, hm.shape[-2], 1.5)
        pts, conf = codec.decode(hm)
        ref_pts, ref_conf = ref_heatmap_decode(codec, hm)
        assert pts.dtype == ref_pts.dtype and conf.dtype == ref_conf.dtype
        assert pts.shape == ref_pts.shape and conf.shape == ref_conf.shape
        assert np.array_equal(pts, ref_pts, equal_nan=True)
        assert np.array_equal(conf, ref_conf, equal_nan=True)


@pytest.mark.parametrize("mode", ["regression", "heatmap", "fusion"])
def test_decoder_is_bit_identical_to_the_reference(mode: str) -> None:
    rng = np.random.default_rng(3)
    dec = LandmarkDecoder(128, mode, heatmap_size=16, sigma=1.5)
    for hm in _heatmap_cases()[:-1]:
        coords = rng.uniform(0, 1, size=(hm.shape[0], 2 * hm.shape[1])).astype(np.float32)
        pts, conf = dec.decode(coords, hm)
        ref_pts, ref_conf = ref_decoder_decode(dec, coords, hm)
        assert np.array_equal(pts, ref_pts, equal_nan=True) and np.array_equal(conf, ref_conf, equal_nan=True)


# ---- inverse crop maps ---------------------------------------------------------------
def test_closed_form_inverse_agrees_with_the_matrix_inverse() -> None:
    rng = np.random.default_rng(11)
    worst = 0.0
    for _ in range(2000):
        spec = CropSpec(*rng.uniform(-50, 700, 2), rng.uniform(5, 900), rng.uniform(-180, 180))
        m = spec.matrix(int(rng.choice([64, 128, 256])))
        pts = rng.uniform(-20, 280, size=(68, 2))
        worst = max(worst, float(np.abs(apply_affine(pts, invert_affine(m))
                                        - apply_affine(pts, ref_invert_affine(m))).max()))
    assert worst < 1e-9
    shear = np.array([[2.0, 0.7, 5.0], [-0.3, 0.5, -4.0]])  # any affine map, not only crops
    assert np.allclose(invert_affine(shear), ref_invert_affine(shear), rtol=0, atol=1e-12)
    with pytest.raises(np.linalg.LinAlgError):
        invert_affine(np.array([[1.0, 2.0, 0.0], [2.0, 4.0, 0.0]]))


# ---- the whole pipeline, on a shipped model ------------------------------------------
class _DemoFaceDetector(FaceDetector):
    """The demo face's box from the generator's own pose: no detector asset needed."""

    name = "demo-pose"

    def __init__(self, demo: DemoSource) -> None:
        super().__init__()
        self.demo = demo
        self.index = 0

    def detect(self, frame_bgr: np.ndarray) -> list[Detection]:
        cx, cy, _, scale = self.demo.pose(self.index)
        half = 95.0 * scale
        return [Detection((cx - half, cy - half * 0.9, cx + half, cy + half * 1.1), 0.99)]


@pytest.mark.parametrize("name", ["student-0.25x", "student-5pt"])
def test_pipeline_gives_the_reference_points_on_a_shipped_model(name: str) -> None:
    path = REPO / "models" / f"{name}.onnx"
    if not path.is_file():
        pytest.skip(f"{path} not in this checkout")
    model = LandmarkModel.load(path, threads=1)
    demo = DemoSource()
    det = _DemoFaceDetector(demo)
    pipe = Pipeline(model, det, PipelineConfig(max_faces=1, smoothing=False, redetect_every=10))
    dec = model.decoder()
    faces = 0
    for i in range(0, 90, 3):  # rolls, zooms, the occluding bar: tracked and detected frames
        det.index = i
        frame = demo.frame(i)
        res = pipe.process(frame, i, i / 30.0)
        for face in res.faces:
            # What warp_crop(frame, spec, S) did: spec.matrix(S) is the stored crop matrix.
            crop = _warp_crop_by_matrix(frame, face.crop_matrix, model.input_size)
            coords, heatmaps = model.forward(to_input(crop, model.manifest.mean, model.manifest.std))
            ref_pts, ref_conf = ref_decoder_decode(dec, coords, heatmaps)
            expect = apply_affine(ref_pts[0], ref_invert_affine(face.crop_matrix))
            assert np.array_equal(face.conf, ref_conf[0].astype(np.float32))
            assert np.abs(face.pts_img - expect).max() < 1e-9
            faces += 1
    assert faces >= 10  # enough faces compared (how many are found is the tracker's business)


def _warp_crop_by_matrix(frame: np.ndarray, m: np.ndarray, size: int) -> np.ndarray:
    import cv2

    return cv2.warpAffine(frame, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=(0, 0, 0))
