"""Mapping networks: translate VAE-A latents (old photo) to VAE-B latents (clean photo).

All three share the 64->128->256->512 entry and the 512->256->128->64 exit; they differ
in the middle: six residual blocks (quality), a partial nonlocal block (scratch), or
patch attention at three scales (HR).
"""
from __future__ import annotations

from torch import nn

from .blocks import ResidualBlock, conv_norm_relu
from .partial_nonlocal import PartialNonLocalBlock
from .patch_attention import PatchAttentionBlock

WIDTH = 512
CONV3 = dict(kernel_size=3, stride=1, padding=1)  # zero padding


def entry_layers() -> list[nn.Module]:
    return [*conv_norm_relu(64, 128, **CONV3), *conv_norm_relu(128, 256, **CONV3),
            *conv_norm_relu(256, 512, **CONV3), *conv_norm_relu(512, 512, **CONV3)]


def exit_layers() -> list[nn.Module]:
    return [*conv_norm_relu(512, 512, **CONV3), *conv_norm_relu(512, 256, **CONV3),
            *conv_norm_relu(256, 128, **CONV3), nn.Conv2d(128, 64, **CONV3)]


def residual_blocks(count: int) -> list[nn.Module]:
    return [ResidualBlock(WIDTH) for _ in range(count)]


class QualityMapping(nn.Module):
    """Entry, six residual blocks, exit (one Sequential `model`)."""

    def __init__(self):
        super().__init__()
        self.model = nn.Sequential(*entry_layers(), *residual_blocks(6), *exit_layers())

    def forward(self, latent):
        return self.model(latent)


class ScratchMapping(nn.Module):
    """Entry (`before_NL`), partial nonlocal block (`NL`), six residual blocks + exit (`after_NL`)."""

    def __init__(self):
        super().__init__()
        self.before_NL = nn.Sequential(*entry_layers())
        self.NL = PartialNonLocalBlock(WIDTH)
        self.after_NL = nn.Sequential(*residual_blocks(6), *exit_layers())

    def forward_with_intermediates(self, latent, mask) -> dict:
        nl_in = self.before_NL(latent)
        nl_out = self.NL(nl_in, mask)
        return {"nl_in": nl_in, "nl_out": nl_out, "mapped": self.after_NL(nl_out)}

    def forward(self, latent, mask):
        return self.after_NL(self.NL(self.before_NL(latent), mask))


class PatchAttentionMapping(nn.Module):
    """Entry + two residual blocks, patch attention at 8, 4, 2 with two residual blocks
    between scales, then two residual blocks + exit. Any latent size (the original runs HR at
    multiples of 16, latent multiples of 4): patches that do not fit leave margins (see
    patch_attention)."""

    PATCH_SIZES = (8, 4, 2)

    def __init__(self):
        super().__init__()
        self.before_NL = nn.Sequential(*entry_layers(), *residual_blocks(2))
        self.NL_scale_1 = PatchAttentionBlock(8, WIDTH)
        self.res_block_1 = nn.Sequential(*residual_blocks(2))
        self.NL_scale_2 = PatchAttentionBlock(4, WIDTH)
        self.res_block_2 = nn.Sequential(*residual_blocks(2))
        self.NL_scale_3 = PatchAttentionBlock(2, WIDTH)
        self.after_NL = nn.Sequential(*residual_blocks(2), *exit_layers())

    def forward(self, latent, mask):
        x = self.NL_scale_1(self.before_NL(latent), mask)
        x = self.NL_scale_2(self.res_block_1(x), mask)
        x = self.NL_scale_3(self.res_block_2(x), mask)
        return self.after_NL(x)
