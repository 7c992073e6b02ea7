"""Ctrl+C and SIGTERM: ``kpdesk detect`` and the desktop app stop cleanly, close their
files (every line written is whole) and exit 130 / 143, never with a traceback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STARTUP_S = 180.0  # generous: the suite runs on loaded machines


def _wait_rows(proc: subprocess.Popen, path: Path, n: int) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < STARTUP_S:
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"exited early ({proc.returncode}): {out}\n{err}")
        if path.is_file() and len(path.read_text().splitlines()) >= n:
            return
        time.sleep(0.2)
    proc.kill()
    pytest.fail(f"no {n} rows in {path} after {STARTUP_S} s")


def _check_stopped(proc: subprocess.Popen, rows: Path, code: int) -> str:
    try:
        out, err = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"still running after the signal:\n{err[-2000:]}")
    assert "Traceback" not in err, err
    assert proc.returncode == code, (proc.returncode, err[-2000:])
    lines = rows.read_text().splitlines()
    assert lines and all(isinstance(json.loads(ln), dict) for ln in lines)  # every row whole
    return out


def _env() -> dict[str, str]:
    return {**os.environ, "QT_QPA_PLATFORM": "offscreen", "PYTHONUNBUFFERED": "1"}


def _as_in_a_terminal() -> None:
    """The child gets Ctrl+C as a foreground job in a terminal does: a test run started in
    the background (``make test &``) inherits SIGINT ignored, and Python keeps it so."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize(("sig", "code", "word"), [(signal.SIGINT, 130, "interrupted"),
                                                   (signal.SIGTERM, 143, "terminated")])
def test_detect_stops_on_a_signal_with_its_exit_code(tiny_model_path: Path, tmp_path: Path, sig: int, code: int,
                                                     word: str) -> None:
    rows = tmp_path / "pts.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "kpdesk.cli", "detect", "demo", "--max-frames", "1000000", "--model", "tiny",
         "--models-dir", str(tiny_model_path.parent), "--detector", "haar", "--threads", "1", "--json", str(rows)],
        cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=_as_in_a_terminal)
    _wait_rows(proc, rows, 3)
    proc.send_signal(sig)
    out = _check_stopped(proc, rows, code)
    assert f"({word})" in out and "FPS" in out  # the summary of what was done


@pytest.mark.gui
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_the_app_closes_cleanly_on_a_signal(tiny_model_path: Path, tmp_path: Path, sig: int, code: int) -> None:
    """Ctrl+C in the app's terminal used to print a KeyboardInterrupt traceback and leave the
    app running; now it closes the window, which flushes and closes the recording."""
    rows = tmp_path / "rec.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "kpdesk.gui.app", "--source", "demo", "--models-dir", str(tiny_model_path.parent),
         "--model", "tiny", "--detector", "haar", "--threads", "1", "--size", "800x600", "--record", str(rows)],
        cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=_as_in_a_terminal)
    _wait_rows(proc, rows, 3)
    proc.send_signal(sig)
    _check_stopped(proc, rows, code)
