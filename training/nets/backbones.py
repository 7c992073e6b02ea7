"""Backbones in plain PyTorch whose parameter names match torchvision's, so official
ImageNet state dicts load with ``load_state_dict(strict=False)`` (classifier keys ignored)."""

from __future__ import annotations

import torch
from torch import nn


def _conv_bn_act(inp: int, oup: int, k: int, stride: int = 1, groups: int = 1, act: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(inp, oup, k, stride, (k - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(oup),
    ]
    if act:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """torchvision's MobileNetV2 block: names ``conv.0.0`` ... exactly as there."""

    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = int(round(inp * expand_ratio))
        self.use_res_connect = stride == 1 and inp == oup
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(_conv_bn_act(inp, hidden, 1))
        layers += [
            _conv_bn_act(hidden, hidden, 3, stride, groups=hidden),
            nn.Conv2d(hidden, oup, 1, 1, 0, bias=False),
            nn.BatchNorm2d(oup),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_res_connect:
            return x + self.conv(x)
        return self.conv(x)


MBV2_SETTINGS = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                 (6, 320, 1, 1)]


class MobileNetV2Backbone(nn.Module):
    """MobileNetV2 ``features`` (torchvision layout). Returns the stride-8 and stride-32 maps.

    ``stride8_index`` is the index in ``features`` whose output is the last stride-8 map
    (32 channels at width 1.0).
    """

    stride8_index = 6

    def __init__(self, width_mult: float = 1.0, last_channels: int = 1280) -> None:
        super().__init__()

        def _c(c: int) -> int:
            return max(8, int(c * width_mult + 4) // 8 * 8)

        inp = _c(32)
        layers: list[nn.Module] = [_conv_bn_act(3, inp, 3, 2)]
        for t, c, n, s in MBV2_SETTINGS:
            oup = _c(c)
            for i in range(n):
                layers.append(InvertedResidual(inp, oup, s if i == 0 else 1, t))
                inp = oup
        self.last_channels = _c(last_channels) if width_mult > 1.0 else last_channels
        layers.append(_conv_bn_act(inp, self.last_channels, 1))
        self.features = nn.Sequential(*layers)
        self.channels_s8 = _c(32)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    @property
    def out_channels(self) -> int:
        return self.features[-1][0].out_channels

    @property
    def s8_channels(self) -> int:
        blk = self.features[self.stride8_index]
        return blk.conv[-1].num_features

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s8 = None
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i == self.stride8_index:
                s8 = x
        assert s8 is not None
        return s8, x


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNetBackbone(nn.Module):
    """ResNet (Bottleneck) with torchvision's names: conv1, bn1, layer1..layer4.
    Returns the stride-8 (layer2) and stride-32 (layer4) maps."""

    def __init__(self, layers: tuple[int, int, int, int] = (3, 4, 6, 3), base: int = 64) -> None:
        super().__init__()
        self.inplanes = base
        self.conv1 = nn.Conv2d(3, base, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(base)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = self._make(base, layers[0], 1)
        self.layer2 = self._make(base * 2, layers[1], 2)
        self.layer3 = self._make(base * 4, layers[2], 2)
        self.layer4 = self._make(base * 8, layers[3], 2)
        self.s8_channels = base * 2 * 4
        self.out_channels = base * 8 * 4
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        # Zero-init the last BN of each residual branch: trains better from scratch.
        for m in self.modules():
            if isinstance(m, Bottleneck):
                nn.init.zeros_(m.bn3.weight)

    def _make(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * 4:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes * 4, 1, stride, bias=False),
                                       nn.BatchNorm2d(planes * 4))
        layers = [Bottleneck(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * 4
        layers += [Bottleneck(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer1(x)
        s8 = self.layer2(x)
        x = self.layer4(self.layer3(s8))
        return s8, x


def build_backbone(arch: str) -> nn.Module:
    if arch == "mobilenetv2":
        return MobileNetV2Backbone()
    if arch == "resnet50":
        return ResNetBackbone((3, 4, 6, 3))
    if arch == "resnet18-bottleneck-tiny":
        # A very small residual net for tests (same code path as resnet50).
        return ResNetBackbone((1, 1, 1, 1), base=8)
    if arch == "mobilenetv2-tiny":
        return MobileNetV2Backbone(width_mult=0.25, last_channels=64)
    raise ValueError(f"unknown backbone {arch!r}; known: mobilenetv2, resnet50, mobilenetv2-tiny, "
                     "resnet18-bottleneck-tiny")


def load_imagenet(backbone: nn.Module, path: str, prefix_map: dict[str, str] | None = None) -> list[str]:
    """Load a torchvision ImageNet state dict into a backbone. Returns the keys that did
    not match (the classifier). Raises ValueError when nothing matched."""
    sd = torch.load(path, map_location="cpu", weights_only=True)
    own = backbone.state_dict()
    matched = {k: v for k, v in sd.items() if k in own and own[k].shape == v.shape}
    if not matched:
        raise ValueError(f"{path}: no parameter of the checkpoint matches the backbone")
    backbone.load_state_dict(matched, strict=False)
    missing_in_ckpt = [k for k in own if k not in matched and not k.endswith("num_batches_tracked")]
    if missing_in_ckpt:
        raise ValueError(f"{path}: backbone parameters missing from checkpoint: {missing_in_ckpt[:5]}")
    return [k for k in sd if k not in matched]
