"""Serving models of a test stack with serving/serve.sh (what `make serve` runs)."""

from __future__ import annotations

import os
import socket
import subprocess
from contextlib import contextmanager

from utils.stack import REPO, Stack, image_present

SERVE = REPO / "serving" / "serve.sh"
STAND_IN = "python:3.11.2-slim"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(stack: Stack, command: str, **settings: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PROJECT": stack.project, "ENV_FILE": str(stack.env_file), **settings}
    return subprocess.run([str(SERVE), command], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=1800)


@contextmanager
def model_images_removed_afterwards(name: str):
    """On leaving: every image of the registered model `name` is removed, and the python:*-slim
    stand-in too when it was not there before (a test that built it takes it away)."""
    stand_in_existed = image_present(STAND_IN)
    try:
        yield
    finally:
        remove_model_images(name)
        if not stand_in_existed:
            subprocess.run(["docker", "image", "rm", STAND_IN], capture_output=True)


@contextmanager
def served_model(stack: Stack, uri: str, name: str):
    """`make serve MODEL=uri` on a free port; yields (host URL, URL from the jupyter container).
    Afterwards the container and the model's images are removed."""
    port = free_port()
    with model_images_removed_afterwards(name):
        try:
            result = serve(stack, "serve", MODEL=uri, PORT=str(port))
            assert result.returncode == 0, f"serve {uri} failed\n{result.stdout[-6000:]}\n{result.stderr[-4000:]}"
            yield f"http://127.0.0.1:{port}", f"http://serve-{port}:8080"
        finally:
            serve(stack, "stop", MODEL=uri, PORT="")


def remove_model_images(name: str) -> None:
    images = subprocess.run(["docker", "image", "ls", "-q", f"workbench-model/{name}"],
                            capture_output=True, text=True).stdout.split()
    if images:
        subprocess.run(["docker", "image", "rm", "-f", *images], capture_output=True)
