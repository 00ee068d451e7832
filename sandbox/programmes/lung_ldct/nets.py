"""The lung programme's network for AI devices: a small 3D CNN over CT patches.

Allowed in device folders through :meth:`sandbox.programmes.lung_ldct.programme.LungLDCT.networks`
(the loader's allow-list), never imported from a folder.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class NoduleCNN(nn.Module):
    """A small 3D CNN that scores a CT patch for malignancy.

    An optional stem (a stride-1 3x3x3 convolution, batch norm and ReLU at full resolution)
    keeps detail finer than two voxels (spicules, margins). Each stage is then a stride-2 3x3x3
    convolution, batch norm and ReLU, halving every spatial size; global average pooling and a
    linear layer give ``out_features`` logits.

    Args:
        in_channels: Image channels (1 for CT).
        channels: Feature channels of each stage; one stage per entry.
        out_features: Logits per patch (1 for a malignancy score).
        stem: Channels of the full-resolution stem (0: none).
        centre: Whether the head also reads the centre of the last feature map (the mean of its
            central 2 voxels along each axis) beside the global mean: a candidate patch is
            centred on what it shows, and a global mean alone dilutes a small nodule among the
            vessels around it.

    Raises:
        ValueError: If any size is not a positive integer or ``channels`` is empty.
    """

    def __init__(
        self,
        in_channels: int = 1,
        channels: Sequence[int] = (8, 16, 32),
        out_features: int = 1,
        stem: int = 0,
        centre: bool = False,
    ) -> None:
        super().__init__()
        if isinstance(stem, bool) or not isinstance(stem, int) or stem < 0:
            raise ValueError("stem must be a non-negative integer")
        sizes = [in_channels, *channels, out_features]
        if not channels or any(isinstance(s, bool) or not isinstance(s, int) for s in sizes):
            raise ValueError("in_channels, channels and out_features must be positive integers")
        if min(sizes) < 1:
            raise ValueError("in_channels, channels and out_features must be positive integers")
        stages: list[nn.Module] = []
        c_in = in_channels
        if stem:
            stages += [
                nn.Conv3d(c_in, stem, kernel_size=3, stride=1, padding=1, bias=False),
                nn.BatchNorm3d(stem),
                nn.ReLU(inplace=True),
            ]
            c_in = stem
        for c_out in channels:
            stages += [
                nn.Conv3d(c_in, c_out, kernel_size=3, stride=2, padding=1, bias=False),
                nn.BatchNorm3d(c_out),
                nn.ReLU(inplace=True),
            ]
            c_in = c_out
        if not isinstance(centre, bool):
            raise ValueError("centre must be true or false")
        self.features = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.centre = centre
        self.head = nn.Linear(c_in * (2 if centre else 1), out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, out_features]`` for patches ``[B, in_channels, D, H, W]``."""
        f = self.features(x)
        pooled = torch.flatten(self.pool(f), 1)
        if self.centre:
            d, h, w = (max(s // 2 - 1, 0) for s in f.shape[2:])
            mid = f[:, :, d : d + 2, h : h + 2, w : w + 2].mean(dim=(2, 3, 4))
            pooled = torch.cat([pooled, mid], dim=1)
        return self.head(pooled)
