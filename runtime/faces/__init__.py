"""Faces (stages 2-4 of the original): detect, align, enhance with the SPADE generator,
paste back. Alignment and paste-back are pure numpy functions faithful to the original
(`geometry`, `align`, `paste`); detectors sit behind one interface (`detectors`);
`FaceEnhancer` runs the whole stage on a backend.
"""
from __future__ import annotations


def __getattr__(name):
    """Lazy public names, so that importing the package stays cheap."""
    if name in ("FaceEnhancer", "FaceStageResult"):
        from . import enhancer

        return getattr(enhancer, name)
    raise AttributeError(name)


__all__ = ["FaceEnhancer", "FaceStageResult"]
