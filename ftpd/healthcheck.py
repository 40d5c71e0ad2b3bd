"""ftpd's healthcheck: really logs in with the configured user and lists the home directory."""

import ftplib
import os
import sys
from pathlib import Path

try:
    with ftplib.FTP() as ftp:
        ftp.connect("127.0.0.1", int(os.environ.get("FTPD_PORT", "21")), timeout=4)
        ftp.login(
            os.environ.get("FTPD_USER", "mlflow"),
            Path(os.environ["FTPD_PASSWORD_FILE"]).read_text().rstrip("\n"),
        )
        ftp.nlst()
except Exception as exc:  # noqa: BLE001 - any failure means unhealthy
    sys.exit(f"unhealthy: {exc}")
