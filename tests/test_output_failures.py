"""Outputs that cannot be written: a full disk (``/dev/full``), a folder that refuses new
files, a missing folder. Each costs one line naming the file and the reason, a non-zero exit
(CLI) or a banner (app), no half-written file under the final name, and nothing written
before is lost."""

from __future__ import annotations

import errno
import json
import logging
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from kpdesk.vision import files
from kpdesk.vision.files import LineLog, OutputError, atomic_write_text, write_image
from kpdesk.vision.results import FaceResult, FrameResult, StageTimings

FULL = Path("/dev/full")
needs_dev_full = pytest.mark.skipif(not FULL.exists(), reason="no /dev/full on this system")


def _one_line(msg: str, path: Path, why: str) -> None:
    assert "\n" not in msg and "Traceback" not in msg
    assert str(path) in msg and why in msg, msg


def _result(i: int = 0) -> FrameResult:
    face = FaceResult(box_xyxy=(0.0, 0.0, 10.0, 10.0), pts_img=np.arange(10.0).reshape(5, 2) + i,
                      conf=np.ones(5), crop_matrix=np.eye(2, 3))
    return FrameResult(frame_index=i, model_name="m", faces=(face,), timings=StageTimings(), frame_size=(64, 48))


# ---- the writers ---------------------------------------------------------------------------
@needs_dev_full
def test_a_full_disk_is_one_line() -> None:
    with pytest.raises(OutputError) as err:
        atomic_write_text(FULL, "x" * 10000)
    _one_line(str(err.value), FULL, "No space left on device")
    log = LineLog(FULL)
    with pytest.raises(OutputError) as err:
        log.write("{}\n")
    _one_line(str(err.value), FULL, "No space left on device")
    assert log.closed


def test_a_folder_that_refuses_files_is_one_line(unwritable_dir: Path) -> None:
    target = unwritable_dir / "a.png"
    for fn in (lambda: write_image(target, np.zeros((4, 4, 3), np.uint8)), lambda: LineLog(target)):
        with pytest.raises(OutputError) as err:
            fn()
        _one_line(str(err.value), target, "cannot write")
        assert not target.exists()


def test_a_missing_folder_is_one_line(tmp_path: Path) -> None:
    target = tmp_path / "no" / "such" / "rec.jsonl"
    with pytest.raises(OutputError) as err:
        LineLog(target)
    _one_line(str(err.value), target, f"folder {target.parent} does not exist")
    with pytest.raises(OutputError, match="does not exist"):
        atomic_write_text(target, "x")


def test_a_failed_rewrite_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    target = tmp_path / "table.csv"
    target.write_text("old, complete\n")

    def disk_full(fd: int, data: bytes) -> None:
        os.write(fd, bytes(data)[:3])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(files, "_write_all", disk_full)
    with pytest.raises(OutputError, match="No space left on device"):
        atomic_write_text(target, "new contents\n" * 100)
    assert target.read_text() == "old, complete\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.csv"]


