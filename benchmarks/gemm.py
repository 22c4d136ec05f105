"""GEMM microbenchmark: this CPU's measured fp32 FMA peak (and int8 GEMM rate), same run.

fp32 through three BLAS implementations (onnxruntime's MLAS, which also runs the fp32
convolutions; PyTorch's oneDNN/MKL; NumPy's OpenBLAS); the best is the peak the convolution
throughput is compared with. int8 through onnxruntime MatMulInteger (uint8 x int8, the
kernel family of QLinearConv's GEMM path).

    python -m trt_restore.benchmarks.gemm [--size 2048] [--threads N]
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np


def _best(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def _ort_matmul(size: int, threads: int, integer: bool):
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    if integer:
        b = rng.integers(-127, 128, (size, size), dtype=np.int8)
        a = rng.integers(0, 256, (size, size), dtype=np.uint8)
        node = helper.make_node("MatMulInteger", ["A", "B"], ["Y"])
        a_type, y_type = TensorProto.UINT8, TensorProto.INT32
    else:
        b = rng.standard_normal((size, size)).astype(np.float32)
        a = rng.standard_normal((size, size)).astype(np.float32)
        node = helper.make_node("MatMul", ["A", "B"], ["Y"])
        a_type, y_type = TensorProto.FLOAT, TensorProto.FLOAT
    graph = helper.make_graph([node], "gemm", [helper.make_tensor_value_info("A", a_type, [size, size])],
                              [helper.make_tensor_value_info("Y", y_type, [size, size])],
                              [numpy_helper.from_array(b, "B")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return lambda: session.run(None, {"A": a})


def measure(size: int = 2048, threads: int | None = None, repeats: int = 5) -> dict:
    threads = threads or len(os.sched_getaffinity(0))
    flops = 2.0 * size ** 3
    results: dict = {"size": size, "threads": threads, "fp32_gflops": {}, "int8_gops": {}}
    results["fp32_gflops"]["onnxruntime (MLAS)"] = flops / _best(_ort_matmul(size, threads, False), repeats) / 1e9
    try:
        import torch

        torch.set_num_threads(threads)
        a = torch.randn(size, size)
        b = torch.randn(size, size)
        results["fp32_gflops"]["torch (oneDNN/MKL)"] = flops / _best(lambda: torch.mm(a, b), repeats) / 1e9
    except ImportError:
        pass
    a = np.random.default_rng(1).standard_normal((size, size)).astype(np.float32)
    results["fp32_gflops"]["numpy"] = flops / _best(lambda: a @ a, repeats) / 1e9
    results["int8_gops"]["onnxruntime MatMulInteger (u8 x s8)"] = \
        flops / _best(_ort_matmul(size, threads, True), repeats) / 1e9
    results["fp32_peak_gflops"] = max(results["fp32_gflops"].values())
    results["fp32_peak_from"] = max(results["fp32_gflops"], key=results["fp32_gflops"].get)
    results = {k: ({n: round(v, 1) for n, v in val.items()} if isinstance(val, dict) else val)
               for k, val in results.items()}
    results["fp32_peak_gflops"] = round(results["fp32_peak_gflops"], 1)
    return results


def cpu_info() -> dict:
    info = {"cores_available": len(os.sched_getaffinity(0))}
    try:
        text = open("/proc/cpuinfo").read()
        for line in text.splitlines():
            if line.startswith("model name"):
                info["model"] = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                info["isa"] = {name: name in flags for name in
                               ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "amx_tile",
                                "avx512_bf16", "amx_bf16")}
                break
    except OSError:
        pass
    return info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(json.dumps({"gemm": measure(args.size, args.threads, args.repeats), "cpu": cpu_info()}))


if __name__ == "__main__":
    main()
