"""A workbench stack under its own Compose project: the suite's handle on the real containers."""

from __future__ import annotations

import functools
import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

REPO = Path(__file__).resolve().parents[2]
SERVICES = ["postgres", "ftpd", "mlflow-server", "jupyter", "portainer"]


def portainer_image() -> str:
    version = os.environ.get("PORTAINER_VERSION", "2.27.3")
    return f"portainer/portainer-ce:{version}"


def container_state(container: str, field: str) -> str:
    """One field of the container's `docker inspect` State ("Running", "Health.Status"); "" when
    the container is gone."""
    inspected = subprocess.run(
        ["docker", "inspect", "-f", f"{{{{.State.{field}}}}}", container], capture_output=True, text=True
    )
    return inspected.stdout.strip() if inspected.returncode == 0 else ""


def image_present(image: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode == 0


@functools.cache
def debian_image() -> str:
    """The Debian image base/Dockerfile builds FROM: what base/bootstrap-debian-image.sh --print
    names (debian:bookworm-slim, or where it cannot be pulled workbench/debian-bootstrap)."""
    return subprocess.run(
        [str(REPO / "base" / "bootstrap-debian-image.sh"), "--print"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def http_session(auth: tuple[str, str] | None = None) -> requests.Session:
    """A session that retries connection errors and 502/503/504 a few times (not 4xx)."""
    session = requests.Session()
    retry = Retry(
        total=5, connect=5, read=2, backoff_factor=0.5, status_forcelist=[502, 503, 504], allowed_methods=None
    )
    session.mount("http://", HTTPAdapter(max_retries=retry))
    session.auth = auth
    return session


@dataclass
class Stack:
    """`docker compose -p <project>` over this repo's docker-compose.yml.

    `env_file` replaces the user's .env (so a developer's settings never leak into a test stack);
    `secrets` are passed through the process environment, where any character is allowed.
    """

    project: str
    env_file: Path
    secrets: dict[str, str] = field(default_factory=dict)

    def compose(
        self, *args: str, check: bool = True, timeout: float = 900, input: str | None = None
    ) -> subprocess.CompletedProcess:
        env = {**os.environ, **self.secrets}
        # The Debian image to build on, as `make` picks it (official, else the air-gapped bootstrap).
        env.setdefault("WORKBENCH_DEBIAN_IMAGE", debian_image())
        command = [
            "docker",
            "compose",
            "-p",
            self.project,
            "--env-file",
            str(self.env_file),
            "-f",
            str(REPO / "docker-compose.yml"),
            *args,
        ]
        result = subprocess.run(
            command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, input=input
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{' '.join(command)} exited {result.returncode}\n"
                f"stdout:\n{result.stdout[-4000:]}\nstderr:\n{result.stderr[-4000:]}"
            )
        return result

    def services(self) -> list[str]:
        """The services to run: all but Portainer when its image is absent here."""
        return [s for s in SERVICES if s != "portainer" or image_present(portainer_image())]

    def up(self, *services: str, build: bool = False) -> None:
        """`up --wait`: returns once every started service's healthcheck passes."""
        self.compose(
            "up",
            "-d",
            *(["--build"] if build else []),
            "--wait",
            "--wait-timeout",
            "600",
            *(services or self.services()),
            timeout=3600,
        )

    def down(self, *, volumes: bool = False) -> None:
        self.compose("down", "--remove-orphans", *(["--volumes"] if volumes else []), timeout=300)

    def exec(
        self,
        service: str,
        *command: str,
        user: str | None = None,
        check: bool = True,
        input: str | None = None,
        timeout: float = 900,
    ) -> subprocess.CompletedProcess:
        return self.compose(
            "exec",
            "-T",
            *(["--user", user] if user else []),
            service,
            *command,
            check=check,
            input=input,
            timeout=timeout,
        )

    def python(self, service: str, code: str, *, check: bool = True, timeout: float = 900) -> str:
        """Run Python code (fed on stdin) inside a service's container; returns stdout."""
        return self.exec(service, "python3", "-", input=code, check=check, timeout=timeout).stdout

    def psql(self, sql: str, *, database: str = "mlflow") -> list[list[str]]:
        """Query as the postgres superuser over the container's Unix socket (peer auth)."""
        out = self.exec(
            "postgres",
            "psql",
            "-X",
            "-A",
            "-t",
            "-F",
            "\t",
            "-v",
            "ON_ERROR_STOP=1",
            "-U",
            "postgres",
            "-d",
            database,
            "-c",
            sql,
        ).stdout
        return [line.split("\t") for line in out.splitlines() if line]

    def port(self, service: str, container_port: int) -> str:
        """host:port where a service's port is published."""
        out = self.compose("port", service, str(container_port)).stdout.strip().splitlines()
        assert out, f"{service}:{container_port} is not published"
        return out[0]

    def url(self, service: str, container_port: int, scheme: str = "http") -> str:
        return f"{scheme}://{self.port(service, container_port)}"

    def container_ids(self, service: str) -> list[str]:
        """Every running container of a service (replicas: MLFLOW_SERVER_REPLICAS), by number."""
        ids = self.compose("ps", "-q", service).stdout.split()
        if len(ids) < 2:
            return ids
        label = '{{index .Config.Labels "com.docker.compose.container-number"}}'
        numbers = {
            cid: int(subprocess.run(["docker", "inspect", "-f", label, cid], capture_output=True, text=True)
                     .stdout.strip() or 0)
            for cid in ids
        }  # fmt: skip
        return sorted(ids, key=numbers.__getitem__)

    def container_id(self, service: str) -> str:
        """The service's container; with replicas, the first (service-1)."""
        ids = self.container_ids(service)
        return ids[0] if ids else ""

    def inspect(self, service: str) -> dict:
        out = subprocess.run(
            ["docker", "inspect", self.container_id(service)], capture_output=True, text=True, check=True
        ).stdout
        return json.loads(out)[0]

    def logs(self, *services: str) -> str:
        return self.compose("logs", "--no-color", "--tail", "200", *services, check=False).stdout

    def read_secret(self, service: str, name: str) -> str:
        return self.exec(service, "cat", f"/run/secrets/{name}").stdout


def run_make(
    stack: Stack, target: str, *assignments: str, timeout: float = 900
) -> subprocess.CompletedProcess:
    """`make <target> NAME=value...` as a user types it, for the session's stack (its project,
    env file and secrets); never raises on a non-zero exit."""
    compose = f"docker compose --env-file {stack.env_file} -f {REPO / 'docker-compose.yml'}"
    return subprocess.run(
        [
            "make",
            "--no-print-directory",
            target,
            f"PROJECT={stack.project}",
            f"COMPOSE={compose}",
            *assignments,
        ],
        cwd=REPO,
        env={**os.environ, **stack.secrets},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
