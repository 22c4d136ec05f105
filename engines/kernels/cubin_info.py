"""Resource usage and instructions of the shipped cubins, read with cuobjdump / nvdisasm.

The CUDA toolkit here lacks both tools; the PyPI wheels `nvidia-cuda-cuobjdump` and
`nvidia-cuda-nvdisasm` (the `kernels` extra) install them under site-packages/nvidia/*/bin.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path


def find_tool(name: str) -> str | None:
    """cuobjdump / nvdisasm from the NVIDIA wheels, $PATH or the CUDA toolkit."""
    for base in map(Path, sys.path):
        for candidate in sorted((base / "nvidia").glob(f"*/bin/{name}")):
            if os.access(candidate, os.X_OK):
                return str(candidate)
    found = shutil.which(name)
    if found:
        return found
    cuda = Path(os.environ.get("CUDA_HOME", "/usr/local/cuda")) / "bin" / name
    return str(cuda) if cuda.is_file() else None


def _run(tool: str, *args: str) -> str:
    exe = find_tool(tool)
    if exe is None:
        raise FileNotFoundError(f"{tool} not found: pip install nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm")
    env = dict(os.environ)
    env["PATH"] = f"{Path(find_tool('nvdisasm') or exe).parent}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run([exe, *args], capture_output=True, text=True, check=True, env=env).stdout


def resource_usage(cubin: Path) -> dict:
    """{'registers', 'stack', 'local', 'shared'} of the (single) function of a cubin; stack or
    local > 0 means register spills."""
    out = _run("cuobjdump", "-res-usage", str(cubin))
    match = re.search(r"REG:(\d+) STACK:(\d+) SHARED:(\d+) LOCAL:(\d+)", out)
    if not match:
        raise ValueError(f"no resource line in cuobjdump output for {cubin}:\n{out}")
    reg, stack, shared, local = map(int, match.groups())
    return {"registers": reg, "stack": stack, "shared_static": shared, "local": local}


def sass_opcodes(cubin: Path) -> dict[str, int]:
    """Opcode (first dotted word) -> count in the SASS of a cubin."""
    counts: dict[str, int] = {}
    for op in re.findall(r"/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_]*)", _run("cuobjdump", "-sass", str(cubin))):
        counts[op] = counts.get(op, 0) + 1
    return counts
