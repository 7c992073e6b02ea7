"""Training's outputs that cannot be written: a run folder, an eval report, an export, a
pseudo-label pack. One line naming the file and why, a non-zero exit, nothing half-written
under the final name; and the detector mapping an export writes into a new manifest."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import numpy as np
import pytest
from fixtures import make_face68, tiny_config, tiny_landmark_net

from kpdesk.vision.files import OutputError
from kpdesk.vision.schema import custom_schema, get_schema
from training.cli import error_line
from training.cli import main as training_main

FULL = Path("/dev/full")


@pytest.fixture(autouse=True)
def _no_signal_handlers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("training.cli.CancelFlag.listen", lambda self: None)


REFUSED = ("ermission denied", "not permitted", "Read-only file system")  # as the OS words a refused write


def _one_error_line(capsys: pytest.CaptureFixture, path: Path, why: str | tuple[str, ...]) -> None:
    captured = capsys.readouterr()
    errors = [ln for ln in captured.err.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in captured.err, captured.err
    whys = (why,) if isinstance(why, str) else why
    assert str(path) in errors[0] and any(w in errors[0] for w in whys), errors[0]
    event = json.loads(captured.out.strip().splitlines()[-1])
    assert event["event"] == "error" and str(path) in event["message"]


def test_an_os_error_is_the_file_and_the_reason() -> None:
    exc = PermissionError(13, "Permission denied", "/x/run/config.json")
    assert error_line(exc) == "/x/run/config.json: Permission denied"
    assert error_line(OutputError("/x/a.png: cannot write: No space left on device")) == \
        "/x/a.png: cannot write: No space left on device"
    assert error_line(ValueError("bad\nsecond line")) == "bad"


def test_a_run_folder_that_cannot_be_made(tmp_path: Path, unwritable_dir: Path, capsys) -> None:  # noqa: ANN001
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps(tiny_config(tmp_path / "data")))
    run = unwritable_dir / "run"
    assert training_main(["train", "--config", str(cfg), "--run-dir", str(run)]) != 0
    _one_error_line(capsys, run, REFUSED)
    assert not run.exists()


def test_an_eval_report_in_a_folder_that_refuses_files(tmp_path: Path, tiny_model_path: Path,  # noqa: ANN001
                                                       unwritable_dir: Path, capsys) -> None:
    root = make_face68(tmp_path / "face68", n_train=2, n_val=4)
    out = unwritable_dir / "eval"
    rc = training_main(["eval", "--model", str(tiny_model_path), "--data", str(root), "--list", "val.txt",
                        "--threads", "1", "--out", str(out)])
    assert rc != 0
    _one_error_line(capsys, out, REFUSED)


def test_an_eval_report_that_fails_midway_leaves_no_half_file(tmp_path: Path, tiny_model_path: Path,  # noqa: ANN001
                                                              monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    import errno
    import os

    from kpdesk.vision import files

    root = make_face68(tmp_path / "face68", n_train=2, n_val=4)
    out = tmp_path / "eval"
    out.mkdir()
    (out / "summary.json").write_text('{"an": "earlier report"}\n')

    def disk_full(fd: int, data: bytes) -> None:
        os.write(fd, bytes(data)[:10])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(files, "_write_all", disk_full)
    rc = training_main(["eval", "--model", str(tiny_model_path), "--data", str(root), "--list", "val.txt",
                        "--threads", "1", "--out", str(out)])
    assert rc != 0
    _one_error_line(capsys, out, "No space left on device")
    assert (out / "summary.json").read_text() == '{"an": "earlier report"}\n'
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temporary left


@pytest.mark.skipif(not FULL.exists(), reason="no /dev/full on this system")
def test_an_export_to_a_device_is_refused_and_the_device_kept(torch_one_thread) -> None:  # noqa: ANN001
    from training.jobs.onnx_export import ExportError, export_model

    model = tiny_landmark_net()
    with pytest.raises(ExportError, match="/dev/full: cannot write: not a regular file"):
        export_model(model, get_schema("ibug68"), FULL, input_size=64, heatmap_size=16, sigma=1.0,
                     decode="fusion", arch="tiny")
    assert stat.S_ISCHR(FULL.stat().st_mode)


def test_an_export_carries_its_layouts_detector_mapping(tmp_path: Path, torch_one_thread) -> None:  # noqa: ANN001
    """A new model's manifest says how detector boxes map to its crop; for a layout never
    measured it says nothing, and the app refuses the model until it is calibrated."""
    from kpdesk.inference.detectors import LAYOUT_CALIBRATION
    from kpdesk.inference.model import LandmarkModel, ModelLoadError
    from training.jobs.onnx_export import layout_detector_crop

    five = layout_detector_crop(get_schema("mtfl5"))
    assert five == {d: c.as_dict() for d, c in LAYOUT_CALIBRATION["mtfl5"].items()}
    assert layout_detector_crop(get_schema("ibug68"))["haar"]["ratio"] == pytest.approx(0.881)
    assert layout_detector_crop(custom_schema(7)) is None

    from training.jobs.onnx_export import export_model

    out = tmp_path / "m.onnx"
    export_model(tiny_landmark_net(), get_schema("ibug68"), out, input_size=64, heatmap_size=16, sigma=1.0,
                 decode="fusion", arch="tiny")
    man = json.loads(out.with_suffix(".json").read_text())
    assert set(man["detector_crop"]) == {"blazeface", "haar"}
    assert LandmarkModel.load(out, threads=1).box_calibration("haar").ratio == pytest.approx(0.881)
    man.pop("detector_crop")
    man["schema"] = custom_schema(68).to_dict()
    out.with_suffix(".json").write_text(json.dumps(man))
    with pytest.raises(ModelLoadError, match="no detector_crop"):
        LandmarkModel.load(out, threads=1)


def test_a_pseudo_label_image_that_cannot_be_written_stops_the_pack(tmp_path: Path) -> None:
    """cv2.imwrite returns False and carries on: a pack could list a crop it never wrote. Now
    the crop is written through kpdesk.vision.files, which says which file and why."""
    import cv2
    from fixtures import face_shape68

    from training.data.pseudolabel import Face, label_faces

    img = tmp_path / "face.jpg"
    cv2.imwrite(str(img), np.full((200, 200, 3), 120, np.uint8))
    pts = face_shape68() * 80 + 100

    class Fixed:  # an Ensemble that always finds the same, perfectly agreed points
        def label(self, image, box):  # noqa: ANN001, ANN202
            return pts, 0.0, 0.0

    key = "k" * 300  # a file name the file system refuses (ENAMETOOLONG)
    with pytest.raises(OutputError) as err:
        label_faces([Face(str(img), key, (60.0, 60.0, 140.0, 140.0))], Fixed(), tmp_path / "pack", max_score=8.0)
    assert f"{key}.jpg: cannot write: File name too long" in str(err.value) and "\n" not in str(err.value)
