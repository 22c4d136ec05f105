"""Per-graph precision under `--precision int8`: the one rule every backend follows.

`trt-restore quantize` records in models.json's `int8` section, per graph, whether the runtime
runs its Q/DQ model (`precision: int8`) or keeps the graph in float (`precision: fp32`, with a
`precision_reason`: e.g. the encoder, whose int8 error the mapping network amplifies by ~5 dB).
onnxruntime and the TensorRT builder both ask `graph_precision`, so the two backends can never
disagree on which graphs are int8. No numpy, torch or TensorRT here: the manifest is plain JSON.
"""
from __future__ import annotations

from dataclasses import dataclass

FLAVOURS = ("onnxruntime", "tensorrt")


@dataclass(frozen=True)
class GraphPrecision:
    precision: str | None  # what to run the graph at; None: no model for the requested precision
    reason: str | None = None  # why it differs from the requested precision (or why there is none)


def qdq_file(manifest: dict, graph: str, flavour: str) -> str | None:
    """The Q/DQ model (relative to the model directory) of a backend flavour: onnxruntime runs the
    uint8 `int8.graphs[g].file`, TensorRT builds the symmetric int8 `graphs[g].qdq_file`."""
    if flavour not in FLAVOURS:
        raise ValueError(f"flavour must be one of {FLAVOURS}, got {flavour!r}")
    if flavour == "tensorrt":
        return (manifest.get("graphs", {}).get(graph) or {}).get("qdq_file") or None
    return (manifest.get("int8", {}).get("graphs", {}).get(graph) or {}).get("file") or None


def graph_precision(manifest: dict, graph: str, requested: str, flavour: str = "tensorrt") -> GraphPrecision:
    """The precision `graph` runs at when `requested` is asked for. Only int8 is per graph: a
    graph marked `precision: fp32` (or fp16) in the int8 section keeps that precision; a graph
    without a Q/DQ model has none (the caller decides: onnxruntime runs it in fp32, the
    TensorRT builder skips it and says why)."""
    if requested != "int8":
        return GraphPrecision(requested)
    recorded = manifest.get("int8", {}).get("graphs", {}).get(graph) or {}
    chosen = recorded.get("precision", "int8")
    if chosen != "int8":
        why = recorded.get("precision_reason") or "marked so by `trt-restore quantize`"
        return GraphPrecision(chosen, f"models.json keeps {graph} at {chosen} under int8: {why}")
    if not qdq_file(manifest, graph, flavour):
        field = "qdq_file" if flavour == "tensorrt" else "int8.graphs.*.file"
        return GraphPrecision(None, f"no calibrated Q/DQ model for {graph} (models.json `{field}`); "
                                    f"`trt-restore quantize` makes them for the global-restoration graphs")
    return GraphPrecision("int8")
