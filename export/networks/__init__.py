"""PyTorch re-implementations of the nine networks, keyed by official checkpoint tag.

Module structure mirrors the official state-dict key layout (so checkpoint files load
unchanged); class names say what each network does.
"""
from __future__ import annotations


def build_network(tag: str):
    """An untrained module whose state-dict keys and shapes equal the manifest of `tag`."""
    if tag in ("VAE_A_quality", "VAE_B_quality", "VAE_B_scratch"):
        from .vae import RestorationVAE

        return RestorationVAE()
    if tag == "mapping_quality":
        from .mapping import QualityMapping

        return QualityMapping()
    if tag == "mapping_scratch":
        from .mapping import ScratchMapping

        return ScratchMapping()
    if tag == "mapping_Patch_Attention":
        from .mapping import PatchAttentionMapping

        return PatchAttentionMapping()
    if tag == "detection":
        from .detection_unet import ScratchDetectionUNet

        return ScratchDetectionUNet()
    if tag == "Setting_9_epoch_100":
        from .face_generator import FaceEnhancementGenerator

        return FaceEnhancementGenerator(crop_size=256)
    if tag == "FaceSR_512":
        from .face_generator import FaceEnhancementGenerator

        return FaceEnhancementGenerator(crop_size=512)
    raise KeyError(f"unknown checkpoint tag {tag!r}")
