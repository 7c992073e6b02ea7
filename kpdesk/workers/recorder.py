"""Writes the landmarks of a session to JSON lines or CSV (Qt-free).

JSON lines: one record per frame and variant, in the schema shared with ``kpdesk detect
--json`` (``kpdesk.vision.records``: faces with ``box_xyxy``, ``pts_img``, ``conf`` and the
head pose, ``mirrored``, ``timings_ms``). CSV flattens it to one row per face: ``frame, t,
variant, model, face, mirrored, box_x0..box_y1, yaw, pitch, roll, pose_rough, x0, y0, c0,
x1, ...`` (the header is written for the first model's point count; a model with a
different count later starts a fresh header line). Poses are empty for layouts other than
68 / 5 points.

The file is written through after every frame (``kpdesk.vision.files.LineLog``): a killed
app loses at most the frame being written. A write that fails (disk full, file system
gone) stops the recording with one line naming the file and the reason; the partial row is
cut off and the rows written before stay in the file.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from pathlib import Path

from kpdesk.vision.files import LineLog, OutputError
from kpdesk.vision.records import frame_record
from kpdesk.vision.results import FrameResult

log = logging.getLogger(__name__)

FORMATS = ("jsonl", "csv")


class RecorderError(OSError):
    """The recording file cannot be opened or written (one line: the file and why)."""


def json_rows(variant: str, result: FrameResult, source_file: str | None = None,
              mirrored: bool = False) -> list[dict]:
    """The JSON-lines rows a recording writes for ``result`` (one per frame, schema
    ``kpdesk-record/1``), as dicts: what a snapshot stores beside its PNG."""
    return [frame_record(result, mirrored=mirrored, variant=variant, source_file=source_file)]


class LandmarkRecorder:
    """Append-only landmark log, written through after every frame. Not thread-safe: one
    thread writes (the inference thread)."""

    def __init__(self, path: str | Path, fmt: str | None = None) -> None:
        self.path = Path(path)
        fmt = fmt or ("csv" if self.path.suffix.lower() == ".csv" else "jsonl")
        if fmt not in FORMATS:
            raise RecorderError(f"{self.path}: recording format {fmt!r} not in {FORMATS}")
        self.fmt = fmt
        try:
            self._log: LineLog | None = LineLog(self.path)
        except OutputError as exc:
            raise RecorderError(str(exc)) from None
        self._csv_k: int | None = None
        self.rows = 0  # face rows (CSV lines / faces in JSON records)

    def write(self, variant: str, result: FrameResult, source_file: str | None = None,
              mirrored: bool = False) -> None:
        """Record ``result`` under the variant label ``variant``; ``source_file``: the image
        file the frame came from (folder sources: frame numbers shift after an unreadable
        file, names do not); ``mirrored``: the frame was flipped left-right (selfie view)."""
        if self._log is None:
            return
        rec = frame_record(result, mirrored=mirrored, variant=variant, source_file=source_file)
        text = self._csv_text(rec) if self.fmt == "csv" else json.dumps(rec) + "\n"
        try:
            self._log.write(text)
        except OutputError as exc:
            self._log = None
            raise RecorderError(f"{exc}; the {self.rows} rows before are kept") from None
        self.rows += len(rec["faces"])

    def _csv_text(self, rec: dict) -> str:
        buf = io.StringIO()
        w = csv.writer(buf)
        for face_i, face in enumerate(rec["faces"]):
            k = len(face["pts_img"])
            if self._csv_k != k:
                header = ["frame", "t", "variant", "model", "face", "mirrored", "box_x0", "box_y0", "box_x1", "box_y1",
                          "yaw", "pitch", "roll", "pose_rough"]
                for i in range(k):
                    header += [f"x{i}", f"y{i}", f"c{i}"]
                header.append("file")
                w.writerow(header)
                self._csv_k = k
            pose = face["pose"]
            row: list[object] = [rec["frame"], rec["t"], rec.get("variant", ""), rec["model"], face_i,
                                 int(rec["mirrored"]), *face["box_xyxy"]]
            row += [pose["yaw"], pose["pitch"], pose["roll"], int(pose["rough"])] if pose else ["", "", "", ""]
            for (x, y), c in zip(face["pts_img"], face["conf"]):
                row += [x, y, c]
            row.append(rec.get("file", ""))
            w.writerow(row)
        return buf.getvalue()

    def close(self) -> None:
        rec, self._log = self._log, None
        if rec is not None:
            rec.close()
            log.info("recorded %d face rows to %s", self.rows, self.path)

    @property
    def closed(self) -> bool:
        return self._log is None
