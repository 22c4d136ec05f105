"""onnxruntime memory: sessions dropped stage by stage, runs that give their memory back, and
outputs bit-identical to the arena-and-kept-sessions configuration they replace."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from trt_restore.backends import OrtOptions, create_backend
from trt_restore.global_restoration import GlobalRestorer
from trt_restore.modes import mode_spec

KEPT = OrtOptions(threads=2, arena=True, release_sessions=False)  # before: arenas, sessions kept


def _photo_and_mask():
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)
    mask = np.zeros((64, 96), np.uint8)
    mask[20:26, 10:80] = 255
    return image, mask


@pytest.mark.parametrize("mode", ["scratch", "hr"])
def test_stage_by_stage_sessions_give_the_same_output(exported_models, mode):
    image, mask = _photo_and_mask()
    kept = create_backend("ort", exported_models, ort=KEPT)
    lean = create_backend("ort", exported_models, ort=OrtOptions(threads=2))
    want = GlobalRestorer(kept, mode).restore(image, mask=mask)
    got = GlobalRestorer(lean, mode).restore(image, mask=mask)
    np.testing.assert_array_equal(got.restored, want.restored)
    for name in ("latent", "mapped", "output"):
        np.testing.assert_array_equal(got.tensors[name], want.tensors[name])
    graphs = set(mode_spec(mode).graphs) - {"detection"}  # the mask is given: no detection
    assert kept.resident_graphs == graphs
    assert not lean.resident_graphs and lean.loaded == graphs  # each session dropped after its run
    again = GlobalRestorer(lean, mode).restore(image, mask=mask)  # reloaded on the next photo
    np.testing.assert_array_equal(again.restored, want.restored)


def test_release_and_close_drop_sessions(exported_models):
    backend = create_backend("ort", exported_models, ort=KEPT)
    x = np.zeros((1, 3, 32, 32), np.float32)
    first = backend.run("vae_a_quality_encoder", {"image": x})["latent"]
    backend.release("vae_a_quality_encoder")
    assert "vae_a_quality_encoder" not in backend.resident_graphs
    np.testing.assert_array_equal(backend.run("vae_a_quality_encoder", {"image": x})["latent"], first)
    backend.close()
    assert not backend.resident_graphs and backend.loaded == {"vae_a_quality_encoder"}


_GROWTH = """
import json, sys
import numpy as np
from trt_restore.backends import OrtOptions, create_backend

def rss():
    return int(open("/proc/self/statm").read().split()[1]) * 4096

options = OrtOptions(threads=1, **json.loads(sys.argv[2]))
backend = create_backend("ort", sys.argv[1], ort=options)
image = np.zeros((1, 3, 384, 384), np.float32)
backend.run("vae_a_quality_encoder", {"image": image})
print(rss())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/statm")
def test_a_finished_run_leaves_no_arena_behind(exported_models):
    """With an arena the first run's 384x384 maps (64 channels at full resolution, tens of MB)
    stay reserved; without, the resident size after a run is back near the weights' size."""
    def resident_after_run(overrides: dict) -> int:
        out = subprocess.run([sys.executable, "-c", _GROWTH, str(exported_models), json.dumps(overrides)],
                             capture_output=True, text=True, timeout=120, check=True)
        return int(out.stdout.strip().splitlines()[-1])

    baseline = resident_after_run({"arena": False, "release_sessions": True})
    with_arena = resident_after_run({"arena": True, "release_sessions": False})
    one_map = 64 * 384 * 384 * 4
    assert with_arena - baseline > one_map, (with_arena, baseline)


def test_restorer_keeps_sessions_only_when_asked(exported_models):
    """The CLI's default drops each once-per-photo session after its run; a service keeps them warm."""
    from trt_restore.restorer import Restorer

    image, _ = _photo_and_mask()
    lean = Restorer(exported_models, backend="ort", mode="quality", threads=2, faces=False)
    warm = Restorer(exported_models, backend="ort", mode="quality", threads=2, faces=False, keep_sessions=True)
    np.testing.assert_array_equal(lean.restore(image), warm.restore(image))
    assert not lean.backend.resident_graphs
    assert warm.backend.resident_graphs == set(mode_spec("quality").graphs)
