"""INT8 models of the quality-mode graphs, quantized once per test session from a tiny
calibration set (shared by the INT8 and benchmark tests)."""
from __future__ import annotations

import json
from pathlib import Path

QUALITY_GRAPHS = ("vae_a_quality_encoder", "mapping_quality", "vae_b_quality_decoder")
_BUILT: dict = {}


def fp32_copy(exported: Path, target: Path, graphs=QUALITY_GRAPHS) -> Path:
    """A model directory with links to the exported fp32 graphs and its own models.json."""
    target.mkdir(parents=True, exist_ok=True)
    manifest = json.loads((exported / "models.json").read_text())
    manifest["graphs"] = {g: manifest["graphs"][g] for g in graphs}
    manifest.pop("layers", None)
    manifest.pop("int8", None)
    for g in graphs:
        link = target / manifest["graphs"][g]["file"]
        if not link.exists():
            link.symlink_to(exported / manifest["graphs"][g]["file"])
    (target / "models.json").write_text(json.dumps(manifest))
    return target


def int8_models(exported: Path, tmp_path_factory) -> tuple[Path, dict]:
    """(model dir with INT8 Q/DQ models of the quality graphs, the int8 section)."""
    if "root" not in _BUILT:
        from trt_restore.calibration.dataset import build_calibration_set
        from trt_restore.calibration.quantize import QuantizeOptions, quantize_models

        root = fp32_copy(exported, tmp_path_factory.mktemp("int8_models"))
        build_calibration_set(root / "calibration", count=4, size=64, seed=0)
        section = quantize_models(root, root / "calibration", QuantizeOptions(graphs=QUALITY_GRAPHS))
        _BUILT.update(root=root, section=section)
    return _BUILT["root"], _BUILT["section"]
