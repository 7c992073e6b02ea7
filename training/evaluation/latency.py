"""onnxruntime forward time of several models, measured in interleaved rounds.

On a machine with other work on it (a training run, a browser), load comes and goes over
seconds: timing model A for a minute and then model B for a minute compares two different
machines. Here every model runs a short burst in turn, round after round (the order reversed
every other round, so neither is always first after the other's cache traffic), and the
figures pool all bursts: a load spike hits every model alike. ``python -m training quantize``
judges an int8 model by this, and ``benchmarks/int8_speed.py`` prints it for every pair.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Timing:
    """One model's forward time over all rounds, milliseconds.

    Attributes:
        median_ms / p95_ms / min_ms: over every timed run of every round.
        round_medians_ms: the median of each round's burst, in round order.
        wins: rounds in which this model's burst median was the lowest of all models.
        runs: timed runs in all.
        threads: onnxruntime intra-op threads.
    """

    median_ms: float
    p95_ms: float
    min_ms: float
    round_medians_ms: tuple[float, ...]
    wins: int
    runs: int
    threads: int

    def to_dict(self) -> dict:
        return {"median_ms": round(self.median_ms, 4), "p95_ms": round(self.p95_ms, 4),
                "min_ms": round(self.min_ms, 4), "wins": self.wins, "rounds": len(self.round_medians_ms),
                "runs": self.runs, "threads": self.threads}


def interleaved_latency(models: dict[str, Path], x: np.ndarray, threads: int = 1, rounds: int = 30,
                        runs_per_round: int = 20, warmup: int = 20) -> dict[str, Timing]:
    """Forward time of each model (label -> NAME.onnx with its manifest) on the input ``x``
    (B, 3, S, S) float32, through ``kpdesk.inference.LandmarkModel`` as the app runs it
    (``interleave``).

    Raises:
        ValueError: no model, or a count below 1.
        kpdesk.inference.model.ModelLoadError: a model that does not load.
    """
    from kpdesk.inference.model import LandmarkModel

    if not models:
        raise ValueError("interleaved_latency: no model to time")
    check_counts(rounds, runs_per_round, warmup)
    loaded = {label: LandmarkModel.load(path, threads=threads) for label, path in models.items()}
    return interleave({label: (lambda lm=lm: lm.forward(x)) for label, lm in loaded.items()}, threads=threads,
                      rounds=rounds, runs_per_round=runs_per_round, warmup=warmup)


def check_counts(rounds: int, runs_per_round: int, warmup: int) -> None:
    if rounds < 1 or runs_per_round < 1 or warmup < 0:
        raise ValueError(f"interleaved_latency: rounds ({rounds}) and runs per round ({runs_per_round}) must be "
                         f">= 1, warm-up ({warmup}) >= 0")


def interleave(forwards: dict[str, Callable[[], object]], threads: int, rounds: int = 30, runs_per_round: int = 20,
               warmup: int = 20) -> dict[str, Timing]:
    """Time each ``forwards`` call (label -> a forward pass, ``threads`` recorded with the figures):
    each is warmed up ``warmup`` times, then ``rounds`` rounds run ``runs_per_round`` timed calls
    of each in turn (the order reversed every other round).

    Raises:
        ValueError: nothing to time, or a count below 1.
    """
    if not forwards:
        raise ValueError("interleaved_latency: no model to time")
    check_counts(rounds, runs_per_round, warmup)
    for fwd in forwards.values():
        for _ in range(warmup):
            fwd()
    labels = list(forwards)
    times = {label: np.empty((rounds, runs_per_round)) for label in labels}
    for r in range(rounds):
        for label in (labels if r % 2 == 0 else labels[::-1]):
            fwd, row = forwards[label], times[label][r]
            for i in range(runs_per_round):
                t0 = time.perf_counter()
                fwd()
                row[i] = time.perf_counter() - t0
    per_round = {label: 1000.0 * np.median(t, axis=1) for label, t in times.items()}
    best = np.argmin(np.stack([per_round[label] for label in labels]), axis=0)
    out = {}
    for j, label in enumerate(labels):
        ms = 1000.0 * times[label].ravel()
        out[label] = Timing(median_ms=float(np.median(ms)), p95_ms=float(np.percentile(ms, 95)),
                            min_ms=float(ms.min()), round_medians_ms=tuple(float(v) for v in per_round[label]),
                            wins=int(np.sum(best == j)), runs=ms.size, threads=threads)
    return out
