"""Head pose (yaw, pitch, roll) from 2D landmarks: ``cv2.solvePnP`` against the 3D mean face.

Angles, in degrees, of the head relative to the camera (0, 0, 0 = looking straight at it),
named after the head's own motion, so they mean the same with the selfie mirror on or off:
    yaw   > 0: the person turns to their own left (towards the right of an unmirrored
               camera image, the left of a mirrored one).
    pitch > 0: the face turns up.
    roll  > 0: the head tilts clockwise as an unmirrored camera sees it (towards the
               person's own left shoulder; counter-clockwise in a mirrored image).
Pass ``mirrored=True`` for points found in a left-right flipped (selfie) frame: the model
then sees the mirror image of the head, whose yaw and roll are the negated ones (the mean
face is mirror-symmetric), and the angles are turned back. ``rotation`` stays that of the
head *in the image given*, so axes drawn from it sit on the face shown.
The rotation ``R`` maps mean-face coordinates (``kpdesk.vision.mean_face``: x right, y down,
z away from the camera) into the camera's; ``R = Rz(roll) @ Ry(-yaw) @ Rx(-pitch)`` for an
unmirrored frame.

From 5 points (eyes, nose tip, mouth corners: nearly coplanar) the pose is rough: pitch
especially, ~20 degrees off the 68-point pose on a frontal photo. Such a pose says so
(``HeadPose.rough``, ``"rough": true`` in records) and the overlay marks it.

The camera is unknown, so it is modelled as a pinhole with focal length ``max(W, H)``
pixels (about a 53-degree horizontal field of view) and the principal point at the image
centre. Angles depend little on that guess; the distance (``translation_mm``) does.
Supported layouts: iBUG 68 (the rigid points: brows, nose, eyes, mouth corners) and the
5-point MTFL layout (eye centres, nose tip, mouth corners).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from kpdesk.vision.mean_face import MEAN_FACE_68_MM
from kpdesk.vision.mesh68 import default_view

# Points whose 3D position does not slide with the view (the jaw contour 0-16 does) and
# moves little with expressions (the inner lips do): brows, nose, eyes, mouth corners.
RIGID_68 = tuple(range(17, 48)) + (48, 54)
_MF = MEAN_FACE_68_MM
MEAN_FACE_5_MM = np.stack([_MF[36:42].mean(axis=0), _MF[42:48].mean(axis=0), _MF[30], _MF[48], _MF[54]])
MEAN_FACE_5_MM.setflags(write=False)
AXIS_ORIGIN_68 = 30  # nose tip


@dataclass(frozen=True, eq=False)
class HeadPose:
    """One face's pose.

    Attributes:
        yaw, pitch, roll: degrees (signs in the module docstring).
        rotation: (3, 3) mean face -> camera.
        translation_mm: (3,) the mean face's origin in camera coordinates (mm, focal guessed).
        reprojection_px: RMS distance between the landmarks used and the posed mean face's projection.
        focal_px, center_px: the assumed camera.
        mirrored: the points came from a left-right flipped frame (yaw / roll turned back).
        rough: estimated from 5 points only (see the module docstring).
    """

    yaw: float
    pitch: float
    roll: float
    rotation: np.ndarray
    translation_mm: np.ndarray
    reprojection_px: float
    focal_px: float
    center_px: tuple[float, float]
    mirrored: bool = False
    rough: bool = False

    def as_dict(self, digits: int = 2) -> dict[str, float | bool]:
        return {"yaw": round(self.yaw, digits), "pitch": round(self.pitch, digits), "roll": round(self.roll, digits),
                "rough": self.rough}

    def label(self) -> str:
        """``yaw +12  pitch -3  roll +1``, with ``(rough: 5 points)`` after a rough pose."""
        text = f"yaw {self.yaw:+.0f}  pitch {self.pitch:+.0f}  roll {self.roll:+.0f}"
        return text + ("  (rough: 5 points)" if self.rough else "")

    def camera_matrix(self) -> np.ndarray:
        return camera_matrix(self.focal_px, self.center_px)

    def project(self, pts_model_mm: np.ndarray) -> np.ndarray:
        """Mean-face points (N, 3) mm -> (N, 2) image pixels under this pose."""
        return project(pts_model_mm, self.rotation, self.translation_mm, self.focal_px, self.center_px)

    def axes_px(self, length_mm: float = 60.0) -> tuple[np.ndarray, np.ndarray]:
        """The head's axes for drawing: origin (2,) at the nose tip, and the image points (3, 2)
        of its x (right), y (down) and facing (out of the face) directions ``length_mm`` long."""
        o = MEAN_FACE_68_MM[AXIS_ORIGIN_68]
        ends = o + length_mm * np.array([[1.0, 0, 0], [0, 1.0, 0], [0, 0, -1.0]])
        p = self.project(np.vstack([o, ends]))
        return p[0], p[1:]


def rotation_from_angles(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """(3, 3) rotation for the given angles in degrees (see the module docstring)."""
    a, b, g = math.radians(-pitch), math.radians(-yaw), math.radians(roll)
    rx = np.array([[1, 0, 0], [0, math.cos(a), -math.sin(a)], [0, math.sin(a), math.cos(a)]])
    ry = np.array([[math.cos(b), 0, math.sin(b)], [0, 1, 0], [-math.sin(b), 0, math.cos(b)]])
    rz = np.array([[math.cos(g), -math.sin(g), 0], [math.sin(g), math.cos(g), 0], [0, 0, 1]])
    return rz @ ry @ rx


def angles_from_rotation(r: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees of a (3, 3) rotation; inverse of ``rotation_from_angles``
    for |yaw| < 90."""
    r = np.asarray(r, dtype=np.float64)
    b = math.asin(max(-1.0, min(1.0, -r[2, 0])))
    a = math.atan2(r[2, 1], r[2, 2])
    g = math.atan2(r[1, 0], r[0, 0])
    return -math.degrees(b), -math.degrees(a), math.degrees(g)


