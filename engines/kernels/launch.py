"""Launch the shipped AOT cubins through the CUDA driver API (cuda-python): no Triton, no nvcc,
no torch. Used by the TensorRT backend; the C++ plugins replay the same sequence.

Attention: compact(valid flags) -> attention kernel. Patch match: out <- x (a device copy by
the caller), patch flags -> compact -> best -> compose -> margin (sides off the patch multiple;
zeroes only if the device-side hole count is > 0). Device pointers and the stream are ints.
"""
from __future__ import annotations

import ctypes
import json
from pathlib import Path

from . import configs

CUBIN_DIR = Path(__file__).resolve().parent / "cubins"
_TYPES = {"*": ctypes.c_void_p, "i32": ctypes.c_int32}


class KernelUnavailable(RuntimeError):
    """No usable cubin or driver binding; str() is one line naming the cause."""


def _driver():
    try:
        from cuda.bindings import driver  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cuda as driver  # older cuda-python
        except ImportError as err:
            raise KernelUnavailable(f"no CUDA driver bindings (pip install cuda-python): {err}") from None
    return driver


def _check(result, what: str):
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise RuntimeError(f"{what} failed: {getattr(err, 'name', err)}")
    return values[0] if len(values) == 1 else (values or None)


def pick_arch(manifest: dict, major: int, minor: int) -> int:
    """The cubin architecture for a GPU: exact match, else the highest lower minor of the same
    major (SASS runs on X.z >= X.y; sm_90 cubins use wgmma and run on 9.0 only)."""
    shipped = {int(a) for k in manifest["kernels"].values() for a in k["arches"]}
    want = major * 10 + minor
    same_major = sorted(a for a in shipped if a // 10 == major and a <= want and (major != 9 or a == want))
    if not same_major:
        names = ", ".join(f"sm_{a}" for a in sorted(shipped))
        raise KernelUnavailable(f"no trt-restore kernel cubin for compute capability {major}.{minor} (shipped: "
                                f"{names}); run `trt-restore build-kernels --arch {want}` with Triton installed")
    return same_major[-1]


class AotKernels:
    """The cubins of one architecture, loaded lazily per kernel (cuModuleLoadData)."""

    def __init__(self, major: int, minor: int, cubin_dir: Path = CUBIN_DIR, driver=None):
        self.dir = Path(cubin_dir)
        self.manifest = json.loads((self.dir / "manifest.json").read_text())
        self.arch = pick_arch(self.manifest, major, minor)
        self.cu = driver or _driver()
        self._functions: dict[str, object] = {}

    def describe(self) -> str:
        return f"Triton AOT cubins sm_{self.arch} ({self.manifest['default_precision']} logits)"

    def _function(self, name: str):
        if name not in self._functions:
            info = self.manifest["kernels"][name]["arches"][str(self.arch)]
            module = _check(self.cu.cuModuleLoadData((self.dir / info["file"]).read_bytes()), "cuModuleLoadData")
            fn = _check(self.cu.cuModuleGetFunction(module, info["symbol"].encode()), "cuModuleGetFunction")
            if info["shared"] > 49152:
                attr = self.cu.CUfunction_attribute.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES
                _check(self.cu.cuFuncSetAttribute(fn, attr, info["shared"]), "cuFuncSetAttribute")
            self._functions[name] = fn
        return self._functions[name]

    def launch(self, name: str, grid: tuple[int, int, int], args: list[int], stream: int = 0) -> None:
        """args in the manifest's parameter order; the two scratch pointers are appended (NULL)."""
        entry = self.manifest["kernels"][name]
        types = [_TYPES["*" if t.startswith("*") else t] for _, t in entry["params"]]
        if len(args) != len(types):
            raise ValueError(f"{name}: {len(types)} arguments expected, got {len(args)}")
        shared = entry["arches"][str(self.arch)]["shared"]
        params = (tuple(args) + (0, 0), tuple(types) + (ctypes.c_void_p, ctypes.c_void_p))
        _check(self.cu.cuLaunchKernel(self._function(name), *grid, 32 * entry["num_warps"], 1, 1, shared,
                                      stream, params, 0), f"cuLaunchKernel({name})")

    # ---- the two operations ---------------------------------------------------------------
    @staticmethod
    def attention_workspace_bytes(n: int) -> int:
        return 4 * (2 * n + 2)  # idx_valid, idx_invalid, counts (int32)

    def masked_attention(self, theta: int, phi: int, g: int, valid: int, out: int, n: int, workspace: int,
                         stream: int = 0, config: str = configs.MAIN_ATTENTION,
                         precision: str = configs.DEFAULT_PRECISION) -> None:
        """theta/phi/g/out: (512, n) fp32 device arrays; valid: (n,) fp32, a key is valid where > 0.5."""
        cfg = configs.ATTENTION_CONFIGS[config]
        idx_valid, idx_invalid, counts = workspace, workspace + 4 * n, workspace + 8 * n
        self.launch("compact", (1, 1, 1), [valid, n, idx_valid, idx_invalid, counts], stream)
        grid = (-(-n // cfg.block_m), configs.CHANNELS // cfg.block_d, 1)
        self.launch(f"attention_{config}_{precision}", grid,
                    [theta, phi, g, idx_valid, idx_invalid, counts, out, n], stream)

    @staticmethod
    def patch_workspace_bytes(patches: int) -> int:
        return 16 + 16 * patches  # counts, idx_hole, idx_key, best (int32), flags (fp32)

    def patch_match(self, x: int, hole: int, out: int, channels: int, height: int, width: int, size: int,
                    workspace: int, stream: int = 0) -> None:
        """out must already hold a copy of x (C, H, W) fp32; hole: (H, W) fp32. Without a whole
        patch there is no hole patch: nothing is launched (out stays x)."""
        patches = (height // size) * (width // size)
        if patches == 0:
            return
        features = channels * size * size
        counts = workspace
        idx_hole, idx_key, best = (workspace + 16 + 4 * patches * k for k in range(3))
        flags = workspace + 16 + 12 * patches
        self.launch(f"patch_flags_{size}", (-(-patches // configs.FLAGS_BLOCK), 1, 1),
                    [hole, flags, height, width], stream)
        self.launch("compact", (1, 1, 1), [flags, patches, idx_hole, idx_key, counts], stream)
        self.launch(f"patch_best_{size}", (-(-patches // configs.PATCH_CONFIG.block_m), 1, 1),
                    [x, idx_hole, idx_key, counts, best, height, width, features], stream)
        self.launch(f"patch_compose_{size}", (patches, -(-features // configs.COMPOSE_BLOCK_K), 1),
                    [x, out, idx_hole, idx_key, counts, best, height, width, features], stream)
        margin = configs.margin_elements(channels, height, width, size)
        if margin:
            self.launch("patch_margin", (-(-margin // configs.MARGIN_BLOCK), 1, 1),
                        [out, counts, channels, height, width, size], stream)
