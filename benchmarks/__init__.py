"""Reproducible benchmarks (`trt-restore bench`): latency, memory, throughput; JSON + markdown + PNG."""
