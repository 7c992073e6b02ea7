"""Shared test set-up: repository paths, the ``data`` marker's skip, and the fixtures several
test files use (tiny ONNX models, signal handlers off, one torch thread). Shared helpers
that are plain functions are in tests/fixtures.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def data_root() -> Path:
    """The face data packs: ``$KPDESK_DATA`` or ``../shared/data`` beside the repository."""
    env = os.environ.get("KPDESK_DATA")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data"


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("data") and not data_root().is_dir():
        pytest.skip(f"needs the face data packs at {data_root()} (set KPDESK_DATA); not present here")


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``tiny.onnx`` + ``tiny.json``: an untrained 68-point regression + heatmap network,
    64 px input, 16 px heatmaps, decode ``fusion`` (see tests/fixtures.py)."""
    from fixtures import export_tiny

    return export_tiny(tmp_path_factory.mktemp("models"), "tiny")


@pytest.fixture(scope="session")
def astronaut_bgr():
    """scikit-image's astronaut photo (512 x 512), BGR; face centre near (224, 132)."""
    import numpy as np
    import skimage.data

    return np.ascontiguousarray(skimage.data.astronaut()[..., ::-1])


@pytest.fixture()
def no_signal_handlers(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process ``training.cli.main`` would install SIGINT/SIGTERM handlers in pytest."""
    monkeypatch.setattr("training.cli.CancelFlag.listen", lambda self: None)


@pytest.fixture(scope="session")
def built_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with ``teacher``, ``student`` and ``student-0.25x`` (tiny ONNX models, see
    tests/fixtures.py ``build_tiny_models``). Shared: copy it before changing anything in it."""
    from fixtures import build_tiny_models

    return next(iter(build_tiny_models(tmp_path_factory.mktemp("built")).values())).parent


@pytest.fixture(scope="module")
def torch_one_thread():
    """One torch intra-op thread for a module of tiny training tests (extra threads only
    contend); restored afterwards. torch is imported here, not at collection."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _refuses_files(folder: Path) -> bool:
    probe = folder / ".kpdesk-write-probe"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT, 0o666)
    except OSError:
        return True
    os.close(fd)
    probe.unlink()
    return False


@pytest.fixture
def unwritable_dir(tmp_path: Path):
    """A folder in which creating a file really fails. A ``chmod 555`` folder does for a
    normal user; root ignores permission bits, so for root it is ``/sys`` (sysfs refuses
    new files to everyone); elsewhere the test is skipped, with the reason."""
    d = tmp_path / "read-only"
    d.mkdir()
    d.chmod(0o555)
    try:
        if _refuses_files(d):
            yield d
        elif _refuses_files(Path("/sys")):
            yield Path("/sys")
        else:
            pytest.skip("running as root and no folder here refuses new files (a chmod 555 folder does not stop root)")
    finally:
        d.chmod(0o755)
