"""Crop pixels -> network input, identical for training, export checks and the app."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def to_input(crops_bgr: np.ndarray | list[np.ndarray], mean: tuple[float, ...] = IMAGENET_MEAN,
             std: tuple[float, ...] = IMAGENET_STD) -> np.ndarray:
    """BGR uint8 crops (S, S, 3) or (B, S, S, 3) -> float32 RGB (B, 3, S, S), normalised."""
    x = np.asarray(crops_bgr)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"expected (B, S, S, 3) BGR crops, got shape {x.shape}")
    x = x[..., ::-1].astype(np.float32) * (1.0 / 255.0)
    x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def normalisation_tables(mean: tuple[float, ...] = IMAGENET_MEAN,
                         std: tuple[float, ...] = IMAGENET_STD) -> np.ndarray:
    """(3, 256) float32: entry [c, v] is what ``to_input`` makes of the uint8 value v in RGB
    channel c, computed with the same float32 operations, so a table lookup is bit-exact."""
    v = np.arange(256, dtype=np.uint8)[:, None].astype(np.float32) * (1.0 / 255.0)  # (256, 1)
    t = (v - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)  # (256, 3)
    return np.ascontiguousarray(t.T.astype(np.float32))


class InputPacker:
    """Face crops of a BGR frame -> the network input (B, 3, S, S) float32, with no per-frame
    allocation beyond OpenCV's channel split.

    Equal, bit for bit, to ``to_input(np.stack([warp_crop(frame, spec, S) ...]), mean, std)``:
    each crop is warped into a reused uint8 buffer (``cv2.warpAffine``, same flags and zero
    border as ``warp_crop``) and each channel is normalised by a 256-entry float32 table
    (``cv2.LUT``) written straight into its plane of a reused float32 buffer; the tables
    hold exactly what ``to_input`` computes per value (``normalisation_tables``). That
    replaces four full-size float passes (cast, scale, subtract, divide) and a transpose.

    The array ``pack`` returns is a view of the packer's buffer: it is overwritten by the
    next call. One thread only.
    """

    def __init__(self, input_size: int, mean: tuple[float, ...] = IMAGENET_MEAN,
                 std: tuple[float, ...] = IMAGENET_STD) -> None:
        self.input_size = int(input_size)
        self.mean, self.std = tuple(mean), tuple(std)
        self._tables = normalisation_tables(mean, std)  # RGB order
        self._crops = np.empty((0, self.input_size, self.input_size, 3), np.uint8)
        self._input = np.empty((0, 3, self.input_size, self.input_size), np.float32)

    def _reserve(self, batch: int) -> None:
        if len(self._input) < batch:
            s = self.input_size
            self._crops = np.empty((batch, s, s, 3), np.uint8)
            self._input = np.empty((batch, 3, s, s), np.float32)

    def pack(self, frame_bgr: np.ndarray, matrices: Sequence[np.ndarray]) -> np.ndarray:
        """Frame (H, W, 3) uint8 and one (2, 3) image -> crop matrix per face -> (B, 3, S, S).

        Frames of another dtype take the reference path (``warp_crop`` + ``to_input``).
        """
        s, b = self.input_size, len(matrices)
        if frame_bgr.dtype != np.uint8:
            crops = np.stack([_warp(frame_bgr, m, s) for m in matrices])
            return to_input(crops, self.mean, self.std)
        self._reserve(b)
        t = self._tables
        for i, m in enumerate(matrices):
            crop = _warp(frame_bgr, m, s, self._crops[i])
            blue, green, red = cv2.split(crop)
            cv2.LUT(red, t[0], dst=self._input[i, 0])
            cv2.LUT(green, t[1], dst=self._input[i, 1])
            cv2.LUT(blue, t[2], dst=self._input[i, 2])
        return self._input[:b]


def _warp(image: np.ndarray, m: np.ndarray, size: int, dst: np.ndarray | None = None) -> np.ndarray:
    """``transforms.warp_crop`` by matrix: bilinear, zero border."""
    return cv2.warpAffine(image, m, (size, size), dst=dst, flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
