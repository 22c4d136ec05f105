"""Shared fixtures: the reference root and a synthetic release in the official layout.

Synthetic checkpoints are written once per session (the face generators are ~370 MB
each) into a temporary directory, so every test goes through the real loader.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DEFAULT_REFERENCE = REPO.parent / "shared" / "reference"


def reference_root() -> Path:
    return Path(os.environ.get("TRT_RESTORE_REFERENCE", DEFAULT_REFERENCE)).resolve()


@pytest.fixture(scope="session")
def reference() -> Path:
    root = reference_root()
    if not root.is_dir():
        pytest.fail(f"reference root {root} not found (set TRT_RESTORE_REFERENCE)")
    return root


class SyntheticRelease:
    """Writes synthetic checkpoints on demand under one session directory."""

    def __init__(self, root: Path):
        self.root = root

    def ensure(self, *tags: str) -> Path:
        from trt_restore.export.synthetic_weights import write_synthetic_release

        return write_synthetic_release(self.root, tags)


@pytest.fixture(scope="session")
def synthetic_release(tmp_path_factory) -> SyntheticRelease:
    return SyntheticRelease(tmp_path_factory.mktemp("synthetic_release"))


@pytest.fixture(scope="session", autouse=True)
def _torch_threads():
    """Two threads, as the reference vectors were produced (and as CI has)."""
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(2)


GLOBAL_TAGS = ("VAE_A_quality", "VAE_B_quality", "VAE_B_scratch", "mapping_quality", "mapping_scratch",
               "mapping_Patch_Attention", "detection")


@pytest.fixture(scope="session")
def exported_models(synthetic_release, tmp_path_factory) -> Path:
    """All global graphs exported once per session from the synthetic release (~45 s)."""
    from trt_restore.export.graphs import GRAPHS
    from trt_restore.export.onnx_export import ExportPlan, export_all

    synthetic_release.ensure(*GLOBAL_TAGS)
    out = tmp_path_factory.mktemp("models")
    export_all(ExportPlan(synthetic_release.root, out, tuple(g for g in GRAPHS if g.multiple < 256)))
    return out


SLOW_TIMEOUT = 3600  # seconds; the suite-wide default (pyproject.toml `timeout`) is for the fast tests


def pytest_collection_modifyitems(config, items):
    """Slow tests (by hand) get a longer bound than the fast suite's default, unless they set one."""
    for item in items:
        if item.get_closest_marker("slow") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(SLOW_TIMEOUT))
