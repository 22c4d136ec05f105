#!/usr/bin/env python3
"""Resolve trt-restore's dependency set for a Jetson (JetPack 6: aarch64, CPython 3.10,
glibc 2.35) from PyPI, binary wheels only, and print the wheel table.

A release whose dependencies have no aarch64/cp310 wheel is caught here, on any machine,
before it reaches a board. pip evaluates environment markers against the interpreter that
runs it, not the target, so this script evaluates trt-restore's own markers for the board
itself and hands pip plain requirements.

    python deploy/jetson/resolve_wheels.py                 # markdown table
    python deploy/jetson/resolve_wheels.py --json          # machine-readable (the network test)
    python deploy/jetson/resolve_wheels.py --extras serve,trt
"""
from __future__ import annotations

import argparse
import json
import os
import runpy
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlparse

ROOT = Path(__file__).resolve().parents[2]
PLATFORM = "manylinux_2_35_aarch64"  # JetPack 6 = Ubuntu 22.04 = glibc 2.35
# pip does not widen --platform to older glibc tags itself: list every one the board accepts
PLATFORMS = [f"manylinux_2_{minor}_aarch64" for minor in range(35, 16, -1)] + ["manylinux2014_aarch64"]
PYTHON = "3.10"
BOARD = {"platform_machine": "aarch64", "python_version": "3.10", "python_full_version": "3.10.12",
         "sys_platform": "linux", "platform_system": "Linux", "os_name": "posix", "implementation_name": "cpython",
         "platform_python_implementation": "CPython", "platform_release": "5.15.148-tegra",
         "implementation_version": "3.10.12", "platform_version": "", "extra": ""}


def _markers():
    try:
        from packaging.requirements import Requirement
    except ImportError:  # pip's own copy
        from pip._vendor.packaging.requirements import Requirement
    return Requirement


def requirements(extras: list[str]) -> list[str]:
    """trt-restore's requirements (+ extras) that apply on the board, markers removed."""
    import setuptools

    captured: dict = {}
    real = setuptools.setup
    setuptools.setup = lambda **kw: captured.update(kw)
    cwd = os.getcwd()
    try:
        os.chdir(ROOT)
        runpy.run_path(str(ROOT / "setup.py"))
    finally:
        setuptools.setup, _ = real, os.chdir(cwd)
    Requirement = _markers()
    wanted = list(captured["install_requires"])
    for extra in extras:
        wanted += captured["extras_require"][extra]
    chosen = []
    for text in wanted:
        req = Requirement(text)
        if req.marker is None or req.marker.evaluate(BOARD):
            req.marker = None
            chosen.append(str(req))
    return chosen


def resolve(reqs: list[str]) -> list[dict]:
    """pip's dry-run report for the board: [{name, version, wheel, tag}]."""
    command = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
               "--report", "-", *[f"--platform={p}" for p in PLATFORMS], "--python-version", PYTHON,
               "--implementation", "cp",
               "--abi", "cp310", "--only-binary=:all:", *reqs]
    env = {**os.environ, "PIP_CONFIG_FILE": os.devnull}  # plain PyPI, as the board sees it
    env = {k: v for k, v in env.items() if not k.startswith("PIP_") or k == "PIP_CONFIG_FILE"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    if done.returncode != 0:
        raise SystemExit(f"resolution failed for {PLATFORM} / cp310:\n{done.stderr.strip()}")
    rows = []
    for item in json.loads(done.stdout)["install"]:
        wheel = unquote(Path(urlparse(item["download_info"]["url"]).path).name)
        parts = wheel[:-4].split("-")
        rows.append({"name": item["metadata"]["name"], "version": item["metadata"]["version"], "wheel": wheel,
                     "tag": "-".join(parts[-3:])})
    return sorted(rows, key=lambda r: r["name"].lower())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--extras", default="serve,trt", help="comma-separated extras (default: serve,trt)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    reqs = requirements([e for e in args.extras.split(",") if e])
    rows = resolve(reqs)
    if args.json:
        print(json.dumps({"requirements": reqs, "wheels": rows}, indent=1))
        return
    print(f"{len(rows)} wheels for {PLATFORM}, CPython {PYTHON} (requirements: {', '.join(reqs)})\n")
    print("| package | version | wheel tag |\n|---|---|---|")
    for row in rows:
        print(f"| {row['name']} | {row['version']} | {row['tag']} |")


if __name__ == "__main__":
    main()
