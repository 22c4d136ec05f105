"""Run the PyTorch re-implementation on reference vectors and compare every stored output.

Vector files come from the original code (../shared/reference/README.md section 3); each
holds inputs, intermediates, outputs and a per-output tolerance in `meta`. Dispatch is on
`meta["kind"]`; sizes are read from the arrays, never from file names.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..conformance.vectors import Comparison, UnknownKind, compare_tensor, discover, load_vector, tags_for
from .checkpoints import load_network

__all__ = ["Comparison", "UnknownKind", "NetworkCache", "KIND_RUNNERS", "discover", "load_vector", "run_vector",
           "tags_for", "preprocessing_checks"]


class NetworkCache:
    """Loads each checkpoint once per run (mapping files are 150-300 MB)."""

    def __init__(self, weights_root: str | Path):
        self.weights_root = Path(weights_root)
        self._networks: dict = {}

    def __getitem__(self, tag: str):
        if tag not in self._networks:
            self._networks[tag] = load_network(self.weights_root, tag)
        return self._networks[tag]


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))


def _quality(nets: NetworkCache, a: dict, meta: dict) -> dict:
    latent = nets["VAE_A_quality"].encode(_t(a["input"]))
    mapped = nets["mapping_quality"](latent)
    return {"latent": latent, "mapped": mapped, "output": nets["VAE_B_quality"].decode(mapped)}


def _vae_roundtrip(nets: NetworkCache, a: dict, meta: dict) -> dict:
    vae = nets[meta["vae_tag"]]
    latent = vae.encode(_t(a["input"]))
    return {"latent": latent, "output": vae.decode(latent)}


def _scratch(nets: NetworkCache, a: dict, meta: dict) -> dict:
    latent = nets["VAE_A_quality"].encode(_t(a["input"]))
    out = nets["mapping_scratch"].forward_with_intermediates(latent, _t(a["mask"]))
    out["latent"] = latent
    out["output"] = nets["VAE_B_scratch"].decode(out["mapped"])
    return out


def _hr(nets: NetworkCache, a: dict, meta: dict) -> dict:
    latent = nets["VAE_A_quality"].encode(_t(a["input"]))
    mapped = nets["mapping_Patch_Attention"](latent, _t(a["mask"]))
    return {"latent": latent, "mapped": mapped, "output": nets["VAE_B_scratch"].decode(mapped)}


def _detection(nets: NetworkCache, a: dict, meta: dict) -> dict:
    logits = nets["detection"](_t(a["input"]))
    return {"logits": logits, "prob": torch.sigmoid(logits)}


def _face(tag: str) -> Callable:
    def run(nets: NetworkCache, a: dict, meta: dict) -> dict:
        generator = nets[tag]
        face = _t(a["input"])
        return {"fc_out": generator.first_conv(face), "output": generator(face)}
    return run


KIND_RUNNERS: dict[str, Callable] = {
    "quality": _quality,
    "vae_roundtrip": _vae_roundtrip,
    "scratch": _scratch,
    "hr": _hr,
    "detection": _detection,
    "face256": _face("Setting_9_epoch_100"),
    "face512": _face("FaceSR_512"),
}


def preprocessing_checks(meta: dict, arrays: dict) -> list[Comparison]:
    """Rebuild `input`/`mask` of scratch and HR vectors from their `aux` arrays with the
    runtime's own preprocessing (dilation, hole painting, normalisation): must be exact."""
    if meta["kind"] not in ("scratch", "hr") or "image_raw" not in arrays:
        return []
    from ..preprocess import dilate_mask, mask_to_network_input, network_input_to_u8, paint_holes, to_network_input

    source = arrays["mask_undilated"] if "mask_undilated" in arrays else arrays["mask"]
    mask_u8 = (np.rint(source[0, 0] * 255.0)).astype(np.uint8)
    if meta["kind"] == "hr":
        mask_u8 = dilate_mask(mask_u8)
    painted = paint_holes(network_input_to_u8(arrays["image_raw"]), mask_u8)
    checks = [("input (preprocessing)", to_network_input(painted), arrays["input"]),
              ("mask (preprocessing)", mask_to_network_input(mask_u8), arrays["mask"])]
    return [Comparison(name, float(np.max(np.abs(got - want))) if got.shape == want.shape else float("inf"), 0.0)
            for name, got, want in checks]


def run_vector(path: str | Path, nets: NetworkCache) -> tuple[dict, list[Comparison]]:
    """Compare every output named in meta["outputs"] within its stored tolerance."""
    meta, arrays = load_vector(path)
    kind = meta["kind"]
    if kind not in KIND_RUNNERS:
        raise UnknownKind(f"{path}: unknown vector kind {kind!r}; known: {', '.join(KIND_RUNNERS)}")
    with torch.inference_mode():
        produced = KIND_RUNNERS[kind](nets, arrays, meta)
    comparisons = [compare_tensor(name, produced[name].detach().cpu().numpy() if name in produced else None,
                                  arrays[name], float(meta["tolerance"][name])) for name in meta["outputs"]]
    return meta, comparisons + preprocessing_checks(meta, arrays)
