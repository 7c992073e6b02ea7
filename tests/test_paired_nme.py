"""benchmarks/paired_nme.py: per-face pairing of two `training eval --out` folders, the sign of B - A, the
source filter and the bootstrap interval."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def _module():
    spec = importlib.util.spec_from_file_location("paired_nme", REPO / "benchmarks" / "paired_nme.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _gt(n: int, rng) -> np.ndarray:
    """n faces of 68 points around a mean shape with eye corners 40 px apart."""
    base = rng.uniform(0, 100, size=(68, 2))
    base[36] = (30.0, 50.0)
    base[45] = (70.0, 50.0)
    return np.repeat(base[None], n, axis=0)


def _folder(tmp: Path, name: str, gt: np.ndarray, shift: np.ndarray, paths, sources) -> Path:
    """An eval folder whose predictions are gt moved by shift[i] px in x on face i."""
    out = tmp / name
    out.mkdir()
    pred = gt.copy()
    pred[..., 0] += shift[:, None]
    np.savez(out / "predictions.npz", gt_img=gt, pred_img_heatmap=pred, paths=np.array(paths),
             sources=np.array(sources))
    return out


def test_difference_sign_pairing_and_sources(tmp_path, capsys):
    mod = _module()
    rng = np.random.default_rng(0)
    n = 40
    gt = _gt(n, rng)
    paths = [f"images/{'afw' if i < 20 else 'ytf'}/{i}.jpg" for i in range(n)]
    sources = ["afw" if i < 20 else "ytf" for i in range(n)]
    # A is 2 px off everywhere; B is 1 px off on afw faces and 3 px off on ytf faces. Interocular = 40 px:
    # per face 5% for A, 2.5% / 7.5% for B.
    a = _folder(tmp_path, "a", gt, np.full(n, 2.0), paths, sources)
    b_shift = np.where(np.arange(n) < 20, 1.0, 3.0)
    # B's faces stored in another order: the pairing is by path, not by position
    order = rng.permutation(n)
    b = _folder(tmp_path, "b", gt[order], b_shift[order], [paths[i] for i in order], [sources[i] for i in order])
    d = mod.paired(a, b)
    assert d.shape == (n,)
    assert d.mean() == pytest.approx(0.0, abs=1e-9)
    d_afw = mod.paired(a, b, ("afw",))
    assert d_afw.shape == (20,) and np.allclose(d_afw, -2.5)
    lo, hi = mod.bootstrap_ci(d[None], 2000, 0)
    assert lo < 0 < hi  # half the faces +2.5, half -2.5: the interval straddles 0
    assert mod.main([f"{a}:{b}", "--sources", "afw", "--rounds", "500"]) == 0
    row = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("| a |")][0]
    assert "-2.500" in row and "100%" in row


def test_missing_or_disjoint_folders_fail_clearly(tmp_path):
    mod = _module()
    rng = np.random.default_rng(1)
    gt = _gt(3, rng)
    a = _folder(tmp_path, "a", gt, np.ones(3), ["x/1", "x/2", "x/3"], ["afw"] * 3)
    b = _folder(tmp_path, "b", gt, np.ones(3), ["y/1", "y/2", "y/3"], ["afw"] * 3)
    with pytest.raises(SystemExit, match="share no face"):
        mod.paired(a, b)
    with pytest.raises(SystemExit, match="not found"):
        mod.paired(a, tmp_path / "nowhere")
