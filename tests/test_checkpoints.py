"""The loader accepts files built from every manifest and rejects altered ones clearly."""
from __future__ import annotations

import logging
import pickle

import pytest
import torch

from trt_restore.export.checkpoints import CheckpointError, load_network, read_state_dict
from trt_restore.export.manifests import ALL_TAGS, checkpoint_path, load_manifest
from trt_restore.export.networks import build_network
from trt_restore.export.synthetic_weights import synthetic_state

SMALL_TAG = "VAE_A_quality"  # 3.5 MB: cheap to alter and rewrite


@pytest.mark.parametrize("tag", ALL_TAGS)
def test_network_matches_manifest_exactly(tag):
    manifest = load_manifest(tag)
    network = build_network(tag)
    got = [(k, tuple(v.shape)) for k, v in network.state_dict().items()]
    assert got == [(k, shape) for k, shape, _ in manifest.keys]
    assert sum(p.numel() for p in network.parameters()) == manifest.param_count


@pytest.mark.parametrize("tag", ALL_TAGS)
def test_official_layout_loads_bit_exact(tag, synthetic_release):
    root = synthetic_release.ensure(tag)
    path = checkpoint_path(root, tag)
    assert path.relative_to(root).as_posix() == load_manifest(tag).official_file
    network = load_network(root, tag)
    expected = synthetic_state(tag)
    for key, value in network.state_dict().items():
        assert torch.equal(value, torch.from_numpy(expected[key])), key
    assert not network.training


def _write(path, payload):
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, path)
    return path


@pytest.fixture()
def small_state():
    return {k: torch.from_numpy(v) for k, v in synthetic_state(SMALL_TAG).items()}


def _error(path, tag=SMALL_TAG) -> str:
    with pytest.raises(CheckpointError) as info:
        read_state_dict(path, tag)
    message = str(info.value)
    assert "\n" not in message, "errors must be one line"
    assert str(path) in message, "errors must name the file"
    return message


def test_truncated_file(tmp_path, synthetic_release):
    good = checkpoint_path(synthetic_release.ensure(SMALL_TAG), SMALL_TAG).read_bytes()
    bad = tmp_path / "latest_net_G.pth"
    bad.write_bytes(good[: len(good) // 2])
    assert "truncated or corrupt" in _error(bad)


def test_corrupted_bytes(tmp_path, synthetic_release):
    data = bytearray(checkpoint_path(synthetic_release.ensure(SMALL_TAG), SMALL_TAG).read_bytes())
    data[:64] = b"\x00" * 64
    bad = tmp_path / "latest_net_G.pth"
    bad.write_bytes(bytes(data))
    _error(bad)


def test_empty_and_missing_file(tmp_path):
    empty = tmp_path / "empty.pth"
    empty.touch()
    assert "empty" in _error(empty)
    assert "not found" in _error(tmp_path / "nowhere.pth")


def test_wrong_shape_names_key(tmp_path, small_state):
    small_state["encoder.4.weight"] = torch.zeros(64, 64, 3, 3)
    message = _error(_write(tmp_path / "x.pth", small_state))
    assert "encoder.4.weight" in message and "(64, 64, 3, 3)" in message and "(64, 64, 4, 4)" in message


def test_missing_key_named(tmp_path, small_state):
    del small_state["decoder.11.bias"]
    assert "missing key(s): decoder.11.bias" in _error(_write(tmp_path / "x.pth", small_state))


def test_checkpoint_of_another_network(tmp_path, synthetic_release):
    path = checkpoint_path(synthetic_release.ensure(SMALL_TAG), SMALL_TAG)
    with pytest.raises(CheckpointError) as info:
        read_state_dict(path, "mapping_quality")
    assert str(path) in str(info.value) and "mapping_quality manifest" in str(info.value)
    assert "model.0.weight" in str(info.value)


def test_foreign_pickle_refused(tmp_path):
    """weights_only loading refuses arbitrary objects; the error still names the file."""
    import datetime

    path = _write(tmp_path / "foreign.pth", {"saved": datetime.datetime(2020, 1, 1)})
    assert "refused" in _error(path)
    plain = tmp_path / "plain_pickle.pth"
    plain.write_bytes(pickle.dumps({"saved": datetime.datetime(2020, 1, 1)}))
    _error(plain)


def test_not_a_state_dict(tmp_path):
    assert "state dict" in _error(_write(tmp_path / "list.pth", [1, 2, 3]))


def test_detection_needs_model_state_entry(tmp_path):
    path = _write(tmp_path / "FT_Epoch_latest.pt", {"weights": {}})
    with pytest.raises(CheckpointError, match="model_state"):
        read_state_dict(path, "detection")


def test_module_prefix_and_extra_keys_tolerated(tmp_path, small_state, caplog):
    state = {f"module.{k}": v for k, v in small_state.items()}
    state["module.encoder.99.weight"] = torch.zeros(1)
    path = _write(tmp_path / "VAE_A_quality" / "latest_net_G.pth", state)
    with caplog.at_level(logging.WARNING):
        loaded = read_state_dict(path, SMALL_TAG)
    assert set(loaded) == set(small_state)
    assert "encoder.99.weight" in caplog.text
    network = load_network(tmp_path, SMALL_TAG, path=path)
    assert torch.equal(network.state_dict()["encoder.1.weight"], small_state["encoder.1.weight"])
