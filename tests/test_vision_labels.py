"""Labelled face folders read by the app (kpdesk.vision.labels): face68 lists, 300W folders
(1-based .pts), MTFL 5-point lists; errors name file and line."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from fixtures import make_face68_val

from kpdesk.vision.labels import (
    ALL_PTS,
    LabelError,
    list_files,
    load_labelled_folder,
    read_pts,
    write_pts,
)


def test_face68_list_reads_points_and_sources(tmp_path: Path) -> None:
    pts = make_face68_val(tmp_path)
    ls = load_labelled_folder(tmp_path)
    assert ls.fmt == "face68" and ls.num_points == 68 and len(ls.faces) == 5 and not ls.skipped
    assert [f.source for f in ls.faces] == ["afw", "helen", "afw", "helen", "afw"]
    for f, p in zip(ls.faces, pts):
        assert np.allclose(f.pts_img, p, atol=1e-3)
    spread = load_labelled_folder(tmp_path, "val.txt", max_faces=3)
    assert [Path(f.path).stem for f in spread.faces] == ["000", "002", "004"]


def test_300w_folder_without_a_list_is_one_based(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    for sub in ("01_Indoor", "02_Outdoor"):
        (tmp_path / sub).mkdir()
        img = tmp_path / sub / "face_001.png"
        cv2.imwrite(str(img), np.zeros((40, 40, 3), np.uint8))
        write_pts(img.with_suffix(".pts"), rng.uniform(1, 39, size=(68, 2)))
    (tmp_path / "02_Outdoor" / "no_label.png").write_bytes(b"")  # images without .pts are not faces
    assert list_files(tmp_path) == []
    ls = load_labelled_folder(tmp_path)
    assert ls.fmt == "300w" and len(ls.faces) == 2
    raw = read_pts(tmp_path / "01_Indoor" / "face_001.pts")
    assert np.allclose(ls.faces[0].pts_img, raw - 1)
    assert ls.faces[0].source == "01_Indoor"
    zero = load_labelled_folder(tmp_path, ALL_PTS, points_base=0)
    assert np.allclose(zero.faces[0].pts_img, raw)


def test_face5_list(tmp_path: Path) -> None:
    (tmp_path / "images" / "aflw").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "images" / "aflw" / "a.jpg"), np.zeros((30, 30, 3), np.uint8))
    (tmp_path / "test.txt").write_text("images/aflw/a.jpg 1 2 3 4 5 6 7 8 9 10 1 2 2 3\n")
    ls = load_labelled_folder(tmp_path, "test.txt")
    assert ls.fmt == "face5" and ls.num_points == 5
    assert np.array_equal(ls.faces[0].pts_img, [[1, 6], [2, 7], [3, 8], [4, 9], [5, 10]])


def test_bad_labels_are_skipped_with_file_and_line_or_fatal(tmp_path: Path) -> None:
    make_face68_val(tmp_path, n=3)
    bad = tmp_path / "images" / "helen" / "001.pts"
    lines = bad.read_text().splitlines()
    lines[5] = "12.0 oops"
    bad.write_text("\n".join(lines) + "\n")
    (tmp_path / "val.txt").write_text((tmp_path / "val.txt").read_text() + "images/afw/missing.jpg\n")
    ls = load_labelled_folder(tmp_path, "val.txt")
    assert len(ls.faces) == 2 and len(ls.skipped) == 2
    assert f"{bad}:6: expected 'x y'" in ls.skipped[0]
    assert "val.txt:4" in ls.skipped[1]
    with pytest.raises(LabelError, match=r"001\.pts:6"):
        load_labelled_folder(tmp_path, "val.txt", on_error="fatal")


def test_pts_format_errors() -> None:
    with pytest.raises(LabelError, match="not found|cannot read"):
        read_pts("/nonexistent/x.pts")


def test_pts_count_mismatch_and_empty_folder(tmp_path: Path) -> None:
    p = tmp_path / "a.pts"
    p.write_text("version: 1\nn_points: 68\n{\n1 2\n3 4\n}\n")
    with pytest.raises(LabelError, match="n_points says 68, found 2"):
        read_pts(p)
    with pytest.raises(LabelError, match="no usable labelled face"):
        load_labelled_folder(tmp_path)
    with pytest.raises(LabelError, match="folder not found"):
        load_labelled_folder(tmp_path / "nope")


@pytest.mark.data
def test_same_faces_as_the_training_loader() -> None:
    """The app's reader and training's loaders agree on the shared pack (paths and points)."""
    from conftest import data_root

    from training.evaluation.evaluate import load_samples

    root = data_root() / "face68"
    ours = load_labelled_folder(root, "val.txt")
    theirs, _ = load_samples(root, "val.txt")
    assert len(ours.faces) == len(theirs) == 913
    for a, b in zip(ours.faces, theirs):
        assert a.path == b.path and a.source == b.source
        assert np.array_equal(a.pts_img, b.pts)


def test_images_without_labels_say_which_label_files_were_looked_for(tmp_path: Path) -> None:
    """The lab used to answer "no usable labelled face (0 skipped)" and nothing more."""
    import cv2

    (tmp_path / "sub").mkdir()
    for name in ("a.jpg", "sub/b.png"):
        cv2.imwrite(str(tmp_path / name), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(LabelError) as err:
        load_labelled_folder(tmp_path)
    msg = str(err.value)
    assert "list file (*.txt)" in msg and "NAME.pts beside each of its 2 images" in msg and "a.pts" in msg, msg
    (tmp_path / "val.txt").write_text("a.jpg\nsub/b.png\n")
    with pytest.raises(LabelError) as err:
        load_labelled_folder(tmp_path)
    msg = str(err.value)
    assert str(tmp_path / "val.txt") in msg and "NAME.pts beside each" in msg and "2 skipped, first:" in msg, msg
