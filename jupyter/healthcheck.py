"""jupyter's healthcheck: the server's /api answers (it needs no token: it only gives the version)."""

import sys
import urllib.request

try:
    with urllib.request.urlopen("http://127.0.0.1:8888/api", timeout=4) as response:
        sys.exit(0 if response.status == 200 else f"unhealthy: /api -> {response.status}")
except Exception as exc:  # noqa: BLE001 - any failure means unhealthy
    sys.exit(f"unhealthy: /api: {exc}")
