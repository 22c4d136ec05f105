"""Exact tiled execution of the global networks (full resolution in bounded memory).

InstanceNorm takes statistics over the whole frame, so naive overlapping tiles change the
result. Here every convolution runs strip by strip (full-width horizontal bands with the
halo its kernel needs), its raw output is stored once, per-channel statistics are
accumulated while it is written, and the normalisation (+ReLU) is applied when the next
layer reads the strip. Every layer is computed exactly once; the result equals the
untiled computation up to float summation order. See docs/tiling.md.
"""
