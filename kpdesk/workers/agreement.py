"""How far apart two variants' landmarks are on the same frame (Qt-free)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kpdesk.vision.mesh68 import MESH_SCHEMA_NAME, default_view
from kpdesk.vision.schema import KeypointSchema, get_schema

# iBUG-68 -> the 5 MTFL points (eye centres, nose tip, mouth corners).
_IBUG68_TO_5 = ((36, 37, 38, 39, 40, 41), (42, 43, 44, 45, 46, 47), (30,), (48,), (54,))


@dataclass(frozen=True)
class Agreement:
    """Mean point-to-point distance between two predictions of the same face.

    Attributes:
        mean_px: in image pixels.
        mean_pct_iod: in percent of the inter-ocular distance, or None when the points
            have no ocular pair.
        num_points: points compared.
    """

    mean_px: float
    mean_pct_iod: float | None
    num_points: int

    def text(self) -> str:
        if self.mean_pct_iod is not None:
            return f"{self.mean_pct_iod:.1f}% IOD ({self.mean_px:.1f} px, {self.num_points} pts)"
        return f"{self.mean_px:.1f} px ({self.num_points} pts)"


def _to_5(pts: np.ndarray) -> np.ndarray:
    return np.stack([pts[list(g)].mean(axis=0) for g in _IBUG68_TO_5])


def _as_ibug68(pts: np.ndarray, schema: KeypointSchema) -> tuple[np.ndarray, KeypointSchema]:
    """MediaPipe's 478-point mesh -> its fitted 68-point view (``kpdesk/vision/mesh68.json``);
    any other layout unchanged."""
    if schema.name == MESH_SCHEMA_NAME and len(pts) == schema.num_points:
        return default_view().apply(pts), get_schema("ibug68")
    return pts, schema


def _common(pts: np.ndarray, schema: KeypointSchema, other_k: int) -> tuple[np.ndarray, tuple[int, int] | None] | None:
    k = len(pts)
    if k == other_k:
        return pts, schema.ocular
    if k == 68 and other_k == 5:
        return _to_5(pts), (0, 1)
    if k == 5 and other_k == 68:
        return pts, schema.ocular or (0, 1)
    return None


def agreement(pts_a: np.ndarray, schema_a: KeypointSchema, pts_b: np.ndarray,
              schema_b: KeypointSchema) -> Agreement | None:
    """Compare (Ka, 2) and (Kb, 2) landmarks in image pixels; None if they share no points.

    Equal point counts are compared point by point; 68 vs 5 points are compared on the
    5 MTFL points (68-point eyes reduced to their centres). MediaPipe's mesh is compared
    through its 68-point view with any other layout (two meshes: all 478 points). The
    inter-ocular distance is the mean of the two predictions' own.
    """
    if schema_a.name != schema_b.name:
        pts_a, schema_a = _as_ibug68(np.asarray(pts_a, np.float64), schema_a)
        pts_b, schema_b = _as_ibug68(np.asarray(pts_b, np.float64), schema_b)
    a = _common(np.asarray(pts_a, np.float64), schema_a, len(pts_b))
    b = _common(np.asarray(pts_b, np.float64), schema_b, len(pts_a))
    if a is None or b is None:
        return None
    pa, oc_a = a
    pb, oc_b = b
    if len(pa) != len(pb) or len(pa) == 0:
        return None
    d = np.linalg.norm(pa - pb, axis=1)
    mean_px = float(d.mean())
    pct = None
    oc = oc_a or oc_b
    if oc is not None:
        iod = 0.5 * (np.linalg.norm(pa[oc[0]] - pa[oc[1]]) + np.linalg.norm(pb[oc[0]] - pb[oc[1]]))
        if iod > 1e-6:
            pct = 100.0 * mean_px / float(iod)
    return Agreement(mean_px, pct, len(pa))


@dataclass(frozen=True)
class PairAgreement:
    """Two variants' predictions on one frame that both processed.

    Attributes:
        pair: ``"A–B"``, labels in the variants' order.
        frame_key: (source id, frame index) of the frame.
        agreement: how far apart their first faces are, or None when one of them found
            no face (or they share no points).
        t: ``time.monotonic()`` when the second of the two results arrived.
    """

    pair: str
    frame_key: tuple[int, int]
    agreement: Agreement | None
    t: float


class FrameMatcher:
    """Pairs the results of variants that run at their own rates.

    Each variant's thread reports what it found on the frames it processed; agreement is
    computed on a frame as soon as the second variant of a pair has processed it too, so
    a fast variant is compared with a slow one on the slow one's frames, never on two
    different frames. Keeps the last ``keep`` frames of each variant. Not thread-safe:
    the caller holds a lock.
    """

    def __init__(self, keep: int = 90) -> None:
        self.keep = keep
        self._order: tuple[str, ...] = ()
        self._seen: dict[str, dict[tuple[int, int], tuple[np.ndarray | None, KeypointSchema | None]]] = {}

    def set_labels(self, labels: tuple[str, ...] | list[str]) -> None:
        """The variants now running, in order; forgets the others."""
        self._order = tuple(labels)
        self._seen = {lab: self._seen.get(lab, {}) for lab in self._order}

    def add(self, label: str, frame_key: tuple[int, int], pts_img: np.ndarray | None,
            schema: KeypointSchema | None, t: float) -> list[PairAgreement]:
        """Record ``label``'s first face on a frame (None: no face); returns the pairs this
        completes."""
        if label not in self._seen:
            return []
        mine = self._seen[label]
        mine[frame_key] = (pts_img, schema)
        while len(mine) > self.keep:
            mine.pop(next(iter(mine)))
        out = []
        for other in self._order:
            if other == label or frame_key not in self._seen[other]:
                continue
            o_pts, o_schema = self._seen[other][frame_key]
            first = self._order.index(label) < self._order.index(other)
            ag = None
            if pts_img is not None and o_pts is not None and schema is not None and o_schema is not None:
                ag = (agreement(pts_img, schema, o_pts, o_schema) if first
                      else agreement(o_pts, o_schema, pts_img, schema))
            pair = f"{label}–{other}" if first else f"{other}–{label}"
            out.append(PairAgreement(pair, frame_key, ag, t))
        return out
