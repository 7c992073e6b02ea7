"""The joint regression + heatmap landmark network (METHOD.md section 1)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from training.nets.backbones import build_backbone


@dataclass(frozen=True)
class ModelConfig:
    """How to build one landmark network.

    Attributes:
        arch: backbone name (``mobilenetv2``, ``resnet50``, tiny test variants).
        num_points: K.
        input_size: S (square RGB input).
        heatmap_size: H of the (K, H, H) heatmaps; 0 disables the heatmap head.
        hm_source: ``last`` (paper: the stride-32 map only) or ``fpn`` (stride-32 map
            upsampled and added to a projected stride-8 map).
        head_channels: channels of the heatmap head's Conv-BN-ReLU stack.
        reg_hidden: hidden width of the regression MLP (one FC-BN-ReLU block).
    """

    arch: str = "mobilenetv2"
    num_points: int = 68
    input_size: int = 128
    heatmap_size: int = 16
    hm_source: str = "fpn"
    head_channels: int = 64
    reg_hidden: int = 256

    def to_dict(self) -> dict:
        return asdict(self)


class RegressionHead(nn.Module):
    """GAP -> FC-BN-ReLU -> FC(2K) -> sigmoid: coordinates in [0, 1]."""

    def __init__(self, cin: int, hidden: int, num_points: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(cin, hidden, bias=False)
        self.bn1 = nn.BatchNorm1d(hidden)
        self.fc2 = nn.Linear(hidden, 2 * num_points)

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        x = feat.mean(dim=(2, 3))
        x = F.relu(self.bn1(self.fc1(x)))
        return torch.sigmoid(self.fc2(x))


class HeatmapHead(nn.Module):
    """1x1 reduce (commutes with the upsampling, so it runs at low resolution) ->
    bilinear upsample to H -> [+ projected stride-8 map] -> 3x3 Conv-BN-ReLU -> 1x1 to K -> sigmoid."""

    def __init__(self, cin: int, cin_s8: int, ch: int, num_points: int, size: int, use_s8: bool) -> None:
        super().__init__()
        self.size = size
        self.reduce = nn.Sequential(nn.Conv2d(cin, ch, 1, bias=False), nn.BatchNorm2d(ch), nn.ReLU(inplace=True))
        self.lateral = (
            nn.Sequential(nn.Conv2d(cin_s8, ch, 1, bias=False), nn.BatchNorm2d(ch), nn.ReLU(inplace=True))
            if use_s8 else None
        )
        self.conv = nn.Sequential(nn.Conv2d(ch, ch, 3, 1, 1, bias=False), nn.BatchNorm2d(ch), nn.ReLU(inplace=True))
        self.out = nn.Conv2d(ch, num_points, 1)
        nn.init.constant_(self.out.bias, -4.0)  # start near an all-zero heatmap

    def forward(self, s8: torch.Tensor, feat: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(self.reduce(feat), size=(self.size, self.size), mode="bilinear", align_corners=False)
        if self.lateral is not None:
            lat = self.lateral(s8)
            if lat.shape[-1] != self.size:
                lat = F.interpolate(lat, size=(self.size, self.size), mode="bilinear", align_corners=False)
            x = x + lat
        return torch.sigmoid(self.out(self.conv(x)))


class LandmarkNet(nn.Module):
    """Backbone + regression head + optional heatmap head.

    forward(x (B, 3, S, S)) -> dict with ``coords`` (B, 2K) in [0, 1], ``heatmaps``
    (B, K, H, H) when the heatmap head exists, and ``feat`` (B, C, S/32, S/32), the
    backbone's final map (used by distillation).
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        if cfg.hm_source not in ("last", "fpn"):
            raise ValueError(f"hm_source must be 'last' or 'fpn', got {cfg.hm_source!r}")
        self.cfg = cfg
        self.backbone = build_backbone(cfg.arch)
        c, c8 = self.backbone.out_channels, self.backbone.s8_channels
        self.reg_head = RegressionHead(c, cfg.reg_hidden, cfg.num_points)
        self.hm_head = (
            HeatmapHead(c, c8, cfg.head_channels, cfg.num_points, cfg.heatmap_size, cfg.hm_source == "fpn")
            if cfg.heatmap_size > 0 else None
        )

    @property
    def feat_channels(self) -> int:
        return self.backbone.out_channels

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        s8, feat = self.backbone(x)
        # The heads always run in float32: under bf16 autocast (CPU training) only the
        # backbone is reduced-precision, so sub-pixel coordinates keep full precision.
        with torch.autocast(x.device.type, enabled=False):
            s8, feat = s8.float(), feat.float()
            out = {"coords": self.reg_head(feat), "feat": feat}
            if self.hm_head is not None:
                out["heatmaps"] = self.hm_head(s8, feat)
        return out


class ExportWrapper(nn.Module):
    """Tuple outputs (coords[, heatmaps]) for ONNX export."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor):
        out = self.net(x)
        if "heatmaps" in out:
            return out["coords"], out["heatmaps"]
        return out["coords"]


def build_model(cfg: ModelConfig) -> LandmarkNet:
    return LandmarkNet(cfg)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, input_size: int) -> int:
    """Multiply-accumulates of one forward pass at batch 1 (conv and linear layers)."""
    macs = 0

    def conv_hook(m: nn.Conv2d, _inp, out) -> None:
        nonlocal macs
        k = m.kernel_size[0] * m.kernel_size[1] * (m.in_channels // m.groups)
        macs += int(out.numel() // out.shape[0]) * k

    def lin_hook(m: nn.Linear, _inp, out) -> None:
        nonlocal macs
        macs += m.in_features * m.out_features

    hooks = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            hooks.append(m.register_forward_hook(lin_hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            p = next(model.parameters())
            model(torch.zeros(1, 3, input_size, input_size, device=p.device))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return macs
