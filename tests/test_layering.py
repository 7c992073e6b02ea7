"""Imports point one way only (see ARCHITECTURE.md): checked on the source, every
import statement anywhere in a module (including inside functions)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from fixtures import imports_in

PKG = Path(__file__).resolve().parents[1] / "kpdesk"
STDLIB = set(sys.stdlib_module_names) | {"__future__"}


def _imports(path: Path) -> list[str]:
    """Absolute dotted names of every module imported by ``path`` (a file under kpdesk/)."""
    pkg = ".".join(path.relative_to(PKG.parent).with_suffix("").parts[:-1])
    return imports_in(path.read_text(), pkg)


def _modules(sub: str) -> list[Path]:
    return sorted((PKG / sub).rglob("*.py")) if sub else sorted(PKG.rglob("*.py"))


def _violations(sub: str, bad) -> list[str]:
    out = []
    for path in _modules(sub):
        for name in _imports(path):
            if bad(name):
                out.append(f"{path.relative_to(PKG.parent)} imports {name}")
    return out


def _top(name: str) -> str:
    return name.split(".")[0]


def test_the_packages_exist() -> None:
    assert _modules("vision") and _modules("inference")


def test_vision_uses_only_numpy_cv2_stdlib_and_itself() -> None:
    def bad(name: str) -> bool:
        if _top(name) in STDLIB | {"numpy", "cv2"}:
            return False
        return not (name == "kpdesk.vision" or name.startswith("kpdesk.vision."))

    assert _violations("vision", bad) == []


def test_inference_has_no_qt_torch_or_training() -> None:
    forbidden = {"PySide6", "PySide2", "PyQt5", "PyQt6", "pyqtgraph", "torch", "training"}

    def bad(name: str) -> bool:
        return _top(name) in forbidden or name.startswith(("kpdesk.workers", "kpdesk.gui"))

    assert _violations("inference", bad) == []


def test_workers_have_no_widgets_and_no_torch() -> None:
    if not (PKG / "workers").is_dir():
        pytest.skip("kpdesk/workers not written yet")

    def bad(name: str) -> bool:
        return ("QtWidgets" in name.split(".") or _top(name) in {"torch", "pyqtgraph"}
                or name.startswith("kpdesk.gui"))

    assert _violations("workers", bad) == []


def test_nothing_in_kpdesk_imports_training_or_torch() -> None:
    assert _violations("", lambda name: _top(name) in {"training", "torch"}) == []


def test_import_walker_sees_nested_relative_and_from_imports() -> None:
    src = "import os\ndef f():\n    import torch\n    from ..gui import app\n    from PySide6 import QtWidgets\n"
    names = imports_in(src, "kpdesk.workers")
    assert {"os", "torch", "kpdesk.gui", "kpdesk.gui.app", "PySide6.QtWidgets"} <= set(names)
