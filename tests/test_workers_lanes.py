"""Each variant on its own thread (issue 11, item 4): a slow variant does not hold the fast
ones back, agreement is measured on frames both variants processed, inference pauses on
request. Real tiny ONNX models through the real capture and inference threads (pytest-qt)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
from kpdesk.gui.qt_env import prepare_qt_environment  # noqa: E402

prepare_qt_environment()

from fixtures import build_tiny_models  # noqa: E402
from PySide6.QtCore import QObject, Slot  # noqa: E402
from test_workers_session import Collector  # noqa: E402

from kpdesk.inference import sources  # noqa: E402
from kpdesk.inference.pipeline import Pipeline  # noqa: E402
from kpdesk.vision.schema import get_schema  # noqa: E402
from kpdesk.workers.agreement import FrameMatcher  # noqa: E402
from kpdesk.workers.inference import InferenceSettings  # noqa: E402
from kpdesk.workers.messages import VariantSpec  # noqa: E402
from kpdesk.workers.session import LiveSession  # noqa: E402

DETECTOR = "haar"  # cheap to create; BlazeFace is not what these tests are about


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return build_tiny_models(tmp_path_factory.mktemp("models"))


@pytest.fixture()
def session(qtbot) -> LiveSession:  # noqa: ANN001 - pytest-qt fixture
    s = LiveSession(InferenceSettings(threads=1))
    s.start()
    yield s
    s.shutdown()


class Recorded:
    """Which frames each model's pipeline processed. The teacher can be held (``go``
    cleared): its thread then blocks inside ``Pipeline.process``, as in a very slow model call."""

    def __init__(self) -> None:
        self.frames: dict[str, list[int]] = {}
        self.lock = threading.Lock()
        self.go = threading.Event()
        self.go.set()

    def count(self, name: str) -> int:
        with self.lock:
            return len(self.frames.get(name, []))

    def seen(self, name: str) -> set[int]:
        with self.lock:
            return set(self.frames.get(name, []))


@pytest.fixture()
def recorded(monkeypatch: pytest.MonkeyPatch) -> Recorded:
    rec = Recorded()
    real = Pipeline.process

    def process(self: Pipeline, frame_bgr: np.ndarray, frame_index: int = 0, timestamp: float | None = None):  # noqa: ANN202
        if self.model.name == "teacher":
            rec.go.wait(60)
        with rec.lock:
            rec.frames.setdefault(self.model.name, []).append(frame_index)
        return real(self, frame_bgr, frame_index, timestamp)

    monkeypatch.setattr(Pipeline, "process", process)
    yield rec
    rec.go.set()  # never leave a thread blocked


class AgreementCollector(QObject):
    """Takes every result; keeps the newest one and all the pair agreements."""

    def __init__(self, session: LiveSession) -> None:
        super().__init__()
        self.session = session
        self.results = 0
        self.last = None
        self.agreements: list = []
        session.inference.result_available.connect(self._take)

    @Slot()
    def _take(self) -> None:
        r = self.session.inference.take_result()
        if r is not None:
            self.results += 1
            self.last = r
            self.agreements.extend(r.agreements)

    def pairs(self, name: str) -> list:
        return [p for p in self.agreements if p.pair == name]


def _specs(models: dict[str, Path]) -> list[VariantSpec]:
    return [VariantSpec(label, models[name], DETECTOR)
            for label, name in (("A", "teacher"), ("B", "student"), ("C", "student-0.25x"))]


def test_a_stalled_variant_does_not_hold_the_others_back(qtbot, session: LiveSession,  # noqa: ANN001
                                                         models: dict[str, Path], recorded: Recorded) -> None:
    col = AgreementCollector(session)
    session.inference.set_variants(_specs(models))
    session.open_source("demo")
    qtbot.waitUntil(lambda: col.last is not None and len(col.last.variants) == 3, timeout=60000)
    recorded.go.clear()  # the teacher's next model call takes "forever"
    qtbot.waitUntil(lambda: recorded.count("teacher") > 0 and session.inference.lanes[0].mailbox.delivered
                    > recorded.count("teacher"), timeout=30000)
    stalled_at = recorded.count("teacher")
    student0, quarter0 = recorded.count("student"), recorded.count("student-0.25x")
    # Meanwhile the other two keep processing the source's frames.
    qtbot.waitUntil(lambda: recorded.count("student") >= student0 + 10
                    and recorded.count("student-0.25x") >= quarter0 + 10, timeout=60000)
    assert recorded.count("teacher") <= stalled_at + 1  # at most the call it had already begun
    by = {v.spec.label: v for v in col.last.variants}
    assert by["B"].frame.frame_index > by["A"].frame.frame_index  # A's pane shows its own, older frame
    recorded.go.set()
    qtbot.waitUntil(lambda: recorded.count("teacher") > stalled_at + 1, timeout=30000)
    # The teacher took the newest frame, skipping what arrived while it was busy.
    lane_a = session.inference.lanes[0]
    assert lane_a.spec.label == "A" and lane_a.mailbox.dropped >= 5
    frames = sorted(recorded.seen("teacher"))
    assert max(b - a for a, b in zip(frames, frames[1:])) >= 5
    # Each variant carries the frame it processed.
    for v in col.last.variants:
        assert v.frame is not None and v.result is not None and v.result.frame_index == v.frame.frame_index


class SteppedSource(sources.FrameSource):
    """A live source that delivers the demo's next frame only when the test says ``step()``."""

    is_live = True
    name = "stepped"

    def __init__(self) -> None:
        self.demo = sources.DemoSource()
        self.sem = threading.Semaphore(0)
        self.closed = threading.Event()
        self.index = 0

    def step(self) -> int:
        """Let one more frame out; returns its index."""
        self.sem.release()
        return self.index

    def read(self) -> tuple[np.ndarray, float] | None:
        while not self.sem.acquire(timeout=0.05):
            if self.closed.is_set():
                return None
        i, self.index = self.index, self.index + 1
        return self.demo.frame(i), i / 30.0

    def close(self) -> None:
        self.closed.set()


