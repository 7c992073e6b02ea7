"""Per-frame latency of kpdesk's landmark pipeline against MediaPipe's Face Landmarker, in one
run on the same 640 x 480 frames.

    .venv/bin/python benchmarks/pipeline_speed.py [--frames 300] [--repeats 3] [--models NAME ...]
        [--source demo|VIDEO|FOLDER] [--no-mediapipe] [--no-pin] [--cold] [--strict]

Rows: every model in ``models/`` through ``Pipeline.process`` (BlazeFace detector, One-Euro
smoothing on, one face), once tracked (the app's default: the detector runs on the first
frame and every 30th, landmarks carry the face in between; the row's figures are over the
tracked frames) and once with the detector on every frame; then the MediaPipe reference
(Face Landmarker from the bundle in the asset cache, one face) in IMAGE mode (its detector
every frame) and VIDEO mode (its own tracking), through ``kpdesk.inference.reference.
ReferencePipeline``, the code the app runs for ``mediapipe``. Each timed call starts from a
BGR frame that was just copied into the input buffer, as a capture would have just written
it (``--cold``: straight from the pre-decoded frames, which are far larger than the CPU
caches); MediaPipe's time includes the BGR -> RGB conversion and ``mp.Image`` it needs and
turning its landmarks into pixel arrays. The runners take turns, one pass over all frames
each, ``--repeats`` times, so load changes hit them alike. Every kpdesk row carries its
ratio to MediaPipe (median MediaPipe ms / median kpdesk ms: how many times faster).

Threads: onnxruntime and OpenCV get 1 thread, and the process is pinned to one CPU core
(``--no-pin`` to lift that): MediaPipe's own thread count cannot be set from Python, the
pin keeps it to one core too.

The speed targets of issue 11 are checked at the end (``--strict``: exit 1 if one is missed).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

os.environ.setdefault("GLOG_minloglevel", "2")  # MediaPipe's native start-up chatter
REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

FRAME_SIZE = (640, 480)
# (model name, mode) -> the most milliseconds its median frame may take.
TARGETS = {("student-0.25x", "tracked"): 1.0}


@dataclass
class Row:
    label: str
    mode: str
    times_ms: list[float] = field(default_factory=list)
    stages: list[tuple[float, float, float, float]] = field(default_factory=list)
    found: int = 0
    frames: int = 0

    def median(self) -> float:
        return float(np.median(self.times_ms)) if self.times_ms else float("nan")

    def p95(self) -> float:
        return float(np.percentile(self.times_ms, 95)) if self.times_ms else float("nan")


def load_frames(source: str, n: int) -> list[np.ndarray]:
    """``n`` BGR frames of 640 x 480 from ``source`` (``demo``, a video or an image folder)."""
    from kpdesk.inference.sources import open_source

    frames: list[np.ndarray] = []
    with open_source(source) as src:
        for frame, _ts in src:
            if frame.shape[1::-1] != FRAME_SIZE:
                frame = cv2.resize(frame, FRAME_SIZE, interpolation=cv2.INTER_AREA)
            frames.append(np.ascontiguousarray(frame))
            if len(frames) >= n:
                break
    if not frames:
        raise SystemExit(f"{source}: no frames")
    return frames


class KpdeskRunner:
    """One shipped model through the app's pipeline."""

    def __init__(self, onnx_path: Path, mode: str, detector_kind: str, threads: int) -> None:
        from kpdesk.inference.detectors import create_detector
        from kpdesk.inference.model import LandmarkModel
        from kpdesk.inference.pipeline import Pipeline, PipelineConfig

        self.model = LandmarkModel.load(onnx_path, threads=threads)
        self.detector = create_detector(detector_kind)
        every = 1 if mode == "detect every frame" else 30
        self.pipeline = Pipeline(self.model, self.detector, PipelineConfig(max_faces=1, redetect_every=every))
        self.row = Row(self.model.name, mode)
        self.tracked_only = mode == "tracked"

    def start_pass(self) -> None:
        self.pipeline.reset()

    def run(self, frame: np.ndarray, i: int, timed: bool) -> None:
        t0 = time.perf_counter()
        res = self.pipeline.process(frame, i, i / 30.0)
        dt = (time.perf_counter() - t0) * 1000.0
        if not timed or (self.tracked_only and res.extras.get("detected")):
            return
        t = res.timings
        self.row.times_ms.append(dt)
        self.row.stages.append((t.detect, t.preprocess, t.inference, t.decode))
        self.row.frames += 1
        self.row.found += bool(res.faces)

    def close(self) -> None:
        self.detector.close()


