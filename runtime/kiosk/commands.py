"""`trt-restore kiosk install|uninstall|status`. Dry run by default: the files are printed,
`--apply` writes (or removes) them. Enabling is left to systemctl, printed as next steps."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Optional

import typer

kiosk_app = typer.Typer(help="Run the restoration page unattended: systemd units for the service and a "
                        "Chromium kiosk window (dry run unless --apply).", no_args_is_help=True)

APPLY = typer.Option(False, "--apply", help="Write (or remove) the files; default: only print what would happen.")
ROOT = typer.Option("/", "--root", help="Prefix for every path (an image being built, tests).")


def _plan(models: str, port: int, user: str, ram: Optional[str], modes: str, browser: Optional[str],
          yunet: Optional[Path], root: str):
    from ..tiling.plan import parse_size
    from .units import KioskPlan, default_executable

    face_args = ("--face-detector", "yunet", "--face-detector-model", str(yunet)) if yunet else ()
    return KioskPlan(executable=default_executable(), models=models, user=user, port=port,
                     ram=int(parse_size(ram)) if ram else 0, modes=modes, browser=browser or "",
                     face_args=face_args, root=root)


NEXT_STEPS = """next steps (as root):
  systemd-sysusers                                   # creates the service user
  install -d -o {user} -g {user} /var/lib/trt-restore && cp -r MODELS {models}   # exported models (+ engines)
  systemctl daemon-reload && systemctl enable --now trt-restore.service
  systemctl --global enable trt-restore-kiosk.service   # the page, in every desktop session
  journalctl -u trt-restore -f                       # its log"""


@kiosk_app.command("install")
def install_command(
    models: str = typer.Option("/var/lib/trt-restore/models", "--models", "-m", help="Model folder the service "
                               "reads (exported models and TensorRT engines)."),
    port: int = typer.Option(8000, "--port", help="Local port of the service (loopback only)."),
    user: str = typer.Option("trt-restore", "--user", help="System user the service runs as."),
    ram: Optional[str] = typer.Option(None, "--ram", help="Board RAM for the memory budget, e.g. 8G (default: "
                                      "this machine's)."),
    modes: str = typer.Option("quality,scratch", "--modes", help="Modes the service loads."),
    browser: Optional[str] = typer.Option(None, "--browser", help="Chromium executable (default: the first of "
                                          "chromium, chromium-browser, /snap/bin/chromium found)."),
    yunet: Optional[Path] = typer.Option(None, "--yunet", help="YuNet face model file (MIT licence): faces on."),
    apply: bool = APPLY,
    root: str = ROOT,
) -> None:
    """Write the service unit, its user entry and the kiosk browser unit (printed unless --apply)."""
    plan = _plan(models, port, user, ram, modes, browser, yunet, root)
    for path, text in plan.files().items():
        if apply:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            typer.echo(f"wrote {path}")
        else:
            typer.echo(f"# ---- {path} (dry run; --apply writes it)\n{text}")
    typer.echo(NEXT_STEPS.format(user=user, models=models), err=True)


@kiosk_app.command("uninstall")
def uninstall_command(apply: bool = APPLY, root: str = ROOT) -> None:
    """Remove the files `install` writes (printed unless --apply). Stop the units first:
    systemctl disable --now trt-restore.service; systemctl --global disable trt-restore-kiosk.service."""
    from .units import KioskPlan

    for path in KioskPlan(executable="", root=root).paths().values():
        if not path.exists():
            typer.echo(f"{path}: not installed")
        elif apply:
            path.unlink()
            typer.echo(f"removed {path}")
        else:
            typer.echo(f"would remove {path} (--apply removes it)")


@kiosk_app.command("status")
def status_command(port: int = typer.Option(8000, "--port"), root: str = ROOT) -> None:
    """Which files are installed, what systemd says, and whether the page is ready."""
    from .units import KioskPlan
    from .wait import wait_ready

    for path in KioskPlan(executable="", root=root).paths().values():
        typer.echo(f"{'installed' if path.exists() else 'missing  '}  {path}")
    if shutil.which("systemctl"):
        done = subprocess.run(["systemctl", "is-active", "trt-restore.service"], capture_output=True, text=True)
        answer = (done.stdout.strip() or done.stderr.strip() or "unknown").splitlines()[0]
        typer.echo(f"service    {answer}")
    ready = wait_ready(f"http://127.0.0.1:{port}/readyz", timeout=0)
    typer.echo(f"page       {'ready' if ready else 'not ready'} at http://127.0.0.1:{port}/")
    raise typer.Exit(0 if ready else 1)