def test_agreement_is_measured_only_on_frames_both_variants_processed(
        qtbot, session: LiveSession, models: dict[str, Path], recorded: Recorded,  # noqa: ANN001
        monkeypatch: pytest.MonkeyPatch) -> None:
    src = SteppedSource()
    monkeypatch.setattr(sources, "open_source", lambda spec: src)
    col = AgreementCollector(session)
    session.inference.set_variants(_specs(models))
    session.open_source("stepped")
    try:
        _step_through(qtbot, src, col, recorded)
    finally:
        src.close()  # lets the capture thread's blocked read return


def _step_through(qtbot, src: SteppedSource, col: AgreementCollector, recorded: Recorded) -> None:  # noqa: ANN001

    def step(wait_for: tuple[str, ...]) -> int:
        k = src.step()
        qtbot.waitUntil(lambda: all(k in recorded.seen(n) for n in wait_for), timeout=60000)
        return k

    everyone = ("teacher", "student", "student-0.25x")
    for _ in range(4):  # all three take every frame
        step(everyone)
    qtbot.waitUntil(lambda: len(col.pairs("A–B")) == 4, timeout=30000)
    recorded.go.clear()  # the teacher's next model call stalls
    stalled = step(("student", "student-0.25x"))
    for _ in range(8):  # meanwhile B and C go on
        last = step(("student", "student-0.25x"))
    qtbot.waitUntil(lambda: len(col.pairs("B–C")) == 13, timeout=30000)
    assert len(col.pairs("A–B")) == 4 and stalled not in recorded.seen("teacher")
    recorded.go.set()  # it finishes the stalled frame, then takes the newest one waiting
    qtbot.waitUntil(lambda: last in recorded.seen("teacher"), timeout=30000)
    for _ in range(2):
        step(everyone)
    teacher, student, quarter = recorded.seen("teacher"), recorded.seen("student"), recorded.seen("student-0.25x")
    assert teacher == set(range(4)) | {stalled, last, last + 1, last + 2}  # skipped what came while stalled
    assert student == quarter == set(range(last + 3))
    shared = (("A–B", teacher, student), ("A–C", teacher, quarter), ("B–C", student, quarter))
    # a model call is recorded as it begins: its result, and so its pairs, may still be on the way
    qtbot.waitUntil(lambda: all(len(col.pairs(name)) >= len(a & b) for name, a, b in shared), timeout=30000)
    qtbot.wait(200)  # a duplicate pair, if any, would arrive with the last results
    for name, a, b in shared:
        pairs = col.pairs(name)
        keys = [p.frame_key[1] for p in pairs]
        assert sorted(keys) == sorted(a & b), name  # every shared frame once, and nothing else
    assert any(p.agreement is not None and p.agreement.mean_pct_iod is not None for p in col.pairs("A–B"))


