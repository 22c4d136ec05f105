"""Conformance of the PyTorch re-implementation to the reference vectors of the original.

Every `vectors/*.npz` under $TRT_RESTORE_REFERENCE is discovered; the kind comes from its
meta; each stored output must be within the tolerance stored with it.
"""
from __future__ import annotations

import pytest

from conftest import reference_root
from trt_restore.export.conformance import KIND_RUNNERS, NetworkCache, discover, load_vector, run_vector, tags_for

VECTORS = discover(reference_root())


def test_reference_vectors_exist():
    assert VECTORS, f"no vectors/*.npz under {reference_root()}"


@pytest.fixture(scope="module")
def networks(synthetic_release):
    return NetworkCache(synthetic_release.root)


@pytest.mark.parametrize("path", VECTORS, ids=[p.name for p in VECTORS])
def test_vector(path, networks, synthetic_release):
    meta, _ = load_vector(path)
    assert meta["kind"] in KIND_RUNNERS, f"{path.name}: unknown kind {meta['kind']!r}"
    synthetic_release.ensure(*tags_for(meta))
    meta, comparisons = run_vector(path, networks)
    for comparison in comparisons:
        print(f"{path.name} [{meta['kind']}] {comparison}")
    assert comparisons, f"{path.name}: nothing compared"
    assert set(meta["outputs"]) <= set(c.name for c in comparisons)
    failed = [str(c) for c in comparisons if not c.ok]
    assert not failed, f"{path.name}: " + "; ".join(failed)


def test_harness_catches_a_wrong_network(synthetic_release):
    """The comparison is not vacuous: a tiny weight change must fail some output."""
    import torch

    candidates = [p for p in VECTORS if load_vector(p)[0]["kind"] == "vae_roundtrip"]
    if not candidates:
        pytest.skip("no vae_roundtrip vector under this reference root")
    meta, _ = load_vector(candidates[0])
    synthetic_release.ensure(*tags_for(meta))
    nets = NetworkCache(synthetic_release.root)
    with torch.no_grad():
        nets[meta["vae_tag"]].decoder[11].bias += 1e-3  # after the last norm: not cancelled
    _, comparisons = run_vector(candidates[0], nets)
    assert not all(c.ok for c in comparisons)


def test_unknown_kind_is_an_error(tmp_path, networks):
    import json

    import numpy as np

    from trt_restore.export.conformance import UnknownKind

    path = tmp_path / "mystery.npz"
    np.savez(path, meta=json.dumps({"kind": "mystery", "outputs": ["x"], "tolerance": {"x": 1e-4}}), x=np.zeros(1))
    with pytest.raises(UnknownKind, match="mystery"):
        run_vector(path, networks)


# ---- the runtime backends, at the segment boundaries the vectors store ------------------------
from trt_restore.conformance import segments  # noqa: E402
from trt_restore.conformance.vectors import Comparison  # noqa: E402


@pytest.fixture(scope="module")
def ort_backends(exported_models, synthetic_release, tmp_path_factory):
    """kind -> onnxruntime backend holding that kind's graphs (face generators exported on demand)."""
    from faces_support import exported_face_models
    from trt_restore.backends import create_backend

    cache = {}

    def get(kind: str):
        graph = segments.FACE_GRAPHS.get(kind)
        if graph not in cache:
            models = exported_face_models(synthetic_release, tmp_path_factory, graph) if graph else exported_models
            cache[graph] = create_backend("ort", models, threads=2)
        return cache[graph]

    return get


def _check(path: Path, comparisons: list[Comparison], label: str) -> None:
    for comparison in comparisons:
        print(f"{path.name} [{label}] {comparison}")
    judged = [c for c in comparisons if c.compared]
    assert judged, f"{path.name}: nothing compared on {label}"
    assert {"output", "prob"} & {c.name for c in judged} or "latent" in {c.name for c in judged}
    failed = [str(c) for c in comparisons if not c.ok]
    assert not failed, f"{path.name} on {label}: " + "; ".join(failed)


@pytest.mark.parametrize("path", VECTORS, ids=[p.name for p in VECTORS])
def test_vector_on_onnxruntime(path, ort_backends):
    """Every fp32 tolerance applies unchanged on onnxruntime (the runtime's own attention)."""
    meta, _ = load_vector(path)
    _, comparisons = segments.run_vector(path, ort_backends(meta["kind"]))
    _check(path, comparisons, "ort")


TILED = [p for p in VECTORS if load_vector(p)[0]["kind"] in segments.TILED_KINDS]


@pytest.mark.parametrize("path", TILED, ids=[p.name for p in TILED])
def test_vector_tiled_on_onnxruntime(path, ort_backends):
    """Forced tiling with strips of 6 rows (smaller than every latent), same tolerances."""
    meta, _ = load_vector(path)
    _, comparisons = segments.run_vector(path, ort_backends(meta["kind"]), tile_rows=6)
    _check(path, comparisons, "ort-tiled")
