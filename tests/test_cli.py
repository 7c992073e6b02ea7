"""``kpdesk detect`` / ``kpdesk models``: outputs, the timing summary, and error paths
(one line on stderr, exit status 2, no traceback)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from kpdesk.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def models_dir(tiny_model_path: Path) -> str:
    return str(tiny_model_path.parent)


def _detect(*args: str, models_dir: str) -> int:
    return main(["detect", *args, "--models-dir", models_dir, "--detector", "haar", "--threads", "1"])


def test_detect_image_writes_png_and_jsonl(tmp_path: Path, astronaut_bgr: np.ndarray, models_dir: str,
                                          capsys: pytest.CaptureFixture) -> None:
    img = tmp_path / "astronaut.jpg"
    cv2.imwrite(str(img), astronaut_bgr)
    out, js = tmp_path / "annotated.png", tmp_path / "pts.jsonl"
    assert _detect(str(img), "--model", "tiny", "--out", str(out), "--json", str(js), models_dir=models_dir) == 0
    text = capsys.readouterr().out
    assert "1 frames from" in text and "faces: found in 1/1 frames" in text
    for stage in ("detect", "preprocess", "inference", "decode", "total"):
        assert any(line.split()[:1] == [stage] for line in text.splitlines()), stage
    assert "FPS:" in text
    annotated = cv2.imread(str(out))
    assert annotated.shape == astronaut_bgr.shape and not np.array_equal(annotated, astronaut_bgr)
    (rec,) = [json.loads(line) for line in js.read_text().splitlines()]
    assert rec["frame"] == 0 and rec["model"] == "tiny" and len(rec["faces"]) == 1
    face = rec["faces"][0]
    assert len(face["points"]) == 68 and len(face["conf"]) == 68 and len(face["box"]) == 4


def test_detect_demo_to_video(tmp_path: Path, models_dir: str, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "demo.mp4"
    model = str(Path(models_dir) / "tiny.onnx")  # a path works as well as a name
    assert _detect("demo", "--model", model, "--max-frames", "8", "--out", str(out), "--no-smooth",
                   models_dir=models_dir) == 0
    assert "8 frames from demo" in capsys.readouterr().out
    cap = cv2.VideoCapture(str(out))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 8 and int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)) == 640
    cap.release()


def test_detect_folder_to_folder(tmp_path: Path, astronaut_bgr: np.ndarray, models_dir: str) -> None:
    src = tmp_path / "in"
    src.mkdir()
    for i in range(2):
        cv2.imwrite(str(src / f"{i}.png"), astronaut_bgr)
    (src / "broken.png").write_bytes(b"x")
    assert _detect(str(src), "--model", "tiny", "--out", str(tmp_path / "out"), models_dir=models_dir) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["frame_000000.png", "frame_000001.png"]


def test_models_lists_good_and_broken(tmp_path: Path, tiny_model_path: Path, capsys: pytest.CaptureFixture) -> None:
    shutil.copy(tiny_model_path, tmp_path / "tiny.onnx")
    shutil.copy(tiny_model_path.with_suffix(".json"), tmp_path / "tiny.json")
    (tmp_path / "junk.onnx").write_bytes(b"junk")
    assert main(["models", "--models-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "tiny" in out and "68 pts" in out and "junk" in out and "BROKEN" in out
    assert main(["models", "--models-dir", str(tmp_path / "empty")]) == 0
    assert "no models" in capsys.readouterr().out


@pytest.mark.parametrize("case", ["missing-file", "bad-image", "camera", "bad-model", "unknown-model", "bad-flag"])
def test_error_paths_exit_2_with_one_line(case: str, tmp_path: Path, models_dir: str,
                                         capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    source, model = "demo", "tiny"
    extra: list[str] = []
    if case == "missing-file":
        source = str(tmp_path / "nope.mp4")
    elif case == "bad-image":
        source = str(tmp_path / "bad.png")
        Path(source).write_bytes(b"not a png")
    elif case == "camera":
        from kpdesk.inference import sources

        class Closed:
            def isOpened(self) -> bool:  # noqa: N802
                return False

            def release(self) -> None:
                pass

        monkeypatch.setattr(sources.cv2, "VideoCapture", lambda *a: Closed())
        source = "cam:0"
    elif case == "bad-model":
        (tmp_path / "broken.onnx").write_bytes(b"junk")
        shutil.copy(Path(models_dir) / "tiny.json", tmp_path / "broken.json")
        model = str(tmp_path / "broken.onnx")
    elif case == "unknown-model":
        model = "no-such-model"
    else:
        extra = ["--max-faces", "0"]
    assert _detect(source, "--model", model, *extra, models_dir=models_dir) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("kpdesk: error: "), err


def test_console_entry_point_has_no_traceback(tmp_path: Path) -> None:
    env = {**os.environ, "KPDESK_MODELS": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-m", "kpdesk.cli", "detect", str(tmp_path / "x.jpg")],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"kpdesk: error: {tmp_path / 'x.jpg'}: no such file or directory"
