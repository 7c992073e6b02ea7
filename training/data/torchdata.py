"""torch Dataset over ``Sample`` lists: decode (cached), augment, encode targets."""

from __future__ import annotations

import logging

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from kpdesk.vision.codecs import HeatmapCodec, RegressionCodec
from kpdesk.vision.preprocess import IMAGENET_MEAN, IMAGENET_STD, to_input
from kpdesk.vision.schema import KeypointSchema
from training.data.augment import AugmentConfig, make_crop
from training.data.datasets import LabelError, Sample

log = logging.getLogger(__name__)


def read_image(path: str) -> np.ndarray:
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        raise LabelError(f"{path}: cannot decode image (missing or corrupt)")
    return img


class LandmarkDataset(Dataset):
    """Items: ``image`` (3, S, S) float32, ``coords`` (2K,) in [0, 1], ``heatmaps`` (K, H, H),
    ``hm_weight`` (K,), ``pts_crop`` (K, 2), ``index``.

    Images are decoded once and kept in memory (``cache=True``); with a seed, the
    augmentation of item i in epoch e is reproducible.
    """

    def __init__(self, samples: list[Sample], schema: KeypointSchema, input_size: int, heatmap_size: int,
                 sigma: float, augment: AugmentConfig, seed: int = 0, cache: bool = True,
                 mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD) -> None:
        self.samples = samples
        self.schema = schema
        self.input_size = input_size
        self.reg = RegressionCodec(input_size)
        self.hm = HeatmapCodec(input_size, heatmap_size, sigma) if heatmap_size > 0 else None
        self.augment = augment
        self.seed = seed
        self.epoch = 0
        self.cache = cache
        self.mean, self.std = mean, std
        self._images: dict[int, np.ndarray] = {}

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.samples)

    def image(self, i: int) -> np.ndarray:
        img = self._images.get(i)
        if img is None:
            img = read_image(self.samples[i].path)
            if self.cache:
                self._images[i] = img
        return img

    def crop(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng((self.seed, self.epoch, i))
        s = self.samples[i]
        crop, pts_crop, _ = make_crop(self.image(i), s.pts, self.schema, self.input_size, self.augment, rng,
                                     s.label_offset)
        return crop, pts_crop

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        crop, pts_crop = self.crop(i)
        x = to_input(crop, self.mean, self.std)[0]
        item = {
            "image": torch.from_numpy(x),
            "coords": torch.from_numpy(self.reg.encode(pts_crop).reshape(-1).astype(np.float32)),
            "pts_crop": torch.from_numpy(pts_crop.astype(np.float32)),
            "index": torch.tensor(i),
            "weight": torch.tensor(self.samples[i].weight, dtype=torch.float32),
        }
        if self.hm is not None:
            hm, w = self.hm.encode(pts_crop)
            item["heatmaps"] = torch.from_numpy(hm)
            item["hm_weight"] = torch.from_numpy(w)
        return item
