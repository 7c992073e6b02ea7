"""How much of the window the video gets, per tab, at a given window size (offscreen).

    python scripts/window_layout.py [--size 1280x720] [--models-dir models]

Opens the app's window on the demo source, waits until every pane shows a frame, and prints
the share of the window's area taken by the video panes (the widgets) and by the images
drawn in them (aspect ratio kept), in the Live tab without and with the head-pose plot, and
in the Compare tab with its three panes; then the window's minimum size.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="1280x720", help="window size WxH")
    ap.add_argument("--models-dir", default=str(REPO / "models"))
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for frames in every pane")
    args = ap.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    sys.path.insert(0, str(REPO))
    from kpdesk.gui.qt_env import prepare_qt_environment

    prepare_qt_environment()
    from PySide6.QtWidgets import QApplication

    from kpdesk.gui.main_window import MainWindow

    app = QApplication.instance() or QApplication([])
    app.setStyle("Fusion")
    w = MainWindow(models_dir=Path(args.models_dir), source="demo", threads=1,
                   runs_dir=Path(args.models_dir).parent / "runs")
    w.resize(width, height)
    w.show()
    w.start()

    def spin(cond, what: str) -> None:  # noqa: ANN001
        end = time.monotonic() + args.timeout
        while not cond():
            if time.monotonic() > end:
                raise SystemExit(f"window_layout: no {what} after {args.timeout:.0f} s")
            app.processEvents()
            time.sleep(0.02)

    def settle(seconds: float = 0.5) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            app.processEvents()
            time.sleep(0.02)

    area = float(w.width() * w.height())

    def share(views: list) -> tuple[float, float]:  # noqa: ANN001
        panes = sum(v.width() * v.height() for v in views)
        images = sum(v.image_rect().width() * v.image_rect().height() for v in views)
        return 100 * panes / area, 100 * images / area

    try:
        spin(lambda: w.live_tab.view.frame is not None, "frame in the Live tab")
        settle()
        print(f"window {w.width()}x{w.height()}")
        for pose in (False, True):
            w.live_tab.cb_pose.setChecked(pose)
            settle()
            p, i = share([w.live_tab.view])
            print(f"live{' + head-pose plot' if pose else ''}: video pane {p:.1f}% of the window, image {i:.1f}%")
        w.live_tab.cb_pose.setChecked(False)
        w.select_tab("compare")
        views = w.compare_tab.views
        spin(lambda: all(v.isVisible() and v.frame is not None for v in views), "frame in every Compare pane")
        settle()
        p, i = share([v for v in views if v.isVisible()])
        print(f"compare ({sum(v.isVisible() for v in views)} panes): panes {p:.1f}% of the window, images {i:.1f}%")
        hint = w.minimumSizeHint()
        print(f"window minimum size: {hint.width()}x{hint.height()}")
    finally:
        w.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
