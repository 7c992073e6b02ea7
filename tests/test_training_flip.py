"""Flip test-time averaging inside the network (``training.nets.flip``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from kpdesk.vision.codecs import HeatmapCodec
from kpdesk.vision.schema import get_schema
from training.nets.flip import FlipAveraged, shift_maps

SCHEMA = get_schema("ibug68")


def test_shift_maps_moves_a_peak_by_the_fraction() -> None:
    codec = HeatmapCodec(64, 16, 1.5)
    hm, _ = codec.encode(np.array([[20.3, 30.7]] + [[32.0, 32.0]] * 67))
    t = torch.from_numpy(hm[None].astype(np.float32))
    moved = shift_maps(t, 0.3, -0.2).numpy()[0]
    before, _ = codec.decode(hm[None])
    after, _ = codec.decode(moved[None])
    stride = 64 / 16
    assert after[0, 0] - before[0, 0] == pytest.approx([0.3 * stride, -0.2 * stride], abs=0.15 * stride)
    assert torch.equal(shift_maps(t, 0.0, 0.0), t)
    with pytest.raises(ValueError, match="fraction"):
        shift_maps(t, 1.0, 0.0)


class _Mirror(nn.Module):
    """A stand-in network: coords and heatmaps read straight off the input's first channel, so its answer
    on a mirrored input is the mirrored answer (up to the point permutation, which it ignores)."""

    hm_head = True

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        col = x[:, 0].mean(dim=1)  # (B, W)
        u = (col.argmax(dim=1).float() + 0.5) / x.shape[-1]  # the brightest column, normalised
        coords = torch.stack([u, torch.full_like(u, 0.5)], dim=-1).repeat(1, 68)
        hm = nn.functional.avg_pool2d(x[:, :1], 4).repeat(1, 68, 1, 1)
        return {"coords": coords, "heatmaps": hm, "feat": x[:, :, :2, :2]}


def test_flip_average_of_a_mirror_consistent_net_is_its_plain_answer_moved_by_the_offset() -> None:
    x = torch.zeros(1, 3, 32, 32)
    x[:, :, :, 9] = 1.0  # a bright column at x = 9
    net = FlipAveraged(_Mirror(), tuple(range(68)), 32, offset_crop=(0.64, 0.0))
    out = net(x)
    plain = _Mirror()(x)
    assert torch.allclose(out["coords"][0, 0], plain["coords"][0, 0] + 0.64 / 32, atol=1e-6)
    assert torch.allclose(out["coords"][0, 1], plain["coords"][0, 1])
    assert out["heatmaps"].shape == plain["heatmaps"].shape
    assert torch.allclose(FlipAveraged(_Mirror(), tuple(range(68)), 32)(x)["heatmaps"], plain["heatmaps"])


def test_flip_average_permutes_the_mirrored_points() -> None:
    """Left and right points trade places in the mirror: a net that always puts point 36 at the left
    and 45 at the right of the crop gives each of them the average of both in the flip average."""

    class Fixed(nn.Module):
        hm_head = None

        def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
            c = torch.full((x.shape[0], 68, 2), 0.5)
            c[:, 36, 0], c[:, 45, 0] = 0.25, 0.875
            return {"coords": c.reshape(x.shape[0], -1), "feat": x}

    out = FlipAveraged(Fixed(), SCHEMA.flip_perm, 32)(torch.zeros(1, 3, 32, 32))["coords"].reshape(68, 2)
    # point 36 mirrored: 1 - 0.875 = 0.125 (from 45's answer on the mirror image); average with 0.25
    assert out[36, 0].item() == pytest.approx((0.25 + 0.125) / 2)
    assert out[45, 0].item() == pytest.approx((0.875 + 0.75) / 2)
    with pytest.raises(ValueError, match="permutation"):
        FlipAveraged(Fixed(), (0, 0), 32)
