"""Runs one ``python -m training`` job as a child process and turns its event stream into signals.

The child prints one JSON object per line on stdout (``progress``, ``metric``,
``checkpoint``, ``exported``, ``done``, ``error``, ``cancelled``); anything else it prints
(and all of stderr) goes to the log. Cancel is cooperative first: the line ``cancel`` on
the child's stdin (it saves a resumable checkpoint and exits 0), then terminate, then kill.
A crash in the child cannot take the GUI down.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from PySide6.QtCore import QObject, QProcess, QProcessEnvironment, QTimer, Signal

log = logging.getLogger(__name__)

JOB_COMMANDS = ("train", "distill", "prune")
PROJECT_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class JobEvent:
    """One event line from the child, e.g. ``JobEvent("progress", {"epoch": 1, ...})``."""

    kind: str
    data: Mapping[str, Any] = field(default_factory=dict)

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)


def parse_event_line(line: str) -> JobEvent | None:
    """A JSON object with an ``event`` key -> JobEvent; anything else -> None."""
    s = line.strip()
    if not s.startswith("{"):
        return None
    try:
        obj = json.loads(s)
    except json.JSONDecodeError:
        return None
    if not isinstance(obj, dict) or not isinstance(obj.get("event"), str):
        return None
    kind = obj.pop("event")
    return JobEvent(kind, MappingProxyType(obj))


@dataclass(frozen=True)
class JobSpec:
    """What to run: ``<python> -m <module> <command> --config <config> --run-dir <run_dir>``."""

    command: str
    config_path: Path
    run_dir: Path
    resume: bool = False
    python: str = sys.executable
    module: str = "training"
    workdir: Path = PROJECT_ROOT
    extra_args: tuple[str, ...] = ()

    def argv(self) -> list[str]:
        args = ["-u", "-m", self.module, self.command, "--config", str(self.config_path),
                "--run-dir", str(self.run_dir)]
        if self.resume:
            args.append("--resume")
        return args + list(self.extra_args)


class TrainingJob(QObject):
    """One child training process.

    Signals:
        started(): the child is running.
        event(JobEvent): every protocol event, in order.
        progress(JobEvent), metric(JobEvent), checkpoint(str path), exported(str onnx, str manifest):
            convenience views of ``event``.
        log_line(str): non-protocol stdout lines and stderr lines.
        failed(str): the job could not start, reported an error, or crashed.
        finished(str outcome, int exit_code): outcome is ``done``, ``cancelled`` or ``failed``.
    """

    started = Signal()
    event = Signal(object)
    progress = Signal(object)
    metric = Signal(object)
    checkpoint = Signal(str)
    exported = Signal(str, str)
    log_line = Signal(str)
    failed = Signal(str)
    finished = Signal(str, int)

    def __init__(self, spec: JobSpec, terminate_after_ms: int = 20000, kill_after_ms: int = 5000,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.spec = spec
        self.terminate_after_ms = terminate_after_ms
        self.kill_after_ms = kill_after_ms
        self.proc = QProcess(self)
        self.proc.setProgram(spec.python)
        self.proc.setArguments(spec.argv())
        self.proc.setWorkingDirectory(str(spec.workdir))
        env = QProcessEnvironment.systemEnvironment()
        pp = env.value("PYTHONPATH", "")
        env.insert("PYTHONPATH", str(spec.workdir) + (os.pathsep + pp if pp else ""))
        env.insert("PYTHONUNBUFFERED", "1")
        self.proc.setProcessEnvironment(env)
        self.proc.readyReadStandardOutput.connect(self._read_stdout)
        self.proc.readyReadStandardError.connect(self._read_stderr)
        self.proc.started.connect(self.started)
        self.proc.errorOccurred.connect(self._on_error)
        self.proc.finished.connect(self._on_finished)
        self._out_buf = b""
        self._err_buf = b""
        self._cancel_requested = False
        self._saw_done = False
        self._saw_cancelled = False
        self._error_message: str | None = None
        self._finished_emitted = False
        self.last_progress: JobEvent | None = None
        self._term_timer = QTimer(self, singleShot=True, timeout=self._terminate)
        self._kill_timer = QTimer(self, singleShot=True, timeout=self._kill)

    @property
    def running(self) -> bool:
        return self.proc.state() != QProcess.ProcessState.NotRunning

    def start(self) -> None:
        log.info("starting job: %s %s", self.spec.python, " ".join(self.spec.argv()))
        self.spec.run_dir.mkdir(parents=True, exist_ok=True)
        self.proc.start()

    def cancel(self) -> None:
        """Ask the child to save and stop; escalate to terminate, then kill, if it ignores us."""
        if not self.running or self._cancel_requested:
            return
        self._cancel_requested = True
        self.log_line.emit("[gui] cancel requested")
        self.proc.write(b"cancel\n")
        self._term_timer.start(self.terminate_after_ms)

    def _terminate(self) -> None:
        if self.running:
            self.log_line.emit("[gui] job did not stop after cancel: terminating")
            self.proc.terminate()
            self._kill_timer.start(self.kill_after_ms)

    def _kill(self) -> None:
        if self.running:
            self.log_line.emit("[gui] job did not terminate: killing")
            self.proc.kill()

    def _read_stdout(self) -> None:
        self._out_buf += bytes(self.proc.readAllStandardOutput().data())
        *lines, self._out_buf = self._out_buf.split(b"\n")
        for raw in lines:
            self._handle_line(raw.decode("utf-8", "replace"))

    def _read_stderr(self) -> None:
        self._err_buf += bytes(self.proc.readAllStandardError().data())
        *lines, self._err_buf = self._err_buf.split(b"\n")
        for raw in lines:
            text = raw.decode("utf-8", "replace").rstrip()
            if text:
                self.log_line.emit(text)

    def _handle_line(self, line: str) -> None:
        ev = parse_event_line(line)
        if ev is None:
            if line.strip():
                self.log_line.emit(line.rstrip())
            return
        self.event.emit(ev)
        if ev.kind == "progress":
            self.last_progress = ev
            self.progress.emit(ev)
        elif ev.kind == "metric":
            self.metric.emit(ev)
        elif ev.kind == "checkpoint":
            self.checkpoint.emit(str(ev.get("path", "")))
        elif ev.kind == "exported":
            self.exported.emit(str(ev.get("onnx", "")), str(ev.get("manifest", "")))
        elif ev.kind == "done":
            self._saw_done = True
        elif ev.kind == "cancelled":
            self._saw_cancelled = True
        elif ev.kind == "error":
            self._error_message = str(ev.get("message", "unknown error"))
            self.failed.emit(f"Training job error: {self._error_message}")
        else:
            self.log_line.emit(line.rstrip())

    def _on_error(self, err: QProcess.ProcessError) -> None:
        if err == QProcess.ProcessError.FailedToStart:
            msg = f"Training job failed to start ({self.spec.python}): {self.proc.errorString()}"
            self.failed.emit(msg)
            self._emit_finished("failed", -1)

    def _on_finished(self, exit_code: int, status: QProcess.ExitStatus) -> None:
        self._term_timer.stop()
        self._kill_timer.stop()
        # Flush a last line without a newline.
        self._read_stdout()
        self._read_stderr()
        if self._out_buf:
            self._handle_line(self._out_buf.decode("utf-8", "replace"))
            self._out_buf = b""
        crashed = status == QProcess.ExitStatus.CrashExit
        if self._saw_cancelled or (self._cancel_requested and not self._saw_done):
            outcome = "cancelled"
        elif self._saw_done and exit_code == 0 and not crashed:
            outcome = "done"
        else:
            outcome = "failed"
            if self._error_message is None:
                why = "crashed" if crashed else f"exited with code {exit_code}"
                self.failed.emit(f"Training job {why} before finishing (see the log)")
        self._emit_finished(outcome, exit_code)

    def _emit_finished(self, outcome: str, exit_code: int) -> None:
        if not self._finished_emitted:
            self._finished_emitted = True
            log.info("job finished: %s (exit %s)", outcome, exit_code)
            self.finished.emit(outcome, exit_code)


class RunWatcher(QObject):
    """Follows ``RUN_DIR/events.jsonl`` of a job started elsewhere (e.g. the command line).

    Polls the file on a timer and emits every complete new event line; reading a few new
    lines per second is cheap enough for the GUI thread.

    Signals: ``event(JobEvent)``.
    """

    event = Signal(object)

    def __init__(self, run_dir: str | Path, interval_ms: int = 1000, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / "events.jsonl"
        self._offset = 0
        self._buf = b""
        self._timer = QTimer(self, interval=interval_ms, timeout=self.poll)

    def start(self) -> None:
        self.poll()
        self._timer.start()

    def stop(self) -> None:
        self._timer.stop()

    def poll(self) -> int:
        """Read what was appended since the last poll; returns the number of events emitted."""
        try:
            with self.path.open("rb") as fh:
                fh.seek(self._offset)
                data = fh.read(4 * 1024 * 1024)
        except OSError:
            return 0
        self._offset += len(data)
        *lines, self._buf = (self._buf + data).split(b"\n")
        n = 0
        for raw in lines:
            ev = parse_event_line(raw.decode("utf-8", "replace"))
            if ev is not None:
                self.event.emit(ev)
                n += 1
        return n
