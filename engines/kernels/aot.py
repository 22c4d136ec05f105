"""Ahead-of-time compilation of the Triton kernels into SASS cubins, no GPU needed.

`trt-restore build-kernels` (or `python -m trt_restore.engines.kernels.aot`) writes, per
architecture, `cubins/sm_<cc>/<kernel>.cubin`, and `cubins/manifest.json`: for each kernel its
symbol, parameter list (Triton appends two scratch pointers, passed as NULL), constexprs,
num_warps, shared memory, the grid rule and the cubin's sha256. The launchers (`launch.py`,
the C++ plugins) read only these files. Needs triton (the `kernels` extra); must run without
TRITON_INTERPRET.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from . import configs

CUBIN_DIR = Path(__file__).resolve().parent / "cubins"
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class KernelSpec:
    """One AOT kernel: Triton function, typed runtime parameters, constexprs, launch shape."""

    name: str
    function: str  # attribute of the module below
    module: str
    params: tuple  # ((name, triton type), ...) in kernel order, constexprs left out
    constexprs: dict
    num_warps: int
    num_stages: int
    grid: str  # the launch grid in terms of the runtime sizes (documentation for launchers)


def _attention_spec(cfg: configs.AttentionConfig, precision: str) -> KernelSpec:
    params = (("theta", "*fp32"), ("phi", "*fp32"), ("g", "*fp32"), ("idx_valid", "*i32"),
              ("idx_invalid", "*i32"), ("counts", "*i32"), ("out", "*fp32"), ("n", "i32"))
    return KernelSpec(f"attention_{cfg.name}_{precision}", "masked_attention_kernel", "attention_triton", params,
                      cfg.constexprs(configs.PRECISIONS[precision]), cfg.num_warps, cfg.num_stages,
                      f"(ceil(n / {cfg.block_m}), {configs.CHANNELS // cfg.block_d}, 1)")


def kernel_specs() -> list[KernelSpec]:
    """What ships: compaction, the attention in each configuration (default precision) and in
    fp16 / ieee for the main configuration, the three patch-match kernels per patch size and the
    margin kernel (patch size at run time: it only zeroes)."""
    specs = [KernelSpec("compact", "compact_kernel", "attention_triton",
                        (("flags", "*fp32"), ("n", "i32"), ("idx_true", "*i32"), ("idx_false", "*i32"),
                         ("counts", "*i32")), {"BLOCK": configs.COMPACT_BLOCK}, 4, 1, "(1, 1, 1)")]
    for cfg in configs.ATTENTION_CONFIGS.values():
        specs.append(_attention_spec(cfg, configs.DEFAULT_PRECISION))
    main = configs.ATTENTION_CONFIGS[configs.MAIN_ATTENTION]
    specs += [_attention_spec(main, "fp16"), _attention_spec(main, "ieee")]
    pc = configs.PATCH_CONFIG
    for size in (2, 4, 8):
        specs.append(KernelSpec(f"patch_flags_{size}", "patch_flags_kernel", "patch_match_triton",
                                (("hole", "*fp32"), ("flags", "*fp32"), ("height", "i32"), ("width", "i32")),
                                {"SIZE": size, "BLOCK": configs.FLAGS_BLOCK}, 4, 1,
                                f"(ceil(patches / {configs.FLAGS_BLOCK}), 1, 1)"))
        specs.append(KernelSpec(f"patch_best_{size}", "patch_best_kernel", "patch_match_triton",
                                (("x", "*fp32"), ("idx_hole", "*i32"), ("idx_key", "*i32"), ("counts", "*i32"),
                                 ("best", "*i32"), ("height", "i32"), ("width", "i32"), ("features", "i32")),
                                {"SIZE": size, "BLOCK_M": pc.block_m, "BLOCK_N": pc.block_n, "BLOCK_K": pc.block_k,
                                 "PRECISION": configs.PRECISIONS[configs.DEFAULT_PRECISION]},
                                pc.num_warps, pc.num_stages, f"(ceil(patches / {pc.block_m}), 1, 1)"))
        specs.append(KernelSpec(f"patch_compose_{size}", "patch_compose_kernel", "patch_match_triton",
                                (("x", "*fp32"), ("out", "*fp32"), ("idx_hole", "*i32"), ("idx_key", "*i32"),
                                 ("counts", "*i32"), ("best", "*i32"), ("height", "i32"), ("width", "i32"),
                                 ("features", "i32")), {"SIZE": size, "BLOCK_K": configs.COMPOSE_BLOCK_K}, 4, 1,
                                f"(patches, ceil(features / {configs.COMPOSE_BLOCK_K}), 1)"))
    specs.append(KernelSpec("patch_margin", "patch_margin_kernel", "patch_match_triton",
                            (("out", "*fp32"), ("counts", "*i32"), ("channels", "i32"), ("height", "i32"),
                             ("width", "i32"), ("size", "i32")), {"BLOCK": configs.MARGIN_BLOCK}, 4, 1,
                            f"(ceil(margin elements / {configs.MARGIN_BLOCK}), 1, 1), none without a margin"))
    return specs


def compile_kernel(spec: KernelSpec, arch: int):
    """triton.compile for one architecture; returns (cubin bytes, metadata dict)."""
    import importlib

    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    fn = getattr(importlib.import_module(f"{__package__}.{spec.module}"), spec.function)
    signature = dict(spec.params)
    signature.update({k: "constexpr" for k in spec.constexprs})
    src = ASTSource(fn=fn, signature=signature, constexprs=dict(spec.constexprs))
    target = GPUTarget("cuda", arch, 32)
    options = triton.compiler.make_backend(target).parse_options({"num_warps": spec.num_warps,
                                                                  "num_stages": spec.num_stages,
                                                                  "enable_fp_fusion": True})
    compiled = triton.compile(src, target=target, options=options.__dict__)
    meta = compiled.metadata
    if getattr(meta, "global_scratch_size", 0) or getattr(meta, "profile_scratch_size", 0):
        raise RuntimeError(f"{spec.name} sm_{arch}: needs global scratch memory, which the launchers do not provide")
    return compiled.asm["cubin"], {"symbol": meta.name, "shared": int(meta.shared), "num_warps": int(meta.num_warps)}


def build(arches=configs.ARCHES, out_dir: Path = CUBIN_DIR, names: list[str] | None = None, log=print) -> Path:
    """Compile every kernel for every architecture into out_dir; returns the manifest path."""
    if os.environ.get("TRITON_INTERPRET") == "1":
        raise RuntimeError("unset TRITON_INTERPRET: the interpreter cannot compile cubins")
    import tempfile

    import triton

    with tempfile.TemporaryDirectory(prefix="trt-restore-aot-") as cache:
        # no line info (it embeds the absolute paths of the checkout and of Triton) and a fresh
        # cache (its key ignores line numbers): the same sources give the same bytes anywhere
        knobs = triton.knobs
        previous = knobs.cache.dir, knobs.compilation.disable_line_info
        knobs.cache.dir, knobs.compilation.disable_line_info = cache, True
        try:
            return _build(triton, arches, Path(out_dir), names, log)
        finally:
            knobs.cache.dir, knobs.compilation.disable_line_info = previous


def _build(triton, arches, out_dir: Path, names, log) -> Path:
    manifest = {"triton": triton.__version__, "channels": configs.CHANNELS,
                "default_precision": configs.DEFAULT_PRECISION, "main_attention": configs.MAIN_ATTENTION,
                "extra_params": ["global_scratch (CUdeviceptr, NULL)", "profile_scratch (CUdeviceptr, NULL)"],
                "kernels": {}}
    for spec in kernel_specs():
        if names and spec.name not in names:
            continue
        entry = {"params": [list(p) for p in spec.params], "constexprs": spec.constexprs,
                 "num_warps": spec.num_warps, "num_stages": spec.num_stages, "grid": spec.grid, "arches": {}}
        for arch in arches:
            cubin, meta = compile_kernel(spec, arch)
            path = out_dir / f"sm_{arch}" / f"{spec.name}.cubin"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(cubin)
            entry["arches"][str(arch)] = {"file": f"sm_{arch}/{spec.name}.cubin", "symbol": meta["symbol"],
                                          "shared": meta["shared"],
                                          "sha256": hashlib.sha256(cubin).hexdigest()}
            log(f"{spec.name} sm_{arch}: {len(cubin)} bytes, shared {meta['shared']}")
        manifest["kernels"][spec.name] = entry
    path = out_dir / MANIFEST
    path.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    if not names:
        (out_dir / TABLE).write_text(kernel_table(manifest))
    return path


TABLE = "trt_restore_kernel_table.h"


def kernel_table(manifest: dict) -> str:
    """The C table the plugins' launcher (engines/plugins/trt_restore_kernels.cpp) includes."""
    lines = ["/* Generated by `trt-restore build-kernels` from cubins/manifest.json: do not edit. */",
             "#ifndef TRT_RESTORE_KERNEL_TABLE_H", "#define TRT_RESTORE_KERNEL_TABLE_H", "",
             "typedef struct {", "    const char* name; /* kernel (manifest key) */", "    int arch;",
             "    const char* file; /* relative to the cubin directory */", "    const char* symbol;",
             "    int shared; /* bytes of dynamic shared memory */", "    int num_warps;", "    int num_params;",
             "} trtr_cubin_entry;", "",
             f'#define TRTR_TRITON_VERSION "{manifest["triton"]}"',
             f'#define TRTR_DEFAULT_PRECISION "{configs.DEFAULT_PRECISION}"',
             f"#define TRTR_PATCH_BLOCK_M {configs.PATCH_CONFIG.block_m}",
             f"#define TRTR_FLAGS_BLOCK {configs.FLAGS_BLOCK}", f"#define TRTR_COMPOSE_BLOCK_K {configs.COMPOSE_BLOCK_K}",
             f"#define TRTR_MARGIN_BLOCK {configs.MARGIN_BLOCK}",
             "", "typedef struct {", "    int id; /* trtr_attention_config */", "    const char* name;",
             "    int block_m;", "    int block_d;", "} trtr_attention_tiles;", "",
             "static const trtr_attention_tiles TRTR_ATTENTION_TILES[] = {"]
    for name, cfg in sorted(configs.ATTENTION_CONFIGS.items(), key=lambda kv: configs.CONFIG_IDS[kv[0]]):
        lines.append(f'    {{{configs.CONFIG_IDS[name]}, "{name}", {cfg.block_m}, {cfg.block_d}}},')
    lines += ["};", "#define TRTR_ATTENTION_TILE_COUNT (sizeof(TRTR_ATTENTION_TILES) / sizeof(TRTR_ATTENTION_TILES[0]))",
              "", "static const trtr_cubin_entry TRTR_CUBINS[] = {"]
    for name, entry in sorted(manifest["kernels"].items()):
        for arch, info in sorted(entry["arches"].items()):
            lines.append(f'    {{"{name}", {arch}, "{info["file"]}", "{info["symbol"]}", {info["shared"]}, '
                         f'{entry["num_warps"]}, {len(entry["params"])}}},')
    lines += ["};", "#define TRTR_CUBIN_COUNT (sizeof(TRTR_CUBINS) / sizeof(TRTR_CUBINS[0]))", "",
              "#endif /* TRT_RESTORE_KERNEL_TABLE_H */", ""]
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="AOT-compile the Triton kernels into cubins (no GPU needed).")
    parser.add_argument("--out", type=Path, default=CUBIN_DIR)
    parser.add_argument("--arch", type=int, action="append", help="compute capability, e.g. 87 (default: all)")
    parser.add_argument("--kernel", action="append", help="only these kernels (default: all)")
    args = parser.parse_args(argv)
    print(build(tuple(args.arch or configs.ARCHES), args.out, args.kernel))


if __name__ == "__main__":
    main()
