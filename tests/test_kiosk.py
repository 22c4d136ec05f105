"""`trt-restore kiosk`: the units it prints validate (systemd-analyze where present, parsed
otherwise), carry the keys an unattended kiosk needs, and nothing reaches outside the box."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from trt_restore.cli import app
from trt_restore.kiosk.units import GIB, memory_budget, parse_unit
from trt_restore.kiosk.wait import wait_ready

STATIC = Path(__file__).resolve().parents[1] / "runtime" / "serve" / "static"


def _kiosk(*args):
    return CliRunner().invoke(app, ["kiosk", *map(str, args)])


def _units(output: str) -> dict[str, str]:
    parts = re.split(r"^# ---- (\S+) \(dry run.*\)$", output, flags=re.M)
    return {Path(parts[i]).name: parts[i + 1] for i in range(1, len(parts), 2)}


def test_dry_run_prints_units_with_the_kiosk_keys(tmp_path):
    result = _kiosk("install", "--ram", "8G", "--root", tmp_path, "--yunet", tmp_path / "yunet.onnx")
    assert result.exit_code == 0, result.output
    assert not any(tmp_path.rglob("*")), "a dry run writes nothing"
    units = _units(result.stdout)
    service = parse_unit(units["trt-restore.service"])["Service"]
    assert service["User"] == ["trt-restore"] and service["Restart"] == ["on-failure"]
    assert service["MemoryMax"] == ["6144M"] and service["StateDirectory"] == ["trt-restore"]
    assert service["StandardOutput"] == ["journal"] and service["StandardError"] == ["journal"]
    command = service["ExecStart"][0]
    assert " serve --host 127.0.0.1 --port 8000 " in command and "--max-memory 2457M" in command
    assert "--face-detector yunet" in command  # the MIT face model when supplied
    browser = parse_unit(units["trt-restore-kiosk.service"])
    assert "trt_restore.kiosk.wait http://127.0.0.1:8000/readyz" in browser["Service"]["ExecStartPre"][0]
    assert "--kiosk" in browser["Service"]["ExecStart"][0] and "http://127.0.0.1:8000/" in browser["Service"]["ExecStart"][0]
    assert browser["Install"]["WantedBy"] == ["graphical-session.target"]
    assert "u trt-restore -" in units["trt-restore.conf"]


def test_apply_writes_units_that_systemd_accepts(tmp_path):
    result = _kiosk("install", "--apply", "--root", tmp_path, "--ram", "16G", "--browser", shutil.which("true"))
    assert result.exit_code == 0, result.output
    service = tmp_path / "etc/systemd/system/trt-restore.service"
    browser = tmp_path / "etc/systemd/user/trt-restore-kiosk.service"
    for unit in (service, browser):
        parsed = parse_unit(unit.read_text())
        assert {"Unit", "Service", "Install"} <= set(parsed)
    if shutil.which("systemd-analyze"):  # the executables must exist: the venv's and /bin/true
        for unit in (service, browser):
            done = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True,
                                  cwd=tmp_path, timeout=60)
            assert done.returncode == 0, done.stderr
    if shutil.which("systemd-sysusers"):
        done = subprocess.run(["systemd-sysusers", "--dry-run", "--root", str(tmp_path)], capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0 and "trt-restore" in done.stderr + done.stdout
    status = _kiosk("status", "--root", tmp_path, "--port", "9")
    assert "installed" in status.output and status.exit_code == 1  # nothing listens on port 9
    assert _kiosk("uninstall", "--apply", "--root", tmp_path).exit_code == 0
    assert not service.exists() and not browser.exists()


@pytest.mark.parametrize("ram, limit", [(4 * GIB, 2 * GIB), (8 * GIB, 6 * GIB), (32 * GIB, 24 * GIB),
                                        (2 * GIB, GIB)])
def test_memory_budget_leaves_room_for_the_desktop(ram, limit):
    service, per_photo = memory_budget(ram)
    assert service == limit and per_photo == int(limit * 0.4)


def test_page_is_offline():
    """No CDN: every file of the page is served by the service itself."""
    for path in STATIC.iterdir():
        text = path.read_text(errors="replace")
        assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//", text), path
        assert "@import url(http" not in text and "fetch(\"http" not in text, path


def test_wait_gives_up_on_a_dead_port():
    assert wait_ready("http://127.0.0.1:9/readyz", timeout=0) is False
