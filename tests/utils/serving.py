"""Serving models of a test stack with serving/serve.sh (what `make serve` runs)."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import tempfile
from contextlib import contextmanager

from utils.stack import REPO, Stack, image_present
from utils.wait import wait_until

SERVE = REPO / "serving" / "serve.sh"
# What model_image.py builds FROM where python:3.11.2-slim cannot be pulled (serving/README.md).
STAND_IN = "workbench/python-standin:3.11.2"
TOOLS_IMAGE = "workbench/serving-tools:local"
# The shared model_tools.resolve() alone (what model_image.py and score.py call), in the tools
# image serve.sh builds (no model image is built): the password on stdin as serve.sh gives it,
# the result (or the Failure's message) as JSON.
RESOLVE = """
import json, os, sys
sys.path.insert(0, "/opt/serving")
import model_tools
os.environ["MLFLOW_TRACKING_PASSWORD"] = model_tools.read_stdin()["password"]
try:
    print(json.dumps(model_tools.resolve(sys.argv[1])._asdict()))
except model_tools.Failure as exc:
    print(json.dumps({"error": str(exc)}))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(stack: Stack, command: str, **settings: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PROJECT": stack.project, "ENV_FILE": str(stack.env_file), **settings}
    return subprocess.run(
        [str(SERVE), command], cwd=REPO, env=env, capture_output=True, text=True, timeout=1800
    )


def issue_key(stack: Stack, name: str, model: str = "") -> str:
    """`make serve-key NAME=name [MODEL=model]`: the key it prints (once)."""
    result = serve(stack, "key", NAME=name, MODEL=model)
    assert result.returncode == 0, result.stderr
    keys = re.findall(r"^(wbk_[0-9a-f]{64})$", result.stdout, re.M)
    assert len(keys) == 1, result.stdout
    return keys[0]


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@contextmanager
def model_images_removed_afterwards(name: str):
    """On leaving: every image of the registered model `name` is removed, and the python:*-slim
    stand-in (workbench/python-standin) too when it was not there before (a test that built it
    takes it away)."""
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
            assert result.returncode == 0, (
                f"serve {uri} failed\n{result.stdout[-6000:]}\n{result.stderr[-4000:]}"
            )
            yield f"http://127.0.0.1:{port}", f"http://serve-{port}:8080"
        finally:
            serve(stack, "stop", MODEL=uri, PORT="")


def run_inspecting(
    command: list[str], *, env: dict[str, str], labels: list[str], timeout: float = 1800
) -> tuple[dict, subprocess.CompletedProcess]:
    """Run `command` (serve.sh, score.sh) and `docker inspect` the short-lived container it starts
    (the one with every label in `labels`) while it runs. Returns that inspection (empty if the
    command ended before such a container was seen) and the command's result."""
    filters = [arg for label in labels for arg in ("--filter", f"label={label}")]
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=err, text=True)

        def seen() -> dict | None:
            ids = subprocess.run(
                ["docker", "ps", "-q", *filters], capture_output=True, text=True, check=True
            ).stdout.split()
            if ids:
                found = subprocess.run(["docker", "inspect", ids[0]], capture_output=True, text=True)
                if found.returncode == 0:
                    return json.loads(found.stdout)[0]
            return {"ended": True} if proc.poll() is not None else None

        try:
            inspected = wait_until(seen, timeout=timeout, interval=0.2, what=f"a container with {labels}")
            proc.wait(timeout=timeout)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        out.seek(0)
        err.seek(0)
        result = subprocess.CompletedProcess(command, proc.returncode, out.read(), err.read())
    return ({} if inspected.get("ended") else inspected), result


def remove_model_images(name: str) -> None:
    images = subprocess.run(
        ["docker", "image", "ls", "-q", f"workbench-model/{name}"], capture_output=True, text=True
    ).stdout.split()
    if images:
        subprocess.run(["docker", "image", "rm", "-f", *images], capture_output=True)


def resolve(stack: Stack, uri: str) -> tuple[dict, str]:
    """What serve.sh's tools container resolves `uri` to (model_tools.resolve: the pinned URI,
    name, version...; or {"error": message}), and its stderr. Needs the tools image (any
    serve.sh serve of this test session builds it)."""
    result = subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            "-i",
            "--network",
            f"{stack.project}_frontend",
            "-e",
            "MLFLOW_TRACKING_URI=http://mlflow-server:5000",
            "-e",
            "MLFLOW_TRACKING_USERNAME=admin",
            "--entrypoint",
            "python3",
            TOOLS_IMAGE,
            "-c",
            RESOLVE,
            uri,
        ],
        input=f"password={stack.secrets['MLFLOW_ADMIN_PASSWORD']}\n",
        capture_output=True,
        text=True,
        timeout=300,
    )
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


def build_scoring_image() -> str:
    """The scoring image, built as `make score` builds it (tools/build-image.sh: scoring/ with the
    shared tools/model_tools.py, the machine's PyPI mirror if any): its tag."""
    image = "workbench/scoring:local"
    subprocess.run(
        [str(REPO / "tools" / "build-image.sh"), "scoring", image, "workbench/base:local"],
        check=True,
        capture_output=True,
        timeout=3600,
    )
    return image
