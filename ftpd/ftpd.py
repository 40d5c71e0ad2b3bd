"""The workbench's FTP server (pyftpdlib): MLflow's artifact store.

One user, whose password is read from a file; its home (the artifact root) is a named volume.
Anonymous login is refused (pyftpdlib's DummyAuthorizer knows no user but the one added here),
passive mode uses a fixed port range, and every login, upload and download is logged
(pyftpdlib's own log lines); uploads are atomic (received under a temporary name, renamed when
complete), so a partial file is never served as an artifact.

Settings (environment):
  FTPD_USER             the one FTP user                       (default: mlflow)
  FTPD_PASSWORD_FILE    file holding its password              (required)
  FTPD_HOME             its home directory, the artifact root  (default: /srv/ftp)
  FTPD_PORT             control port                           (default: 21)
  FTPD_PASSIVE_PORTS    passive data ports, FIRST-LAST         (default: 30000-30009)
  FTPD_MAX_CONNECTIONS  concurrent connections                 (default: 256)
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler
from pyftpdlib.servers import FTPServer

log = logging.getLogger("ftpd")


def _setting(name: str, default: str | None = None) -> str:
    value = os.environ.get(name, default)
    if not value:
        sys.exit(f"ftpd: {name} is not set")
    return value


def _password() -> str:
    path = Path(_setting("FTPD_PASSWORD_FILE"))
    try:
        password = path.read_text().rstrip("\n")
    except OSError as exc:
        sys.exit(f"ftpd: cannot read FTPD_PASSWORD_FILE: {exc}")
    if not password:
        sys.exit(f"ftpd: {path} is empty; refusing to serve without a password")
    return password


def _passive_ports(spec: str) -> range:
    try:
        first, last = (int(p) for p in spec.split("-"))
    except ValueError:
        sys.exit(f"ftpd: FTPD_PASSIVE_PORTS must look like 30000-30009, not {spec!r}")
    return range(first, last + 1)


PARTIAL = ".partial"


def _partial_name(path: str) -> str:
    folder, name = os.path.split(path)
    return os.path.join(folder, f".{name}{PARTIAL}")


class ArtifactHandler(FTPHandler):
    """Uploads are atomic: a file is received as `.<name>.partial` and renamed to its name only
    once the transfer completed. A client that disconnects, or a server that is killed, midway
    never leaves a partial file that would be served as a complete artifact. pyftpdlib logs
    every command and transfer (`STOR <file> completed=1 bytes=N`) itself."""

    _final_name: str | None = None

    def ftp_STOR(self, file, mode="w"):
        # Plain uploads only: appends (APPE) and resumed uploads (REST) write in place.
        if mode != "w" or self._restart_position:
            self._final_name = None
            return super().ftp_STOR(file, mode)
        self._final_name = file
        return super().ftp_STOR(_partial_name(file), mode)

    def _final(self, file: str) -> str:
        return self._final_name if self._final_name and file == _partial_name(self._final_name) else file

    def log_transfer(self, cmd, filename, receive, completed, elapsed, bytes):
        # Logged under the name the client asked for, not the temporary one.
        super().log_transfer(cmd, self._final(filename), receive, completed, elapsed, bytes)

    def on_file_received(self, file):
        if self._final(file) != file:
            os.replace(file, self._final(file))

    def on_incomplete_file_received(self, file):
        log.warning("upload aborted, partial file removed: %s", file)
        try:
            os.remove(file)
        except OSError:
            pass


def remove_partial_uploads(home: Path) -> None:
    """Partial files left by a killed server: never complete, so never kept."""
    for path in home.rglob(f".*{PARTIAL}"):
        log.warning("removing a partial upload left by an earlier crash: %s", path)
        path.unlink(missing_ok=True)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    home = Path(_setting("FTPD_HOME", "/srv/ftp"))
    home.mkdir(parents=True, exist_ok=True)
    remove_partial_uploads(home)

    authorizer = DummyAuthorizer()
    # elr: list/read; adfmw: append, delete, rename, mkdir, write; M: chmod; T: mtime.
    authorizer.add_user(_setting("FTPD_USER", "mlflow"), _password(), str(home), perm="elradfmwMT")

    handler = ArtifactHandler
    handler.authorizer = authorizer
    handler.passive_ports = _passive_ports(_setting("FTPD_PASSIVE_PORTS", "30000-30009"))
    handler.banner = "workbench ftpd ready"
    handler.permit_foreign_addresses = False

    server = FTPServer(("0.0.0.0", int(_setting("FTPD_PORT", "21"))), handler)
    server.max_cons = int(_setting("FTPD_MAX_CONNECTIONS", "256"))
    server.max_cons_per_ip = 0
    log.info(
        "serving %s on port %s, passive ports %s",
        home,
        _setting("FTPD_PORT", "21"),
        _setting("FTPD_PASSIVE_PORTS", "30000-30009"),
    )
    server.serve_forever()


if __name__ == "__main__":
    main()
