"""Soak test of the desktop app (not a CI test): run it offscreen on the demo source for a
long time, switching the Live model every ``--switch-s`` seconds and turning Compare on
and off, and report memory growth, frames processed and crashes.

    python benchmarks/soak.py [--minutes 20] [--switch-s 10] [--compare-every 3] [--out soak.json]

The app runs in a child process (``--child``) so a crash (abort, segfault) is seen and
counted, and the soak goes on in a fresh child. The parent samples the child's resident
memory (VmRSS) every few seconds; the child prints one JSON status line every
``--switch-s`` seconds (frames processed and drawn, model, compare on/off, errors shown).

RSS growth is measured from the end of a warm-up (``--warmup-s``, default 120 s: every
model and the Compare variants have been loaded once, caches filled) to the end, as a
least-squares slope over the rest of the run (MB per hour), and as the growth of the
floor: the lowest RSS in the last ``--floor-s`` seconds minus the lowest in the first
``--floor-s`` after the warm-up. RSS swings by hundreds of MB as Compare loads and drops
its variants' models, so the end-to-end difference depends on the phase the run ends in;
the floor does not.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


# ---- the child: the app itself ---------------------------------------------------------------
def child(args: argparse.Namespace) -> int:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    sys.path.insert(0, str(ROOT))
    from kpdesk.gui.qt_env import prepare_qt_environment

    prepare_qt_environment()
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from kpdesk.gui.main_window import MainWindow
    from kpdesk.inference.catalog import default_models_dir

    app = QApplication([sys.argv[0]])
    models_dir = Path(args.models_dir) if args.models_dir else default_models_dir()
    w = MainWindow(models_dir=models_dir, source="demo", threads=args.threads,
                   runs_dir=Path(args.runs_dir) if args.runs_dir else None)
    w.resize(1280, 800)
    w.show()
    w.start()
    state = {"step": 0, "compare": False, "t0": time.monotonic()}

    def step() -> None:
        if args.trim:  # diagnostic: hand freed heap back to the OS after every switch
            import ctypes

            ctypes.CDLL("libc.so.6").malloc_trim(0)
        combo = w.live_tab.model_combo
        usable = [i for i in range(combo.count()) if combo.model().item(i).isEnabled()]
        state["step"] += 1
        if usable:
            combo.setCurrentIndex(usable[state["step"] % len(usable)])
        if args.compare_every and state["step"] % args.compare_every == 0:
            state["compare"] = not state["compare"]
            w.select_tab("compare" if state["compare"] else "live")
        inf = w.session.inference
        print(json.dumps({
            "t": round(time.monotonic() - state["t0"], 1),
            "frames_processed": int(getattr(inf, "frames_dispatched", getattr(inf, "frames_processed", 0))),
            "results_shown": w.results_shown,
            "model": combo.currentText().split("  ")[0],
            "compare": state["compare"],
            "errors": sum(1 for _, level, _ in w.banner.history if level == "error"),
            "last_error": next((t for _, lv, t in reversed(w.banner.history) if lv == "error"), None),
        }), flush=True)

    timer = QTimer(interval=int(args.switch_s * 1000), timeout=step)
    timer.start()
    QTimer.singleShot(int(args.child_s * 1000), w.close)
    rc = app.exec()
    w.shutdown()
    return int(rc)


# ---- the parent: watch, sample, report ---------------------------------------------------------
def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def slope_mb_per_h(samples: list[tuple[float, float]]) -> float:
    if len(samples) < 3:
        return float("nan")
    n = len(samples)
    mt = sum(t for t, _ in samples) / n
    mr = sum(r for _, r in samples) / n
    var = sum((t - mt) ** 2 for t, _ in samples)
    cov = sum((t - mt) * (r - mr) for t, r in samples)
    return cov / var * 3600.0 if var > 0 else float("nan")


def parent(args: argparse.Namespace) -> int:
    total_s = args.minutes * 60.0
    t_start = time.monotonic()
    crashes: list[dict] = []
    rss: list[tuple[float, float]] = []  # (seconds since start, MB) of the current child
    statuses: list[dict] = []
    frames_done = 0  # frames of children that ended
    children = 0
    while time.monotonic() - t_start < total_s:
        left = total_s - (time.monotonic() - t_start)
        cmd = [sys.executable, __file__, "--child", "--child-s", str(left), "--switch-s", str(args.switch_s),
               "--compare-every", str(args.compare_every), "--threads", str(args.threads)]
        if args.trim:
            cmd.append("--trim")
        if args.models_dir:
            cmd += ["--models-dir", args.models_dir]
        env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "PYTHONUNBUFFERED": "1"}
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
        children += 1
        mine: list[dict] = []
        err_tail: list[str] = []

        def read_out(p: subprocess.Popen = proc, out: list[dict] = mine) -> None:
            for line in p.stdout:  # type: ignore[union-attr]
                if line.startswith("{"):
                    rec = json.loads(line)
                    rec["rss_mb"] = rss_mb(p.pid)
                    out.append(rec)
                    print(f"[soak {time.monotonic() - t_start:7.1f}s] {json.dumps(rec)}", flush=True)

        def read_err(p: subprocess.Popen = proc, tail: list[str] = err_tail) -> None:
            for line in p.stderr:  # type: ignore[union-attr]
                tail.append(line.rstrip())
                del tail[:-40]

        readers = [threading.Thread(target=read_out, daemon=True), threading.Thread(target=read_err, daemon=True)]
        for r in readers:
            r.start()
        while proc.poll() is None:
            m = rss_mb(proc.pid)
            if m is not None and children == 1:
                rss.append((time.monotonic() - t_start, m))
            if time.monotonic() - t_start > total_s + 120:  # the child did not close on time
                proc.send_signal(signal.SIGTERM)
            time.sleep(args.sample_s)
        for r in readers:
            r.join(timeout=5)
        statuses += mine
        frames_done += mine[-1]["frames_processed"] if mine else 0
        if proc.returncode != 0:
            crashes.append({"at_s": round(time.monotonic() - t_start, 1), "returncode": proc.returncode,
                            "stderr_tail": err_tail[-10:]})
    after = [(t, r) for t, r in rss if t >= args.warmup_s]
    first = [r for t, r in after if t < args.warmup_s + args.floor_s]
    last = [r for t, r in after if t > after[-1][0] - args.floor_s] if after else []
    report = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "minutes": args.minutes, "switch_s": args.switch_s, "compare_every": args.compare_every,
        "wall_s": round(time.monotonic() - t_start, 1),
        "children": children, "crashes": crashes,
        "frames_processed": frames_done,
        "results_shown": sum(s["results_shown"] for s in statuses[-1:]),
        "model_switches": len(statuses),
        "errors_shown": statuses[-1]["errors"] if statuses else None,
        "last_error": statuses[-1]["last_error"] if statuses else None,
        "rss_mb_start": round(rss[0][1], 1) if rss else None,
        "rss_mb_after_warmup": round(after[0][1], 1) if after else None,
        "rss_mb_end": round(rss[-1][1], 1) if rss else None,
        "rss_mb_max": round(max(r for _, r in rss), 1) if rss else None,
        "rss_growth_mb_after_warmup": round(after[-1][1] - after[0][1], 1) if after else None,
        "rss_slope_mb_per_h_after_warmup": round(slope_mb_per_h(after), 2) if after else None,
        "rss_floor_growth_mb": round(min(last) - min(first), 1) if first and last else None,
        "rss_timeline_mb": [(round(t), round(r, 1)) for t, r in rss[:: max(1, int(60 / args.sample_s))]],
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 1 if crashes else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=20.0)
    ap.add_argument("--switch-s", type=float, default=10.0, help="seconds between model switches")
    ap.add_argument("--compare-every", type=int, default=3, help="turn Compare on / off every N switches (0: never)")
    ap.add_argument("--warmup-s", type=float, default=120.0, help="RSS growth is counted from here")
    ap.add_argument("--sample-s", type=float, default=5.0, help="RSS sampling period")
    ap.add_argument("--floor-s", type=float, default=180.0, help="window of the floor-growth figure")
    ap.add_argument("--threads", type=int, default=1, help="onnxruntime threads per model")
    ap.add_argument("--models-dir", default=None)
    ap.add_argument("--runs-dir", default=None)
    ap.add_argument("--out", default=None, help="write the JSON report here too")
    ap.add_argument("--trim", action="store_true", help="diagnostic: malloc_trim(0) in the app at every switch")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--child-s", type=float, default=0.0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    return child(args) if args.child else parent(args)


if __name__ == "__main__":
    sys.exit(main())
