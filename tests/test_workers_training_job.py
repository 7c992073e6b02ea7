"""TrainingJob: the real ``python -m training`` child process, on a tiny synthetic data set.

Running a job to the end and cancelling one are tested through the Training tab
(tests/test_gui_app.py), which drives this same class; here: failures.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from fixtures import TINY_OVERRIDES, make_tiny_dataset

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from kpdesk.workers.training_job import PROJECT_ROOT, JobSpec, TrainingJob  # noqa: E402

pytestmark = pytest.mark.skipif(not (PROJECT_ROOT / "training" / "__main__.py").is_file(),
                                reason="the training package (python -m training) is not in this checkout")



def tiny_config(tmp_path: Path, epochs: int, export_name: str = "tinyjob") -> Path:
    data = make_tiny_dataset(tmp_path / "data")
    cfg = {"model": {}, "data": {"format": "csv", "root": str(data), "train_list": "train.csv", "val_list": "val.csv"},
           "train": {"epochs": epochs, "export_name": export_name}}
    p = tmp_path / "config.json"
    p.write_text(json.dumps(cfg))
    return p


def _job(tmp_path: Path, epochs: int) -> tuple[TrainingJob, dict[str, list]]:
    extra: list[str] = []
    for ov in TINY_OVERRIDES:
        extra += ["--set", ov]
    spec = JobSpec("train", tiny_config(tmp_path, epochs), tmp_path / "run", extra_args=tuple(extra))
    job = TrainingJob(spec, terminate_after_ms=15000)
    seen: dict[str, list] = {"events": [], "failed": [], "finished": [], "exported": [], "log": []}
    job.event.connect(seen["events"].append)
    job.failed.connect(seen["failed"].append)
    job.finished.connect(lambda o, c: seen["finished"].append((o, c)))
    job.exported.connect(lambda a, b: seen["exported"].append((a, b)))
    job.log_line.connect(seen["log"].append)
    return job, seen


def test_a_job_that_fails_is_reported(qtbot, tmp_path: Path) -> None:  # noqa: ANN001
    bad = tmp_path / "bad.json"
    bad.write_text('{"train": {"epochs": "many"}}')
    job = TrainingJob(JobSpec("train", bad, tmp_path / "run"))
    failed: list[str] = []
    finished: list[tuple[str, int]] = []
    job.failed.connect(failed.append)
    job.finished.connect(lambda o, c: finished.append((o, c)))
    job.start()
    qtbot.waitUntil(lambda: bool(finished), timeout=90000)
    assert finished[0][0] == "failed" and finished[0][1] != 0
    assert failed and "epochs" in failed[0]


def test_a_job_that_cannot_start_is_reported(qtbot, tmp_path: Path) -> None:  # noqa: ANN001
    job = TrainingJob(JobSpec("train", tmp_path / "c.json", tmp_path / "run", python=str(tmp_path / "no-python")))
    finished: list[tuple[str, int]] = []
    failed: list[str] = []
    job.failed.connect(failed.append)
    job.finished.connect(lambda o, c: finished.append((o, c)))
    job.start()
    qtbot.waitUntil(lambda: bool(finished), timeout=5000)
    assert finished[0][0] == "failed" and "failed to start" in failed[0]
