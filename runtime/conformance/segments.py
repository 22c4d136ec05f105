"""Network reference vectors through a runtime backend, at the segment boundaries they store.

The runtime's graphs cut each network where its attention sits (docs/onnx-graphs.md), so a
backend exposes `latent`, `nl_in` (scratch), `mapped`, `output`, detection `prob` and the face
generator's `output`. Each vector's stored `input` (and `mask`) is fed in and the chain runs to
the end exactly as the pipeline runs it: the attention in between is the runtime's (or the
backend's GPU kernel). Tensors a backend does not expose are reported, not judged.
"""
from __future__ import annotations

from pathlib import Path


from ..global_restoration import GlobalRestorer
from ..modes import SPECS
from .vectors import Comparison, UnknownKind, compare_tensor, load_vector

FACE_GRAPHS = {"face256": "face_256", "face512": "face_512"}
NETWORK_KINDS = ("quality", "vae_roundtrip", "scratch", "hr", "detection", "face256", "face512")
TILED_KINDS = ("quality", "vae_roundtrip", "scratch", "hr")  # what the strip executor runs


def graphs_for(kind: str) -> tuple[str, ...]:
    """The exported graphs a kind needs on a runtime backend."""
    return {
        "quality": ("vae_a_quality_encoder", "mapping_quality", "vae_b_quality_decoder"),
        "vae_roundtrip": ("vae_a_quality_encoder",),
        "scratch": ("vae_a_quality_encoder", "mapping_scratch_head", "mapping_scratch_tail", "vae_b_scratch_decoder"),
        "hr": ("vae_a_quality_encoder", "mapping_hr_head", "mapping_hr_step1", "mapping_hr_step2",
               "mapping_hr_tail", "vae_b_scratch_decoder"),
        "detection": ("detection",),
        "face256": ("face_256",),
        "face512": ("face_512",),
    }[kind]


def _restorer(backend, mode: str, tile_rows: int | None) -> GlobalRestorer:
    if tile_rows is None:
        return GlobalRestorer(backend, mode)
    from ..tiling.executor import ExecutorConfig
    from ..tiling.runner import TiledGlobalRestorer

    return TiledGlobalRestorer(backend, mode, ExecutorConfig(strip_rows=tile_rows))


def produce(backend, kind: str, meta: dict, arrays: dict, tile_rows: int | None = None) -> tuple[dict, dict]:
    """(tensors produced by the backend, {tensor: why it is not exposed})."""
    if kind in SPECS or kind == "vae_roundtrip":  # the global modes' vector kinds are the mode names
        if kind == "vae_roundtrip":
            if meta.get("vae_tag") != "VAE_A_quality":
                return {}, {name: f"{meta.get('vae_tag')} is not a runtime graph" for name in meta["outputs"]}
            restorer = _restorer(backend, "quality", tile_rows)
            runner = restorer.runner()
            latent = runner.run("vae_a_quality_encoder", {"image": runner.from_array(arrays["input"])})["latent"]
            produced = {"latent": runner.to_array(latent)}
            runner.close()
            return produced, {"output": "VAE A's own decoder is not a runtime graph (the pipeline decodes with VAE B)"}
        restorer = _restorer(backend, kind, tile_rows)
        runner = restorer.runner()
        values = restorer.run_networks(runner, arrays["input"], arrays.get("mask"))
        produced = {name: runner.to_array(value) for name, value in values.items()}
        runner.close()
        return produced, {"nl_out": "inside the mapping_scratch_tail graph"}
    if kind == "detection":
        return dict(backend.run("detection", {"gray": arrays["input"]})), {
            "logits": "the detection graph ends in the sigmoid"}
    if kind in FACE_GRAPHS:
        return dict(backend.run(FACE_GRAPHS[kind], {"face": arrays["input"]})), {
            "fc_out": "inside the face graph"}
    raise UnknownKind(f"unknown vector kind {kind!r}; known: {', '.join(NETWORK_KINDS)}")


def run_vector(path: str | Path, backend, precision: str = "fp32",
               tile_rows: int | None = None) -> tuple[dict, list[Comparison]]:
    """Every output named in meta["outputs"], within its stored tolerance (fp32) or the
    precision's PSNR budget (fp16/int8)."""
    meta, arrays = load_vector(path)
    produced, hidden = produce(backend, meta["kind"], meta, arrays, tile_rows)
    comparisons = []
    for name in meta["outputs"]:
        tolerance = float(meta["tolerance"][name])
        if name in hidden and name not in produced:
            comparisons.append(Comparison(name, float("nan"), tolerance, note=hidden[name]))
            continue
        comparisons.append(compare_tensor(name, produced.get(name), arrays[name], tolerance, precision))
    return meta, comparisons