def test_a_log_that_fails_midway_keeps_its_complete_lines(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    target = tmp_path / "rec.jsonl"
    log = LineLog(target)
    log.write('{"a": 1}\n')
    log.write('{"a": 2}\n')
    real = files._write_all

    def disk_full(fd: int, data: bytes) -> None:
        real(fd, bytes(data)[:4])  # half a line reaches the disk, then it is full
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(files, "_write_all", disk_full)
    with pytest.raises(OutputError):
        log.write('{"a": 3}\n')
    assert target.read_text() == '{"a": 1}\n{"a": 2}\n'


# ---- recordings ----------------------------------------------------------------------------
@needs_dev_full
def test_recording_to_a_full_disk_stops_with_a_banner_line_and_no_traceback(caplog) -> None:  # noqa: ANN001
    """``--record /dev/full`` in the app: the banner says why, stderr gets no traceback."""
    from kpdesk.workers.inference import InferenceWorker
    from kpdesk.workers.mailbox import LatestMailbox
    from kpdesk.workers.messages import VariantResult, VariantSpec
    from kpdesk.workers.recorder import LandmarkRecorder

    worker = InferenceWorker(LatestMailbox())
    seen: list[str] = []
    stopped: list[str] = []
    worker.error.connect(seen.append)
    worker.recording_failed.connect(stopped.append)
    worker.set_recorder(LandmarkRecorder(FULL))
    worker._apply_pending()
    vr = VariantResult(spec=VariantSpec(label="live", model_path="m.onnx"), result=_result())
    with caplog.at_level(logging.DEBUG):
        worker._record(vr)
        worker._record(vr)  # stopped: not tried again
    assert len(seen) == 1 and stopped == [str(FULL)]
    _one_line(seen[0], FULL, "No space left on device")
    assert seen[0].startswith("Recording stopped: ")
    assert not any(r.exc_info for r in caplog.records) and not any(r.levelno >= logging.ERROR for r in caplog.records)


def test_a_recording_in_a_missing_folder_is_refused_with_one_line(tmp_path: Path) -> None:
    from kpdesk.workers.recorder import LandmarkRecorder, RecorderError

    target = tmp_path / "gone" / "rec.csv"
    with pytest.raises(RecorderError) as err:
        LandmarkRecorder(target)
    _one_line(str(err.value), target, "does not exist")


def test_a_recording_that_fails_midway_keeps_the_rows_before(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    from kpdesk.workers.recorder import LandmarkRecorder, RecorderError

    target = tmp_path / "rec.jsonl"
    rec = LandmarkRecorder(target)
    rec.write("live", _result(0))
    rec.write("live", _result(1))

    def disk_full(fd: int, data: bytes) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(files, "_write_all", disk_full)
    with pytest.raises(RecorderError, match="the 2 rows before are kept"):
        rec.write("live", _result(2))
    assert [json.loads(ln)["frame"] for ln in target.read_text().splitlines()] == [0, 1]


# ---- kpdesk detect -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def photo(tmp_path_factory: pytest.TempPathFactory, astronaut_bgr: np.ndarray) -> Path:
    p = tmp_path_factory.mktemp("src") / "astronaut.png"
    cv2.imwrite(str(p), astronaut_bgr)
    return p


def _detect_fails(capsys, photo: Path, tiny_model_path: Path, *out_args: str) -> str:  # noqa: ANN001
    from kpdesk.cli import main

    code = main(["detect", str(photo), "--model", str(tiny_model_path), "--detector", "haar", "--threads", "1",
                 *out_args])
    err = capsys.readouterr().err
    assert code != 0
    lines = [ln for ln in err.splitlines() if ln.startswith("kpdesk: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@needs_dev_full
def test_detect_json_to_a_full_disk(capsys, photo: Path, tiny_model_path: Path) -> None:  # noqa: ANN001
    line = _detect_fails(capsys, photo, tiny_model_path, "--json", str(FULL))
    _one_line(line, FULL, "No space left on device")


def test_detect_outputs_in_a_folder_that_refuses_files(capsys, photo: Path, tiny_model_path: Path,  # noqa: ANN001
                                                        unwritable_dir: Path) -> None:
    for args in (("--json", str(unwritable_dir / "pts.jsonl")), ("--out", str(unwritable_dir / "a.png"))):
        line = _detect_fails(capsys, photo, tiny_model_path, *args)
        _one_line(line, Path(args[1]), "cannot write")
        assert not Path(args[1]).exists()


def test_detect_outputs_in_a_missing_folder(capsys, photo: Path, tiny_model_path: Path, tmp_path: Path) -> None:  # noqa: ANN001
    for name in ("pts.jsonl", "a.png", "a.mp4"):
        target = tmp_path / "missing" / name
        flag = "--json" if name.endswith(".jsonl") else "--out"
        line = _detect_fails(capsys, photo, tiny_model_path, flag, str(target))
        _one_line(line, target, "does not exist")


def test_detect_image_output_failing_keeps_the_earlier_image(capsys, photo: Path, tiny_model_path: Path,  # noqa: ANN001
                                                             tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "a.png"
    out.write_bytes(b"an earlier result")

    def disk_full(fd: int, data: bytes) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(files, "_write_all", disk_full)
    line = _detect_fails(capsys, photo, tiny_model_path, "--out", str(out))
    _one_line(line, out, "No space left on device")
    assert out.read_bytes() == b"an earlier result" and sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]


# ---- the app's other outputs ---------------------------------------------------------------
@needs_dev_full
def test_lab_table_to_a_full_disk(tmp_path: Path) -> None:
    from kpdesk.inference.robustness import SweepConfig, SweepResult, write_csv

    with pytest.raises(OutputError) as err:
        write_csv(SweepResult(SweepConfig("blur", (1.0,))), FULL)
    _one_line(str(err.value), FULL, "No space left on device")


@pytest.mark.gui
def test_widget_png_in_a_folder_that_refuses_files(qtbot, unwritable_dir: Path) -> None:  # noqa: ANN001
    from PySide6.QtWidgets import QLabel

    from kpdesk.gui.saving import save_widget_png

    w = QLabel("x")
    qtbot.addWidget(w)
    target = unwritable_dir / "plot.png"
    with pytest.raises(OutputError) as err:
        save_widget_png(w, target)
    _one_line(str(err.value), target, "cannot write")


@needs_dev_full
@pytest.mark.gui
def test_the_app_recording_to_a_full_disk_shows_a_banner_and_resets_the_button(qtbot, tmp_path: Path,  # noqa: ANN001
                                                                                caplog) -> None:  # noqa: ANN001
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from kpdesk.gui.qt_env import prepare_qt_environment

    prepare_qt_environment()
    from fixtures import build_tiny_models

    from kpdesk.gui.main_window import MainWindow

    build_tiny_models(tmp_path / "models")
    w = MainWindow(models_dir=tmp_path / "models", source="demo", threads=1, runs_dir=tmp_path / "runs")
    qtbot.addWidget(w)
    w.show()
    w.start()
    try:
        qtbot.waitUntil(lambda: w.last_result is not None and w.last_result.primary is not None
                        and w.last_result.primary.result is not None, timeout=60000)
        with caplog.at_level(logging.INFO):
            assert w.start_recording(FULL)
            qtbot.waitUntil(lambda: any(e.text.startswith("Recording stopped: /dev/full") for e in w.banner.entries),
                            timeout=30000)
            qtbot.waitUntil(lambda: not w.live_tab.record_btn.isChecked(), timeout=5000)
        (line,) = [e.text for e in w.banner.entries if e.text.startswith("Recording stopped")]
        _one_line(line, FULL, "No space left on device")
        assert w.recorder is None and w.live_tab.record_btn.text() == "Record landmarks…"
        assert not any(r.exc_info for r in caplog.records), [r.getMessage() for r in caplog.records if r.exc_info]
    finally:
        w.shutdown()


def test_figures_and_arrays_are_written_whole(tmp_path: Path, unwritable_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from kpdesk.vision.files import save_figure, save_npz

    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [0, 1])
    png = save_figure(fig, tmp_path / "f.png")
    assert cv2.imread(str(png)) is not None
    with pytest.raises(OutputError) as err:
        save_figure(fig, unwritable_dir / "f.png")
    _one_line(str(err.value), unwritable_dir / "f.png", "cannot write")
    plt.close(fig)
    npz = save_npz(tmp_path / "a.npz", x=np.arange(3))
    assert np.load(npz)["x"].tolist() == [0, 1, 2]
    if FULL.exists():
        with pytest.raises(OutputError, match="No space left on device"):
            save_npz(FULL, x=np.arange(3))
