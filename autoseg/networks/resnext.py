"""A compact ResNeXt trunk with torchvision's parameter names.

torchvision cannot be installed beside every torch build, so the trunk is written here;
its ``state_dict`` keys (``conv1``, ``bn1``, ``layer1``..``layer4``, bottleneck
``conv1/bn1/conv2/bn2/conv3/bn3/downsample``) match ``torchvision.models.resnext50_32x4d``
so a locally stored torchvision weight file loads as it is (its ``fc`` is dropped).
Defaults are ResNeXt-50 (32x4d), about 23.0 M parameters without the classifier.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from autoseg.core.errors import InvalidInputError


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 grouped, 1x1 expand (x4), batch norm, residual."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int, groups: int, width_per_group: int):
        super().__init__()
        width = int(planes * width_per_group / 64) * groups
        self.conv1 = nn.Conv2d(inplanes, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, groups=groups, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or inplanes != planes * self.expansion:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes * self.expansion, 1, stride, bias=False),
                nn.BatchNorm2d(planes * self.expansion),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


class ResNeXtTrunk(nn.Module):
    """ResNeXt without pooling head; returns the outputs of layer1..layer4 (strides 4..32).

    Args:
        layers: bottleneck blocks per layer ((3, 4, 6, 3) for ResNeXt-50).
        groups: cardinality (32).
        width_per_group: bottleneck width per group at base 64 (4).
        base_channels: stem width (64); layer i has ``base * 2**i * 4`` output channels.
    """

    def __init__(
        self,
        layers: Sequence[int] = (3, 4, 6, 3),
        groups: int = 32,
        width_per_group: int = 4,
        base_channels: int = 64,
    ):
        super().__init__()
        self.conv1 = nn.Conv2d(3, base_channels, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(base_channels)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        inplanes = base_channels
        self.out_channels: list[int] = []
        for i, blocks in enumerate(layers):
            planes = base_channels * 2**i
            stride = 1 if i == 0 else 2
            stage = []
            for b in range(blocks):
                stage.append(
                    Bottleneck(inplanes, planes, stride if b == 0 else 1, groups, width_per_group)
                )
                inplanes = planes * Bottleneck.expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*stage))
            self.out_channels.append(inplanes)
        self._init_weights()

    def _init_weights(self) -> None:
        """torchvision's initialisation: He (fan out) convs, unit-scale batch norm."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Features at strides 4, 8, 16, 32 for ``x`` (B, 3, Y, X)."""
        h = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        features = []
        for i in range(len(self.out_channels)):
            h = getattr(self, f"layer{i + 1}")(h)
            features.append(h)
        return features


def load_torchvision_weights(trunk: ResNeXtTrunk, path: str | Path) -> None:
    """Load a torchvision ResNeXt state dict (``fc.*`` ignored) into ``trunk``.

    Raises:
        InvalidInputError: missing file, or keys/shapes that do not match the trunk.
    """
    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"{path}: global-path weight file not found")
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    try:
        trunk.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise InvalidInputError(f"{path}: does not fit the ResNeXt trunk: {err}") from err
