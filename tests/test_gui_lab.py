"""The robustness lab tab (pytest-qt, offscreen): a sweep in a worker with live curves, the
worst faces, CSV + PNG, cancel, errors, and the tab inside the main window."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
from kpdesk.gui.qt_env import prepare_qt_environment  # noqa: E402

prepare_qt_environment()

from fixtures import build_tiny_models, make_face68_val  # noqa: E402

from kpdesk.gui.lab.mosaic import worst_mosaic  # noqa: E402
from kpdesk.gui.lab.tab import RobustnessTab  # noqa: E402
from kpdesk.inference.catalog import scan_models  # noqa: E402

pytestmark = pytest.mark.gui
TIMEOUT_MS = 120_000  # generous: CI machines may be busy


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return next(iter(build_tiny_models(tmp_path_factory.mktemp("labmodels")).values())).parent


@pytest.fixture(scope="module")
def face_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("labfaces")
    make_face68_val(root, n=12)
    return root


@pytest.fixture()
def tab(qtbot, models_dir: Path, face_folder: Path) -> RobustnessTab:  # noqa: ANN001
    t = RobustnessTab(threads=1)
    qtbot.addWidget(t)
    t.resize(1200, 800)
    t.show()
    t.set_catalog(scan_models(models_dir))
    t.set_folder(str(face_folder))
    yield t
    t.shutdown()


def test_sweep_runs_in_a_worker_and_fills_curves_worst_faces_csv_png(qtbot, tab: RobustnessTab,  # noqa: ANN001
                                                                      tmp_path: Path) -> None:
    assert tab.list_combo.currentData() == "val.txt"
    assert [label for label, _ in tab.variants()] == ["student", "student-0.25x"]  # preferred defaults
    tab.set_variants(["student", "student-0.25x", "teacher"])
    tab.set_kind("rotation")
    tab.severities_edit.setText("0, 30, 60")
    assert tab.start()
    # start() only hands the work to a thread: no result reached the GUI yet (cells arrive as
    # queued signals, i.e. only through the event loop), and the controls show a running sweep.
    assert tab.running and tab.result is not None and tab.result.cells == []
    assert not tab.run_btn.isEnabled() and tab.cancel_btn.isEnabled()
    qtbot.waitUntil(lambda: not tab.running, timeout=TIMEOUT_MS)
    res = tab.result
    assert res is not None and not res.cancelled and res.faces == 12
    assert len(res.cells) == 9
    for label, curve in tab.curves.items():
        x, y = curve.getData()
        assert list(x) == [0, 30, 60] and np.allclose(y, res.series(label)[1])
    assert tab.worst_severity.count() == 3 and tab.worst_view.frame is not None
    assert "mean NME" in tab.worst_caption.text()
    assert tab.progress.value() == tab.progress.maximum() == 12 * 9
    assert tab.save_csv_btn.isEnabled() and tab.save_png_btn.isEnabled()
    rows = list(csv.reader(tab.save_csv(tmp_path / "t.csv").open()))
    assert len(rows) == 10 and rows[1][2] == "rotation"
    png = cv2.imread(str(tab.save_png(tmp_path / "p.png")))
    assert png is not None and png.shape[0] > 100 and png.shape[1] > 100


def test_cancel_keeps_the_finished_cells(qtbot, tab: RobustnessTab) -> None:  # noqa: ANN001
    tab.set_kind("blur")
    tab.severities_edit.setText("0, 1, 2, 3, 4, 5, 6, 7, 8")
    cells = []
    tab.start()
    tab.worker.cell_done.connect(lambda c: (cells.append(c), tab.cancel()))
    qtbot.waitUntil(lambda: not tab.running, timeout=TIMEOUT_MS)
    assert tab.result.cancelled
    assert 1 <= len(tab.result.cells) < 2 * 9
    assert "Cancelled" in tab.status.text()
    assert tab.run_btn.isEnabled() and not tab.cancel_btn.isEnabled()


def test_bad_inputs_are_reported_not_raised(qtbot, tab: RobustnessTab, tmp_path: Path,  # noqa: ANN001
                                            face_folder: Path) -> None:
    msgs = []
    tab.message.connect(lambda text, level: msgs.append((level, text)))
    tab.set_folder(str(tmp_path / "missing"))
    assert not tab.start() and not tab.running
    assert msgs[-1][0] == "error" and "does not exist" in msgs[-1][1]
    tab.set_folder(str(face_folder))
    tab.severities_edit.setText("0, 500")
    assert not tab.start()
    assert "severity must be in" in msgs[-1][1]
    # A folder the reader cannot use fails in the worker and comes back as a message.
    empty = tmp_path / "empty"
    empty.mkdir()
    tab.set_folder(str(empty))
    tab.severities_edit.setText("0, 10")
    assert tab.start()
    qtbot.waitUntil(lambda: not tab.running, timeout=TIMEOUT_MS)
    assert msgs[-1][0] == "error" and "no usable labelled face" in msgs[-1][1]


def test_worst_mosaic_shows_labels_and_prediction_side_by_side() -> None:
    from kpdesk.inference.robustness import WorstFace

    crop = np.full((64, 64, 3), 90, np.uint8)
    gt = np.full((68, 2), 30.0)
    pred = np.full((68, 2), 40.0)
    faces = [WorstFace(i, f"/x/{i}.jpg", 20.0 - i, crop, gt, pred) for i in range(3)]
    img = worst_mosaic(faces, tile=100, cols=2)
    assert img.shape == (2 * 118 + 8, 2 * 202 + 8, 3)
    left, right = img[:100, :100], img[:100, 102:202]
    # Labels in green at crop (30, 30) on the left, the prediction in red at (40, 40) on the right.
    assert left[47, 47, 1] > 150 and left[47, 47, 2] < 150 and tuple(left[63, 63]) == (90, 90, 90)
    assert right[63, 63, 2] > 150 and right[63, 63, 1] < 150 and tuple(right[47, 47]) == (90, 90, 90)
    assert worst_mosaic([]) is None


def test_main_window_has_the_lab_tab(qtbot, models_dir: Path, tmp_path: Path) -> None:  # noqa: ANN001
    from kpdesk.gui.main_window import TAB_NAMES, MainWindow

    w = MainWindow(models_dir=models_dir, source="demo", threads=1, runs_dir=tmp_path / "runs")
    qtbot.addWidget(w)
    w.show()
    w.start()
    try:
        w.select_tab("robustness")
        assert w.tabs.currentWidget() is w.robustness_tab and "robustness" in TAB_NAMES
        from kpdesk.inference.reference import available

        # The folder's models, and the MediaPipe reference when its bundle is cached.
        want = 3 + available()
        qtbot.waitUntil(lambda: w.robustness_tab.variant_combos[0].count() == want, timeout=TIMEOUT_MS)
    finally:
        w.shutdown()


def test_the_lab_runs_the_models_that_fit_and_marks_the_others(qtbot, models_dir: Path,  # noqa: ANN001
                                                               tmp_path: Path) -> None:
    """A 5-point face list with a 5-point and a 68-point model: the whole sweep used to fail
    ("student predicts 68 points, the labelled faces have 5"), the fitting model unrun too."""
    from fixtures import export_tiny

    rng = np.random.default_rng(0)
    lines = []
    for i in range(6):
        cv2.imwrite(str(tmp_path / f"{i}.jpg"), np.full((64, 64, 3), 90, np.uint8))
        x, y = rng.uniform(20, 44, 5), rng.uniform(20, 44, 5)
        x[0], x[1] = 20, 44  # the eyes apart
        lines.append(f"{i}.jpg " + " ".join(f"{v:.2f}" for v in (*x, *y)))
    faces = tmp_path / "faces5"
    faces.mkdir()
    for i in range(6):
        (tmp_path / f"{i}.jpg").rename(faces / f"{i}.jpg")
    (faces / "test.txt").write_text("\n".join(lines) + "\n")
    five = export_tiny(tmp_path / "m5", "student-5pt", points=5, layout="mtfl5")
    t = RobustnessTab(threads=1)
    qtbot.addWidget(t)
    t.show()
    t.set_catalog(scan_models(models_dir, extra=(five,)))
    t.set_folder(str(faces))
    msgs = []
    t.message.connect(lambda text, level: msgs.append((level, text)))
    t.set_variants(["student-5pt", "student"])
    t.set_kind("blur")
    t.severities_edit.setText("0, 2")
    try:
        assert t.start()
        qtbot.waitUntil(lambda: not t.running, timeout=TIMEOUT_MS)
        res = t.result
        assert res is not None and {c.variant for c in res.cells} == {"student-5pt"} and len(res.cells) == 2, msgs
        assert [label for label, _ in res.skipped] == ["student"]
        assert ("warning", "Robustness lab: student not run: student predicts 68 points, the labelled faces "
                           "have 5") in msgs
        assert t.curves["student"].opts["name"] == "student: not run"
        assert not any(level == "error" for level, _ in msgs)
    finally:
        t.shutdown()
