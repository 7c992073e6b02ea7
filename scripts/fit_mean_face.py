"""Fit the 68-point 3D mean face of ``kpdesk/vision/mean_face.py`` from 2D labels.

    python scripts/fit_mean_face.py [--data ../shared/data/face68] [--list train.txt] [--write]

1. Shape: rigid structure from motion under scaled orthographic projection. Every labelled
   face is one 'view' of a single rigid 3D shape S (68 x 3). Start from the Tomasi-Kanade
   factorisation (rank-3 SVD of the centred 2F x 68 measurement matrix, metric upgrade),
   then alternate (a) each face's best scaled rotation given S and (b) the least-squares S
   given all cameras, with Huber weights per face (expressions and label noise count less).
   Mirror-symmetrise; orient it (x to the image's right, y down, z away from the camera,
   nose tip nearest the camera); scale the outer eye corners 36/45 to 90 mm apart.
2. Depth scale and 'frontal': 2D labels cannot tell a deep face turned a little from a
   flat face turned a lot (the bas-relief ambiguity), and SfM alone makes the nose ~50 mm
   deep, far more than real faces. So both are taken from MediaPipe's Face Landmarker
   (the bundle in the asset cache, run locally on the AFW / HELEN training photos): the
   depth scale k (z -> k z) that makes our solvePnP rotations agree best with MediaPipe's
   (median angle between them, after one constant rotation offset), and that offset's
   pitch, so that 'looking straight at the camera' means the same as in MediaPipe.
   ``--no-mediapipe`` skips step 2 (frontal = eye and mouth corners in one image-parallel
   plane, depth unscaled).

Without ``--write`` it only prints the shape and the checks; with it, it rewrites the table
in ``kpdesk/vision/mean_face.py``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from kpdesk.vision.labels import load_labelled_folder  # noqa: E402
from kpdesk.vision.schema import get_schema  # noqa: E402

EYE_DISTANCE_MM = 90.0


def normalise_views(pts: np.ndarray) -> np.ndarray:
    """(F, K, 2) -> each face centred and scaled to unit RMS radius."""
    c = pts - pts.mean(axis=1, keepdims=True)
    r = np.sqrt((c**2).sum(axis=2).mean(axis=1))
    return c / r[:, None, None]


def factorise(views: np.ndarray) -> np.ndarray:
    """Tomasi-Kanade with metric upgrade: (F, K, 2) centred views -> S (3, K)."""
    f, k, _ = views.shape
    w = np.concatenate([views[:, :, 0], views[:, :, 1]], axis=0)  # rows: all x, then all y
    u, s, vt = np.linalg.svd(w, full_matrices=False)
    m = u[:, :3] * np.sqrt(s[:3])
    shape = np.sqrt(s[:3])[:, None] * vt[:3]
    mx, my = m[:f], m[f:]

    def g(a: np.ndarray, b: np.ndarray) -> np.ndarray:  # a^T L b in terms of the 6 entries of symmetric L
        return np.stack([a[:, 0] * b[:, 0], a[:, 0] * b[:, 1] + a[:, 1] * b[:, 0],
                         a[:, 0] * b[:, 2] + a[:, 2] * b[:, 0], a[:, 1] * b[:, 1],
                         a[:, 1] * b[:, 2] + a[:, 2] * b[:, 1], a[:, 2] * b[:, 2]], axis=1)

    # |mx|^2 = |my|^2 (same scale on both rows), mx . my = 0, and the mean |mx|^2 = 1.
    a = np.concatenate([g(mx, mx) - g(my, my), g(mx, my), g(mx, mx).mean(axis=0, keepdims=True)])
    b = np.concatenate([np.zeros(2 * f), [1.0]])
    ell = np.linalg.lstsq(a, b, rcond=None)[0]
    lmat = np.array([[ell[0], ell[1], ell[2]], [ell[1], ell[3], ell[4]], [ell[2], ell[4], ell[5]]])
    w_, v_ = np.linalg.eigh(lmat)
    q = v_ @ np.diag(np.sqrt(np.clip(w_, 1e-9, None)))
    return np.linalg.inv(q) @ shape


def fit_camera(view: np.ndarray, shape: np.ndarray) -> np.ndarray:
    """Best scaled orthographic projection P = s [r1; r2] (2 x 3) of shape (3, K) onto view (K, 2)."""
    a = view.T @ np.linalg.pinv(shape)  # unconstrained 2 x 3
    u, sv, vt = np.linalg.svd(a, full_matrices=False)
    return sv.mean() * (u @ vt)


def refine(views: np.ndarray, shape: np.ndarray, iters: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """Alternate cameras and shape with Huber weights per face; returns (shape, residual per face)."""
    f, k, _ = views.shape
    for _ in range(iters):
        cams = np.stack([fit_camera(views[i], shape) for i in range(f)])
        res = np.sqrt(((np.einsum("fij,jk->fik", cams, shape) - views.transpose(0, 2, 1)) ** 2).mean(axis=(1, 2)))
        delta = 1.5 * np.median(res)
        wts = np.where(res <= delta, 1.0, delta / np.maximum(res, 1e-12))
        # S = (sum w P^T P)^-1 sum w P^T v, the same 3x3 system for every point.
        lhs = np.einsum("f,fji,fjk->ik", wts, cams, cams)
        rhs = np.einsum("f,fji,fkj->ik", wts, cams, views)
        shape = np.linalg.solve(lhs, rhs)
    return shape, res


def to_face_frame(shape: np.ndarray) -> np.ndarray:
    """(3, K) -> (K, 3) in the head-pose frame, mirror-symmetric, nose nearest the camera, 90 mm eyes."""
    schema = get_schema("ibug68")
    p = shape.T.copy()
    p -= p.mean(axis=0)

    def frame(p: np.ndarray) -> np.ndarray:
        x = p[45] - p[36]
        x /= np.linalg.norm(x)
        down = (p[48] + p[54]) / 2 - (p[36] + p[45]) / 2
        z = np.cross(x, down)
        z /= np.linalg.norm(z)
        y = np.cross(z, x)
        return np.stack([x, y, z])  # rows: new axes

    for _ in range(2):
        p = p @ frame(p).T
        if p[30, 2] > p[36, 2]:  # depth reflection: the nose tip must be nearest the camera
            p[:, 2] *= -1
        mirror = p[list(schema.flip_perm)] * np.array([-1.0, 1.0, 1.0])
        p = (p + mirror) / 2
        p -= p.mean(axis=0)
    return p * (EYE_DISTANCE_MM / np.linalg.norm(p[45] - p[36]))


def mediapipe_rotations(faces: list, every: int = 2) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """MediaPipe Face Landmarker's head rotations (converted to our camera frame: y down, z
    forward) on every ``every``-th face, with the labels of the faces it found."""
    import cv2
    import mediapipe as mp
    from mediapipe.tasks import python as mp_tasks
    from mediapipe.tasks.python import vision as mp_vision

    from kpdesk.assets import asset_path

    opts = mp_vision.FaceLandmarkerOptions(
        base_options=mp_tasks.BaseOptions(model_asset_path=str(asset_path("face_landmarker.task"))),
        running_mode=mp_vision.RunningMode.IMAGE, num_faces=1, output_facial_transformation_matrixes=True)
    flip = np.diag([1.0, -1.0, -1.0])  # MediaPipe's camera and face frames: y up, z towards the viewer
    rots, labels = [], []
    with mp_vision.FaceLandmarker.create_from_options(opts) as lm:
        for f in faces[::every]:
            rgb = np.ascontiguousarray(cv2.imread(f.path)[..., ::-1])
            r = lm.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb))
            if r.facial_transformation_matrixes:
                rots.append(flip @ np.asarray(r.facial_transformation_matrixes[0])[:3, :3] @ flip)
                labels.append((f.pts_img, rgb.shape[1], rgb.shape[0]))
    return rots, labels


def _mean_rotation(rs: list[np.ndarray]) -> np.ndarray:
    u, _, vt = np.linalg.svd(np.sum(rs, axis=0))
    return u @ np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))]) @ vt


def _angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.degrees(np.arccos(np.clip((np.trace(a.T @ b) - 1) / 2, -1, 1))))


def calibrate(mean_face: np.ndarray, rots: list[np.ndarray], labels: list) -> tuple[float, np.ndarray, dict]:
    """Depth scale k and the constant offset Q (our R ~ MediaPipe's R @ Q) that make our
    poses from the labels agree best with MediaPipe's; returns (k, Q, report)."""
    import cv2

    from kpdesk.vision.headpose import RIGID_68, angles_from_rotation, camera_matrix, default_camera

    def ours(face: np.ndarray) -> list[np.ndarray]:
        obj = face[list(RIGID_68)]
        out = []
        for pts, w, h in labels:
            k_mat = camera_matrix(*default_camera((w, h)))
            img = pts[list(RIGID_68)]
            _, rv, tv = cv2.solvePnP(obj, img, k_mat, None, flags=cv2.SOLVEPNP_SQPNP)
            rv, tv = cv2.solvePnPRefineLM(obj, img, k_mat, None, rv, tv)
            out.append(cv2.Rodrigues(rv)[0])
        return out

    best = None
    for k in np.arange(0.5, 1.21, 0.05):
        ro = ours(mean_face * [1.0, 1.0, k])
        q = _mean_rotation([m.T @ o for m, o in zip(rots, ro)])
        med = float(np.median([_angle_deg(m @ q, o) for m, o in zip(rots, ro)]))
        if best is None or med < best[0]:
            best = (med, float(k), q)
    med, k, q = best
    report = {"faces": len(rots), "k": round(k, 2), "median_angle_deg": round(med, 2),
              "offset_ypr_deg": [round(v, 2) for v in angles_from_rotation(q)]}
    return k, q, report


def agreement(mean_face: np.ndarray, rots: list[np.ndarray], labels: list) -> str:
    """Per-angle agreement of our poses (from the labels) with MediaPipe's."""
    import kpdesk.vision.headpose as hp
    from kpdesk.vision.headpose import angles_from_rotation, estimate_head_pose

    saved = hp.MEAN_FACE_68_MM
    hp.MEAN_FACE_68_MM = mean_face
    try:
        o = np.array([[p.yaw, p.pitch, p.roll] for p in
                      (estimate_head_pose(pts, (w, h)) for pts, w, h in labels)])
    finally:
        hp.MEAN_FACE_68_MM = saved
    t = np.array([angles_from_rotation(r) for r in rots])
    lines = []
    for i, name in enumerate(("yaw", "pitch", "roll")):
        slope, icpt = np.polyfit(t[:, i], o[:, i], 1)
        lines.append(f"  {name}: ours = {slope:.2f} x MediaPipe {icpt:+.1f}; median |difference| "
                     f"{np.median(np.abs(o[:, i] - t[:, i])):.1f} deg (MediaPipe range {t[:, i].min():.0f}.."
                     f"{t[:, i].max():.0f})")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "face68"))
    ap.add_argument("--list", default="train.txt")
    ap.add_argument("--no-mediapipe", action="store_true", help="skip the depth / frontal calibration")
    ap.add_argument("--write", action="store_true", help="rewrite kpdesk/vision/mean_face.py")
    args = ap.parse_args()
    labelled = load_labelled_folder(args.data, args.list)
    pts = np.stack([f.pts_img for f in labelled.faces])
    views = normalise_views(pts)
    shape, res = refine(views, factorise(views))
    mean_face = to_face_frame(shape)
    print(f"{len(pts)} faces; RMS residual of the rigid fit (unit face radius): median {np.median(res):.4f}, "
          f"90th percentile {np.percentile(res, 90):.4f}")
    print(f"SfM alone: nose tip {mean_face[36, 2] - mean_face[30, 2]:.1f} mm in front of the outer eye corners")
    if not args.no_mediapipe:
        from kpdesk.vision.headpose import angles_from_rotation, rotation_from_angles

        photos = [f for f in labelled.faces if f.source in ("afw", "helen")]
        rots, labels = mediapipe_rotations(photos)
        k, q, report = calibrate(mean_face, rots, labels)
        print(f"calibration on {report['faces']} AFW/HELEN photos: depth scale {report['k']}, median angle to "
              f"MediaPipe {report['median_angle_deg']} deg after a constant offset (yaw, pitch, roll) "
              f"{report['offset_ypr_deg']} deg")
        # Keep only the offset's pitch: yaw and roll offsets would break the mirror symmetry.
        pitch_offset = angles_from_rotation(q)[1]
        mean_face = (mean_face * [1.0, 1.0, k]) @ rotation_from_angles(0.0, pitch_offset, 0.0).T
        mean_face -= mean_face.mean(axis=0)
        print("agreement with MediaPipe after calibration:\n" + agreement(mean_face, rots, labels))
    d = mean_face
    print(f"nose tip (30) in front of the outer eye corners: {d[36, 2] - d[30, 2]:.1f} mm, of the mouth corners: "
          f"{d[48, 2] - d[30, 2]:.1f} mm; eyes to chin (8): {d[8, 1] - d[36, 1]:.1f} mm")
    if args.write:
        target = REPO / "kpdesk" / "vision" / "mean_face.py"
        text = target.read_text()
        head, _, rest = text.partition("MEAN_FACE_68_MM = np.array([\n")
        _, _, tail = rest.partition("])\n")
        rows = "".join(f"    [{x:8.2f}, {y:8.2f}, {z:8.2f}],  # {i}\n" for i, (x, y, z) in enumerate(mean_face))
        target.write_text(head + "MEAN_FACE_68_MM = np.array([\n" + rows + "])\n" + tail)
        print(f"wrote {target}")
    else:
        np.set_printoptions(precision=2, suppress=True)
        print(mean_face)
    return 0


if __name__ == "__main__":
    sys.exit(main())
