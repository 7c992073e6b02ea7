"""Keypoint schemas: point names, flip permutation, drawing edges, normalisation pairs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


class SchemaError(ValueError):
    """A keypoint schema is inconsistent or unknown."""


@dataclass(frozen=True)
class KeypointSchema:
    """Describes one keypoint layout.

    Attributes:
        name: registry key, e.g. ``"ibug68"``.
        num_points: K.
        point_names: K names.
        flip_perm: index map for a horizontal mirror: point ``i`` of the mirrored face is
            point ``flip_perm[i]`` of the original.
        edges: pairs of indices joined when drawing the skeleton.
        ocular: indices of the outer eye corners (inter-ocular normalisation), or None.
        pupils: two groups of indices whose centroids are the eye centres (inter-pupil).
        crop_scale: crop side as a multiple of the landmark bounding box's longer side.
    """

    name: str
    num_points: int
    point_names: tuple[str, ...]
    flip_perm: tuple[int, ...]
    edges: tuple[tuple[int, int], ...] = ()
    ocular: tuple[int, int] | None = None
    pupils: tuple[tuple[int, ...], tuple[int, ...]] | None = None
    crop_scale: float = 1.5
    groups: tuple[tuple[str, tuple[int, ...]], ...] = field(default=())

    def __post_init__(self) -> None:
        k = self.num_points
        if len(self.point_names) != k:
            raise SchemaError(f"schema {self.name}: {len(self.point_names)} names for {k} points")
        if sorted(self.flip_perm) != list(range(k)):
            raise SchemaError(f"schema {self.name}: flip_perm is not a permutation of 0..{k - 1}")
        perm = np.asarray(self.flip_perm)
        if not np.array_equal(perm[perm], np.arange(k)):
            raise SchemaError(f"schema {self.name}: flip_perm is not an involution")
        for a, b in self.edges:
            if not (0 <= a < k and 0 <= b < k):
                raise SchemaError(f"schema {self.name}: edge ({a}, {b}) out of range")
        for idx in self.ocular or ():
            if not 0 <= idx < k:
                raise SchemaError(f"schema {self.name}: ocular index {idx} out of range")

    def flip_points(self, pts: np.ndarray, width: float) -> np.ndarray:
        """Mirror points (..., K, 2) in pixel-centre coordinates of an image ``width`` wide."""
        out = np.array(pts, dtype=np.float64, copy=True)
        out[..., 0] = (width - 1) - out[..., 0]
        return out[..., list(self.flip_perm), :]

    def interocular(self, pts: np.ndarray) -> np.ndarray:
        """Distance between the outer eye corners, per face. pts (..., K, 2) -> (...)."""
        if self.ocular is None:
            raise SchemaError(f"schema {self.name} has no ocular pair")
        a, b = self.ocular
        return np.linalg.norm(pts[..., a, :] - pts[..., b, :], axis=-1)

    def interpupil(self, pts: np.ndarray) -> np.ndarray:
        """Distance between the eye centres, per face. pts (..., K, 2) -> (...)."""
        if self.pupils is None:
            raise SchemaError(f"schema {self.name} has no pupil groups")
        left = pts[..., list(self.pupils[0]), :].mean(axis=-2)
        right = pts[..., list(self.pupils[1]), :].mean(axis=-2)
        return np.linalg.norm(left - right, axis=-1)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "num_points": self.num_points,
            "point_names": list(self.point_names),
            "flip_perm": list(self.flip_perm),
            "edges": [list(e) for e in self.edges],
            "ocular": list(self.ocular) if self.ocular else None,
            "pupils": [list(g) for g in self.pupils] if self.pupils else None,
            "crop_scale": self.crop_scale,
            "groups": [[n, list(ix)] for n, ix in self.groups],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> KeypointSchema:
        try:
            return cls(
                name=str(d["name"]),
                num_points=int(d["num_points"]),
                point_names=tuple(d.get("point_names") or [f"p{i}" for i in range(int(d["num_points"]))]),
                flip_perm=tuple(int(i) for i in d["flip_perm"]),
                edges=tuple((int(a), int(b)) for a, b in d.get("edges", [])),
                ocular=tuple(d["ocular"]) if d.get("ocular") else None,
                pupils=tuple(tuple(g) for g in d["pupils"]) if d.get("pupils") else None,
                crop_scale=float(d.get("crop_scale", 1.5)),
                groups=tuple((str(n), tuple(ix)) for n, ix in d.get("groups", [])),
            )
        except KeyError as exc:
            raise SchemaError(f"invalid schema: missing field {exc.args[0]!r}") from None
        except (TypeError, ValueError) as exc:
            if isinstance(exc, SchemaError):
                raise
            raise SchemaError(f"invalid schema: {exc}") from None


def _perm_from_pairs(k: int, pairs: list[tuple[int, int]]) -> tuple[int, ...]:
    perm = list(range(k))
    for a, b in pairs:
        perm[a], perm[b] = b, a
    return tuple(perm)


def _chain(idx: range, closed: bool = False) -> list[tuple[int, int]]:
    ids = list(idx)
    edges = list(zip(ids[:-1], ids[1:]))
    if closed:
        edges.append((ids[-1], ids[0]))
    return edges


def _ibug68() -> KeypointSchema:
    pairs = [(i, 16 - i) for i in range(8)]
    pairs += [(17, 26), (18, 25), (19, 24), (20, 23), (21, 22)]
    pairs += [(31, 35), (32, 34)]
    pairs += [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]
    pairs += [(48, 54), (49, 53), (50, 52), (55, 59), (56, 58)]
    pairs += [(60, 64), (61, 63), (65, 67)]
    groups = (
        ("jaw", tuple(range(0, 17))),
        ("brow_l", tuple(range(17, 22))),
        ("brow_r", tuple(range(22, 27))),
        ("nose", tuple(range(27, 36))),
        ("eye_l", tuple(range(36, 42))),
        ("eye_r", tuple(range(42, 48))),
        ("mouth", tuple(range(48, 68))),
    )
    names = []
    for gname, ix in groups:
        names += [f"{gname}_{j}" for j in range(len(ix))]
    edges = (
        _chain(range(0, 17))
        + _chain(range(17, 22))
        + _chain(range(22, 27))
        + _chain(range(27, 31))
        + _chain(range(31, 36))
        + [(30, 33)]
        + _chain(range(36, 42), closed=True)
        + _chain(range(42, 48), closed=True)
        + _chain(range(48, 60), closed=True)
        + _chain(range(60, 68), closed=True)
    )
    return KeypointSchema(
        name="ibug68",
        num_points=68,
        point_names=tuple(names),
        flip_perm=_perm_from_pairs(68, pairs),
        edges=tuple(edges),
        ocular=(36, 45),
        pupils=(tuple(range(36, 42)), tuple(range(42, 48))),
        crop_scale=1.5,
        groups=groups,
    )


def _mtfl5() -> KeypointSchema:
    return KeypointSchema(
        name="mtfl5",
        num_points=5,
        point_names=("eye_l", "eye_r", "nose", "mouth_l", "mouth_r"),
        flip_perm=(1, 0, 2, 4, 3),
        edges=((0, 1), (0, 2), (1, 2), (2, 3), (2, 4), (3, 4)),
        ocular=(0, 1),
        pupils=((0,), (1,)),
        crop_scale=2.2,
    )


def _wflw98() -> KeypointSchema:
    pairs = [(i, 32 - i) for i in range(16)]
    pairs += [(33, 46), (34, 45), (35, 44), (36, 43), (37, 42), (38, 50), (39, 49), (40, 48), (41, 47)]
    pairs += [(55, 59), (56, 58)]
    pairs += [(60, 72), (61, 71), (62, 70), (63, 69), (64, 68), (65, 75), (66, 74), (67, 73)]
    pairs += [(76, 82), (77, 81), (78, 80), (87, 83), (86, 84), (88, 92), (89, 91), (95, 93), (96, 97)]
    edges = (
        _chain(range(0, 33))
        + _chain(range(33, 42), closed=True)
        + _chain(range(42, 51), closed=True)
        + _chain(range(51, 55))
        + _chain(range(55, 60))
        + _chain(range(60, 68), closed=True)
        + _chain(range(68, 76), closed=True)
        + _chain(range(76, 88), closed=True)
        + _chain(range(88, 96), closed=True)
    )
    return KeypointSchema(
        name="wflw98",
        num_points=98,
        point_names=tuple(f"p{i}" for i in range(98)),
        flip_perm=_perm_from_pairs(98, pairs),
        edges=tuple(edges),
        ocular=(60, 72),
        pupils=((96,), (97,)),
        crop_scale=1.5,
    )


_REGISTRY: dict[str, KeypointSchema] = {}


def register_schema(schema: KeypointSchema) -> None:
    _REGISTRY[schema.name] = schema


for _s in (_ibug68(), _mtfl5(), _wflw98()):
    register_schema(_s)


def get_schema(name: str) -> KeypointSchema:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise SchemaError(f"unknown keypoint schema {name!r}; known: {sorted(_REGISTRY)}") from None


def list_schemas() -> list[str]:
    return sorted(_REGISTRY)


def schema_for_points(num_points: int) -> KeypointSchema:
    """The known schema of that many points (68: ibug68, 5: mtfl5, 98: wflw98), else a custom one."""
    known = {68: "ibug68", 5: "mtfl5", 98: "wflw98"}
    return get_schema(known[num_points]) if num_points in known else custom_schema(num_points)


def custom_schema(num_points: int, name: str = "custom", flip_perm: list[int] | None = None) -> KeypointSchema:
    """A schema for user data with no known semantics (identity flip unless given)."""
    return KeypointSchema(
        name=name,
        num_points=num_points,
        point_names=tuple(f"p{i}" for i in range(num_points)),
        flip_perm=tuple(flip_perm) if flip_perm else tuple(range(num_points)),
    )
