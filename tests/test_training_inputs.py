"""``python -m training``: every config value is checked before any work starts, a file
that is not a checkpoint says so, thread counts are capped, and ``ship`` / ``export`` never
overwrite a model silently, never leave a half-written one behind, and check the manifest
against the graph. Each failure is one line and exit status 2."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import pytest
from fixtures import export_tiny

from training.cli import main as training_main

pytestmark = pytest.mark.usefixtures("no_signal_handlers")

REPO = Path(__file__).resolve().parents[1]
STUDENT_CFG = str(REPO / "training" / "configs" / "face68_student.json")


def _one_error(capsys: pytest.CaptureFixture) -> tuple[dict, str]:
    cap = capsys.readouterr()
    events = [json.loads(ln) for ln in cap.out.splitlines() if ln.startswith("{")]
    err = cap.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "Traceback" not in cap.err, cap.err
    assert events and events[-1]["event"] == "error"
    return events[-1], err[0]


@pytest.mark.parametrize(("override", "key"), [
    ("train.batch_size=0", "train.batch_size"),  # was a ZeroDivisionError
    ("train.epochs=0", "train.epochs"),  # was accepted, then "best.pt not found"
    ("train.epochs=-1", "train.epochs"),
    ("train.lr=-0.1", "train.lr"),
    ("augment.flip_p=1.5", "augment.flip_p"),
    ('model.arch="vgg16"', "model.arch"),
    ("model.input_size=100", "model.input_size"),
    ('data.format="jpeg"', "data.format"),
    ('train.select="auc08_ion"', "train.select"),
    ("prune.alpha=1.0", "prune.alpha"),
    ("prune.channel_multiple=0", "prune.channel_multiple"),
    ("prune.channel_multiple=true", "prune.channel_multiple"),
])
def test_a_bad_config_value_stops_the_job_before_any_work(tmp_path: Path, override: str, key: str,
                                                          capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "run"
    assert training_main(["train", "--config", STUDENT_CFG, "--run-dir", str(run), "--set", override]) == 2
    ev, line = _one_error(capsys)
    assert ev["kind"] == "ConfigError" and ev["message"].startswith(f"{key}: ") and key in line
    assert not run.exists()  # nothing was started


def test_a_text_file_named_pt_is_not_a_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    notes = tmp_path / "notes.pt"
    notes.write_text("my training notes\n")
    assert training_main(["export", "--checkpoint", str(notes), "--out", str(tmp_path / "x.onnx")]) == 2
    ev, line = _one_error(capsys)
    assert line == f"error: {notes}: not a PyTorch checkpoint (a text file)"
    assert training_main(["train", "--config", STUDENT_CFG, "--run-dir", str(tmp_path / "run"),
                          "--set", f'train.init_checkpoint="{notes}"']) == 2
    ev, line = _one_error(capsys)
    assert ev["message"] == f"train.init_checkpoint: {notes}: not a PyTorch checkpoint (a text file)"


def test_threads_far_above_the_cpu_count_are_capped_with_a_warning(capsys: pytest.CaptureFixture) -> None:
    from training.config import check_inputs, max_threads

    args = argparse.Namespace(subcommand="eval", threads=9999, model="m.onnx")
    check_inputs(args)
    assert args.threads == max_threads()
    assert f"--threads 9999 is more than this machine's {max_threads()} CPUs" in capsys.readouterr().err


# ---- ship: never lose a model ----------------------------------------------------------------------
def _run_dir(base: Path, seed: int, **kw: object) -> Path:
    run = base / f"run{seed}"
    export_tiny(run / "export", "tiny-export", seed=seed, **kw)
    return run


def _ship(run: Path, models: Path, *extra: str) -> int:
    return training_main(["ship", "--run-dir", str(run), "--name", "student", "--models-dir", str(models), *extra])


def _listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_ship_never_overwrites_a_model_silently(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from kpdesk.vision.manifest import Manifest, file_sha256

    models = tmp_path / "models"
    a, b = _run_dir(tmp_path, 0), _run_dir(tmp_path, 1)
    assert _ship(a, models) == 0
    first = file_sha256(models / "student.onnx")
    assert Manifest.load(models / "student.json").onnx_sha256 == first  # stamped on the way in
    capsys.readouterr()
    assert _ship(b, models) == 0
    cap = capsys.readouterr()
    assert "installed as student-2" in cap.err and json.loads(cap.out.splitlines()[-1])["name"] == "student-2"
    assert file_sha256(models / "student.onnx") == first
    assert _ship(b, models, "--replace", "--name", "student") == 0  # explicit: the old one is backed up
    backups = sorted((models / ".backup").glob("student-*.onnx"))
    assert len(backups) == 1 and file_sha256(backups[0]) == first
    assert file_sha256(models / "student.onnx") == file_sha256(b / "export" / "tiny-export.onnx")


def test_a_corrupt_export_fails_in_one_line_and_leaves_nothing_behind(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture) -> None:
    models = tmp_path / "models"
    assert _ship(_run_dir(tmp_path, 0), models) == 0
    before = _listing(models)
    bad = _run_dir(tmp_path, 1)
    (bad / "export" / "tiny-export.onnx").write_bytes(b"\x08\x07garbage, not a protobuf")
    capsys.readouterr()
    assert _ship(bad, models) == 2
    ev, line = _one_error(capsys)
    assert "does not load" in line
    assert _listing(models) == before  # no .student.tmp.onnx, no staging folder


def test_ship_checks_the_manifest_against_the_graph(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    models = tmp_path / "models"
    run = _run_dir(tmp_path, 0, graph_points=5)  # the manifest says 68 points, the graph outputs 5
    assert _ship(run, models) == 2
    ev, line = _one_error(capsys)
    assert "manifest says 68 points, graph outputs 5" in line
    assert not models.exists() or _listing(models) == []


def test_export_to_a_taken_name_picks_a_new_one(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from training.jobs.export import export_target

    out = tmp_path / "student.onnx"
    assert export_target(out, replace=False) == out
    shutil.copy(export_tiny(tmp_path / "x", "student"), out)
    assert export_target(out, replace=False) == tmp_path / "student-2.onnx"
    assert "student-2.onnx instead" in capsys.readouterr().err
    assert export_target(out, replace=True) == out  # backed up only once the new export is ready
