"""The exported model directory: `models.json` plus one ONNX file per graph segment."""
from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass
from pathlib import Path

from .modes import SPECS

MANIFEST_NAME = "models.json"

GRAPHS_FOR_MODE = {name: spec.graphs for name, spec in SPECS.items()}  # kept for callers that list modes


class ModelStoreError(FileNotFoundError):
    pass


_DIGESTS: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> sha256: hash each file once
_DIGESTS_LOCK = threading.Lock()


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    """sha256 of a file, remembered per (path, size, mtime) so that many Restorers over one
    models folder (the service makes one per mode) read each file once."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    with _DIGESTS_LOCK:
        if key in _DIGESTS:
            return _DIGESTS[key]
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    with _DIGESTS_LOCK:
        _DIGESTS[key] = digest.hexdigest()
    return _DIGESTS[key]


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

    def damaged_for(self, mode: str) -> list[str]:
        """One line per graph of `mode` whose file does not match the sha256 models.json recorded
        at export (truncated, replaced, half-copied): caught before the first photo, not per photo."""
        graphs = self.manifest.get("graphs", {})
        problems = []
        for name in GRAPHS_FOR_MODE[mode]:
            entry = graphs.get(name) or {}
            path = self.root / entry.get("file", "")
            expected = entry.get("sha256")
            if not expected or not path.is_file():
                continue  # missing_for reports absent files; old manifests without hashes pass
            if file_sha256(path) != expected:
                problems.append(f"{path}: does not match models.json (sha256 differs: truncated or replaced); "
                                f"re-run `trt-restore export`")
        return problems

    def missing_for(self, mode: str) -> list[str]:
        graphs = self.manifest.get("graphs", {})
        return [n for n in GRAPHS_FOR_MODE[mode] if n not in graphs or not (self.root / graphs[n]["file"]).is_file()]
