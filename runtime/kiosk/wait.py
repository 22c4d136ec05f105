"""Wait until the service answers /readyz with 200, so the kiosk browser never shows an error
page while the models load (`python -m trt_restore.kiosk.wait URL --timeout S`)."""
from __future__ import annotations

import argparse
import sys
import time
import urllib.error
import urllib.request


def wait_ready(url: str, timeout: float = 900.0, interval: float = 2.0) -> bool:
    """True once `url` answers 200 within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                if answer.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--timeout", type=float, default=900.0)
    args = parser.parse_args(argv)
    if wait_ready(args.url, args.timeout):
        return 0
    print(f"{args.url}: not ready after {args.timeout:.0f} s", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
