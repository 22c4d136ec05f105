"""Building blocks shared by the global networks (VAEs and mapping networks).

Every normalisation is InstanceNorm without affine parameters or running statistics,
so its statistics are taken over the whole frame (this is what makes tiling hard).
"""
from __future__ import annotations

from torch import nn


def instance_norm(channels: int) -> nn.InstanceNorm2d:
    return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False, eps=1e-5)


def conv_norm_relu(in_channels: int, out_channels: int, **conv_args) -> list[nn.Module]:
    """Three consecutive Sequential entries (conv, norm, relu): index layout of the checkpoints."""
    return [nn.Conv2d(in_channels, out_channels, **conv_args), instance_norm(out_channels), nn.ReLU(True)]


class ResidualBlock(nn.Module):
    """x + [reflect-pad, 3x3 conv, IN, ReLU, reflect-pad, 3x3 conv, IN](x).

    Keys are `conv_block.1.*` and `conv_block.5.*` like the official files.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, kernel_size=3),
            instance_norm(channels),
            nn.ReLU(True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, kernel_size=3),
            instance_norm(channels),
        )

    def forward(self, x):
        return x + self.conv_block(x)
