"""The stack's MLflow servers as the server-level tests see them: the stack's own mlflow-server
(fast paths on) and a second mlflow-server of the same stack whose MLflow says it is a version
the fast paths were not verified with, so they start off and MLflow's own app answers everything
(mlflow-server/README.md, "The fast paths' guard")."""

from __future__ import annotations

import contextlib
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from utils.faults import wait_container_healthy
from utils.stack import REPO, Stack, container_state

ALLOWED_HOSTS = "mlflow-server,mlflow-server:*,localhost,localhost:*,127.0.0.1,127.0.0.1:*"
UNVERIFIED_MLFLOW = REPO / "tests" / "mlflow-server" / "unverified-mlflow"


@dataclass
class Server:
    container: str  # for its logs, `docker restart`
    host: str  # its name on the stack's networks (port 5000)
    fast_paths: bool
    host_port: Callable[[], str]  # http://127.0.0.1:<port>, looked up each time

    @property
    def url(self) -> str:
        """From the host; a restarted container gets a new ephemeral port."""
        return self.host_port()


def stacks_server(stack: Stack) -> Server:
    return Server(
        stack.container_id("mlflow-server"),
        "mlflow-server",
        fast_paths=True,
        host_port=lambda: stack.url("mlflow-server", 5000),
    )


@contextlib.contextmanager
def unverified_server(stack: Stack) -> Iterator[Server]:
    """A second mlflow-server of the stack, on the same Postgres and FTP, whose MLflow says it is
    3.99.0 (unverified-mlflow/sitecustomize.py); removed on leaving."""
    name = f"{stack.project}-unverified-{uuid.uuid4().hex[:6]}"
    # Its own scratch /tmp (an anonymous volume): the entrypoint empties /tmp at start, and the
    # shared one is the running server's.
    stack.compose(
        "run",
        "-d",
        "--no-deps",
        "--name",
        name,
        "-p",
        "127.0.0.1::5000",
        "-v",
        "/tmp",
        "-v",
        f"{UNVERIFIED_MLFLOW}:/opt/unverified-mlflow:ro",
        "-e",
        "PYTHONPATH=/opt/unverified-mlflow",
        "-e",
        f"MLFLOW_SERVER_ALLOWED_HOSTS={ALLOWED_HOSTS},{name},{name}:*",
        "mlflow-server",
    )
    try:
        wait_container_healthy(name, timeout=300)
        yield Server(name, name, fast_paths=False, host_port=lambda: host_url(name))
    finally:
        subprocess.run(["docker", "rm", "-f", "-v", name], capture_output=True, check=False)


def running(container: str) -> bool:
    return container_state(container, "Running") == "true"


def host_url(container: str) -> str:
    """http://127.0.0.1:<port> of the container's port 5000 (a restart picks a new one)."""
    port = subprocess.run(
        ["docker", "port", container, "5000"], capture_output=True, text=True, check=True
    ).stdout.split()[0]
    return f"http://{port}"
