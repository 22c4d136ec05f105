"""Masked patch attention of the HR mapping (inference path of the original).

Latent patches (p x p) that are mostly hole (mean of the binarised mask > 0.6) are
replaced by the most similar (cosine) non-hole patch; the result is concatenated with
the block input and the mask and fused by a 3x3 conv (`F_Combine`). Only whole patches
take part (F.unfold); when a scale has hole patches, the original's F.fold leaves the
bottom/right margins that no whole patch covers at 0 in the composed features.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import ResidualBlock

HOLE_FRACTION = 0.6


def binarised_mask(mask: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Bilinear resize to the latent size, then any positive value becomes 1."""
    resized = F.interpolate(mask, size=(height, width), mode="bilinear", align_corners=False)
    return (resized > 0).to(mask.dtype)


def to_patches(x: torch.Tensor, size: int) -> torch.Tensor:
    """(B,C,H,W) -> (B, L, C*size*size): the whole patches in row-major order, features (c, i, j).

    Like the original's F.unfold: a bottom/right margin narrower than a patch is in no patch."""
    b, c, h, w = x.shape
    rows, cols = h // size, w // size
    x = x[:, :, :rows * size, :cols * size].reshape(b, c, rows, size, cols, size)
    return x.permute(0, 2, 4, 1, 3, 5).reshape(b, rows * cols, c * size * size)


def from_patches(patches: torch.Tensor, channels: int, height: int, width: int, size: int) -> torch.Tensor:
    """Like the original's F.fold(output_size=(height, width)): uncovered margins are 0."""
    b = patches.shape[0]
    rows, cols = height // size, width // size
    x = patches.reshape(b, rows, cols, channels, size, size).permute(0, 3, 1, 4, 2, 5)
    x = x.reshape(b, channels, rows * size, cols * size)
    return F.pad(x, (0, width - cols * size, 0, height - rows * size))


def copy_best_patches(patches: torch.Tensor, is_hole: torch.Tensor) -> torch.Tensor:
    """Replace every hole patch by the non-hole patch of highest cosine similarity.

    patches (L, D), is_hole (L,) bool. Arg-max is taken after the softmax, as the original
    does (ties resolve to the first key)."""
    hole_idx = torch.nonzero(is_hole).flatten()
    key_idx = torch.nonzero(~is_hole).flatten()
    if hole_idx.numel() == 0 or key_idx.numel() == 0:
        return patches
    queries = F.normalize(patches[hole_idx], dim=1)
    keys = F.normalize(patches[key_idx], dim=1)
    best = torch.softmax(queries @ keys.T, dim=1).argmax(dim=1)
    result = patches.clone()
    result[hole_idx] = patches[key_idx[best]]
    return result


class PatchAttentionBlock(nn.Module):
    """Keys `F_Combine` (1025 -> 512, 3x3, zero pad) and `res_block.0`."""

    def __init__(self, patch_size: int, channels: int = 512):
        super().__init__()
        self.patch_size = patch_size
        self.F_Combine = nn.Conv2d(2 * channels + 1, channels, kernel_size=3, padding=1)
        self.res_block = nn.Sequential(ResidualBlock(channels))

    def forward(self, z: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.res_block(z)
        b, c, h, w = x.shape
        hole = binarised_mask(mask, h, w)
        # the original selects hole patches from the first batch item's mask for the whole batch
        is_hole = F.avg_pool2d(hole[:1], self.patch_size).flatten() > HOLE_FRACTION
        if not bool(is_hole.any()):  # the original skips the fold: x passes whole
            composed = x
        else:
            patches = to_patches(x, self.patch_size)
            composed = torch.stack([copy_best_patches(patches[i], is_hole) for i in range(b)])
            composed = from_patches(composed, c, h, w, self.patch_size)
        return self.F_Combine(torch.cat((z, composed, hole), dim=1))
