"""Accuracy of each precision mode of the Triton attention kernel, run by the interpreter.

On every scratch vector of the reference root: theta/phi/g from the vector's `nl_in` through
the synthetic-weight block, the kernel's attention against the runtime's numpy fp32 attention
and a float64 evaluation of the original formula, then `nl_out` through W and the residual
blocks against the stored `nl_out` (its tolerance is the budget). The interpreter computes
fp16 and the fp16x3 split exactly as a GPU does (fp16 products are exact in fp32), but it
cannot round to tf32: its tf32x3 row equals ieee there, and the tf32x3 row's `emulated`
column re-computes the logits with numpy tf32 rounding instead.

    TRITON_INTERPRET=1 python benchmarks/kernel_precision.py [REFERENCE_ROOT] [--out DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("TRITON_INTERPRET", "1")

import numpy as np

from trt_restore.conformance.formulas import original_attention as original_attention64


def reference_root(explicit: str | None) -> Path:
    """$TRT_RESTORE_REFERENCE, else ../shared/reference or shared/reference beside the repository."""
    repo = Path(__file__).resolve().parents[1]
    for candidate in (explicit, os.environ.get("TRT_RESTORE_REFERENCE"), repo.parent / "shared" / "reference",
                      repo / "shared" / "reference"):
        if candidate and (Path(candidate) / "vectors").is_dir():
            return Path(candidate)
    raise SystemExit("no reference root with vectors/ found (pass it or set TRT_RESTORE_REFERENCE)")


def tf32(x):
    bits = np.asarray(x, dtype=np.float32).view(np.uint32)
    bias = ((bits >> np.uint32(13)) & np.uint32(1)) + np.uint32(0xFFF)
    return ((bits + bias) & np.uint32(0xFFFFE000)).view(np.float32)


def tf32x3_logits(theta, phi):
    """Triton's tf32x3: a_hi.b_hi + a_hi.b_lo + a_lo.b_hi with tf32-rounded parts."""
    a, b = theta.T.astype(np.float32), phi.astype(np.float32)
    a_hi, b_hi = tf32(a), tf32(b)
    a_lo, b_lo = tf32(a - a_hi), tf32(b - b_hi)
    return a_hi @ b_lo + a_lo @ b_hi + a_hi @ b_hi


def vector_inputs(path: Path):
    import torch
    from trt_restore.export.networks import build_network, partial_nonlocal
    from trt_restore.export.synthetic_weights import synthetic_state

    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        arrays = {k: z[k] for k in z.files if k != "meta"}
    net = build_network("mapping_scratch")
    net.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in
                         synthetic_state("mapping_scratch").items()}, strict=False)
    block = net.NL.eval()
    x = torch.from_numpy(arrays["nl_in"])
    valid = partial_nonlocal.valid_positions(torch.from_numpy(arrays["mask"]), x.shape[2], x.shape[3])
    with torch.no_grad():
        theta, phi, g = (m(x)[0].flatten(1).numpy() for m in (block.theta, block.phi, block.g))
    return block, x, valid, theta, phi, g, arrays["nl_out"], float(meta["tolerance"]["nl_out"])


def nl_out_with(block, x, valid, attended: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        y = torch.from_numpy(attended.astype(np.float32)).reshape(x.shape)
        out = valid * x + (1.0 - valid) * block.res_block(block.W(y))
    return out.numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", nargs="?")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    parser.add_argument("--precisions", default="fp16,fp16x3,tf32x3,ieee")
    args = parser.parse_args()
    from trt_restore import attention
    from trt_restore.engines.kernels import interpret

    rows = []
    for path in sorted(reference_root(args.root).glob("vectors/*.npz")):
        with np.load(path, allow_pickle=False) as z:
            if json.loads(str(z["meta"])).get("kind") != "scratch":
                continue
        block, x, valid, theta, phi, g, want_nl_out, tol = vector_inputs(path)
        key_valid = valid.numpy().reshape(-1) > 0.5
        logits = theta.T.astype(np.float64) @ phi.astype(np.float64)
        exact = original_attention64(theta, phi, g, key_valid)
        numpy32 = attention.masked_attention(theta, phi, g, key_valid)
        base = {"vector": path.stem, "n": int(theta.shape[1]), "valid": int(key_valid.sum()),
                "max_abs_logit": float(np.abs(logits).max()), "nl_out_tolerance": tol}
        rows.append({**base, "precision": "numpy-fp32 (runtime)", "vs_numpy": 0.0,
                     "vs_float64": float(np.abs(numpy32 - exact).max()),
                     "nl_out_error": float(np.abs(nl_out_with(block, x, valid, numpy32) - want_nl_out).max())})
        for name in args.precisions.split(","):
            start = time.perf_counter()
            got = interpret.masked_attention(theta, phi, g, key_valid, precision=name)
            row = {**base, "precision": name, "seconds": round(time.perf_counter() - start, 1),
                   "vs_numpy": float(np.abs(got - numpy32).max()), "vs_float64": float(np.abs(got - exact).max()),
                   "nl_out_error": float(np.abs(nl_out_with(block, x, valid, got) - want_nl_out).max())}
            if name == "tf32x3":
                row["emulated_logit_error"] = float(np.abs(tf32x3_logits(theta, phi) - logits).max())
            rows.append(row)
            print(json.dumps(row), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "kernel_precision.json").write_text(json.dumps(rows, indent=1) + "\n")
    lines = ["| vector | N (valid) | max abs logit | precision | attention vs numpy fp32 | vs float64 original |"
             " nl_out error (tolerance) |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['vector']} | {r['n']} ({r['valid']}) | {r['max_abs_logit']:.1f} | {r['precision']} | "
                     f"{r['vs_numpy']:.2e} | {r['vs_float64']:.2e} | {r['nl_out_error']:.2e} "
                     f"({r['nl_out_tolerance']:g}) |")
    (out / "kernel_precision.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
