"""One spec per mode, and the facts in it are the original's."""
from __future__ import annotations

import pytest

from trt_restore.modes import MODES, SPECS, mode_of_flags, mode_spec


def test_modes_and_their_graphs():
    assert MODES == ("quality", "scratch", "hr")
    assert mode_spec("quality").graphs == ("vae_a_quality_encoder", "mapping_quality", "vae_b_quality_decoder")
    assert mode_spec("scratch").graphs[0] == "detection" and mode_spec("scratch").attention == "nonlocal"
    assert mode_spec("hr").mapping[-1] == "mapping_hr_tail" and mode_spec("hr").attention == "patch"
    with pytest.raises(ValueError, match="quality"):
        mode_spec("ultra")


def test_the_originals_preprocessing_facts():
    """Quality: multiples of 4, bilinear (test_mode Full); scratch and HR: the detection stage's
    multiples of 16, bicubic; only HR dilates the mask; HR enhances 512 px faces."""
    facts = {m: (s.side_multiple, s.resize_method, s.dilates_mask, s.face_crop) for m, s in SPECS.items()}
    assert facts == {"quality": (4, "bilinear", False, 256), "scratch": (16, "bicubic", False, 256),
                     "hr": (16, "bicubic", True, 512)}


def test_every_graph_of_a_mode_is_exported():
    from trt_restore.engines.profiles import GRAPH_IO

    for spec in SPECS.values():
        assert set(spec.graphs) <= set(GRAPH_IO), spec.name


def test_flags():
    assert (mode_of_flags(), mode_of_flags(scratch=True), mode_of_flags(hr=True)) == ("quality", "scratch", "hr")
