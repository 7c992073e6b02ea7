"""Dataset loaders on generated fixtures: every format parses, and every kind of bad input
(bad .pts line, wrong point count, missing / corrupt image, bad CSV line) is reported
with its file and line, skipped with ``on_error="skip"`` and fatal with ``"fatal"``.

Also home of the generated tiny 300W-style dataset the other training tests use
(``make_face68``): noise images with smooth blobs at the landmarks, ``.pts`` files,
``train.txt`` / ``val.txt``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
from fixtures import make_face68

from training.data.datasets import DataConfig, LabelError, load_split

# -- generated data (imported by the other test_training_* modules) ------------------------

@pytest.fixture()
def face68(tmp_path: Path) -> Path:
    return make_face68(tmp_path / "face68", n_train=6, n_val=4, size=64)


def _cfg(root: Path, **kw) -> DataConfig:
    return DataConfig(root=str(root), **kw)


# -- correct fixtures parse ----------------------------------------------------------------
def test_face68_generated_pack_parses(face68: Path) -> None:
    train, schema = load_split(_cfg(face68), "train")
    val, _ = load_split(_cfg(face68), "val")
    assert schema.name == "ibug68" and len(train) == 6 and len(val) == 4
    assert {s.source for s in train} == {"afw", "helen"}
    lines = (Path(train[0].path).with_suffix(".pts")).read_text().splitlines()
    assert train[0].pts.shape == (68, 2)
    np.testing.assert_allclose(train[0].pts[0], [float(v) for v in lines[3].split()])


def test_300w_one_based_points_are_shifted(face68: Path) -> None:
    a, _ = load_split(_cfg(face68, format="300w", points_base=0), "train")
    b, _ = load_split(_cfg(face68, format="300w", points_base=1), "train")
    np.testing.assert_allclose(a[0].pts - 1.0, b[0].pts)


def test_300w_folder_split(face68: Path) -> None:
    samples, _ = load_split(_cfg(face68, format="300w", train_list="images/afw"), "train")
    assert len(samples) == 5 and all("/afw/" in s.path for s in samples)  # 3 train + 2 val afw faces


def test_300w_folder_split_writes_nothing_into_the_data_folder(face68: Path) -> None:
    before = sorted(p.relative_to(face68) for p in face68.rglob("*"))
    for split in ("train", "val"):
        load_split(_cfg(face68, format="300w", train_list="images/afw", val_list="images/helen"), split)
    assert sorted(p.relative_to(face68) for p in face68.rglob("*")) == before


def _img(path: Path, size: int = 32) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((size, size, 3), 128, np.uint8))


def test_face5_mtfl_lines(tmp_path: Path) -> None:
    _img(tmp_path / "images/lfw/a.jpg")
    _img(tmp_path / "images/net/b.jpg")
    (tmp_path / "train.txt").write_text(
        "images/lfw/a.jpg 10 20 15 11 19 12 12 16 22 22 1 2 2 3\n"
        "images\\net\\b.jpg 1 2 3 4 5 6 7 8 9 10 2 1 1 1\n")
    samples, schema = load_split(_cfg(tmp_path, format="face5"), "train")
    assert schema.name == "mtfl5" and len(samples) == 2
    np.testing.assert_allclose(samples[0].pts, [[10, 12], [20, 12], [15, 16], [11, 22], [19, 22]])
    assert samples[0].attrs == (1, 2, 2, 3) and samples[0].source == "lfw"


def test_celeba_partition(tmp_path: Path) -> None:
    for n in ("000001.jpg", "000002.jpg", "000003.jpg"):
        _img(tmp_path / "img_align_celeba" / n)
    (tmp_path / "list_landmarks_align_celeba.txt").write_text(
        "3\nlefteye_x lefteye_y righteye_x righteye_y nose_x nose_y leftmouth_x leftmouth_y rightmouth_x "
        "rightmouth_y\n000001.jpg 69 109 106 113 77 142 73 152 108 154\n"
        "000002.jpg 69 110 107 112 81 135 70 151 108 153\n000003.jpg 1 2 3 4 5 6 7 8 9 10\n")
    (tmp_path / "list_eval_partition.txt").write_text("000001.jpg 0\n000002.jpg 0\n000003.jpg 1\n")
    train, schema = load_split(_cfg(tmp_path, format="celeba", train_list="0", val_list="1"), "train")
    val, _ = load_split(_cfg(tmp_path, format="celeba", train_list="0", val_list="1"), "val")
    assert schema.name == "mtfl5" and len(train) == 2 and len(val) == 1
    np.testing.assert_allclose(train[0].pts[0], [69, 109])
    np.testing.assert_allclose(val[0].pts[4], [9, 10])


def test_wflw_lines(tmp_path: Path) -> None:
    _img(tmp_path / "WFLW_images/0--Parade/x.jpg")
    coords = " ".join(f"{v:.1f}" for v in np.arange(196))
    (tmp_path / "list_98pt_test.txt").write_text(f"{coords} 1 2 30 40 0 1 0 0 0 1 0--Parade/x.jpg\n")
    samples, schema = load_split(_cfg(tmp_path, format="wflw", val_list="list_98pt_test.txt"), "val")
    assert schema.name == "wflw98" and samples[0].pts.shape == (98, 2)
    np.testing.assert_allclose(samples[0].pts[1], [2, 3])
    assert samples[0].attrs == (0, 1, 0, 0, 0, 1) and samples[0].source == "0--Parade"


def test_csv_rows(tmp_path: Path) -> None:
    _img(tmp_path / "a.png")
    (tmp_path / "val.csv").write_text("image,x0,y0,x1,y1,x2,y2\na.png,1,2,3,4,5,6\n")
    samples, schema = load_split(_cfg(tmp_path, format="csv", val_list="val.csv"), "val")
    assert schema.num_points == 3 and len(samples) == 1
    np.testing.assert_allclose(samples[0].pts, [[1, 2], [3, 4], [5, 6]])


# -- bad input: reported with file and line, skipped or fatal -------------------------------
def _break_and_check(root: Path, list_name: str, fmt: str, expect: list[str], n_good: int,
                     caplog: pytest.LogCaptureFixture, split: str = "train") -> None:
    cfg = _cfg(root, format=fmt, train_list=list_name, val_list=list_name)
    with caplog.at_level(logging.WARNING, logger="training.data.datasets"):
        samples, _ = load_split(cfg, split)
    assert len(samples) == n_good
    msgs = "\n".join(r.getMessage() for r in caplog.records)
    for e in expect:
        assert e in msgs, (e, msgs)
    with pytest.raises(LabelError) as exc:
        load_split(DataConfig(**{**cfg.to_dict(), "on_error": "fatal"}), split)
    assert expect[0] in str(exc.value)


def test_bad_pts_line_reported_with_file_and_line(face68: Path, caplog: pytest.LogCaptureFixture) -> None:
    rel = (face68 / "train.txt").read_text().split()[2]
    pts_file = (face68 / rel).with_suffix(".pts")
    lines = pts_file.read_text().splitlines()
    lines[10] = "12.5 abc"
    pts_file.write_text("\n".join(lines) + "\n")
    # list line 3 names the image; .pts line 11 is the bad one
    _break_and_check(face68, "train.txt", "face68", [f"train.txt:3: {pts_file}:11: expected 'x y'"], 5, caplog)


def test_wrong_point_count(face68: Path, caplog: pytest.LogCaptureFixture) -> None:
    rels = (face68 / "train.txt").read_text().split()
    f1 = (face68 / rels[0]).with_suffix(".pts")
    lines = f1.read_text().splitlines()
    f1.write_text("\n".join(lines[:5] + lines[6:]) + "\n")  # 67 points, header says 68
    f2 = (face68 / rels[1]).with_suffix(".pts")
    lines = f2.read_text().splitlines()
    f2.write_text("\n".join([lines[0]] + lines[2:5] + lines[6:]) + "\n")  # 67 points, no n_points
    _break_and_check(face68, "train.txt", "face68",
                     [f"train.txt:1: {f1}: n_points says 68, found 67", f"{f2}: 67 points, schema expects 68"],
                     4, caplog)


def test_missing_and_corrupt_images(face68: Path, caplog: pytest.LogCaptureFixture) -> None:
    rels = (face68 / "train.txt").read_text().split()
    (face68 / rels[1]).unlink()
    (face68 / rels[3]).write_bytes(b"this is not a jpeg at all")
    (face68 / rels[4]).write_bytes(b"")
    _break_and_check(face68, "train.txt", "face68",
                     [f"train.txt:2: image not found: {face68 / rels[1]}",
                      f"train.txt:4: corrupt image (not a JPEG/PNG/BMP/TIFF/WebP header): {face68 / rels[3]}",
                      f"train.txt:5: empty image file: {face68 / rels[4]}"], 3, caplog)


def test_bad_csv_lines(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    for n in ("a.png", "b.png", "c.png"):
        _img(tmp_path / n)
    (tmp_path / "bad.png").write_bytes(b"\x00" * 100)
    (tmp_path / "val.csv").write_text("image,x0,y0,x1,y1\na.png,1,2,3,4\nb.png,1,oops,3,4\nc.png,1,2,3\n"
                                      "gone.png,1,2,3,4\nbad.png,1,2,3,4\n")
    _break_and_check(tmp_path, "val.csv", "csv",
                     [f"{tmp_path / 'val.csv'}:3: non-numeric coordinate", f"{tmp_path / 'val.csv'}:4: 1.5 points",
                      f"{tmp_path / 'val.csv'}:5: image not found", f"{tmp_path / 'val.csv'}:6: corrupt image"],
                     1, caplog, split="val")


def test_bad_mtfl_line(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    _img(tmp_path / "images/lfw/a.jpg")
    (tmp_path / "train.txt").write_text("images/lfw/a.jpg 1 2 3 4 5 6 7 8 9 10\n"
                                        "images/lfw/a.jpg 1 2 x 4 5 6 7 8 9 10\nimages/lfw/a.jpg 1 2\n")
    _break_and_check(tmp_path, "train.txt", "face5",
                     [f"{tmp_path / 'train.txt'}:2: non-numeric coordinate", f"{tmp_path / 'train.txt'}:3: expected"],
                     1, caplog)


def test_bad_celeba_and_wflw_lines_name_their_line(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    _img(tmp_path / "img_align_celeba" / "1.jpg")
    (tmp_path / "list_landmarks_align_celeba.txt").write_text(
        "2\nheader\n1.jpg 1 2 3 4 5 6 7 8 9 10\n\n2.jpg 1 2\n1.jpg 1 2 3\n1.jpg 1 2 3 4 5 6 7 8 9 x\n")
    (tmp_path / "list_eval_partition.txt").write_text("1.jpg 0\n2.jpg 1\n")
    lm = tmp_path / "list_landmarks_align_celeba.txt"
    with caplog.at_level(logging.WARNING):
        train, _ = load_split(_cfg(tmp_path, format="celeba", train_list="0"), "train")
    assert len(train) == 1  # 2.jpg is another partition's: not a fault
    assert f"{lm}:6: expected image + 10 numbers, got 4 fields" in caplog.text
    assert f"{lm}:7: non-numeric value" in caplog.text and f"{lm}:5" not in caplog.text
    _img(tmp_path / "WFLW_images/a/x.jpg")
    coords = " ".join(["1.0"] * 196)
    (tmp_path / "w.txt").write_text(f"{coords} 1 2 30 40 0 1 0 0 0 1 a/x.jpg\n1 2 3\n")
    with caplog.at_level(logging.WARNING):
        w, _ = load_split(_cfg(tmp_path, format="wflw", val_list="w.txt"), "val")
    assert len(w) == 1 and f"{tmp_path / 'w.txt'}:2: expected 207 fields" in caplog.text


def test_nothing_usable_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "train.txt").write_text("images/none.jpg\n")
    with pytest.raises(LabelError, match="no usable samples"):
        load_split(_cfg(tmp_path), "train")
    with pytest.raises(LabelError, match="data folder not found"):
        load_split(_cfg(tmp_path / "nope"), "train")
    with pytest.raises(LabelError, match="unknown data format"):
        load_split(_cfg(tmp_path, format="coco"), "train")


# -- the real packs -------------------------------------------------------------------------
@pytest.mark.data
def test_real_packs_load() -> None:
    from conftest import data_root

    val, schema = load_split(DataConfig(root=str(data_root() / "face68")), "val")
    assert schema.name == "ibug68" and len(val) == 913
    assert {s.source for s in val} == {"afw", "helen", "ytf"}
    test5, schema5 = load_split(DataConfig(format="face5", root=str(data_root() / "face5"), val_list="test.txt"),
                                "val")
    assert schema5.name == "mtfl5" and len(test5) == 2995 and test5[0].pts.shape == (5, 2)


