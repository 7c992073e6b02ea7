"""Bounded time series and rate meters for the performance views (Qt-free)."""

from __future__ import annotations

import time
from collections import deque

import numpy as np


class RollingSeries:
    """(t, value) samples from the last ``window_s`` seconds, at most ``max_len`` of them."""

    def __init__(self, window_s: float = 30.0, max_len: int = 4000) -> None:
        self.window_s = window_s
        self._t: deque[float] = deque(maxlen=max_len)
        self._v: deque[float] = deque(maxlen=max_len)

    def append(self, t: float, value: float) -> None:
        self._t.append(t)
        self._v.append(float(value))
        self._trim(t)

    def _trim(self, now: float) -> None:
        lo = now - self.window_s
        while self._t and self._t[0] < lo:
            self._t.popleft()
            self._v.popleft()

    def arrays(self, now: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Times relative to ``now`` (seconds, <= 0) and values, oldest first."""
        if now is None:
            now = time.monotonic()
        self._trim(now)
        t = np.fromiter(self._t, dtype=np.float64, count=len(self._t)) - now
        v = np.fromiter(self._v, dtype=np.float64, count=len(self._v))
        return t, v

    def binned(self, now: float | None = None, bin_s: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
        """Means over consecutive ``bin_s`` windows (bin centres relative to ``now``, means):
        a readable curve when there are far more samples than pixels."""
        t, v = self.arrays(now)
        if len(t) == 0:
            return t, v
        t = np.minimum(t, 0.0)  # a sample stamped a hair after "now" belongs to the last window
        idx = np.ceil(t / bin_s).astype(np.int64)  # windows (-bin_s, 0], (-2 bin_s, -bin_s], ...
        keys, inverse = np.unique(idx, return_inverse=True)
        sums = np.bincount(inverse, weights=v)
        counts = np.bincount(inverse)
        return (keys - 0.5) * bin_s, sums / counts

    def last(self, default: float = float("nan")) -> float:
        return self._v[-1] if self._v else default

    def mean(self, default: float = float("nan")) -> float:
        return float(np.mean(self._v)) if self._v else default

    def clear(self) -> None:
        self._t.clear()
        self._v.clear()

    def __len__(self) -> int:
        return len(self._t)


class RateMeter:
    """Events per second over a sliding window of recent event times."""

    def __init__(self, window_s: float = 2.0, max_len: int = 512) -> None:
        self.window_s = window_s
        self._times: deque[float] = deque(maxlen=max_len)

    def tick(self, t: float | None = None) -> None:
        self._times.append(time.monotonic() if t is None else t)

    def rate(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        while self._times and self._times[0] < now - self.window_s:
            self._times.popleft()
        n = len(self._times)
        if n < 2:
            return 0.0
        span = max(now - self._times[0], self._times[-1] - self._times[0])
        return (n - 1) / span if span > 0 else 0.0

    def reset(self) -> None:
        self._times.clear()


STAGE_NAMES = ("detect", "preprocess", "inference", "decode", "total")


class VariantHistory:
    """Per-stage latency (ms) and frame rate of one variant over the last ``window_s``."""

    def __init__(self, window_s: float = 30.0) -> None:
        self.stages = {name: RollingSeries(window_s) for name in STAGE_NAMES}
        self.fps = RollingSeries(window_s)
        self.faces = RollingSeries(window_s)


class PerfHistory:
    """Everything the performance and compare views plot, fed once per displayed result.

    ``fps`` is the inference thread's processed-frame rate; each variant also keeps its
    own latency series (the variants of one frame run one after another).

    A rate meter's first readings come from a handful of frame intervals (a 0 for the very
    first frame, then whatever the first few frames after a model's warm-up happened to
    take): ``fps`` leaves out the first ``settle_s`` seconds after a start (the first result,
    or ``restart_rate()``: a new source, a resume), so its curve does not begin with a spike.
    """

    def __init__(self, window_s: float = 30.0, settle_s: float = 1.0) -> None:
        self.window_s = window_s
        self.settle_s = settle_s
        self.fps = RollingSeries(window_s)
        self._rate_since: float | None = None
        self.variants: dict[str, VariantHistory] = {}
        self.capture_dropped = 0
        self.display_dropped = 0
        self.ort_threads = 0
        self.frames = 0

    def variant(self, label: str) -> VariantHistory:
        if label not in self.variants:
            self.variants[label] = VariantHistory(self.window_s)
        return self.variants[label]

    def add(self, t: float, fps: float, capture_dropped: int, display_dropped: int) -> None:
        if self._rate_since is None:
            self._rate_since = t
        if t - self._rate_since >= self.settle_s and fps > 0:
            self.fps.append(t, fps)
        self.capture_dropped = capture_dropped
        self.display_dropped = display_dropped
        self.frames += 1

    def add_variant(self, t: float, label: str, timings: dict[str, float], n_faces: int) -> None:
        h = self.variant(label)
        for name in STAGE_NAMES:
            h.stages[name].append(t, timings.get(name, 0.0))
        total = timings.get("total", 0.0)
        h.fps.append(t, 1000.0 / total if total > 0 else 0.0)
        h.faces.append(t, n_faces)

    def restart_rate(self) -> None:
        """Frames start (again) from a standstill: the next ``settle_s`` of rates are not plotted."""
        self._rate_since = None

    def clear(self) -> None:
        self.fps.clear()
        self.variants.clear()
        self.frames = 0
        self._rate_since = None
