"""Load official checkpoint files into the re-implemented networks, with clear errors.

A wrong, truncated or foreign file must fail with one line naming the file and the first
offending keys; extra keys are tolerated and reported, as the original loader does.
"""
from __future__ import annotations

import logging
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from .manifests import Manifest, checkpoint_path, load_manifest

log = logging.getLogger(__name__)
MAX_LISTED = 3


class CheckpointError(ValueError):
    """A checkpoint file cannot be used; the message names the file and the reason."""


@dataclass
class KeyReport:
    """Differences between a state dict and the manifest of its tag."""

    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)

    @property
    def fatal(self) -> bool:
        return bool(self.missing or self.mismatched)

    def describe(self) -> str:
        parts = []
        if self.mismatched:
            shown = ", ".join(f"{k} {tuple(got)} != expected {tuple(exp)}" for k, got, exp in self.mismatched[:MAX_LISTED])
            parts.append(f"{len(self.mismatched)} shape mismatch(es): {shown}")
        if self.missing:
            parts.append(f"{len(self.missing)} missing key(s): {', '.join(self.missing[:MAX_LISTED])}")
        if self.unexpected:
            parts.append(f"{len(self.unexpected)} unexpected key(s): {', '.join(self.unexpected[:MAX_LISTED])}")
        return "; ".join(parts)


def compare_to_manifest(state: dict, manifest: Manifest) -> KeyReport:
    expected = manifest.shapes()
    report = KeyReport()
    for key, shape in expected.items():
        if key not in state:
            report.missing.append(key)
        elif tuple(state[key].shape) != shape:
            report.mismatched.append((key, tuple(state[key].shape), shape))
    report.unexpected = [key for key in state if key not in expected]
    return report


def _strip_module_prefix(state: dict) -> dict:
    if state and all(isinstance(k, str) and k.startswith("module.") for k in state):
        return {k[len("module."):]: v for k, v in state.items()}
    return state


def read_state_dict(path: str | Path, tag: str) -> dict:
    """torch.load (weights only) + unwrap + prefix strip + manifest check; raises CheckpointError."""
    import torch

    path = Path(path)
    manifest = load_manifest(tag)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file for {tag} not found (expected {manifest.official_file})")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: checkpoint file is empty")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint (truncated or corrupt?): {reason}") from err
    except Exception as err:  # weights_only unpickler rejects foreign objects with its own types
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path}: refused to load (not a plain state dict): {reason}") from err
    entry = manifest.state_dict_entry
    if entry is not None:
        if not isinstance(payload, dict) or entry not in payload:
            raise CheckpointError(f"{path}: expected a dict with a {entry!r} entry for {tag}")
        payload = payload[entry]
    if not isinstance(payload, dict) or not all(hasattr(v, "shape") for v in payload.values()):
        raise CheckpointError(f"{path}: does not hold a state dict of tensors (got {type(payload).__name__})")
    state = _strip_module_prefix(dict(payload))
    report = compare_to_manifest(state, manifest)
    if report.fatal:
        raise CheckpointError(f"{path}: does not match the {tag} manifest: {report.describe()}")
    if report.unexpected:
        log.warning("%s: ignoring extra keys: %s", path, report.describe())
        state = {k: v for k, v in state.items() if k not in set(report.unexpected)}
    return state


def load_network(weights_root: str | Path, tag: str, path: str | Path | None = None):
    """Build the network of `tag`, fill it from its official file, return it in eval mode."""
    from .networks import build_network

    path = Path(path) if path is not None else checkpoint_path(weights_root, tag)
    state = read_state_dict(path, tag)
    network = build_network(tag)
    result = network.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:  # module and manifest disagree: a bug of ours
        raise CheckpointError(f"{path}: network for {tag} disagrees with its manifest: "
                              f"missing {result.missing_keys[:MAX_LISTED]}, unexpected {result.unexpected_keys[:MAX_LISTED]}")
    return network.eval()
