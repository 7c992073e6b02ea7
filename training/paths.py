"""Where things are: the repository root and the data folder (env ``KPDESK_DATA``, else
``<repo>/../shared/data``). Imports nothing from training, so every sub-package may use it."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
CONFIGS_DIR = REPO_ROOT / "training" / "configs"


def default_data_dir() -> Path:
    env = os.environ.get("KPDESK_DATA")
    return Path(env).expanduser() if env else (REPO_ROOT.parent / "shared" / "data")
