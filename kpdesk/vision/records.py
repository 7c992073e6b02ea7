"""One landmark record schema for the app's recordings and ``kpdesk detect --json``.

A JSON-lines file holds one object per processed frame (and per variant, in the app)::

    {"format": "kpdesk-record/1", "frame": 0, "t": 0.0, "file": "a.jpg", "variant": "live",
     "model": "student", "detector": "blazeface", "mirrored": false, "frame_size": [640, 480],
     "faces": [{"box_xyxy": [x0, y0, x1, y1], "pts_img": [[x, y], ...], "conf": [c, ...],
                "tracked": false, "detector_score": 0.93,
                "pose": {"yaw": 3.1, "pitch": -2.0, "roll": 1.2, "rough": false}}],
     "timings_ms": {"detect": .., "preprocess": .., "inference": .., "decode": .., "total": ..}}

``file`` only for image / folder sources, ``variant`` only from the app (its Compare label).
Coordinates are image pixels of the frame as processed: with ``mirrored`` true that is the
left-right flipped (selfie) frame, while ``pose`` is already turned back to the head's own
motion (``kpdesk.vision.headpose``). ``pose`` is null when there is none; ``rough`` marks a
pose from 5 points.

Older files used other names (``detect --json``: ``points``, ``box``, ``timings``,
``timestamp``; app recordings: one row per face with ``face``, ``pts_img``, ``box_xyxy`` at
the top level and ``timings_ms``). ``read_records`` / ``normalise_record`` read them all
into this schema.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from kpdesk.vision.headpose import face_pose, pose_record
from kpdesk.vision.results import FaceResult, FrameResult

RECORD_FORMAT = "kpdesk-record/1"
# old name -> schema name, at the frame and the face level
OLD_NAMES = {"points": "pts_img", "box": "box_xyxy", "timings": "timings_ms", "timestamp": "t"}
_FACE_KEYS = ("box_xyxy", "pts_img", "conf", "tracked", "detector_score", "pose")


class RecordError(ValueError):
    """A record line that cannot be read (names the file and line)."""


def face_record(face: FaceResult, frame_size: tuple[int, int], mirrored: bool = False) -> dict[str, Any]:
    return {
        "box_xyxy": [round(float(v), 2) for v in face.box_xyxy],
        "pts_img": np.round(np.asarray(face.pts_img, np.float64), 2).tolist(),
        "conf": np.round(np.asarray(face.conf, np.float64), 4).tolist(),
        "tracked": bool(face.tracked),
        "detector_score": None if face.detector_score is None else round(float(face.detector_score), 4),
        "pose": pose_record(face_pose(face.pts_img, frame_size, mirrored=mirrored)),
    }


def frame_record(result: FrameResult, *, mirrored: bool = False, variant: str | None = None,
                 source_file: str | None = None, timestamp: float | None = None) -> dict[str, Any]:
    """The record of one processed frame (``timestamp``: seconds, default the result's)."""
    t = result.timestamp if timestamp is None else timestamp
    return {
        "format": RECORD_FORMAT,
        "frame": int(result.frame_index),
        "t": round(float(t), 4),
        **({"file": source_file} if source_file else {}),
        **({"variant": variant} if variant is not None else {}),
        "model": result.model_name,
        "detector": result.detector_name,
        "mirrored": bool(mirrored),
        "frame_size": [int(v) for v in result.frame_size],
        "faces": [face_record(f, result.frame_size, mirrored) for f in result.faces],
        "timings_ms": {k: round(v, 3) for k, v in result.timings.as_dict().items()},
    }


def _renamed(d: dict[str, Any]) -> dict[str, Any]:
    return {OLD_NAMES.get(k, k): v for k, v in d.items()}


def normalise_record(row: dict[str, Any]) -> dict[str, Any]:
    """``row`` in the current schema: old names renamed; an old one-face app row becomes a
    frame row with that one face (``face``: its index); ``mirrored`` false when absent."""
    row = _renamed(row)
    if "faces" not in row:  # an old app recording: one row per face
        face = {k: row.pop(k) for k in _FACE_KEYS if k in row}
        face.setdefault("tracked", None)
        face.setdefault("detector_score", None)
        face.setdefault("pose", None)
        row["faces"] = [face]
    else:
        row["faces"] = [_renamed(f) for f in row["faces"]]
    row.setdefault("mirrored", False)
    row.setdefault("format", RECORD_FORMAT)
    return row


def merge_face_rows(rows: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Normalised rows with consecutive old one-face rows of the same frame (and variant)
    merged into one frame row."""
    pending: dict[str, Any] | None = None
    for row in rows:
        key = (row.get("frame"), row.get("variant"), row.get("model"))
        if pending is not None and "face" in row and "face" in pending and row["face"] > 0 \
                and key == (pending.get("frame"), pending.get("variant"), pending.get("model")):
            pending["faces"].extend(row["faces"])
            continue
        if pending is not None:
            pending.pop("face", None)
            yield pending
        pending = row
    if pending is not None:
        pending.pop("face", None)
        yield pending


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """Every frame record of a JSON-lines file, old or new names (see the module docstring).

    Raises:
        OSError: the file cannot be read.
        RecordError: a line is not a JSON object (names file and line).
    """
    p = Path(path)
    rows = []
    with p.open() as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise RecordError(f"{p}:{n}: not JSON: {exc.msg}") from None
            if not isinstance(row, dict):
                raise RecordError(f"{p}:{n}: expected a JSON object")
            rows.append(normalise_record(row))
    return list(merge_face_rows(rows))
