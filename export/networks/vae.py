"""The restoration VAEs (A: old photos, B: clean photos); 64-channel latent at H/4 x W/4.

Only the encoder and the decoder are needed at inference (no sampling): the original's
test path feeds the encoder output straight into the mapping network / decoder.
"""
from __future__ import annotations

from torch import nn

from .blocks import ResidualBlock, conv_norm_relu, instance_norm

CHANNELS = 64


class RestorationVAE(nn.Module):
    """Encoder: 7x7 conv, two stride-2 4x4 convs, four residual blocks.
    Decoder: four residual blocks, two stride-2 4x4 transposed convs, 7x7 conv, tanh."""

    def __init__(self, in_channels: int = 3, out_channels: int = 3):
        super().__init__()
        c = CHANNELS
        down = dict(kernel_size=4, stride=2, padding=1)  # zero padding
        self.encoder = nn.Sequential(
            nn.ReflectionPad2d(3),
            *conv_norm_relu(in_channels, c, kernel_size=7),
            *conv_norm_relu(c, c, **down),
            *conv_norm_relu(c, c, **down),
            *(ResidualBlock(c) for _ in range(4)),
        )
        self.decoder = nn.Sequential(
            *(ResidualBlock(c) for _ in range(4)),
            nn.ConvTranspose2d(c, c, **down), instance_norm(c), nn.ReLU(True),
            nn.ConvTranspose2d(c, c, **down), instance_norm(c), nn.ReLU(True),
            nn.ReflectionPad2d(3),
            nn.Conv2d(c, out_channels, kernel_size=7),
            nn.Tanh(),
        )

    def encode(self, image):
        return self.encoder(image)

    def decode(self, latent):
        return self.decoder(latent)

    def forward(self, image):
        return self.decoder(self.encoder(image))
