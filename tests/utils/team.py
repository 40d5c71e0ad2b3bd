"""Team mode on a stack of its own (team-gateway/README.md): what tests/team-gateway's modules share.

The stack is started as a team would: COMPOSE_PROFILES=team and WORKBENCH_PUBLIC_NAME in its env
file, `make team-ca` for the local CA and the gateway's certificate, then `up`. Its clients trust
only that CA. The public names resolve to 127.0.0.1 in this process only (`public_names`).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from conftest import HOSTILE_SECRETS, _env_file
from utils.stack import Stack, run_make

NAME = "team.test"  # .test: reserved (RFC 2606), never a real host
MLFLOW_HOST = f"mlflow.{NAME}"
JUPYTER_HOST = f"jupyter.{NAME}"
ADMIN = ("admin", HOSTILE_SECRETS["MLFLOW_ADMIN_PASSWORD"])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Team:
    def __init__(self, stack: Stack, directory: Path, https_port: int, http_port: int):
        self.stack, self.directory = stack, directory
        self.https_port, self.http_port = https_port, http_port
        self.ca = directory / "ca" / "ca.pem"

    def url(self, host: str, path: str = "/") -> str:
        return f"https://{host}:{self.https_port}{path}"

    def replicas_up(self) -> int:
        """How many mlflow-server replicas the gateway has UP (its Prometheus page, in the container)."""
        code = (
            "import urllib.request; print(urllib.request.urlopen("
            "'http://127.0.0.1:8405/metrics?scope=server', timeout=5).read().decode())"
        )
        metrics = self.stack.exec("team-gateway", "python3", "-c", code).stdout
        states = [line for line in metrics.splitlines() if line.startswith("haproxy_server_status{")]
        return sum(
            'proxy="mlflow"' in line and 'state="UP"' in line and line.endswith(" 1") for line in states
        )

    def session(self, verify: str | bool | None = None, auth=ADMIN) -> requests.Session:
        session = requests.Session()
        session.verify = str(self.ca) if verify is None else verify
        session.trust_env = False  # no REQUESTS_CA_BUNDLE, no proxy from this machine
        session.auth = auth
        return session


def settings(directory: Path, https_port: int, http_port: int, cert: Path, key: Path) -> str:
    return (
        "COMPOSE_PROFILES=team\n"
        f"WORKBENCH_PUBLIC_NAME={NAME}\n"
        "WORKBENCH_TEAM_BIND_ADDRESS=127.0.0.1\n"
        f"WORKBENCH_TEAM_HTTPS_PORT={https_port}\nWORKBENCH_TEAM_HTTP_PORT={http_port}\n"
        f"WORKBENCH_TEAM_CA_DIR={directory / 'ca'}\n"
        f"WORKBENCH_TEAM_CERT_FILE={cert}\nWORKBENCH_TEAM_KEY_FILE={key}\n"
    )


@contextlib.contextmanager
def public_names() -> Iterator[None]:
    """mlflow.team.test and jupyter.team.test -> 127.0.0.1, for this process's clients."""
    real = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        return real("127.0.0.1" if str(host).endswith(NAME) else host, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket, "getaddrinfo", getaddrinfo)
        yield


@contextlib.contextmanager
def team_stack(tmp_path_factory, request, suffix: str, extra_settings: str = "") -> Iterator[Team]:
    """A team-mode stack under `<WORKBENCH_TEST_PROJECT>-<suffix>` (kept with WORKBENCH_TEST_KEEP=1)
    or a random project; `extra_settings` are more lines of its env file."""
    base = os.environ.get("WORKBENCH_TEST_PROJECT")
    project = f"{base}-{suffix}" if base else f"wb{suffix}{uuid.uuid4().hex[:6]}"
    keep = bool(base) and os.environ.get("WORKBENCH_TEST_KEEP") == "1"
    directory = tmp_path_factory.mktemp(project)
    (directory / "ca").mkdir()
    https_port, http_port = free_port(), free_port()
    env_file = _env_file(directory)
    ca_dir = directory / "ca"
    with env_file.open("a") as env:
        env.write(settings(directory, https_port, http_port, ca_dir / "server.crt", ca_dir / "server.key"))
        env.write(extra_settings)
    stack = Stack(project, env_file, HOSTILE_SECRETS)
    failed_before = request.session.testsfailed
    try:
        # make team-ca builds the base image if needed, and the build adds the gateway's: under
        # the lock the session's stack builds with (conftest.py), so make test's processes
        # never build the same image side by side.
        with open(tmp_path_factory.getbasetemp().parent / "images.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            made = run_make(stack, "team-ca")
            assert made.returncode == 0, made.stdout + made.stderr
            stack.compose("build", timeout=3600)
        stack.up(*stack.services(), "team-gateway")
        yield Team(stack, directory, https_port, http_port)
    finally:
        if request.session.testsfailed > failed_before or os.environ.get("WORKBENCH_TEST_LOGS"):
            print(f"\n===== logs of {project} =====\n{stack.logs()}")
        if not keep:
            stack.down(volumes=True)
