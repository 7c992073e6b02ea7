"""``python -m kpdesk``: start the desktop app."""

from __future__ import annotations

import sys


def main() -> int:
    try:
        from kpdesk.gui.app import main as gui_main
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("kpdesk.gui"):
            print(f"kpdesk: the desktop app is not available ({exc}); try `kpdesk detect demo`", file=sys.stderr)
            return 2
        raise
    return int(gui_main() or 0)


if __name__ == "__main__":
    sys.exit(main())
