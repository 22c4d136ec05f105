"""The runtime stays slim: importing it (and its CLI) never imports torch."""
from __future__ import annotations

import subprocess
import sys

from typer.testing import CliRunner

from trt_restore import __version__
from trt_restore.cli import app

RUNTIME_MODULES = ["trt_restore", "trt_restore.cli", "trt_restore.io", "trt_restore.preprocess"]


def test_runtime_never_imports_torch():
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in RUNTIME_MODULES)
        + "from typer.testing import CliRunner\n"
        + "from trt_restore.cli import app\n"
        + "assert CliRunner().invoke(app, ['--help']).exit_code == 0\n"
        + "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision'))\n"
        + "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_version_and_help():
    runner = CliRunner()
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("fetch-weights", "synthetic-weights", "reference-restore"):
        assert command in result.output


def test_usage_error_exit_code_is_2():
    result = CliRunner().invoke(app, ["reference-restore"])
    assert result.exit_code == 2


def test_every_package_folder_is_distributed(monkeypatch):
    """A plain `pip install .` must ship every sub-package (backends, tiling, faces, ...)."""
    import runpy
    from pathlib import Path

    import setuptools

    captured = {}
    monkeypatch.setattr(setuptools, "setup", lambda **kw: captured.update(kw))
    repo = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(repo)
    runpy.run_path(str(repo / "setup.py"))
    shipped = {Path(folder).resolve() for folder in captured["package_dir"].values()}
    for root in ("runtime", "export", "engines", "calibration"):
        for init in (repo / root).rglob("__init__.py"):
            assert init.parent.resolve() in shipped, f"{init.parent} is not packaged"
