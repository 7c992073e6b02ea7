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
    assert "1 frame from" in text and "faces: found in 1/1 frame;" in text and "1 frames" not in text
    for stage in ("detect", "preprocess", "inference", "decode", "total"):
        assert any(line.split()[:1] == [stage] for line in text.splitlines()), stage
    assert "FPS:" in text
    annotated = cv2.imread(str(out))
    assert annotated.shape == astronaut_bgr.shape and not np.array_equal(annotated, astronaut_bgr)
    (rec,) = [json.loads(line) for line in js.read_text().splitlines()]
    assert rec["frame"] == 0 and rec["file"] == "astronaut.jpg" and rec["model"] == "tiny" and len(rec["faces"]) == 1
    face = rec["faces"][0]
    assert len(face["pts_img"]) == 68 and len(face["conf"]) == 68 and len(face["box_xyxy"]) == 4
    assert rec["mirrored"] is False and rec["format"] == "kpdesk-record/1" and "timings_ms" in rec


def test_detect_demo_to_video(tmp_path: Path, models_dir: str, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "demo.mp4"
    model = str(Path(models_dir) / "tiny.onnx")  # a path works as well as a name
    assert _detect("demo", "--model", model, "--max-frames", "8", "--out", str(out), "--no-smooth",
                   models_dir=models_dir) == 0
    assert "8 frames from demo" in capsys.readouterr().out
    cap = cv2.VideoCapture(str(out))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 8 and int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)) == 640
    cap.release()


def test_detect_folder_outputs_and_records_carry_the_source_file_names(tmp_path: Path, astronaut_bgr: np.ndarray,
                                                                       models_dir: str) -> None:
    """A skipped (unreadable) file shifts the frame numbers; the names say which image is which."""
    src = tmp_path / "in"
    src.mkdir()
    cv2.imwrite(str(src / "a.png"), astronaut_bgr)
    (src / "b.png").write_bytes(b"x")  # unreadable: skipped
    cv2.imwrite(str(src / "c.jpg"), astronaut_bgr)
    cv2.imwrite(str(src / "c.png"), astronaut_bgr)
    js = tmp_path / "pts.jsonl"
    assert _detect(str(src), "--model", "tiny", "--out", str(tmp_path / "out"), "--json", str(js),
                   models_dir=models_dir) == 0
    recs = [json.loads(line) for line in js.read_text().splitlines()]
    assert [(r["frame"], r["file"]) for r in recs] == [(0, "a.png"), (1, "c.jpg"), (2, "c.png")]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "c.png", "c.png.png"]


def test_detect_says_when_a_video_is_shorter_than_its_header(tmp_path: Path, models_dir: str,
                                                             capsys: pytest.CaptureFixture) -> None:
    full, cut = tmp_path / "full.avi", tmp_path / "cut.avi"
    w = cv2.VideoWriter(str(full), cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*"XVID"), 10, (64, 48))
    rng = np.random.default_rng(0)
    for _ in range(30):
        w.write(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    w.release()
    data = full.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    assert _detect(str(full), "--model", "tiny", models_dir=models_dir) == 0
    assert "header promises" not in capsys.readouterr().err
    assert _detect(str(cut), "--model", "tiny", models_dir=models_dir) == 0
    captured = capsys.readouterr()
    (line,) = captured.err.strip().splitlines()
    assert line.startswith("kpdesk: warning: ") and "header promises 30 frames, only" in line, line
    assert "30 frames from" not in captured.out


def test_a_broken_video_gives_one_line_without_ffmpeg_noise(tmp_path: Path) -> None:
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00\x00\x00\x20ftypisom" + bytes(4000))
    env = {**os.environ, "KPDESK_MODELS": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-m", "kpdesk.cli", "detect", str(bad)], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"kpdesk: error: {bad}: cannot open video (not a supported video file)"]


@pytest.mark.parametrize("suffix", [".xyz", ".txt"])
def test_an_output_type_that_cannot_be_written_is_one_line_before_any_work(tmp_path: Path, models_dir: str, suffix: str,
                                                                          capsys: pytest.CaptureFixture) -> None:
    assert _detect("demo", "--model", "tiny", "--max-frames", "3", "--out", str(tmp_path / f"x{suffix}"),
                   models_dir=models_dir) == 2
    captured = capsys.readouterr()
    (line,) = captured.err.strip().splitlines()
    assert line.startswith("kpdesk: error: ") and f"cannot write {suffix} files" in line
    assert "frames from" not in captured.out


def test_too_many_threads_are_capped_with_a_warning(models_dir: str, capsys: pytest.CaptureFixture) -> None:
    from kpdesk.inference.model import max_threads

    assert main(["detect", "demo", "--model", "tiny", "--models-dir", models_dir, "--detector", "haar",
                 "--max-frames", "2", "--threads", "9999"]) == 0
    captured = capsys.readouterr()
    assert f"--threads 9999 is more than this machine's {max_threads()} CPUs" in captured.err
    assert f"threads {max_threads()}" in captured.out


def test_models_lists_good_and_broken(tmp_path: Path, tiny_model_path: Path, capsys: pytest.CaptureFixture) -> None:
    shutil.copy(tiny_model_path, tmp_path / "tiny.onnx")
    shutil.copy(tiny_model_path.with_suffix(".json"), tmp_path / "tiny.json")
    (tmp_path / "junk.onnx").write_bytes(b"junk")
    assert main(["models", "--models-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "tiny" in out and "68 pts" in out and "junk" in out and "BROKEN" in out
    (tmp_path / "empty").mkdir()
    assert main(["models", "--models-dir", str(tmp_path / "empty")]) == 0
    assert "no models" in capsys.readouterr().out
    assert main(["models", "--models-dir", str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err.strip() == f"kpdesk: error: model folder {tmp_path / 'missing'} does not exist"


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
