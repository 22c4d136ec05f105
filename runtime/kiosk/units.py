"""The files a kiosk install writes, as text: a system unit for `trt-restore serve` (own user,
restart on failure, memory budget from the board's RAM, state dir, journal), its sysusers.d
entry, and a user unit that opens the page in Chromium's kiosk mode once /readyz answers.

Everything is local: the page is served from the package (no CDN), the models come from the
state dir, nothing is downloaded at run time.
"""
from __future__ import annotations

import shlex
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

GIB = 1024 ** 3
BROWSERS = ("chromium", "chromium-browser", "/snap/bin/chromium", "google-chrome")
# Chromium flags for an unattended touch screen: no dialogs, no pinch zoom, no swipe-back
CHROMIUM_FLAGS = ("--kiosk", "--noerrdialogs", "--disable-infobars", "--no-first-run", "--disable-translate",
                  "--disable-features=TranslateUI", "--disable-pinch", "--overscroll-history-navigation=0",
                  "--touch-events=enabled", "--check-for-update-interval=31536000", "--password-store=basic")


def board_memory() -> int:
    """Total RAM in bytes (MemTotal; on a Jetson the GPU shares it)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 8 * GIB


def memory_budget(ram: int) -> tuple[int, int]:
    """(MemoryMax for the service, --max-memory per photo) in bytes.

    The service may take 75% of the RAM but leaves at least 2 GiB to the desktop and
    Chromium (a Jetson's GPU allocations come out of the same RAM); one photo's budget is
    40% of that, so a second queued photo's decode and the answers fit beside it."""
    limit = max(GIB, min(int(ram * 0.75), ram - 2 * GIB))
    return limit, int(limit * 0.4)


def _size(value: int) -> str:
    return f"{value // (1024 ** 2)}M"


def find_browser() -> str:
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium-browser"


def default_executable() -> str:
    """The trt-restore command of this installation (the venv's console script)."""
    found = Path(sys.executable).with_name("trt-restore")
    return str(found if found.exists() else shutil.which("trt-restore") or "/opt/trt-restore/.venv/bin/trt-restore")


@dataclass
class KioskPlan:
    executable: str
    models: str = "/var/lib/trt-restore/models"
    user: str = "trt-restore"
    port: int = 8000
    ram: int = 0  # bytes; 0: this machine's
    modes: str = "quality,scratch"
    browser: str = ""
    face_args: tuple[str, ...] = ()  # e.g. ("--face-detector", "yunet", "--face-detector-model", FILE)
    root: str = "/"  # prefix for every path (tests, image builds)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def paths(self) -> dict[str, Path]:
        base = Path(self.root)
        return {"service": base / "etc/systemd/system/trt-restore.service",
                "sysusers": base / "etc/sysusers.d/trt-restore.conf",
                "browser": base / "etc/systemd/user/trt-restore-kiosk.service"}

    def files(self) -> dict[Path, str]:
        paths = self.paths()
        return {paths["service"]: self.service_unit(), paths["sysusers"]: self.sysusers(),
                paths["browser"]: self.browser_unit()}

    def service_unit(self) -> str:
        limit, per_photo = memory_budget(self.ram or board_memory())
        command = [self.executable, "serve", "--host", "127.0.0.1", "--port", str(self.port), "--models",
                   self.models, "--modes", self.modes, "--max-memory", _size(per_photo), "--workers", "1",
                   *self.face_args]
        return f"""# Written by `trt-restore kiosk install`; `trt-restore kiosk uninstall` removes it.
[Unit]
Description=trt-restore photo restoration service (kiosk page on {self.url})
After=local-fs.target
StartLimitIntervalSec=600
StartLimitBurst=5

[Service]
Type=exec
User={self.user}
Group={self.user}
SupplementaryGroups=video
ExecStart={shlex.join(command)}
Environment=PYTHONUNBUFFERED=1
Environment=HOME=/var/lib/trt-restore
Environment=TRT_RESTORE_MODELS={self.models}
StateDirectory=trt-restore
StateDirectoryMode=0750
WorkingDirectory=/var/lib/trt-restore
Restart=on-failure
RestartSec=5
TimeoutStopSec=60
MemoryMax={_size(limit)}
MemoryHigh={_size(int(limit * 0.9))}
StandardOutput=journal
StandardError=journal
SyslogIdentifier=trt-restore
NoNewPrivileges=yes
ProtectSystem=full
ProtectHome=read-only
PrivateTmp=yes

[Install]
WantedBy=multi-user.target
"""

    def sysusers(self) -> str:
        return (f"# Written by `trt-restore kiosk install`: the service's own user (systemd-sysusers creates it)\n"
                f"u {self.user} - \"trt-restore kiosk service\" /var/lib/trt-restore\n"
                f"m {self.user} video\n")

    def browser_unit(self) -> str:
        python = str(Path(self.executable).with_name("python"))
        wait = [python, "-m", "trt_restore.kiosk.wait", f"{self.url}readyz", "--timeout", "900"]
        browser = [self.browser or find_browser(), *CHROMIUM_FLAGS, "--user-data-dir=%h/.cache/trt-restore-kiosk",
                   self.url]
        return f"""# Written by `trt-restore kiosk install`: opens the page full screen on the local display,
# in the logged-in desktop session, once the service says it is ready (/readyz).
[Unit]
Description=trt-restore kiosk page in Chromium
After=graphical-session.target
PartOf=graphical-session.target

[Service]
Type=simple
TimeoutStartSec=960
ExecStartPre={shlex.join(wait)}
ExecStart={shlex.join(browser)}
Restart=always
RestartSec=3

[Install]
WantedBy=graphical-session.target
"""


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """{section: {key: [values]}}: systemd's syntax (repeated keys, comments, no interpolation)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
        elif "=" in line and current is not None:
            key, value = line.split("=", 1)
            current.setdefault(key.strip(), []).append(value.strip())
        else:
            raise ValueError(f"line {number}: not a unit file line: {raw!r}")
    return sections
