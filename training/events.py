"""One JSON object per line on stdout (the GUI's protocol), a copy in the run folder,
and a console progress bar on stderr when a person is watching."""

from __future__ import annotations

import json
import math
import sys
import threading
import time
from pathlib import Path
from typing import Any, TextIO

EVENTS = ("start", "progress", "metric", "checkpoint", "exported", "done", "error", "cancelled", "log", "step")


def _clean(v: Any) -> Any:
    if isinstance(v, float):
        return v if math.isfinite(v) else str(v)
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if isinstance(v, Path):
        return str(v)
    return v


class EventStream:
    """Writes events; thread-safe. ``enabled=False`` on non-zero DDP ranks."""

    def __init__(self, run_dir: Path | None, out: TextIO | None = None, enabled: bool = True,
                 progress_bar: bool | None = None) -> None:
        self.out = out if out is not None else sys.stdout
        self.enabled = enabled
        self.log_file = (run_dir / "events.jsonl").open("a") if (run_dir and enabled) else None
        self.bar = sys.stderr.isatty() if progress_bar is None else progress_bar
        self._lock = threading.Lock()
        self._last_bar = 0.0

    def emit(self, event: str, **fields: Any) -> None:
        if not self.enabled:
            return
        assert event in EVENTS, event
        rec = {"event": event, "time": round(time.time(), 3), **_clean(fields)}
        line = json.dumps(rec)
        with self._lock:
            self.out.write(line + "\n")
            self.out.flush()
            if self.log_file:
                self.log_file.write(line + "\n")
                self.log_file.flush()
        if self.bar and event in ("progress",):
            self._draw(rec)
        elif self.bar and event in ("metric", "done", "error", "cancelled"):
            sys.stderr.write("\n")

    def _draw(self, rec: dict) -> None:
        now = time.time()
        if now - self._last_bar < 0.2 and rec.get("step") != rec.get("steps"):
            return
        self._last_bar = now
        frac = rec.get("step", 0) / max(rec.get("steps", 1), 1)
        n = 28
        bar = "#" * int(frac * n) + "-" * (n - int(frac * n))
        eta = rec.get("eta_s")
        eta_s = f"{int(eta // 60):d}:{int(eta % 60):02d}" if isinstance(eta, (int, float)) else "?"
        sys.stderr.write(f"\repoch {rec.get('epoch')}/{rec.get('epochs')} [{bar}] {rec.get('step')}/"
                         f"{rec.get('steps')} loss {rec.get('loss', float('nan')):.5f} "
                         f"{rec.get('img_s', 0):.0f} img/s ETA {eta_s}   ")
        sys.stderr.flush()

    def close(self) -> None:
        if self.log_file:
            self.log_file.close()
