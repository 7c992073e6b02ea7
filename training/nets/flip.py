"""Flip test-time averaging as part of the network: one forward on the crop, one on its mirror image
(mirrored back), averaged. For a model that runs offline (the teacher: pseudo-labels, distillation,
the bench), not for the real-time ones: it costs two forwards.

A model trained with flip augmentation answers in the mirror-symmetric convention; labels that sit
off it (AFW/HELEN: ``python -m training label-offset``) are met by moving the average by that offset
(``offset_crop``, crop pixels). The heatmaps are moved by linear interpolation between cells, so a
fraction of a cell shifts the decoded peak by about that fraction.
"""

from __future__ import annotations

import torch
from torch import nn


def shift_maps(hm: torch.Tensor, dx: float, dy: float) -> torch.Tensor:
    """Move (B, K, H, W) maps by (dx, dy) cells, |dx|, |dy| < 1, by linear interpolation (zeros enter)."""
    for dim, d in ((3, dx), (2, dy)):
        if d == 0.0:
            continue
        if abs(d) >= 1.0:
            raise ValueError(f"shift_maps: a shift of {d} cells is not a fraction of a cell")
        n = hm.shape[dim]
        pad = torch.zeros_like(hm.narrow(dim, 0, 1))
        if d > 0:  # content moves towards higher indices: cell j takes from j - 1
            prev = torch.cat([pad, hm.narrow(dim, 0, n - 1)], dim=dim)
        else:
            prev = torch.cat([hm.narrow(dim, 1, n - 1), pad], dim=dim)
        hm = (1.0 - abs(d)) * hm + abs(d) * prev
    return hm


class FlipAveraged(nn.Module):
    """``net`` averaged over the crop and its mirror image; outputs like ``net`` (coords in [0, 1],
    heatmaps), ``feat`` of the plain forward. ``flip_perm``: the schema's mirror permutation;
    ``offset_crop``: (dx, dy) crop pixels added to the average (0: the symmetric answer)."""

    def __init__(self, net: nn.Module, flip_perm: tuple[int, ...] | list[int], input_size: int,
                 offset_crop: tuple[float, float] = (0.0, 0.0)) -> None:
        super().__init__()
        self.net = net
        self.hm_head = getattr(net, "hm_head", None)  # the exporter asks whether heatmaps come out
        self.input_size = int(input_size)
        self.offset_crop = (float(offset_crop[0]), float(offset_crop[1]))
        perm = torch.as_tensor(list(flip_perm), dtype=torch.long)
        if sorted(perm.tolist()) != list(range(len(perm))):
            raise ValueError("flip_perm is not a permutation")
        self.register_buffer("perm", perm, persistent=False)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        a = self.net(x)
        b = self.net(torch.flip(x, dims=[3]))
        k = self.perm.numel()
        s = float(self.input_size)
        ox, oy = self.offset_crop
        # coords: (x + 0.5) / S per point; the mirror x -> S - 1 - x is u -> 1 - u
        cb = b["coords"].reshape(-1, k, 2)[:, self.perm]
        cb = torch.stack([1.0 - cb[..., 0], cb[..., 1]], dim=-1)
        coords = (a["coords"].reshape(-1, k, 2) + cb) / 2 + torch.tensor([ox / s, oy / s], dtype=cb.dtype)
        out = {"coords": coords.reshape(-1, 2 * k), "feat": a["feat"]}
        if "heatmaps" in a:
            hb = torch.flip(b["heatmaps"], dims=[3])[:, self.perm]
            hm = (a["heatmaps"] + hb) / 2
            cell = s / hm.shape[-1]  # crop pixels a heatmap cell; the grid is mirror-symmetric
            out["heatmaps"] = shift_maps(hm, ox / cell, oy / cell)
        return out
