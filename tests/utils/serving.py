"""Serving models of a test stack with serving/serve.sh (what `make serve` runs)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from contextlib import contextmanager

from utils.stack import REPO, Stack, image_present

SERVE = REPO / "serving" / "serve.sh"
STAND_IN = "python:3.11.2-slim"
TOOLS_IMAGE = "workbench/serving-tools:local"
# model_image.py's resolve() alone, in the tools image serve.sh builds (no model image is built):
# the password on stdin as serve.sh gives it, the result (or the Failure's message) as JSON.
RESOLVE = """
import json, os, sys
sys.path.insert(0, "/opt/serving")
import model_image
os.environ["MLFLOW_TRACKING_PASSWORD"] = model_image.read_stdin()[0]
try:
    print(json.dumps(model_image.resolve(sys.argv[1])._asdict()))
except model_image.Failure as exc:
    print(json.dumps({"error": str(exc)}))
"""


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


def resolve(stack: Stack, uri: str) -> tuple[dict, str]:
    """What serve.sh's tools container resolves `uri` to (model_image.resolve: the pinned URI,
    name, version...; or {"error": message}), and its stderr. Needs the tools image (any
    serve.sh serve of this test session builds it)."""
    result = subprocess.run(
        ["docker", "run", "--rm", "-i", "--network", f"{stack.project}_frontend",
         "-e", "MLFLOW_TRACKING_URI=http://mlflow-server:5000", "-e", "MLFLOW_TRACKING_USERNAME=admin",
         "--entrypoint", "python3", TOOLS_IMAGE, "-c", RESOLVE, uri],
        input=f"password={stack.secrets['MLFLOW_ADMIN_PASSWORD']}\n", capture_output=True,
        text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1]), result.stderr


def remove_image(image: str) -> None:
    subprocess.run(["docker", "image", "rm", "-f", image], capture_output=True)


# make serve's and make score's tests: a model URI that names nothing -> where it is not, and MLflow's message ({hex}: random).
UNKNOWN = {
    "models:/no-such-model@champion": ("registry", "Registered Model with name=no-such-model not found"),
    "models:/no-such-model/1": ("registry", "Model Version (name=no-such-model, version=1) not found"),
    "runs:/{hex}/model": ("tracking server", "Run with id={hex} not found"),
    "models:/m-{hex}": ("tracking server", "Logged model with ID 'm-{hex}' not found."),
}
