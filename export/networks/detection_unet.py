"""Scratch-detection UNet of the original release (``Global/detection_models/networks.py``).

Built with the options ``Global/detection.py`` uses: 1 gray channel in, 1 logit out, depth 4,
two 3x3 convolutions per block, 64 filters at full resolution (wf 6), reflection padding
everywhere, BatchNorm after every convolution of a block, anti-aliased (blur-pool) down-sampling
and bilinear up-sampling, no tanh. The submodule names reproduce the official state-dict keys
(``first.1``, ``down_path.i.block.k``, ``down_sample.i.k``, ``up_path.i.up.2``, ...), so
``FT_Epoch_latest.pt["model_state"]`` loads unchanged.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

# The original builds the UNet with these arguments (Global/detection.py).
DEPTH = 4
WIDTH_EXPONENT = 6  # 2**6 = 64 filters at full resolution
CONVS_PER_BLOCK = 2
LEAKY_SLOPE = 0.2
# Each of the DEPTH levels halves the frame; the skip connections only line up (the original's
# centre crop is then a no-op) when both sides are multiples of this.
SIDE_MULTIPLE = 2 ** DEPTH


def _conv_bn_lrelu_layers(in_channels: int, out_channels: int) -> list[nn.Module]:
    """Reflection pad 1, 3x3 conv, BatchNorm, LeakyReLU(0.2): 4 entries, as the original lists them."""
    return [
        nn.ReflectionPad2d(1),
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=0),
        nn.BatchNorm2d(out_channels),
        nn.LeakyReLU(LEAKY_SLOPE),
    ]


class BlurDownsample(nn.Module):
    """Anti-aliased stride-2 down-sampling (Zhang 2019), as ``antialiasing.Downsample(filt_size=3)``.

    Reflection pad 1 on every side, then a depthwise 3x3 binomial blur
    ``outer([1,2,1],[1,2,1]) / 16`` with stride 2. The filter is a buffer named ``filt`` because
    the official checkpoint stores it.
    """

    def __init__(self, channels: int):
        super().__init__()
        taps = torch.tensor([1.0, 2.0, 1.0])
        kernel = taps[:, None] * taps[None, :]
        kernel = kernel / kernel.sum()
        self.register_buffer("filt", kernel[None, None].repeat(channels, 1, 1, 1))
        self.pad = nn.ReflectionPad2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(self.pad(x), self.filt, stride=2, groups=self.filt.shape[0])


class DownSampleStage(nn.Sequential):
    """Conv-BN-LeakyReLU at the current resolution, then the blur-pool (keys ``.1``, ``.2``, ``.4``)."""

    def __init__(self, channels: int):
        super().__init__(*_conv_bn_lrelu_layers(channels, channels), BlurDownsample(channels))


class ConvBlock(nn.Module):
    """``CONVS_PER_BLOCK`` x (reflection pad, 3x3 conv, BatchNorm, LeakyReLU); keys ``block.{1,2,5,6}``."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        layers: list[nn.Module] = []
        for index in range(CONVS_PER_BLOCK):
            layers += _conv_bn_lrelu_layers(in_channels if index == 0 else out_channels, out_channels)
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class UpBlock(nn.Module):
    """Bilinear x2 (align_corners=False), reflection pad, 3x3 conv halving channels; concat skip; ConvBlock."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.up = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
            nn.ReflectionPad2d(1),
            nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=0),
        )
        self.conv_block = ConvBlock(in_channels, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        # The original centre-crops `skip` to the up-sampled size; with padding and sides that are
        # multiples of SIDE_MULTIPLE the sizes are equal and the crop is the identity.
        return self.conv_block(torch.cat([self.up(x), skip], dim=1))


def _exporting() -> bool:
    """True while tracing/compiling/exporting, where python-level shape checks must not run."""
    return torch.jit.is_tracing() or torch.compiler.is_compiling() or torch.onnx.is_in_onnx_export()


class ScratchDetectionUNet(nn.Module):
    """Scratch detector: normalised gray (B,1,H,W) in [-1,1] -> scratch logits (B,1,H,W).

    The pipeline thresholds ``sigmoid(logits) >= 0.4``. H and W must be multiples of 16 (the
    original's detection stage resizes to such sizes; other sizes do not run in the original).
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 1):
        super().__init__()
        channels = [2 ** (WIDTH_EXPONENT + level) for level in range(DEPTH + 1)]  # 64 ... 1024
        self.first = nn.Sequential(
            nn.ReflectionPad2d(3),
            nn.Conv2d(in_channels, channels[0], kernel_size=7),
            nn.LeakyReLU(LEAKY_SLOPE),
        )
        self.down_path = nn.ModuleList(ConvBlock(channels[i], channels[i + 1]) for i in range(DEPTH))
        self.down_sample = nn.ModuleList(DownSampleStage(channels[i]) for i in range(DEPTH))
        self.up_path = nn.ModuleList(UpBlock(channels[i + 1], channels[i]) for i in reversed(range(DEPTH)))
        self.last = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels[0], out_channels, kernel_size=3),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not _exporting() and (x.shape[-2] % SIDE_MULTIPLE or x.shape[-1] % SIDE_MULTIPLE):
            raise ValueError(f"scratch detection needs sides that are multiples of {SIDE_MULTIPLE}, "
                             f"got {tuple(x.shape[-2:])}")
        x = self.first(x)
        skips = []
        for down_sample, down_block in zip(self.down_sample, self.down_path):
            skips.append(x)
            x = down_block(down_sample(x))
        for up_block, skip in zip(self.up_path, reversed(skips)):
            x = up_block(x, skip)
        return self.last(x)
