"""Deterministic synthetic weights (rule of ../shared/reference/README.md, section 2).

Official weights cannot be downloaded in CI, so tests write these values in the official
file layout and go through the real loader. Values depend only on (tag, key).
"""
from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np

from .manifests import ALL_TAGS, Manifest, checkpoint_path, load_manifest

ANTIALIAS_KERNEL = np.outer([1.0, 2.0, 1.0], [1.0, 2.0, 1.0]) / 16.0


def _draw(tag: str, key: str, shape: tuple[int, ...]) -> np.ndarray:
    rng = np.random.default_rng(zlib.crc32(f"{tag}:{key}".encode()))
    if key.endswith("num_batches_tracked"):
        return np.zeros(shape, dtype=np.int64)
    if key.endswith("running_var"):
        value = rng.uniform(0.5, 1.5, shape)
    elif key.endswith("running_mean"):
        value = 0.1 * rng.standard_normal(shape)
    elif key.endswith("weight_u") or key.endswith("weight_v"):
        value = rng.standard_normal(shape)
        value = value / np.linalg.norm(value)
    elif key.endswith("bias"):
        value = 0.1 * rng.standard_normal(shape)
    elif len(shape) >= 2:
        value = rng.standard_normal(shape) / np.sqrt(np.prod(shape[1:]))
    else:
        value = 1.0 + 0.1 * rng.standard_normal(shape)
    return np.asarray(value, dtype=np.float64).astype(np.float32)


def _one_power_iteration(state: dict[str, np.ndarray], prefix: str) -> None:
    """Replace drawn u/v by one spectral-norm power-iteration step, as a trained file has."""
    weight = state[prefix + "weight_orig"].astype(np.float64)
    weight = weight.reshape(weight.shape[0], -1)
    u0 = state[prefix + "weight_u"].astype(np.float64)
    v = weight.T @ u0
    v = v / np.linalg.norm(v)
    u = weight @ v
    u = u / np.linalg.norm(u)
    state[prefix + "weight_u"] = u.astype(np.float32)
    state[prefix + "weight_v"] = v.astype(np.float32)


def synthetic_state(tag: str) -> dict[str, np.ndarray]:
    """The synthetic state dict of `tag` as numpy arrays, in manifest order."""
    manifest: Manifest = load_manifest(tag)
    state = {key: _draw(tag, key, shape) for key, shape, _ in manifest.keys}
    for prefix in manifest.spectral_norm_prefixes:
        _one_power_iteration(state, prefix)
    for key in manifest.fixed_buffers:
        channels = manifest.shapes()[key][0]
        state[key] = np.repeat(ANTIALIAS_KERNEL[None, None], channels, axis=0).astype(np.float32)
    return state


def write_synthetic_checkpoint(weights_root: str | Path, tag: str) -> Path:
    """Write `tag` with torch.save in the official layout; returns the file path."""
    import torch

    path = checkpoint_path(weights_root, tag)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {key: torch.from_numpy(value) for key, value in synthetic_state(tag).items()}
    entry = load_manifest(tag).state_dict_entry
    payload = {entry: state} if entry else state
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
    return path


def write_synthetic_release(weights_root: str | Path, tags=ALL_TAGS) -> Path:
    """Write every requested tag (skipping files already present) under `weights_root`."""
    for tag in tags:
        if not checkpoint_path(weights_root, tag).is_file():
            write_synthetic_checkpoint(weights_root, tag)
    return Path(weights_root)
