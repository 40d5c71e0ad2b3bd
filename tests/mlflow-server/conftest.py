"""Fixtures of the server tests: the stack's mlflow-server (fast paths on) and a second
mlflow-server of the same stack that finds an MLflow its fast paths were not verified with, so
they start off and MLflow's own app answers everything. Server-level tests that take `server`
run against both: the escape hatch is proven, not assumed."""

from __future__ import annotations

import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from utils.wait import wait_until

ALLOWED_HOSTS = "mlflow-server,mlflow-server:*,localhost,localhost:*,127.0.0.1,127.0.0.1:*"
UNVERIFIED_MLFLOW = Path(__file__).with_name("unverified-mlflow")


@dataclass
class Server:
    url: str
    container: str  # for its logs
    host: str  # its name on the stack's networks
    fast_paths: bool


@pytest.fixture(scope="session")
def unverified_mlflow_server(stack):
    """A second mlflow-server of the stack, on the same Postgres and FTP, whose MLflow says it is
    3.99.0 (unverified-mlflow/sitecustomize.py): removed at the end of the session."""
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

        def healthy():
            return (
                subprocess.run(
                    ["docker", "inspect", "-f", "{{.State.Health.Status}}", name],
                    capture_output=True,
                    text=True,
                    check=False,
                ).stdout.strip()
                == "healthy"
            )

        wait_until(healthy, timeout=300, what=f"{name} healthy")
        port = subprocess.run(
            ["docker", "port", name, "5000"], capture_output=True, text=True, check=True
        ).stdout.split()[0]
        yield Server(f"http://{port}", name, name, fast_paths=False)
    finally:
        subprocess.run(["docker", "rm", "-f", "-v", name], capture_output=True, check=False)


@pytest.fixture(scope="module", params=["fast-paths-on", "fast-paths-off"])
def server(request, stack):
    if request.param == "fast-paths-on":
        return Server(
            stack.url("mlflow-server", 5000),
            stack.container_id("mlflow-server"),
            "mlflow-server",
            fast_paths=True,
        )
    return request.getfixturevalue("unverified_mlflow_server")
