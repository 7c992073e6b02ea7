"""``kpdesk`` desktop app entry point.

    python -m kpdesk.gui.app [--source demo|0|VIDEO|FOLDER|IMAGE] [--model NAME] [--models-dir DIR]
                             [--tab live|performance|compare|training|robustness]
                             [--compare-models A,B[,C]] [--lab-folder DIR --lab-models A,B,C --lab-sweep KIND]
                             [--screenshot PATH --quit-after SECONDS]

With no camera it plays the built-in demo face. ``--screenshot`` grabs the window just
before ``--quit-after`` ends the app (for docs and CI).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from kpdesk.gui.qt_env import prepare_qt_environment

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="kpdesk", description="Real-time facial landmarks.")
    ap.add_argument("--source", default="auto",
                    help="camera index, video file, image, image folder, 'demo', or 'auto' (first camera, else demo)")
    ap.add_argument("--model", default=None, help="model name in the models folder, or a .onnx path, or "
                                                  "'mediapipe' (the MediaPipe reference)")
    ap.add_argument("--models-dir", default=None, help="models folder (default: $KPDESK_MODELS or <repo>/models)")
    ap.add_argument("--runs-dir", default=None, help="folder for training runs (default: <repo>/runs)")
    ap.add_argument("--detector", default="auto", help="face detector: auto, blazeface, haar")
    ap.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (0: auto)")
    ap.add_argument("--tab", choices=("live", "performance", "compare", "training", "robustness"), default="live")
    ap.add_argument("--overlays", default="",
                    help="comma list to turn on: indices,skeleton,heatmap,box,keypoints,pose (prefix '-' to turn off)")
    ap.add_argument("--occlusion", default="", help="occlusion preset to start with, e.g. 'sunglasses band'")
    ap.add_argument("--lab-folder", default=None, help="robustness lab: labelled folder to start with")
    ap.add_argument("--lab-models", default="", help="robustness lab: comma list of 1-4 model names to compare "
                                                     "('mediapipe': the MediaPipe reference)")
    ap.add_argument("--compare-models", default="",
                    help="Compare tab: comma list of 2-3 model names for slots A, B, C ('mediapipe': the reference)")
    ap.add_argument("--lab-sweep", default=None, choices=("occlusion", "rotation", "blur", "lowlight"),
                    help="robustness lab: run this sweep as soon as the models are scanned")
    ap.add_argument("--watch-run", default=None, help="show the curves of this training run folder (events.jsonl)")
    ap.add_argument("--record", default=None, help="record the landmarks to this .jsonl / .csv file from the start")
    ap.add_argument("--screenshot", default=None, help="save a PNG of the window before quitting")
    ap.add_argument("--quit-after", type=float, default=None, help="quit after this many seconds")
    ap.add_argument("--size", default="1500x920", help="window size WxH")
    ap.add_argument("-v", "--verbose", action="store_true")
    return ap


def _apply_overlays(window: object, spec: str) -> None:
    from kpdesk.gui.main_window import MainWindow

    assert isinstance(window, MainWindow)
    boxes = {"indices": window.live_tab.cb_indices, "skeleton": window.live_tab.cb_skeleton,
             "heatmap": window.live_tab.cb_heatmap, "box": window.live_tab.cb_box,
             "keypoints": window.live_tab.cb_points, "pose": window.live_tab.cb_pose}
    for item in filter(None, (s.strip() for s in spec.split(","))):
        on = not item.startswith("-")
        name = item.lstrip("-+")
        if name not in boxes:
            raise SystemExit(f"kpdesk: unknown overlay {name!r}; known: {', '.join(boxes)}")
        boxes[name].setChecked(on)


def _prepare_lab(window: object, args: argparse.Namespace) -> None:
    """Robustness lab options: folder, models, and a sweep started once the catalog is in."""
    from kpdesk.gui.main_window import MainWindow

    assert isinstance(window, MainWindow)
    lab = window.robustness_tab
    if args.lab_folder:
        lab.set_folder(str(Path(args.lab_folder).expanduser()))
    names = [n.strip() for n in args.lab_models.split(",") if n.strip()]
    from kpdesk.workers.robustness import MAX_VARIANTS

    if len(names) > MAX_VARIANTS:
        raise SystemExit(f"kpdesk: --lab-models takes at most {MAX_VARIANTS} models")
    if args.lab_sweep:
        lab.set_kind(args.lab_sweep)
    if not names and not args.lab_sweep:
        return
    state = {"done": False}

    def on_catalog() -> None:
        if state["done"] or not lab.catalog:
            return
        state["done"] = True
        if names:
            known = {e.name for e in lab.catalog if e.ok}
            missing = [n for n in names if n not in known]
            if missing:
                window.show_message(f"--lab-models: no usable model {', '.join(missing)}", "error")
            lab.set_variants([n for n in names if n in known])
        if args.lab_sweep:
            lab.start()

    lab.catalog_changed.connect(on_catalog)


def _prepare_compare(window: object, spec: str) -> None:
    """``--compare-models``: the Compare slots, set once the catalog is in."""
    from kpdesk.gui.compare_tab import SLOT_LABELS
    from kpdesk.gui.main_window import MainWindow

    assert isinstance(window, MainWindow)
    names = [n.strip() for n in spec.split(",") if n.strip()]
    if not names:
        return
    if not 2 <= len(names) <= len(SLOT_LABELS):
        raise SystemExit(f"kpdesk: --compare-models takes 2 to {len(SLOT_LABELS)} models, got {len(names)}")
    tab = window.compare_tab
    state = {"done": False}

    def on_catalog() -> None:
        if state["done"] or not tab.catalog:
            return
        state["done"] = True
        missing = tab.set_models(names)
        if missing:
            window.show_message(f"--compare-models: no usable model {', '.join(missing)}", "error")

    tab.variants_changed.connect(on_catalog)
    on_catalog()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    prepare_qt_environment()
    from PySide6.QtCore import QEventLoop, QTimer
    from PySide6.QtWidgets import QApplication

    from kpdesk.gui.main_window import MainWindow
    from kpdesk.gui.saving import save_widget_png
    from kpdesk.inference.catalog import default_models_dir
    from kpdesk.vision.files import OutputError, output_error

    failed: list[str] = []  # outputs that could not be written: exit status 1
    existing = QApplication.instance()
    app = existing or QApplication(sys.argv[:1])
    app.setApplicationName("kpdesk")
    app.setStyle("Fusion")
    _dark_palette(app)
    models_dir = Path(args.models_dir).expanduser() if args.models_dir else default_models_dir()
    model = args.model  # a path outside the models folder is listed beside it (MainWindow._extra_models)
    window = MainWindow(models_dir=models_dir, source=args.source, model=model, detector=args.detector,
                        threads=args.threads, runs_dir=Path(args.runs_dir) if args.runs_dir else None)
    stop = _close_on_signals(window)
    try:
        w, h = (int(v) for v in args.size.lower().split("x"))
        window.resize(w, h)
    except ValueError:
        raise SystemExit(f"kpdesk: --size must be WxH, got {args.size!r}") from None
    _apply_overlays(window, args.overlays)
    _prepare_compare(window, args.compare_models)
    if args.occlusion:
        i = window.live_tab.occ_combo.findData(args.occlusion)
        if i < 0:
            raise SystemExit(f"kpdesk: unknown occlusion preset {args.occlusion!r}")
        window.live_tab.occ_combo.setCurrentIndex(i)
    if args.watch_run:
        window.training_tab.watch_run(Path(args.watch_run))
    _prepare_lab(window, args)
    window.select_tab(args.tab)
    window.show()
    window.start()
    if args.record and not window.start_recording(args.record):
        window.shutdown()
        stop.restore()
        raise SystemExit(f"kpdesk: cannot record to {args.record}")
    if args.quit_after is not None:
        def finish() -> None:
            if args.screenshot:
                window.perf_tab.refresh()
                window.compare_tab.refresh()
                path = Path(args.screenshot)
                try:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    save_widget_png(window, path)
                except OSError as exc:  # OutputError is one line naming the file and why
                    failed.append(str(exc) if isinstance(exc, OutputError) else str(output_error(path, exc)))
                    print(f"kpdesk: error: {failed[-1]}", file=sys.stderr)
                else:
                    log.info("screenshot saved to %s", path)
            window.close()

        QTimer.singleShot(int(args.quit_after * 1000), finish)
    if existing is None:
        rc = app.exec()  # ends when the last window closes
    else:
        # Someone else owns the application (tests, an embedding host): run a local loop
        # instead of app.exec()/quit(), which would leave their application quitting.
        loop = QEventLoop()
        window.closed.connect(loop.quit)
        rc = loop.exec()
    window.shutdown()
    stop.restore()
    if stop.signum is not None:
        return 128 + stop.signum  # 130 after Ctrl+C, 143 after SIGTERM, as shells report them
    return int(rc) or (1 if failed else 0)


class _SignalClose:
    """SIGINT (Ctrl+C in the terminal) and SIGTERM close the window like its close button:
    threads stop, a recording is flushed and closed. Python runs signal handlers only
    between bytecodes, and Qt's event loop is C++: a timer lets Python run every 200 ms.
    A second signal while closing exits at once."""

    def __init__(self, window: object) -> None:
        from PySide6.QtCore import QTimer

        self.window = window
        self.signum: int | None = None
        self._old: dict[int, object] = {}
        self._timer = QTimer(interval=200)
        self._timer.timeout.connect(lambda: None)
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
            self._timer.start()

    def _handle(self, signum: int, _frame: object) -> None:
        from PySide6.QtCore import QTimer

        if self.signum is not None:  # the second one: do not wait for the clean close
            os._exit(128 + signum)
        self.signum = signum
        log.warning("%s: closing", signal.Signals(signum).name)
        QTimer.singleShot(0, self.window.close)  # type: ignore[attr-defined]

    def restore(self) -> None:
        self._timer.stop()
        for sig, old in self._old.items():
            signal.signal(sig, old)  # type: ignore[arg-type]
        self._old.clear()


def _close_on_signals(window: object) -> _SignalClose:
    return _SignalClose(window)


def _dark_palette(app: object) -> None:
    from PySide6.QtGui import QColor, QPalette
    from PySide6.QtWidgets import QApplication

    assert isinstance(app, QApplication)
    p = QPalette()
    base, text = QColor(30, 33, 38), QColor(225, 228, 232)
    p.setColor(QPalette.ColorRole.Window, QColor(38, 41, 47))
    p.setColor(QPalette.ColorRole.WindowText, text)
    p.setColor(QPalette.ColorRole.Base, base)
    p.setColor(QPalette.ColorRole.AlternateBase, QColor(44, 48, 54))
    p.setColor(QPalette.ColorRole.Text, text)
    p.setColor(QPalette.ColorRole.Button, QColor(50, 54, 61))
    p.setColor(QPalette.ColorRole.ButtonText, text)
    p.setColor(QPalette.ColorRole.Highlight, QColor(45, 120, 190))
    p.setColor(QPalette.ColorRole.HighlightedText, QColor(255, 255, 255))
    p.setColor(QPalette.ColorRole.ToolTipBase, base)
    p.setColor(QPalette.ColorRole.ToolTipText, text)
    p.setColor(QPalette.ColorRole.PlaceholderText, QColor(130, 136, 144))
    p.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Text, QColor(110, 114, 120))
    p.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.ButtonText, QColor(110, 114, 120))
    app.setPalette(p)


if __name__ == "__main__":
    sys.exit(main())
