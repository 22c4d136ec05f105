"""Key/shape manifests of the official checkpoints, shipped as package data.

They are the contract a checkpoint file must satisfy; loading, fetching and the
synthetic-weight helper all read them from here so that there is one source of truth.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

MANIFEST_DIR = Path(__file__).with_name("manifests")

# Tags of the official release, in pipeline order.
GLOBAL_TAGS = (
    "VAE_A_quality",
    "VAE_B_quality",
    "VAE_B_scratch",
    "mapping_quality",
    "mapping_scratch",
    "mapping_Patch_Attention",
    "detection",
)
FACE_TAGS = ("Setting_9_epoch_100", "FaceSR_512")
ALL_TAGS = GLOBAL_TAGS + FACE_TAGS


@dataclass(frozen=True)
class Manifest:
    """Everything known about one official checkpoint file."""

    tag: str
    official_file: str  # path relative to the root of the original project
    keys: tuple[tuple[str, tuple[int, ...], str], ...]  # (name, shape, dtype) in state-dict order
    param_count: int
    state_numel: int
    module_class: str
    spectral_norm_prefixes: tuple[str, ...] = ()
    fixed_buffers: tuple[str, ...] = ()

    @property
    def state_dict_entry(self) -> str | None:
        """Key under which the state dict is nested (the detection file wraps it)."""
        return "model_state" if self.official_file.endswith(".pt") else None

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {name: shape for name, shape, _ in self.keys}


@lru_cache(maxsize=None)
def load_manifest(tag: str) -> Manifest:
    path = MANIFEST_DIR / f"{tag}.json"
    if not path.is_file():
        raise KeyError(f"unknown checkpoint tag {tag!r}; known: {', '.join(ALL_TAGS)}")
    raw = json.loads(path.read_text())
    return Manifest(
        tag=raw["tag"],
        official_file=raw["official_file"],
        keys=tuple((k, tuple(int(s) for s in shape), dt) for k, shape, dt in raw["keys"]),
        param_count=int(raw["param_count"]),
        state_numel=int(raw["state_numel"]),
        module_class=raw["module_class"],
        spectral_norm_prefixes=tuple(raw.get("spectral_norm_prefixes", ())),
        fixed_buffers=tuple(raw.get("fixed_buffers", ())),
    )


def checkpoint_path(weights_root: str | Path, tag: str) -> Path:
    """Where the official layout puts `tag` under the root of an unpacked release."""
    return Path(weights_root) / load_manifest(tag).official_file
