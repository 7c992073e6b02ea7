"""Frame sources: demo, image, folder, video, camera errors."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest

from kpdesk.inference import sources
from kpdesk.inference.sources import (
    CameraSource,
    DemoSource,
    FolderSource,
    ImageSource,
    SourceError,
    VideoSource,
    open_source,
)


def test_demo_is_deterministic_moving_rotating_and_sometimes_occluded() -> None:
    demo = open_source("demo")
    assert isinstance(demo, DemoSource) and demo.frame_count is None
    f0, t0 = demo.read()
    f1, t1 = demo.read()
    assert f0.shape == (480, 640, 3) and f0.dtype == np.uint8 and t1 == pytest.approx(1 / 30)
    assert np.array_equal(DemoSource().frame(1), f1)
    assert not np.array_equal(f0, f1)
    rolls = [demo.pose(i)[2] for i in range(0, 300, 5)]
    assert max(rolls) == pytest.approx(35, abs=1) and min(rolls) == pytest.approx(-35, abs=1)
    occluded = [demo.occluder(i) is not None for i in range(180)]
    assert 0.2 < np.mean(occluded) < 0.5
    assert len(list(DemoSource(num_frames=3))) == 3


def test_image_source(tmp_path: Path, astronaut_bgr: np.ndarray) -> None:
    p = tmp_path / "a.png"
    cv2.imwrite(str(p), astronaut_bgr)
    src = open_source(str(p))
    assert isinstance(src, ImageSource) and src.frame_count == 1
    frames = list(src)
    assert len(frames) == 1 and np.array_equal(frames[0][0], astronaut_bgr)


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="no such file"):
        open_source(str(tmp_path / "nope.jpg"))
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(SourceError, match=r"bad\.jpg: cannot read image"):
        open_source(str(bad))
    (tmp_path / "bad.mp4").write_bytes(b"not a video at all")
    with pytest.raises(SourceError, match=r"bad\.mp4"):
        list(open_source(str(tmp_path / "bad.mp4")))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SourceError, match="no image files"):
        open_source(str(empty))


def test_folder_skips_corrupt_images(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((20, 30, 3), i * 50, np.uint8))
    (tmp_path / "1b.jpg").write_bytes(b"corrupt")
    (tmp_path / "notes.txt").write_text("ignored")
    src = open_source(tmp_path)
    assert isinstance(src, FolderSource) and src.frame_count == 4
    with caplog.at_level(logging.WARNING):
        frames = list(src)
    assert [int(f[0, 0, 0]) for f, _ in frames] == [0, 50, 100]
    assert [p.name for p in src.skipped] == ["1b.jpg"] and "1b.jpg" in caplog.text
    only_bad = tmp_path / "bad"
    only_bad.mkdir()
    (only_bad / "x.png").write_bytes(b"")
    with pytest.raises(SourceError, match="none of its 1 images"):
        list(open_source(only_bad))


def test_video_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "v.avi"
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (64, 48))
    for i in range(5):
        w.write(np.full((48, 64, 3), i * 40, np.uint8))
    w.release()
    src = open_source(str(path))
    assert isinstance(src, VideoSource) and src.fps == pytest.approx(25.0)
    frames = list(src)
    assert len(frames) == 5 and frames[4][1] == pytest.approx(4 / 25)
    src.close()
    assert src.read() is None


def test_camera_that_cannot_open(monkeypatch: pytest.MonkeyPatch) -> None:
    class Closed:
        def isOpened(self) -> bool:  # noqa: N802 - cv2's name
            return False

        def release(self) -> None:
            pass

    monkeypatch.setattr(sources.cv2, "VideoCapture", lambda *a: Closed())
    for spec in (0, "0", "cam:0"):
        with pytest.raises(SourceError, match="camera 0 cannot be opened"):
            open_source(spec)


def test_camera_that_stops_delivering(monkeypatch: pytest.MonkeyPatch) -> None:
    class Flaky:
        def __init__(self, *a: object) -> None:
            self.n = 0

        def isOpened(self) -> bool:  # noqa: N802
            return True

        def get(self, prop: int) -> float:
            return 30.0

        def set(self, prop: int, value: float) -> bool:
            return True

        def read(self) -> tuple[bool, np.ndarray | None]:
            self.n += 1
            return (True, np.zeros((4, 4, 3), np.uint8)) if self.n <= 2 else (False, None)

        def release(self) -> None:
            pass

    monkeypatch.setattr(sources.cv2, "VideoCapture", Flaky)
    monkeypatch.setattr(sources.time, "sleep", lambda s: None)
    cam = open_source("cam:0")
    assert isinstance(cam, CameraSource) and cam.is_live
    cam.read()
    cam.read()
    with pytest.raises(SourceError, match="camera 0 stopped delivering frames"):
        cam.read()


def test_list_cameras_only_probes_existing_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    probed = []

    class Cap:
        def __init__(self, i: int) -> None:
            probed.append(i)

        def isOpened(self) -> bool:  # noqa: N802
            return True

        def release(self) -> None:
            pass

    monkeypatch.setattr(sources.cv2, "VideoCapture", Cap)
    monkeypatch.setattr(sources.sys, "platform", "linux")
    monkeypatch.setattr(sources.os.path, "exists", lambda p: p == "/dev/video2")
    assert sources.list_cameras(5) == [2] and probed == [2]
