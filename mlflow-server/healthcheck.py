"""mlflow-server's healthcheck: /health answers 200 (the app and its workers are serving)."""

import os
import sys
import urllib.request

url = f"http://127.0.0.1:{os.environ.get('MLFLOW_PORT', '5000')}/health"
try:
    with urllib.request.urlopen(url, timeout=4) as response:
        sys.exit(0 if response.status == 200 else f"unhealthy: {url} -> {response.status}")
except Exception as exc:  # noqa: BLE001 - any failure means unhealthy
    sys.exit(f"unhealthy: {url}: {exc}")
