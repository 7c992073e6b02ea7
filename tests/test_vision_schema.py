"""Keypoint schemas (flip semantics) and manifests (round trip, validation)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kpdesk.vision.manifest import Manifest, ManifestError
from kpdesk.vision.schema import SchemaError, custom_schema, get_schema, list_schemas


@pytest.mark.parametrize("name", ["ibug68", "mtfl5", "wflw98"])
def test_flip_twice_is_identity(name: str) -> None:
    schema = get_schema(name)
    pts = np.random.default_rng(0).uniform(0, 191, size=(schema.num_points, 2))
    assert np.allclose(schema.flip_points(schema.flip_points(pts, 192), 192), pts)


def test_flip_permutation_semantics_ibug68() -> None:
    """In the mirrored image, point i is the mirror of the original's point flip_perm[i]:
    the new outer corner of the image-left eye (36) is the old image-right one (45)."""
    schema = get_schema("ibug68")
    pts = np.random.default_rng(1).uniform(0, 191, size=(68, 2))
    flipped = schema.flip_points(pts, 192)
    assert np.allclose(flipped[36], [191 - pts[45, 0], pts[45, 1]])
    assert np.allclose(flipped[0], [191 - pts[16, 0], pts[16, 1]])  # jaw ends swap
    assert np.allclose(flipped[8], [191 - pts[8, 0], pts[8, 1]])  # chin stays
    assert np.allclose(flipped[30], [191 - pts[30, 0], pts[30, 1]])  # nose tip stays
    # Mirroring keeps left-of relations: the image-left eye stays left of the right one.
    upright = np.zeros((68, 2))
    upright[36:42, 0], upright[42:48, 0] = 60, 130
    f = schema.flip_points(upright, 192)
    assert f[36:42, 0].mean() < f[42:48, 0].mean()


def test_interocular_and_interpupil() -> None:
    schema = get_schema("ibug68")
    pts = np.zeros((68, 2))
    pts[36], pts[45] = [50, 80], [150, 80]
    pts[36:42, 0] = 60
    pts[42:48, 0] = 140
    pts[36], pts[45] = [50, 80], [150, 80]
    assert schema.interocular(pts) == pytest.approx(100.0)
    assert schema.interpupil(pts) > 0


def test_bad_schemas_raise() -> None:
    with pytest.raises(SchemaError):
        get_schema("nope")
    with pytest.raises(SchemaError):
        custom_schema(3, flip_perm=[1, 2, 0])  # a permutation but not an involution
    assert {"ibug68", "mtfl5"} <= set(list_schemas())


def _manifest(**kw: object) -> Manifest:
    base = dict(name="m", schema=get_schema("mtfl5"), input_size=128, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25),
                crop_scale=2.2, heatmap_size=32, decode="fusion")
    base.update(kw)
    return Manifest(**base)  # type: ignore[arg-type]


def test_manifest_round_trip(tmp_path) -> None:
    m = _manifest(info={"nme": 3.4})
    m.save(tmp_path / "m.json")
    back = Manifest.load(tmp_path / "m.json")
    assert back == m
    assert back.decoder().mode == "fusion" and back.decoder("regression").mode == "regression"


def test_manifest_errors(tmp_path) -> None:
    with pytest.raises(ManifestError, match="needs a heatmap"):
        _manifest(heatmaps_output=None)
    with pytest.raises(ManifestError, match="not found"):
        Manifest.load(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ManifestError, match="bad.json"):
        Manifest.load(tmp_path / "bad.json")
    d = _manifest().to_dict()
    d["format"] = "other/9"
    (tmp_path / "fmt.json").write_text(json.dumps(d))
    with pytest.raises(ManifestError, match="format"):
        Manifest.load(tmp_path / "fmt.json")