class MediaPipeRunner:
    """The MediaPipe reference (Face Landmarker, 478 points, its own detector) as the app runs
    it: ``ReferencePipeline`` on the cached ``face_landmarker.task``."""

    def __init__(self, mode: str) -> None:
        from kpdesk.inference.pipeline import PipelineConfig
        from kpdesk.inference.reference import ReferenceModel

        self.model = ReferenceModel.load()
        self.config = PipelineConfig(max_faces=1)
        self.video = mode == "VIDEO"
        self.row = Row("mediapipe (reference)", mode)
        self.pipeline = None

    def start_pass(self) -> None:
        from kpdesk.inference.reference import ReferencePipeline

        self.close()  # VIDEO mode: a fresh task per pass, its timestamps start again
        self.pipeline = ReferencePipeline(self.model, self.config, video=self.video)

    def run(self, frame: np.ndarray, i: int, timed: bool) -> None:
        t0 = time.perf_counter()
        res = self.pipeline.process(frame, i, i / 30.0)
        dt = (time.perf_counter() - t0) * 1000.0
        if timed:
            t = res.timings
            self.row.times_ms.append(dt)
            self.row.stages.append((t.detect, t.preprocess, t.inference, t.decode))
            self.row.frames += 1
            self.row.found += bool(res.faces)

    def close(self) -> None:
        pipeline, self.pipeline = self.pipeline, None
        if pipeline is not None:
            pipeline.close()


def fmt(v: float) -> str:
    return "–" if not np.isfinite(v) else (f"{v:.2f}" if v < 10 else f"{v:.1f}")


