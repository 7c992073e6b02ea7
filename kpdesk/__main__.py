"""``python -m kpdesk`` (``make run``): start the desktop app, or, where no window can open,
say why in one line and run the headless demo instead."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

DEMO_FRAMES = 300


def headless_demo(frames: int | None = None, out: Path | None = None) -> int:
    """``kpdesk detect demo``: the synthetic face through the default model, annotated video
    written to ``out`` (default: kpdesk-demo.mp4 in the temp folder), timings printed."""
    from kpdesk.cli import main as cli_main

    n = frames or int(os.environ.get("KPDESK_DEMO_FRAMES", DEMO_FRAMES))
    out = out or Path(tempfile.gettempdir()) / "kpdesk-demo.mp4"
    return cli_main(["detect", "demo", "--max-frames", str(n), "--out", str(out), "--pose"])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not {"-h", "--help"} & set(argv):
        from kpdesk.gui.display import display_problem, qt_library_message, qt_library_problem, uses_xcb

        problem = display_problem()
        if problem:
            print(f"kpdesk: {problem}: running the headless demo instead (`kpdesk detect demo`).", flush=True)
            return headless_demo()
        if uses_xcb():
            libs, packages = qt_library_problem()
            if libs:
                print(f"kpdesk: {qt_library_message(libs, packages)}. Running the headless demo instead.",
                      flush=True)
                rc = headless_demo()
                print(f"kpdesk: to open the window, install: sudo apt-get install -y {' '.join(packages)}")
                return rc
    try:
        from kpdesk.gui.app import main as gui_main
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("kpdesk.gui"):
            print(f"kpdesk: the desktop app is not available ({exc}); try `kpdesk detect demo`", file=sys.stderr)
            return 2
        raise
    return int(gui_main(argv) or 0)


if __name__ == "__main__":
    sys.exit(main())
