"""The MediaPipe reference as a variant of the live session (issue 15, item 1): it runs on a
lane of its own beside a kpdesk model, its results carry the 478-point mesh and timings, and
Compare's agreement with the kpdesk model is measured through its 68-point view. Needs the
Face Landmarker bundle in the asset cache (skips without it)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
from kpdesk.gui.qt_env import prepare_qt_environment  # noqa: E402

prepare_qt_environment()

from test_workers_lanes import AgreementCollector  # noqa: E402

from kpdesk.inference import reference  # noqa: E402
from kpdesk.workers.inference import InferenceSettings  # noqa: E402
from kpdesk.workers.messages import VariantSpec  # noqa: E402
from kpdesk.workers.session import LiveSession  # noqa: E402

pytestmark = pytest.mark.skipif(not reference.available(),
                                reason="MediaPipe Face Landmarker bundle not cached (python -m kpdesk.assets fetch)")


def test_reference_lane_beside_a_model_is_compared_through_its_view(qtbot, tiny_model_path: Path) -> None:  # noqa: ANN001
    session = LiveSession(InferenceSettings(threads=1))
    session.start()
    try:
        col = AgreementCollector(session)
        session.inference.set_variants([VariantSpec("A", tiny_model_path, "haar"),
                                        VariantSpec("B", reference.task_path())])
        session.open_source("demo")

        def mesh_seen() -> bool:
            last = col.last
            if last is None or len(last.variants) != 2:
                return False
            b = last.variants[1]
            return b.result is not None and bool(b.result.faces) and b.result.faces[0].pts_img.shape == (478, 2)

        qtbot.waitUntil(mesh_seen, timeout=60000)
        qtbot.waitUntil(lambda: any(p.agreement is not None for p in col.pairs("A–B")), timeout=60000)
        b = col.last.variants[1]
        assert b.model_name == "mediapipe" and b.schema.num_points == 478
        assert b.result.detector_name.startswith("mediapipe") and b.result.timings.inference > 0
        ag = next(p.agreement for p in col.pairs("A–B") if p.agreement is not None)
        assert ag.num_points == 68 and ag.mean_pct_iod is not None
    finally:
        session.shutdown()
