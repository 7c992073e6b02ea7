"""Codecs: heatmap and regression round trips, and the decoder's fusion rule."""

from __future__ import annotations

import numpy as np
import pytest

from kpdesk.vision.codecs import HeatmapCodec, LandmarkDecoder, RegressionCodec


@pytest.mark.parametrize("sigma", [1.0, 1.5, 2.0, 3.0])
@pytest.mark.parametrize(("size", "hm"), [(128, 32), (64, 16), (128, 64)])
def test_heatmap_round_trip_within_a_tenth_of_a_heatmap_pixel(sigma: float, size: int, hm: int) -> None:
    codec = HeatmapCodec(size, hm, sigma)
    rng = np.random.default_rng(int(sigma * 10) + hm)
    pts_hm = rng.uniform(1.0, hm - 2.0, size=(60, 2))
    # Near (not at) every border: one and a bit heatmap pixels in.
    pts_hm = np.vstack([pts_hm, [[1.05, 1.3], [hm - 2.1, 1.2], [1.4, hm - 2.05], [hm - 2.2, hm - 2.3]]])
    pts_crop = codec.hm_to_crop(pts_hm)
    heatmaps, weights = codec.encode(pts_crop)
    assert heatmaps.shape == (len(pts_hm), hm, hm) and weights.min() == 1.0
    decoded, conf = codec.decode(heatmaps)
    err_hm = np.abs(codec.crop_to_hm(decoded) - pts_hm).max()
    assert err_hm < 0.1, f"max error {err_hm:.3f} heatmap px"
    assert conf.min() > 0.7  # a peak near 1 even off-grid


def test_heatmap_encode_zeroes_points_outside_or_invisible() -> None:
    codec = HeatmapCodec(64, 16, 1.5)
    pts = np.array([[30.0, 30.0], [-20.0, 10.0], [30.0, 90.0], [10.0, 10.0]])
    heatmaps, w = codec.encode(pts, visible=np.array([1, 1, 1, 0]))
    assert w.tolist() == [1.0, 0.0, 0.0, 0.0]
    assert heatmaps[1:].max() == 0.0 and heatmaps[0].max() > 0.9


def test_heatmap_decode_batched_shapes() -> None:
    codec = HeatmapCodec(64, 16, 1.5)
    hm, _ = codec.encode(np.array([[20.0, 30.0], [40.0, 12.0]]))
    pts, conf = codec.decode(np.stack([hm, hm, hm]))
    assert pts.shape == (3, 2, 2) and conf.shape == (3, 2)


def test_regression_round_trip() -> None:
    codec = RegressionCodec(128)
    pts = np.random.default_rng(1).uniform(-0.5, 127.5, size=(4, 68, 2))
    norm = codec.encode(pts)
    assert norm.min() >= 0.0 and norm.max() <= 1.0
    assert np.allclose(codec.decode(norm), pts)
    assert np.allclose(codec.decode(norm.reshape(4, 136)), pts)  # flat (B, 2K) as the graph outputs it
    assert np.allclose(codec.encode([[-0.5, 127.5]]), [[0.0, 1.0]])  # pixel edges


def _outputs(reg_pts: np.ndarray, hm_pts: np.ndarray, peaks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    size, hm = 64, 16
    coords = RegressionCodec(size).encode(reg_pts).reshape(1, -1)
    heatmaps, _ = HeatmapCodec(size, hm, 1.5).encode(hm_pts)
    return coords, (heatmaps * peaks[:, None, None])[None]


def test_fusion_picks_heatmap_when_confident_and_regression_when_not() -> None:
    reg = np.array([[20.0, 20.0], [40.0, 40.0], [30.0, 10.0]])
    hmp = np.array([[24.0, 22.0], [36.0, 44.0], [34.0, 14.0]])
    coords, heatmaps = _outputs(reg, hmp, peaks=np.array([0.95, 0.05, 0.4]))
    dec = LandmarkDecoder(64, "fusion", heatmap_size=16, sigma=1.5)
    pts, conf = dec.decode(coords, heatmaps)
    assert pts.shape == (1, 3, 2)
    assert np.allclose(pts[0, 0], hmp[0], atol=0.3)  # confident peak: heatmap
    assert np.allclose(pts[0, 1], reg[1], atol=1e-6)  # weak peak: regression
    w = (0.4 - dec.fusion_lo) / (dec.fusion_hi - dec.fusion_lo)  # in between: a mix
    assert np.allclose(pts[0, 2], w * hmp[2] + (1 - w) * reg[2], atol=0.3)
    # Confidence is the peak sample on the grid: at most the true peak, near it.
    assert np.all(conf[0] <= [0.95, 0.05, 0.4]) and np.all(conf[0] > 0.9 * np.array([0.95, 0.05, 0.4]))


def test_decoder_modes() -> None:
    reg = np.array([[20.0, 20.0], [40.0, 30.0]])
    hmp = np.array([[28.0, 26.0], [36.0, 34.0]])
    coords, heatmaps = _outputs(reg, hmp, peaks=np.array([0.9, 0.9]))
    r, c = LandmarkDecoder(64, "regression", heatmap_size=16).decode(coords, heatmaps)
    assert np.allclose(r[0], reg)
    assert np.all((c > 0.8) & (c <= 0.9))  # confidence still comes from the heatmap (grid peak)
    h, _ = LandmarkDecoder(64, "heatmap", heatmap_size=16).decode(coords, heatmaps)
    assert np.allclose(h[0], hmp, atol=0.3)
    r_only, c_only = LandmarkDecoder(64).decode(coords, None)
    assert np.allclose(r_only[0], reg) and c_only.tolist() == [[1.0, 1.0]]
    with pytest.raises(ValueError):
        LandmarkDecoder(64, "heatmap")
    with pytest.raises(ValueError):
        LandmarkDecoder(64, "nonsense", heatmap_size=16)
