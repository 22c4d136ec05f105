"""The exported model directory: `models.json` plus one ONNX file per graph segment."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .modes import SPECS

MANIFEST_NAME = "models.json"

GRAPHS_FOR_MODE = {name: spec.graphs for name, spec in SPECS.items()}  # kept for callers that list modes


class ModelStoreError(FileNotFoundError):
    pass


@dataclass
class ModelStore:
    root: Path
    manifest: dict

    @classmethod
    def open(cls, root: str | Path) -> "ModelStore":
        root = Path(root).expanduser()
        path = root / MANIFEST_NAME
        if not path.is_file():
            raise ModelStoreError(f"{path}: no model manifest; create it with "
                                  f"`trt-restore export --weights WEIGHTS -o {root}`")
        try:
            manifest = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ModelStoreError(f"{path}: unreadable model manifest ({err})") from None
        return cls(root, manifest)

    def graph_path(self, name: str) -> Path:
        entry = self.manifest.get("graphs", {}).get(name)
        if entry is None:
            raise ModelStoreError(f"{self.root}: graph {name!r} was not exported; re-run `trt-restore export`")
        path = self.root / entry["file"]
        if not path.is_file():
            raise ModelStoreError(f"{path}: listed in {MANIFEST_NAME} but missing")
        return path

    def layer_path(self, layer: str) -> Path:
        entry = self.manifest.get("layers", {}).get(layer)
        if entry is None:
            raise ModelStoreError(f"{self.root}: per-layer graph {layer!r} missing (tiled execution needs "
                                  f"`trt-restore export` with tiled layers)")
        return self.root / entry["file"]

    def has_layers(self) -> bool:
        return bool(self.manifest.get("layers"))

    def missing_for(self, mode: str) -> list[str]:
        graphs = self.manifest.get("graphs", {})
        return [n for n in GRAPHS_FOR_MODE[mode] if n not in graphs or not (self.root / graphs[n]["file"]).is_file()]
