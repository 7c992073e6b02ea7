"""Writes the landmarks of a session to JSON lines or CSV (Qt-free).

One row per face per frame, with the face's head pose (yaw / pitch / roll in degrees,
``kpdesk.vision.headpose``; empty for layouts other than 68 / 5 points). JSON lines keep
the full arrays; CSV flattens them to ``x0, y0, c0, x1, y1, c1, ...`` columns (the header is
written for the first model's point count; a model with a different count later starts a
fresh header line).
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import IO

from kpdesk.vision.headpose import face_pose, pose_record
from kpdesk.vision.results import FrameResult

log = logging.getLogger(__name__)

FORMATS = ("jsonl", "csv")


class RecorderError(OSError):
    """The recording file cannot be opened or written."""


def _json_row(variant: str, result: FrameResult, face_i: int, face,  # noqa: ANN001
              pose: dict[str, float] | None, source_file: str | None) -> dict:
    return {
        "frame": result.frame_index,
        "t": round(result.timestamp, 4),
        "variant": variant,
        "model": result.model_name,
        "face": face_i,
        **({"file": source_file} if source_file else {}),
        "box_xyxy": [round(float(v), 2) for v in face.box_xyxy],
        "pts_img": [[round(float(x), 2), round(float(y), 2)] for x, y in face.pts_img],
        "conf": [round(float(c), 4) for c in face.conf],
        "pose": pose,
        "timings_ms": {k: round(v, 3) for k, v in result.timings.as_dict().items()},
    }


def json_rows(variant: str, result: FrameResult, source_file: str | None = None) -> list[dict]:
    """The JSON-lines rows a recording writes for ``result`` (one per face), as dicts."""
    return [_json_row(variant, result, i, face, pose_record(face_pose(face.pts_img, result.frame_size)), source_file)
            for i, face in enumerate(result.faces)]


class LandmarkRecorder:
    """Append-only landmark log, flushed after every frame. Not thread-safe: one thread
    writes (the inference thread)."""

    def __init__(self, path: str | Path, fmt: str | None = None) -> None:
        self.path = Path(path)
        fmt = fmt or ("csv" if self.path.suffix.lower() == ".csv" else "jsonl")
        if fmt not in FORMATS:
            raise RecorderError(f"{self.path}: recording format {fmt!r} not in {FORMATS}")
        self.fmt = fmt
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh: IO[str] | None = self.path.open("w", newline="")
        except OSError as exc:
            raise RecorderError(f"{self.path}: cannot open for recording: {exc}") from exc
        self._csv = csv.writer(self._fh) if fmt == "csv" else None
        self._csv_k: int | None = None
        self.rows = 0

    def write(self, variant: str, result: FrameResult, source_file: str | None = None) -> None:
        """Record every face of ``result`` under the variant label ``variant``; ``source_file``:
        the image file the frame came from (folder sources: frame numbers shift after an
        unreadable file, names do not)."""
        if self._fh is None:
            return
        try:
            for face_i, face in enumerate(result.faces):
                pose = pose_record(face_pose(face.pts_img, result.frame_size))
                if self._csv is not None:
                    self._write_csv(variant, result, face_i, face, pose, source_file)
                else:
                    self._fh.write(json.dumps(_json_row(variant, result, face_i, face, pose, source_file)) + "\n")
                self.rows += 1
            # Every frame reaches the file: a killed app loses at most the frame being written.
            self._fh.flush()
        except OSError as exc:
            self.close()
            raise RecorderError(f"{self.path}: write failed: {exc}") from exc

    def _write_csv(self, variant: str, result: FrameResult, face_i: int, face,  # noqa: ANN001
                   pose: dict[str, float] | None, source_file: str | None = None) -> None:
        assert self._csv is not None
        k = len(face.pts_img)
        if self._csv_k != k:
            header = ["frame", "t", "variant", "model", "face", "box_x0", "box_y0", "box_x1", "box_y1",
                      "yaw", "pitch", "roll"]
            for i in range(k):
                header += [f"x{i}", f"y{i}", f"c{i}"]
            header.append("file")
            self._csv.writerow(header)
            self._csv_k = k
        row: list[object] = [result.frame_index, round(result.timestamp, 4), variant, result.model_name, face_i]
        row += [round(float(v), 2) for v in face.box_xyxy]
        row += [pose["yaw"], pose["pitch"], pose["roll"]] if pose else ["", "", ""]
        for (x, y), c in zip(face.pts_img, face.conf):
            row += [round(float(x), 2), round(float(y), 2), round(float(c), 4)]
        row.append(source_file or "")
        self._csv.writerow(row)

    def close(self) -> None:
        if self._fh is not None:
            try:
                self._fh.close()
            except OSError:
                log.exception("closing %s", self.path)
            self._fh = None
            log.info("recorded %d face rows to %s", self.rows, self.path)

    @property
    def closed(self) -> bool:
        return self._fh is None