def test_pause_stops_the_models_and_resume_restarts_them(qtbot, session: LiveSession,  # noqa: ANN001
                                                         models: dict[str, Path]) -> None:
    col = Collector(session)
    session.inference.set_variants([VariantSpec("live", models["student"], DETECTOR)])
    session.open_source("demo")
    qtbot.waitUntil(lambda: len(col.results) > 3, timeout=60000)
    session.inference.set_paused(True)
    assert session.inference.paused
    qtbot.waitUntil(lambda: session.inference.frames_paused > 0, timeout=30000)
    # a frame already with the variant may still come out (slowly on a loaded machine): wait for the stream to settle
    n = -1
    for _ in range(20):
        if len(col.results) == n:
            break
        n = len(col.results)
        qtbot.wait(500)
    paused_before = session.inference.frames_paused
    qtbot.wait(700)
    assert len(col.results) == n, "results kept coming while paused"
    assert session.inference.frames_paused > paused_before  # frames are read and dropped meanwhile
    session.inference.set_paused(False)
    qtbot.waitUntil(lambda: len(col.results) > n + 3, timeout=30000)


def test_tab_switch_keeps_the_running_model_and_its_tracks(qtbot, session: LiveSession,  # noqa: ANN001
                                                           models: dict[str, Path]) -> None:
    col = Collector(session)
    session.inference.set_variants([VariantSpec("live", models["student"], DETECTOR)])
    session.open_source("demo")
    qtbot.waitUntil(lambda: col.last is not None and col.last.primary is not None
                    and col.last.primary.result is not None, timeout=60000)
    lane = session.inference.lanes[0]
    session.inference.set_variants(_specs(models))  # the student becomes variant B, same lane
    qtbot.waitUntil(lambda: col.last is not None and len(col.last.variants) == 3, timeout=60000)
    assert session.inference.lanes[1] is lane and lane.spec.label == "B"
    assert lane.frames_processed > 0
    session.inference.set_variants([VariantSpec("live", models["student"], DETECTOR)])
    qtbot.waitUntil(lambda: len(session.inference.lanes) == 1, timeout=5000)
    assert session.inference.lanes[0] is lane
    qtbot.waitUntil(lambda: col.last is not None and [v.spec.label for v in col.last.variants] == ["live"],
                    timeout=30000)


# ---- the matcher alone (no threads) ----------------------------------------------------
def test_frame_matcher_pairs_only_common_frames_in_label_order() -> None:
    schema = get_schema("ibug68")
    rng = np.random.default_rng(0)
    base = rng.uniform(100, 200, size=(68, 2))
    m = FrameMatcher(keep=4)
    m.set_labels(["A", "B", "C"])
    assert m.add("B", (1, 0), base, schema, 0.0) == []  # nobody else has frame 0 yet
    assert m.add("B", (1, 1), base, schema, 0.1) == []
    out = m.add("A", (1, 1), base + 1.0, schema, 0.2)  # A processed frame 1 too
    assert [(p.pair, p.frame_key) for p in out] == [("A–B", (1, 1))]
    assert out[0].agreement is not None and abs(out[0].agreement.mean_px - np.sqrt(2)) < 1e-9
    assert m.add("A", (2, 1), base, schema, 0.3) == []  # another source's frame 1: no match
    out = m.add("C", (1, 1), None, None, 0.4)  # C found no face on frame 1
    assert sorted(p.pair for p in out) == ["A–C", "B–C"] and all(p.agreement is None for p in out)
    for i in range(2, 8):  # B moves on: frame 1 falls out of its window of 4
        m.add("B", (1, i), base, schema, 1.0)
    assert [p.pair for p in m.add("C", (1, 1), base, schema, 2.0)] == ["A–C"]
    m.set_labels(["A", "C"])  # B stopped
    assert m.add("B", (1, 9), base, schema, 3.0) == []


def test_native_stderr_silencing_nests_across_threads() -> None:
    """Detectors are created on several variant threads at once: however their silenced
    sections interleave, fd 2 is the real stderr again afterwards."""
    from kpdesk.inference.detectors import _native_stderr_silenced

    def ident() -> tuple[int, int]:
        st = os.fstat(2)
        return st.st_dev, st.st_ino

    real = ident()
    null = os.stat(os.devnull)
    inside = threading.Barrier(2)
    first_out = threading.Event()
    seen = []

    def a() -> None:
        with _native_stderr_silenced():
            inside.wait()
        first_out.set()  # A leaves while B is still inside

    def b() -> None:
        with _native_stderr_silenced():
            inside.wait()
            first_out.wait(5)
            seen.append(ident())  # still silenced: A must not have restored stderr under B

    ts = [threading.Thread(target=a), threading.Thread(target=b)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(10)
    assert seen == [(null.st_dev, null.st_ino)]
    assert ident() == real
