"""The original's global restoration (stage 1) in one process, on the PyTorch networks.

This is the reference the ONNX/TensorRT runtime is measured against: same resizes,
same detection scaling and threshold, same hole painting, same networks.
Faces (stages 2-4) are not part of it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..preprocess import (dilate_mask, detection_size, mask_to_network_input, output_to_u8, paint_holes,
                          resize_to_multiple, to_gray, to_network_input)
from ..global_restoration import prepare_user_mask
from ..modes import MODES, mode_spec
from .checkpoints import load_network

SCRATCH_THRESHOLD = 0.4
TAGS = {
    "quality": ("VAE_A_quality", "mapping_quality", "VAE_B_quality"),
    "scratch": ("VAE_A_quality", "mapping_scratch", "VAE_B_scratch", "detection"),
    "hr": ("VAE_A_quality", "mapping_Patch_Attention", "VAE_B_scratch", "detection"),
}


@dataclass
class GlobalResult:
    """Restored photo plus the intermediates a user may ask to save."""

    restored: np.ndarray  # HxWx3 uint8
    mask: np.ndarray | None = None  # HxW uint8 0/255 (scratch modes)
    painted: np.ndarray | None = None  # hole-painted input (scratch modes)
    tensors: dict = field(default_factory=dict)  # latent, mapped, output (float32 NCHW)


def detect_scratches(detector, image_u8: np.ndarray) -> np.ndarray:
    """Scratch mask (HxW uint8 0/255) of an image whose sides are multiples of 16."""
    h, w = image_u8.shape[:2]
    gray = to_network_input(to_gray(image_u8))
    small = F.interpolate(torch.from_numpy(gray), size=detection_size(h, w), mode="bilinear", align_corners=False)
    prob = torch.sigmoid(detector(small))
    prob = F.interpolate(prob, size=(h, w), mode="nearest")
    return ((prob[0, 0] >= SCRATCH_THRESHOLD).numpy().astype(np.uint8)) * 255


class TorchGlobalRestorer:
    """Loads the networks of one mode once and restores many photos."""

    def __init__(self, weights_root: str | Path, mode: str = "quality"):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.mode = mode
        self.nets = {tag: load_network(weights_root, tag) for tag in TAGS[mode]}

    @torch.inference_mode()
    def restore(self, image_u8: np.ndarray, stretch: bool = False, mask: np.ndarray | None = None) -> GlobalResult:
        encoder, mapping, decoder = (self.nets[t] for t in TAGS[self.mode][:3])
        spec = mode_spec(self.mode)
        image = resize_to_multiple(image_u8, spec.side_multiple, spec.resize_method)
        if not spec.detects_scratches:
            latent = encoder.encode(torch.from_numpy(to_network_input(image)))
            mapped = mapping(latent)
            mask = painted = None
        else:
            mask = detect_scratches(self.nets["detection"], image) if mask is None else prepare_user_mask(mask, image)
            if spec.dilates_mask:
                mask = dilate_mask(mask)
            painted = paint_holes(image, mask)
            latent = encoder.encode(torch.from_numpy(to_network_input(painted)))
            mapped = mapping(latent, torch.from_numpy(mask_to_network_input(mask)))
        output = decoder.decode(mapped).numpy()
        return GlobalResult(restored=output_to_u8(output, stretch), mask=mask, painted=painted,
                            tensors={"latent": latent.numpy(), "mapped": mapped.numpy(), "output": output})