def camera_matrix(focal_px: float, center_px: tuple[float, float]) -> np.ndarray:
    return np.array([[focal_px, 0, center_px[0]], [0, focal_px, center_px[1]], [0, 0, 1]], dtype=np.float64)


def default_camera(frame_size: tuple[int, int]) -> tuple[float, tuple[float, float]]:
    """(focal_px, principal point) assumed for a ``(width, height)`` frame."""
    w, h = frame_size
    if w <= 0 or h <= 0:
        raise ValueError(f"frame size must be positive, got {frame_size}")
    return float(max(w, h)), ((w - 1) / 2.0, (h - 1) / 2.0)


def project(pts_model_mm: np.ndarray, rotation: np.ndarray, translation_mm: np.ndarray, focal_px: float,
            center_px: tuple[float, float]) -> np.ndarray:
    """Pinhole projection of mean-face points (N, 3) posed by (R, t) -> (N, 2) pixels."""
    cam = np.asarray(pts_model_mm, dtype=np.float64) @ np.asarray(rotation).T + np.asarray(translation_mm)
    return focal_px * cam[:, :2] / cam[:, 2:3] + np.asarray(center_px)


def model_points(num_points: int) -> tuple[np.ndarray, tuple[int, ...]] | None:
    """The 3D points (N, 3) and the landmark indices they match, for a K-point layout; None if unsupported."""
    if num_points == 68:
        return MEAN_FACE_68_MM[list(RIGID_68)], RIGID_68
    if num_points == 5:
        return MEAN_FACE_5_MM, (0, 1, 2, 3, 4)
    return None


MESH_POINTS = 478  # MediaPipe's face mesh (kpdesk.inference.reference)


def estimate_head_pose(pts_img: np.ndarray, frame_size: tuple[int, int],
                       focal_px: float | None = None, mirrored: bool = False) -> HeadPose | None:
    """Head pose of one face from its landmarks (K, 2) in a ``(width, height)`` frame
    (``mirrored``: a left-right flipped one, e.g. the app's selfie view).

    Returns None for a layout other than 68 or 5 points (or MediaPipe's 478-point mesh, taken
    through its 68-point view), non-finite points, or when solvePnP finds no pose in front of
    the camera.
    """
    pts = np.asarray(pts_img, dtype=np.float64)
    if len(pts) == MESH_POINTS:
        pts = default_view().apply(pts)
    found = model_points(len(pts))
    if found is None:
        return None
    obj, idx = found
    img = pts[list(idx)]
    if not np.all(np.isfinite(img)):
        return None
    f0, c = default_camera(frame_size)
    f = float(focal_px) if focal_px else f0
    k = camera_matrix(f, c)
    ok, rvec, tvec = cv2.solvePnP(obj, img, k, None, flags=cv2.SOLVEPNP_SQPNP)
    if not ok:
        return None
    rvec, tvec = cv2.solvePnPRefineLM(obj, img, k, None, rvec, tvec)
    t = tvec.reshape(3)
    if t[2] <= 0:
        return None
    r, _ = cv2.Rodrigues(rvec)
    proj = project(obj, r, t, f, c)
    err = float(np.sqrt(np.mean(np.sum((proj - img) ** 2, axis=1))))
    yaw, pitch, roll = angles_from_rotation(r)
    if mirrored:  # the mirror image of a head turned by (yaw, roll) is one turned by (-yaw, -roll)
        yaw, roll = -yaw, -roll
    return HeadPose(yaw, pitch, roll, r, t, err, f, c, mirrored=bool(mirrored), rough=len(pts) == 5)


def face_pose(pts_img: np.ndarray, frame_size: tuple[int, int], mirrored: bool = False) -> HeadPose | None:
    """``estimate_head_pose`` that also returns None when the frame size is unknown ((0, 0))."""
    if frame_size[0] <= 0 or frame_size[1] <= 0:
        return None
    return estimate_head_pose(pts_img, frame_size, mirrored=mirrored)


def pose_record(pose: HeadPose | None) -> dict[str, float | bool] | None:
    """The JSON form used by recordings and ``kpdesk detect --json``: yaw, pitch, roll in degrees
    (2 decimals) and ``rough`` (from 5 points), or None when there is no pose."""
    return None if pose is None else pose.as_dict(2)

