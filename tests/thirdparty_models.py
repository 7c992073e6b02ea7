"""A third-party-style landmark model and labelled faces for it, made here (no data, no torch).

``synthetic_faces(folder, n)`` writes a face68-format folder (``images/*.png`` + ``.pts``
beside each, ``val.txt``): each "face" is the 68-point 2-D mean face (``kpdesk.vision.
mean_face``) at a random size and place, drawn as a red disk centred on its landmark box
(radius ``DISK`` x the box's longer side) on a grey, textured background.

``write_model(path, ...)`` writes an ONNX graph (``onnx.helper``, a dozen operators) that
finds the landmarks the way a trained network half does: it measures the red disk in its
crop (the centroid and second moment of max(R - B, 0)) and blends that measurement
half-and-half with a fixed prior, the box it "was trained on" (side 1 / ``scale`` of the
crop, centre ``offset`` box sides from the crop centre). So its points are exact only on
crops cut with that very (scale, offset), and ``kpdesk models import --calibrate`` has a
known answer to find. It takes RGB in [0, 1] (``--mean 0 --std 255``), NCHW or NHWC, and
outputs coordinates in [0, 1] of the crop, crop pixels, or Gaussian heatmaps.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

DISK = 0.55  # disk radius / landmark-box longer side
SIZE = 64  # the model's input side


def template(points: int = 68) -> np.ndarray:
    """(K, 2): the mean face's 68 points, or its 5 (eye centres, nose tip, mouth corners),
    with their landmark box centred on 0, longer side 1."""
    from kpdesk.vision.mean_face import MEAN_FACE_68_MM

    p = MEAN_FACE_68_MM[:, :2].astype(np.float64)
    if points == 5:
        p = np.stack([p[36:42].mean(0), p[42:48].mean(0), p[30], p[48], p[54]])
    lo, hi = p.min(0), p.max(0)
    return (p - (lo + hi) / 2) / float(max(hi - lo))


def synthetic_faces(folder: Path, n: int = 40, seed: int = 0, image_size: int = 192, points: int = 68) -> Path:
    """Write ``n`` labelled faces into ``folder`` (list ``val.txt``; face68 format, or face5
    with ``points=5``, whose disk is sized and centred on the 5 points' box)."""
    from kpdesk.vision.labels import write_pts

    rng = np.random.default_rng(seed)
    folder = Path(folder)
    (folder / "images" / "synth").mkdir(parents=True, exist_ok=True)
    tpl = template(points)
    names = []
    for i in range(n):
        side = rng.uniform(50, 80)
        cx, cy = rng.uniform(0.4, 0.6, size=2) * image_size
        pts = tpl * side + (cx, cy)
        # A grey, textured background (R = G = B, so max(R - B, 0) is 0 on it either way).
        grey = rng.integers(90, 140, (image_size, image_size), dtype=np.uint8)
        img = np.ascontiguousarray(np.repeat(grey[:, :, None], 3, axis=2))
        # The disk drawn 4x larger without anti-aliasing, then area-averaged down: each pixel
        # gets the fraction of it the disk covers (OpenCV's anti-aliased disks come out larger).
        up = 4
        mask = np.zeros((image_size * up, image_size * up), np.uint8)
        centre = (int(round((cx + 0.5) * up * 16 - 8)), int(round((cy + 0.5) * up * 16 - 8)))
        cv2.circle(mask, centre, int(round(DISK * side * up * 16)), 255, -1, cv2.LINE_8, 4)
        cover = cv2.resize(mask, (image_size, image_size), interpolation=cv2.INTER_AREA)[..., None] / 255.0
        img = (img * (1 - cover) + np.array([40, 40, 220]) * cover).round().astype(np.uint8)
        rel = f"images/synth/face{i:03d}.png"
        cv2.imwrite(str(folder / rel), img)
        if points == 68:
            write_pts(folder / rel.replace(".png", ".pts"), pts)
            names.append(rel)
        else:
            names.append(" ".join([rel, *(f"{v:.3f}" for v in pts[:, 0]), *(f"{v:.3f}" for v in pts[:, 1])]))
    (folder / "val.txt").write_text("\n".join(names) + "\n")
    return folder


def write_model(path: Path, scale: float = 1.7, offset: tuple[float, float] = (0.05, 0.12),
                layout: str = "nchw", output: str = "coords01", size: int = SIZE, heatmap: int = 16,
                points: int = 68) -> Path:
    """Write the graph (see the module docstring) to ``path``; returns it."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    tpl = template(points)
    k = len(tpl)
    grid = (np.arange(size, dtype=np.float32) + 0.5) / size
    gx = np.broadcast_to(grid[None, None, None, :], (1, 1, size, size)).astype(np.float32)
    gy = np.broadcast_to(grid[None, None, :, None], (1, 1, size, size)).astype(np.float32)
    prior_side = 1.0 / scale  # box side in crop units
    prior_cx, prior_cy = 0.5 - offset[0] * prior_side, 0.5 - offset[1] * prior_side
    inits = {
        "gx": gx, "gy": gy,
        "tx": tpl[:, 0].astype(np.float32)[None], "ty": tpl[:, 1].astype(np.float32)[None],
        "half": np.float32(0.5), "two": np.float32(2.0), "eps": np.float32(1e-6),
        "inv_disk": np.float32(1.0 / DISK),
        "prior_cx": np.float32(prior_cx), "prior_cy": np.float32(prior_cy), "prior_side": np.float32(prior_side),
        "axes": np.array([1, 2, 3], np.int64), "c0": np.array([0], np.int64), "c1": np.array([1], np.int64),
        "c2": np.array([2], np.int64), "c3": np.array([3], np.int64), "ax1": np.array([1], np.int64),
        "flat": np.array([0, -1], np.int64), "ax2": np.array([2], np.int64),
    }
    nodes = []

    def node(op: str, ins: list[str], out: str, **kw: object) -> str:
        nodes.append(helper.make_node(op, ins, [out], **kw))
        return out

    x = "image"
    if layout == "nhwc":
        x = node("Transpose", ["image"], "x_nchw", perm=[0, 3, 1, 2])
    r = node("Slice", [x, "c0", "c1", "ax1"], "r")
    b = node("Slice", [x, "c2", "c3", "ax1"], "b")
    w = node("Relu", [node("Sub", [r, b], "rb")], "w")
    sw = node("Add", [node("ReduceSum", [w, "axes"], "sw0", keepdims=1), "eps"], "sw")
    cx = node("Div", [node("ReduceSum", [node("Mul", [w, "gx"], "wx"), "axes"], "swx", keepdims=1), sw], "cx")
    cy = node("Div", [node("ReduceSum", [node("Mul", [w, "gy"], "wy"), "axes"], "swy", keepdims=1), sw], "cy")
    dx2 = node("Pow", [node("Sub", ["gx", cx], "dx"), "two"], "dx2")
    dy2 = node("Pow", [node("Sub", ["gy", cy], "dy"), "two"], "dy2")
    m2 = node("Div", [node("ReduceSum", [node("Mul", [w, node("Add", [dx2, dy2], "d2")], "wd2"), "axes"], "swd2",
                           keepdims=1), sw], "m2")
    radius = node("Sqrt", [node("Mul", [m2, "two"], "m2x2")], "radius")  # a uniform disk: E[r^2] = R^2 / 2
    side = node("Mul", [radius, "inv_disk"], "side")
    # Half measured, half the prior crop the model "was trained on".
    mcx = node("Mul", [node("Add", [cx, "prior_cx"], "scx"), "half"], "mcx")
    mcy = node("Mul", [node("Add", [cy, "prior_cy"], "scy"), "half"], "mcy")
    mside = node("Mul", [node("Add", [side, "prior_side"], "sside"), "half"], "mside")
    mcx, mcy, mside = (node("Reshape", [v, "flat"], f"{v}_b") for v in (mcx, mcy, mside))  # (B, 1)
    px = node("Add", [node("Mul", ["tx", mside], "txs"), mcx], "px")  # (B, K)
    py = node("Add", [node("Mul", ["ty", mside], "tys"), mcy], "py")
    pxy = node("Concat", [node("Unsqueeze", [px, "ax2"], "px3"), node("Unsqueeze", [py, "ax2"], "py3")], "pxy",
               axis=2)  # (B, K, 2)
    if output == "heatmaps":
        h = heatmap
        hg = np.arange(h, dtype=np.float32)
        inits.update({"hgx": hg[None, None, None, :], "hgy": hg[None, None, :, None], "hsz": np.float32(h),
                      "neg_inv": np.float32(-1.0 / (2 * 1.5 ** 2)), "ax23": np.array([2, 3], np.int64)})
        # kpdesk's convention: heatmap pixel centre = pts_norm * H - 0.5
        hx = node("Unsqueeze", [node("Sub", [node("Mul", [px, "hsz"], "pxh"), "half"], "hx0"), "ax23"], "hx")
        hy = node("Unsqueeze", [node("Sub", [node("Mul", [py, "hsz"], "pyh"), "half"], "hy0"), "ax23"], "hy")
        e = node("Add", [node("Pow", [node("Sub", ["hgx", hx], "ex"), "two"], "ex2"),
                         node("Pow", [node("Sub", ["hgy", hy], "ey"), "two"], "ey2")], "e2")
        node("Exp", [node("Mul", [e, "neg_inv"], "ez")], "heatmaps")
        out_name, out_shape = "heatmaps", ["batch", k, h, h]
    elif output == "pixels":
        inits["size"] = np.float32(size)
        node("Mul", [pxy, "size"], "landmarks")
        out_name, out_shape = "landmarks", ["batch", k, 2]
    else:
        node("Reshape", [pxy, "flat"], "landmarks")
        out_name, out_shape = "landmarks", ["batch", 2 * k]
    in_shape = ["batch", 3, size, size] if layout == "nchw" else ["batch", size, size, 3]
    # A second output, as many published models have (e.g. PFLD's auxiliary features).
    aux = node("Concat", [mcx, mcy, mside], "aux", axis=1)
    graph = helper.make_graph(
        nodes, "thirdparty_landmarks",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, out_shape),
         helper.make_tensor_value_info(aux, TensorProto.FLOAT, ["batch", 3])],
        [numpy_helper.from_array(np.asarray(v), name=n) for n, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="thirdparty-test")
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path