def print_table(rows: list[Row], reference: Row | None) -> None:
    ref = reference.median() if reference is not None else float("nan")
    ref_name = f"mediapipe {reference.mode}" if reference is not None else "–"
    print(f"| pipeline | mode | median ms | p95 ms | detect | preprocess | inference | decode | faces found "
          f"| × faster than {ref_name} |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        st = np.median(np.array(r.stages), axis=0) if r.stages else [float("nan")] * 4
        found = f"{100.0 * r.found / r.frames:.0f}% of {r.frames}" if r.frames else "–"
        ratio = ref / r.median() if np.isfinite(ref) and r.median() > 0 else float("nan")
        print(f"| {r.label} | {r.mode} | {fmt(r.median())} | {fmt(r.p95())} | {fmt(st[0])} | {fmt(st[1])} | "
              f"{fmt(st[2])} | {fmt(st[3])} | {found} | {fmt(ratio)} |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=300, help="distinct frames (default 300 = 10 s of the demo)")
    ap.add_argument("--repeats", type=int, default=3, help="passes over the frames per runner")
    ap.add_argument("--models", nargs="*", help="model names (default: every model in models/)")
    ap.add_argument("--models-dir", type=Path, default=REPO / "models")
    ap.add_argument("--source", default="demo", help="demo, a video file or an image folder")
    ap.add_argument("--detector", default="auto", help="kpdesk's face detector (auto, blazeface, haar)")
    ap.add_argument("--threads", type=int, default=1, help="onnxruntime / OpenCV threads")
    ap.add_argument("--no-mediapipe", action="store_true")
    ap.add_argument("--no-pin", action="store_true", help="do not pin the process to one CPU core")
    ap.add_argument("--cold", action="store_true", help="time frames straight from memory, not freshly copied")
    ap.add_argument("--strict", action="store_true", help="exit 1 when a speed target is missed")
    a = ap.parse_args(argv)

    import onnxruntime

    from kpdesk.inference.catalog import scan_models

    if not a.no_pin and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {max(os.sched_getaffinity(0))})
    cv2.setNumThreads(a.threads)
    frames = load_frames(a.source, a.frames)
    entries = [e for e in scan_models(a.models_dir) if e.ok]  # every model there: shipped, trained, imported
    if a.models:
        entries = [e for e in entries if e.name in a.models]
    runners: list = []
    for e in sorted(entries, key=lambda e: e.name):
        for mode in ("tracked", "detect every frame"):
            runners.append(KpdeskRunner(e.onnx_path, mode, a.detector, a.threads))
    mp_runners: list[MediaPipeRunner] = []
    if not a.no_mediapipe:
        mp_runners = [MediaPipeRunner("IMAGE"), MediaPipeRunner("VIDEO")]
    everyone = [*runners, *mp_runners]
    if not everyone:
        print("nothing to run", file=sys.stderr)
        return 2

    load0 = os.getloadavg()
    pinned = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else "?"
    print(f"# {len(frames)} frames {FRAME_SIZE[0]}x{FRAME_SIZE[1]} from {a.source} ({'cold' if a.cold else 'fresh'}), "
          f"{a.repeats} passes each; "
          f"{a.threads} onnxruntime/OpenCV thread(s); CPU cores {pinned}; kpdesk detector "
          f"{runners[0].detector.name if runners else '–'}")
    print(f"# {platform.processor() or platform.machine()}, python {platform.python_version()}, onnxruntime "
          f"{onnxruntime.__version__}, opencv {cv2.__version__}"
          + (f", mediapipe {__import__('mediapipe').__version__}" if mp_runners else ""))
    t_start = time.monotonic()
    buf = np.empty_like(frames[0])
    warmup = min(5, len(frames) - 1)
    try:
        for rep in range(a.repeats):
            for r in everyone:
                r.start_pass()
                run: Callable[[np.ndarray, int, bool], None] = r.run
                for i, f in enumerate(frames):
                    if not a.cold:
                        np.copyto(buf, f)  # fresh input, as a capture thread would hand it over
                    run(f if a.cold else buf, i, rep > 0 or i >= warmup)
    finally:
        for r in everyone:
            r.close()
    load1 = os.getloadavg()
    print(f"# load average {load0[0]:.2f} at the start, {load1[0]:.2f} at the end; "
          f"wall {time.monotonic() - t_start:.0f} s; stage columns are medians in ms\n")

    rows = [r.row for r in everyone]
    video = next((r.row for r in mp_runners if r.row.mode == "VIDEO"), None)
    print_table(rows, video)
    if mp_runners:
        image = next(r.row for r in mp_runners if r.row.mode == "IMAGE")
        print("\nratios (median mediapipe / median kpdesk: how many times faster; same frames, same run):")
        for r in (x.row for x in runners):
            print(f"  {r.label:>14} {r.mode:<18}  {image.median() / r.median():6.1f}x vs IMAGE, "
                  f"{video.median() / r.median():6.1f}x vs VIDEO")

    missed = 0
    print("\ntargets:")
    for (name, mode), limit in TARGETS.items():
        row = next((r for r in rows if r.label == name and r.mode == mode), None)
        if row is None:
            print(f"  {name} {mode} <= {limit} ms: not measured")
            continue
        ok = row.median() <= limit
        missed += not ok
        print(f"  {name} {mode} <= {limit} ms: {'met' if ok else 'MISSED'} ({row.median():.2f} ms)")
    return 1 if a.strict and missed else 0


if __name__ == "__main__":
    sys.exit(main())
