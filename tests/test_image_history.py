"""What the image builds leave behind: a PyPI mirror's URL and token in no image (issue 14,
finding 6), and no image of ours under an official image's name (finding 7).

The mirror reaches pip as a build secret (docker-compose.yml, base/bin/workbench-pip) or, for the
images serve.sh and score.sh build with `docker build`, as a build argument of a builder stage
only (serving/Dockerfile, scoring/Dockerfile). Model images: serving/model_image.py."""

from __future__ import annotations

import json
import os
import re
import subprocess

from utils.stack import REPO, Stack, debian_image, image_present

# A mirror URL with a token in it, as a user's pip configuration might hold: pypi.org answers
# with the user info ignored, so the build works as without it.
TOKEN = "secret-token-xyz"
MIRROR = f"https://wbtoken:{TOKEN}@pypi.org/simple"
COMPOSE_BUILT = ["base", "postgres", "ftpd", "mlflow-server", "jupyter"]
# Built by serve.sh and score.sh, and by model_image.py: checked when this machine has them.
OTHER_IMAGES = [
    "workbench/serving-tools:local",
    "workbench/scoring:local",
    "workbench/python-standin:3.11.2",
    "workbench/gateway:local",  # serve.sh's gateway: apt only, no PyPI
]
# `ARG PIP_INDEX_URL`; a RUN step's recorded build arguments (`|2 A=x PIP_INDEX_URL=…`); an
# environment entry ("PIP_INDEX_URL=…" in `docker inspect`).
RECORDED = re.compile(r'ARG PIP_INDEX_URL|\|\d+ (?:\S+=\S* )*PIP_INDEX_URL=|"PIP_INDEX_URL=')
STAND_IN_LABELS = ["org.workbench.debian-bootstrap", "org.workbench.python-stand-in"]


def compose_build(stack: Stack, *args: str, mirror: str) -> subprocess.CompletedProcess:
    """`docker compose build` of the session stack's project with PIP_INDEX_URL=mirror."""
    env = {**os.environ, "PIP_INDEX_URL": mirror, "WORKBENCH_DEBIAN_IMAGE": debian_image()}
    return subprocess.run(
        [
            "docker",
            "compose",
            "-p",
            stack.project,
            "--env-file",
            str(stack.env_file),
            "-f",
            str(REPO / "docker-compose.yml"),
            "--progress",
            "plain",
            "build",
            *args,
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=3600,
    )


def what_an_image_tells(image: str) -> str:
    """Everything `docker history --no-trunc` and `docker inspect` show of an image."""
    history = subprocess.run(
        ["docker", "history", "--no-trunc", "--format", "{{.CreatedBy}} {{.Comment}}", image],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    inspected = subprocess.run(
        ["docker", "image", "inspect", image], capture_output=True, text=True, check=True
    ).stdout
    return history + inspected


def test_a_pip_mirror_with_a_token_leaves_no_trace_in_any_image(stack):
    built = compose_build(stack, mirror=MIRROR)
    assert built.returncode == 0, built.stdout[-4000:] + built.stderr[-4000:]
    images = [f"workbench/{name}:local" for name in COMPOSE_BUILT]
    images += [image for image in OTHER_IMAGES if image_present(image)]
    models = subprocess.run(
        ["docker", "image", "ls", "--format", "{{.Repository}}:{{.Tag}}", "workbench-model/*"],
        capture_output=True,
        text=True,
        check=True,
    )
    images += models.stdout.split()
    for image in images:
        told = what_an_image_tells(image)
        assert TOKEN not in told, f"the mirror's token is in {image}"
        assert "pypi.org/simple" not in told, f"the mirror's URL is in {image}"
        # No build argument PIP_INDEX_URL (declared, or its value recorded with a RUN step) and no
        # such variable in the image's environment: a token would be recorded with them.
        assert not RECORDED.search(told), f"{image} records PIP_INDEX_URL: {RECORDED.search(told)[0]}"


def test_the_pip_mirror_reaches_pip_in_the_build(stack):
    # A mirror nobody answers at: pip names it (the password masked) and the build fails, so the
    # secret did reach pip. Nothing is tagged by a failed build; ftpd installs the fewest packages.
    unreachable = f"http://wbtoken:{TOKEN}@127.0.0.1:9/simple"
    built = compose_build(stack, "--no-cache", "ftpd", mirror=unreachable)
    output = built.stdout + built.stderr
    assert built.returncode != 0, output[-4000:]
    assert "Looking in indexes: http://wbtoken:****@127.0.0.1:9/simple" in output, output[-4000:]
    assert TOKEN not in output


def test_no_image_of_ours_has_an_official_name(stack):
    # The air-gapped fallbacks: Debian (base/bootstrap-debian-image.sh) and python:*-slim
    # (serving/model_image.py) are ours under workbench/ names, labelled so.
    for label in STAND_IN_LABELS:
        found = subprocess.run(
            ["docker", "image", "ls", "--filter", f"label={label}", "--format", "{{.Repository}}:{{.Tag}}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        # workbench-model/ (make serve's model images) and workbench-bench/ are built FROM ours
        # and inherit the label: ours too, under our names.
        # make deploy tags them for its registry too (<host>:<port>/workbench/...: swarm/README.md).
        ours = ("workbench/", "workbench-model/", "workbench-bench/", "<none>")
        wrong = [name for name in found if not re.sub(r"^[\w.-]+:\d+/", "", name).startswith(ours)]
        assert not wrong, f"images labelled {label} under official names: {wrong}"
    # workbench/base is built on what base/bootstrap-debian-image.sh names: debian:bookworm-slim
    # where it is here or can be pulled, else the bootstrap under the workbench's own name.
    debian = debian_image()
    assert debian in ("debian:bookworm-slim", "workbench/debian-bootstrap:bookworm")

    def layers(image: str) -> list[str]:
        out = subprocess.run(
            ["docker", "image", "inspect", "-f", "{{json .RootFS.Layers}}", image],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return json.loads(out)

    assert layers("workbench/base:local")[: len(layers(debian))] == layers(debian)
