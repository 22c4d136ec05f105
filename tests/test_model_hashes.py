"""A damaged model file is caught before the first photo (Restorer) and by `doctor`."""
from __future__ import annotations

import json

import pytest

from engines_support import tiny_onnx
from trt_restore.model_store import ModelStore, file_sha256
from trt_restore.modes import mode_spec


def _quality_models(root):
    """The three quality-mode graphs as tiny ONNX files, with their sha256 in models.json."""
    root.mkdir(parents=True)
    graphs = {}
    for name, inp, out, channels in (("vae_a_quality_encoder", "image", "latent", 3),
                                     ("mapping_quality", "latent", "mapped", 64),
                                     ("vae_b_quality_decoder", "latent", "output", 64)):
        path = tiny_onnx(root / f"{name}.onnx", inp, out, channels)
        graphs[name] = {"file": path.name, "sha256": file_sha256(path)}
    (root / "models.json").write_text(json.dumps({"graphs": graphs, "versions": {}}))
    assert set(graphs) == set(mode_spec("quality").graphs)
    return root


def test_a_truncated_graph_is_refused_up_front(tmp_path):
    from trt_restore.restorer import Restorer

    models = _quality_models(tmp_path / "models")
    assert ModelStore.open(models).damaged_for("quality") == []
    Restorer(models, backend="ort", mode="quality", threads=1, faces=False)  # intact: accepted
    target = models / "mapping_quality.onnx"
    target.write_bytes(target.read_bytes()[:-100])  # a half-copied file
    assert ModelStore.open(models).damaged_for("quality")
    with pytest.raises(FileNotFoundError, match="mapping_quality.onnx: does not match models.json"):
        Restorer(models, backend="ort", mode="quality", threads=1, faces=False)


def test_doctor_says_damaged(tmp_path):
    from trt_restore.doctor import report

    models = _quality_models(tmp_path / "models")
    assert "quality  ready (files match models.json)" in report(models)
    (models / "vae_b_quality_decoder.onnx").write_bytes(b"not a graph")
    text = report(models)
    assert "quality  DAMAGED" in text and "vae_b_quality_decoder.onnx" in text
