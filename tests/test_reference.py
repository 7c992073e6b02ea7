"""MediaPipe Face Landmarker as a reference model (issue 15, item 1): the 68-point view of its
mesh (fit, file, use), drawing, agreement, the catalog and CLI entry, the lab's protocol
(its own detector; a miss is a failure), a lane in the live session.

Tests that run MediaPipe itself need its bundle in the asset cache (``python -m
kpdesk.assets fetch``) and skip without it; the ``data`` ones need ../shared/data."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from kpdesk.inference import reference
from kpdesk.vision import draw
from kpdesk.vision.mesh68 import (
    MESH_SCHEMA_NAME,
    Mesh68Error,
    Mesh68View,
    cross_validate,
    default_view,
    fit_view,
    ion_nme,
)
from kpdesk.vision.results import FaceResult
from kpdesk.vision.schema import get_schema

needs_mediapipe = pytest.mark.skipif(not reference.available(),
                                     reason="MediaPipe Face Landmarker bundle not cached (python -m kpdesk.assets "
                                            "fetch)")


def _synthetic(n: int = 80, m: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Meshes (n, m, 2) spread around 68 label points, and labels that are known mixes of
    their vertices: (meshes, labels, vertices (68, 3), weights (68, 3))."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(0, 100, size=(m, 2))
    mesh = base[None] + rng.normal(0, 3.0, size=(n, m, 2))  # each face deformed differently
    # Each label mixes a vertex and its two nearest neighbours (as a mesh triangle would).
    near = np.argsort(np.linalg.norm(base[:, None] - base[None], axis=-1), axis=1)[:, :3]
    verts = near[rng.choice(m, 68)]
    w = rng.dirichlet(np.ones(3), size=68)
    gt = np.einsum("nkjd,kj->nkd", mesh[:, verts], w)
    return mesh, gt, verts, w


def test_fit_recovers_known_mixes_and_the_view_commutes_with_similarities() -> None:
    mesh, gt, verts, w = _synthetic()
    view = fit_view(mesh, gt, candidates=8)
    assert float(ion_nme(view.apply(mesh), gt).max()) < 1e-6
    got = {(k, int(v)): float(x) for k in range(68) for v, x in zip(view.vertices[k], view.weights[k]) if x > 1e-6}
    want = {(k, int(v)): float(x) for k in range(68) for v, x in zip(verts[k], w[k])}
    assert got.keys() == want.keys() and all(abs(got[i] - want[i]) < 1e-6 for i in want)
    # A similarity of the image moves the view's points the same way.
    a = np.deg2rad(20.0)
    r = 1.7 * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    assert np.allclose(view.apply(mesh @ r.T + 5.0), view.apply(mesh) @ r.T + 5.0)
    assert cross_validate(mesh, gt, folds=2, candidates=8) < 1e-6


def test_fit_with_noise_keeps_weights_on_the_simplex() -> None:
    mesh, gt, _, _ = _synthetic(n=40, seed=1)
    noisy = gt + np.random.default_rng(2).normal(0, 2.0, gt.shape)
    view = fit_view(mesh, noisy, candidates=6)
    assert (view.weights >= 0).all() and np.allclose(view.weights.sum(axis=1), 1.0)
    assert 0.0 < float(ion_nme(view.apply(mesh), noisy).mean()) < 50.0


def test_view_file_round_trip_and_bad_files(tmp_path: Path) -> None:
    mesh, gt, _, _ = _synthetic(n=30)
    view = fit_view(mesh, gt, candidates=6, source={"data": "synthetic"})
    p = view.save(tmp_path / "v.json")
    back = Mesh68View.load(p)
    assert back.source == {"data": "synthetic"} and back.mesh_points == 40
    assert np.allclose(back.apply(mesh), view.apply(mesh), atol=1e-4)
    with pytest.raises(Mesh68Error, match="expects 40 mesh points"):
        back.apply(mesh[:, :39])
    bad = json.loads(p.read_text())
    bad["weights"][0] = [0.5, 0.7, -0.2]
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(Mesh68Error, match="weights"):
        Mesh68View.load(tmp_path / "bad.json")
    (tmp_path / "junk.json").write_text("{")
    with pytest.raises(Mesh68Error, match="not JSON"):
        Mesh68View.load(tmp_path / "junk.json")
    with pytest.raises(Mesh68Error, match="cannot read"):
        Mesh68View.load(tmp_path / "absent.json")


def test_shipped_view_names_its_source_and_fit_error() -> None:
    view = default_view()
    assert view.mesh_points == reference.MESH_POINTS
    assert view.source["data"].startswith("face68/") and view.source["faces"] > 500
    assert 0.5 < view.fit["ion_nme_cv2_pct"] < 15.0  # measured, not a constant; plausible ION range
    assert view.fit["ion_nme_cv2_pct"] >= view.fit["ion_nme_in_sample_pct"] - 0.5


def test_agreement_compares_the_mesh_through_its_68_point_view() -> None:
    from kpdesk.workers.agreement import agreement

    rng = np.random.default_rng(3)
    mesh = rng.uniform(100, 300, size=(reference.MESH_POINTS, 2))
    as68 = default_view().apply(mesh)
    ibug, mesh_schema = get_schema("ibug68"), reference.mesh_schema()
    same = agreement(mesh, mesh_schema, as68, ibug)
    assert same is not None and same.num_points == 68 and same.mean_px < 1e-9
    moved = agreement(as68 + [3.0, 4.0], ibug, mesh, mesh_schema)
    assert moved is not None and abs(moved.mean_px - 5.0) < 1e-9
    five = agreement(mesh, mesh_schema, rng.uniform(100, 300, size=(5, 2)), get_schema("mtfl5"))
    assert five is not None and five.num_points == 5
    both = agreement(mesh, mesh_schema, mesh + 1.0, mesh_schema)
    assert both is not None and both.num_points == reference.MESH_POINTS


def test_a_mesh_is_drawn_as_its_tessellation_not_as_dots() -> None:
    schema = reference.mesh_schema()
    if not schema.edges:
        pytest.skip("mediapipe is not installed: no tessellation to draw")
    assert schema.name == MESH_SCHEMA_NAME and len(schema.edges) > 2000
    rng = np.random.default_rng(4)
    pts = rng.uniform(40, 160, size=(reference.MESH_POINTS, 2))
    face = FaceResult((40, 40, 160, 160), pts, np.ones(len(pts), np.float32), np.eye(2, 3))
    img = np.zeros((200, 200, 3), np.uint8)
    draw.draw_face(img, face, schema, box=False)
    meshed = np.all(img == draw.MESH_COLOR, axis=-1).sum()
    assert meshed > 500
    # One call draws the same lines as one call per edge.
    a = np.zeros((200, 200, 3), np.uint8)
    b = a.copy()
    draw.draw_skeleton(a, pts, schema.edges[:50])
    for i, j in schema.edges[:50]:
        cv2.line(b, tuple(int(round(v)) for v in pts[i]), tuple(int(round(v)) for v in pts[j]), draw.EDGE_COLOR, 1,
                 cv2.LINE_AA)
    assert np.mean(np.abs(a.astype(int) - b.astype(int))) < 1.0


def test_without_the_bundle_mediapipe_is_not_offered_and_naming_it_says_how_to_fetch(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from kpdesk.cli import main
    from kpdesk.inference.catalog import resolve_model, scan_catalog
    from kpdesk.inference.model import ModelLoadError

    monkeypatch.setenv("KPDESK_CACHE", str(tmp_path / "empty-cache"))
    assert not reference.available()
    assert [e.name for e in scan_catalog(tmp_path)] == []
    with pytest.raises(ModelLoadError, match="kpdesk.assets fetch"):
        resolve_model("mediapipe", tmp_path)
    assert main(["detect", "demo", "--model", "mediapipe", "--max-frames", "2"]) == 2


@needs_mediapipe
def test_catalog_lists_the_reference_last_and_resolves_its_name(tmp_path: Path, tiny_model_path: Path) -> None:
    from kpdesk.inference.catalog import resolve_model, scan_catalog

    entries = scan_catalog(tiny_model_path.parent)
    assert [e.name for e in entries][-1] == "mediapipe" and entries[-1].ok
    assert entries[-1].manifest.schema.num_points == 478
    assert reference.is_reference(resolve_model("mediapipe", tmp_path))


@needs_mediapipe
def test_reference_pipeline_finds_the_astronaut_and_closes(astronaut_bgr: np.ndarray) -> None:
    for video in (True, False):
        pipe = reference.ReferencePipeline(video=video)
        try:
            res = [pipe.process(astronaut_bgr, i, i / 30) for i in range(3)][-1]
        finally:
            pipe.close()
        assert res.model_name == "mediapipe" and len(res.faces) == 1
        face = res.faces[0]
        assert face.pts_img.shape == (478, 2)
        cx, cy = face.pts_img.mean(axis=0)
        assert abs(cx - 224) < 40 and abs(cy - 132) < 40  # conftest: face centre near (224, 132)
        assert res.timings.total >= res.timings.inference > 0
    with pytest.raises(RuntimeError, match="closed"):
        pipe._ensure_task().close() or pipe._task.find(astronaut_bgr)


@needs_mediapipe
def test_cli_detect_runs_the_reference(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from kpdesk.cli import main

    out = tmp_path / "o.jsonl"
    assert main(["detect", "demo", "--model", "mediapipe", "--max-frames", "4", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "model mediapipe (478 pts" in text and "found in 4/4 frames" in text
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 4 and len(rows[-1]["faces"][0]["pts_img"]) == 478
    assert main(["detect", "demo", "--model", "mediapipe", "--detector", "haar"]) == 2


@needs_mediapipe
def test_lab_protocol_counts_a_missed_face_as_a_failure(tmp_path: Path, astronaut_bgr: np.ndarray) -> None:
    from kpdesk.inference.robustness import SweepConfig, run_sweep, write_csv
    from kpdesk.vision.labels import LabelledFace

    face_path, blank_path = tmp_path / "a.png", tmp_path / "blank.png"
    cv2.imwrite(str(face_path), astronaut_bgr)
    cv2.imwrite(str(blank_path), np.full_like(astronaut_bgr, 128))
    with reference.ReferenceLandmarker() as ref:
        mesh = ref.mesh_near(astronaut_bgr, (224, 132))
        assert mesh is not None
        labels = ref.view.apply(mesh)  # its own view as labels: the clean error is ~0
        faces = [LabelledFace(str(face_path), labels), LabelledFace(str(blank_path), labels)]
        res = run_sweep([("mediapipe", ref)], faces, SweepConfig("occlusion", (0.0,)))
    cell = res.cells[0]
    assert cell.missed == 1 and cell.failure_rate == 50.0
    assert np.isinf(cell.nme[1]) and cell.mean < 2.0  # found face nearly exact, the miss is not in the mean
    assert not len(cell.worst[0].pred_crop)  # the miss is the worst face, with no prediction
    rows = (tmp_path / "s.csv")
    write_csv(res, rows)
    assert rows.read_text().splitlines()[1].endswith(",1")


@needs_mediapipe
@pytest.mark.data
def test_reference_on_face68_val_through_the_view() -> None:
    from conftest import data_root

    from kpdesk.inference.robustness import evaluate_reference_cell
    from kpdesk.vision.labels import load_labelled_folder
    from kpdesk.vision.perturb import Perturbation

    val = load_labelled_folder(data_root() / "face68", "val.txt", max_faces=40)
    faces = [f for f in val.faces if f.source in ("afw", "helen")] or list(val.faces)
    with reference.ReferenceLandmarker() as ref:
        nme, _ = evaluate_reference_cell(ref, faces, Perturbation("occlusion", 0.0))
    assert np.isfinite(nme).mean() > 0.9 and float(np.median(nme)) < 8.0


def test_head_pose_of_a_mesh_is_the_pose_of_its_68_point_view() -> None:
    from kpdesk.vision.headpose import face_pose
    from kpdesk.vision.mean_face import MEAN_FACE_68_MM

    # A frontal 68-point face, and a mesh whose view is exactly it (every vertex a view uses
    # placed so that each mix lands on its point: solve the tiny linear system per point).
    face68 = 200.0 + 2.0 * MEAN_FACE_68_MM[:, :2] * [1, -1]
    view = default_view()
    mesh = np.full((reference.MESH_POINTS, 2), np.nan)
    for k in range(68):
        for v in view.vertices[k]:
            mesh[v] = face68[k] if np.isnan(mesh[v]).all() else mesh[v]
    mesh = np.where(np.isnan(mesh), 0.0, mesh)
    as68 = view.apply(mesh)
    a, b = face_pose(mesh, (400, 400)), face_pose(as68, (400, 400))
    assert a is not None and b is not None
    assert abs(a.yaw - b.yaw) < 1e-9 and abs(a.pitch - b.pitch) < 1e-9 and abs(a.roll - b.roll) < 1e-9
