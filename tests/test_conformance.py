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
    assert set(c.name for c in comparisons) == set(meta["outputs"])
    failed = [str(c) for c in comparisons if not c.ok]
    assert not failed, f"{path.name}: " + "; ".join(failed)
