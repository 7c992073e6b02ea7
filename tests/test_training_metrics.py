"""Metrics: a perfect predictor scores 0, known errors give the analytic NME / FR / AUC /
MSE, per-point NME and source groups add up."""

from __future__ import annotations

import numpy as np
import pytest

from kpdesk.vision.schema import get_schema
from training.evaluation.evaluate import compute_metrics
from training.metrics import auc, failure_rate, mse_normalised, nme_per_image, per_point_nme, summarize


def _faces(n: int = 6, seed: int = 0) -> np.ndarray:
    from fixtures import face_shape68

    rng = np.random.default_rng(seed)
    return face_shape68()[None] * rng.uniform(40, 80, size=(n, 1, 1)) + rng.uniform(50, 100, size=(n, 1, 2))


def test_perfect_predictor_scores_zero() -> None:
    gt = _faces()
    schema = get_schema("ibug68")
    s = summarize(gt, gt, schema, ["afw", "helen"] * 3)
    for k in ("nme_ion", "nme_ipn", "nme_box", "fr08_ion", "fr10_ion"):
        assert s[k] == 0.0, k
    assert s["auc08_ion"] == pytest.approx(1.0, abs=1e-3) and s["auc10_ion"] == pytest.approx(1.0, abs=1e-3)
    assert all(v["nme_ion"] == 0.0 for v in s["by_source"].values())
    m = compute_metrics(gt, gt, schema, ["afw", "helen", "ytf"] * 2, input_size=128)
    assert m["mse_norm"] == 0.0 and max(m["per_point_nme"]) == 0.0
    assert m["by_source"]["afw+helen"]["nme_ion"] == 0.0 and m["by_source"]["afw+helen"]["n"] == 4


def test_known_offset_gives_analytic_values() -> None:
    gt = _faces()
    schema = get_schema("ibug68")
    iod = schema.interocular(gt)
    # every point of face i moved by 5% of its inter-ocular distance
    pred = gt + (0.05 * iod)[:, None, None] * np.array([0.6, 0.8])
    np.testing.assert_allclose(nme_per_image(pred, gt, schema, "ion"), 0.05)
    np.testing.assert_allclose(per_point_nme(pred, gt, schema, "ion"), 5.0)
    s = summarize(pred, gt, schema)
    assert s["nme_ion"] == pytest.approx(5.0)
    assert s["fr08_ion"] == 0.0
    assert s["auc08_ion"] == pytest.approx(1 - 0.05 / 0.08, abs=2e-3)
    # inter-pupil distance is shorter than inter-ocular, so IPN NME is larger
    assert s["nme_ipn"] > s["nme_ion"]


def test_failure_rate_and_auc_edges() -> None:
    e = np.array([0.01, 0.05, 0.09, 0.2])
    assert failure_rate(e, 0.08) == 0.5
    assert failure_rate(e, 0.10) == 0.25
    assert auc(np.full(4, 1.0), 0.1) == 0.0
    assert failure_rate(np.array([]), 0.1) == 0.0


def test_mse_on_normalised_coordinates() -> None:
    gt = np.zeros((2, 5, 2))
    pred = gt.copy()
    pred[0, 0, 0] = 0.1  # one coordinate of one point of one face off by 0.1
    assert mse_normalised(pred, gt) == pytest.approx(0.01 / 20)
    # compute_metrics encodes crop pixels to [0, 1] first: 12.8 px in a 128 crop = 0.1
    schema = get_schema("mtfl5")
    gt_px = np.array([[[40.0, 50], [88, 50], [64, 70], [45, 90], [83, 90]]] * 2)
    pred_px = gt_px.copy()
    pred_px[0, 0, 0] += 12.8
    m = compute_metrics(pred_px, gt_px, schema, ["aflw", "aflw"], input_size=128)
    assert m["mse_norm"] == pytest.approx(0.01 / 20)
    assert m["norm_main"] == "ion" and len(m["per_point_nme"]) == 5
