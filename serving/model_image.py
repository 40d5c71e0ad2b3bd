"""Build the Docker image that serves one registered model (run by serving/serve.sh in the tools
container; the host's Docker socket is mounted here, and only here).

    model_image.py --model <model URI> --project <project>

The model URI is any MLflow loads: models:/<name>/<version>, models:/<name>/<stage>,
models:/<name>/latest, models:/<name>@<alias>, models:/<model_id> (a LoggedModel) or
runs:/<run_id>/<path>.

Reads from stdin `key=value` lines: `password=` (the MLflow admin password, so it is never on a
command line or in `docker inspect`), any proxy settings (HTTP_PROXY, HTTPS_PROXY, NO_PROXY...)
and PIP_INDEX_URL (a PyPI mirror) to hand to the image build. Steps:

1. resolve the URI once (MLFLOW_TRACKING_URI: the workbench's server) to what it names now: a
   registry's alias, stage or `latest` to its version number; the image is
   `workbench-model/<name>:<version>`, where a LoggedModel's version is its id (m-...) and a
   run's model is `<its path>:run-<the run id's first 12 characters>`;
2. reuse that image if it was built from that same model (label org.workbench.model.source),
   unless --rebuild;
3. `mlflow models generate-dockerfile --env-manager local` (what `mlflow models build-docker` runs
   before its `docker build`): a Dockerfile FROM python:<the model's Python>-slim;
4. make sure that base image exists: present, else `docker pull`, else (no registry) a stand-in
   built FROM workbench/base when the model's Python is the one Debian bookworm ships, under the
   workbench's own name (workbench/python-standin:<version>), given to the build as BASE_IMAGE;
5. add the extra CA certificates this image trusts (base/ca-certificates) to the Dockerfile,
   right after FROM, so apt and pip trust a TLS-inspecting proxy in a real python:*-slim too;
6. append the model's OpenAPI document (openapi.py, from its signature and input example), which
   MLflow's nginx then serves at /openapi.json;
7. build it with Docker Compose (BuildKit through the engine's API, engine 20.10 on), streaming
   the build's output, with the proxy settings as build args and the PyPI mirror as a build
   secret mounted into each step that runs pip (never in the image or its history).

Prints the result as `::serve:: key=value` lines for serve.sh.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import docker
from docker.errors import APIError, BuildError, ImageNotFound

import openapi
from model_tools import Failure, read_stdin, resolve, say

CA_DIR = Path("/usr/local/share/ca-certificates")
STAND_IN = Path("/opt/serving/python-slim")
# The stand-in's name and label: workbench/python-standin:<version>, never python:<version>-slim.
STAND_IN_REPOSITORY = "workbench/python-standin"
STAND_IN_LABEL = "org.workbench.python-stand-in"
PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "FTP_PROXY", "NO_PROXY", "ALL_PROXY")
# Inserted after MLflow's FROM line (serving/README.md, "What the image is"). pip keeps no cache
# in the image (a real python:*-slim would keep ~100 MB of wheels there).
PIP_BLOCK = """
# Added by the workbench (serving/model_image.py).
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
"""
# Appended to MLflow's Dockerfile: the model's OpenAPI document (openapi.py), served by MLflow's own
# nginx (in front of the scoring server) at /openapi.json. The build fails if MLflow's nginx.conf no
# longer has the catch-all location this inserts before.
OPENAPI_BLOCK = r"""
# Added by the workbench (serving/model_image.py): the model's OpenAPI document at /openapi.json,
# and at /openapi-nokeys.json without the API key scheme (the gateway's path with keys off).
COPY workbench-openapi.json /opt/workbench/openapi.json
COPY workbench-openapi-nokeys.json /opt/workbench/openapi-nokeys.json
RUN conf="$(python -c 'import mlflow.models, pathlib; print(pathlib.Path(mlflow.models.__file__).parent / "container/scoring_server/nginx.conf")')" \
 && grep -q '^    location / {' "$conf" \
 && sed -i 's|^    location / {|    location ~ "^/openapi(-nokeys)?[.]json$" {\n      root /opt/workbench;\n      default_type application/json;\n      add_header Access-Control-Allow-Origin "*";\n    }\n\n    location / {|' "$conf" \
 && grep -qF 'location ~ "^/openapi(-nokeys)?[.]json$"' "$conf"
# nginx's folders, a tmpfs at run time: `make serve` mounts them for the model's user. A Swarm
# tmpfs takes no owner (root's, with this folder's mode): open to all, sticky, like /tmp, or the
# scoring server's nginx (user nobody) could not write there (swarm/README.md).
RUN mkdir -p /var/lib/nginx /var/log/nginx && chmod 1777 /var/lib/nginx /var/log/nginx
"""
# Inserted before MLflow's `COPY <model> /opt/ml/model`: the model's requirements in a layer of
# their own, ahead of the model's files. Every model logged from the same environment (each new
# version of a model, most models of one notebook) has the same requirements.txt, so it shares
# this layer and its image builds in seconds instead of installing them again; MLflow's own
# install step after the COPY then finds them installed. Where MLflow's Dockerfile has no such
# COPY line, the image is built as MLflow wrote it (and says so).
DEPS_BLOCK = """
# Added by the workbench (serving/model_image.py): the model's requirements before its files.
COPY workbench-requirements.txt /tmp/workbench-requirements.txt
RUN pip install -r /tmp/workbench-requirements.txt && rm /tmp/workbench-requirements.txt
"""
MODEL_COPY = re.compile(r"^COPY \S+ /opt/ml/model$")
# Inserted with it too: uvicorn's own fast event loop and HTTP parser, which it uses when installed
# (uvicorn[standard] has them; MLflow installs plain uvicorn). make bench: 311 against 239
# requests/s at 8 clients for the same nginx + 2 workers (bench/README.md). Pinned: the
# versions measured.
SPEED_BLOCK = """
# Added by the workbench (serving/model_image.py): uvloop and httptools for uvicorn.
RUN pip install uvloop==0.23.0 httptools==0.9.0
"""
# Prefixed to every RUN that runs pip or python (pip_mirror_secret): the PyPI mirror, if one was
# given, as a build secret mounted for that step only.
PIP_SECRET_PREFIX = (
    "--mount=type=secret,id=pip-index-url "
    "if [ -s /run/secrets/pip-index-url ]; then "
    'PIP_INDEX_URL="$(cat /run/secrets/pip-index-url)"; export PIP_INDEX_URL; fi; '
)
CA_BLOCK = """# The workbench's extra CA certificates (base/ca-certificates: corporate TLS-inspecting
# proxies), trusted by apt, pip and requests in the build and at run time.
COPY workbench-ca-certificates/ /usr/local/share/ca-certificates/
RUN update-ca-certificates
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \\
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt \\
    REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
"""


def recipe() -> str:
    """What the image is made with besides the model: this file, openapi.py and MLflow's version.
    An image built with another recipe is rebuilt (label org.workbench.serving.recipe)."""
    digest = hashlib.sha256(mlflow_version().encode())
    for path in (Path(__file__), Path(openapi.__file__)):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def result(key: str, value: object) -> None:
    print(f"::serve:: {key}={value}", flush=True)


def build_settings(settings: dict[str, str]) -> dict[str, str]:
    """The proxy settings and PIP_INDEX_URL among the `key=value` lines serve.sh wrote on stdin."""
    return {
        key: value
        for key, value in settings.items()
        if (key.upper() in PROXY_VARS or key == "PIP_INDEX_URL") and value
    }


def slug(name: str) -> str:
    """A model name as a Docker repository / container name component."""
    s = re.sub(r"[^a-z0-9._-]+", "-", name.lower()).strip("._-")
    s = re.sub(r"[._-]{2,}", "-", s)
    return s[:100] or "model"


def python_of(dockerfile: str) -> tuple[str, str]:
    """The FROM image of MLflow's generated Dockerfile and its Python version."""
    base = re.search(r"^FROM\s+(\S+)", dockerfile, re.M)
    if not base:
        raise Failure("MLflow generated a Dockerfile without FROM")
    version = re.fullmatch(r"python:(\d+\.\d+\.\d+)-slim", base[1])
    if not version:
        raise Failure(
            f"MLflow chose the base image {base[1]}: the model has no python_env.yaml "
            "with a Python version (or needs Java); the workbench serves pyfunc models "
            "logged with MLflow 2.x/3.x from Python"
        )
    return base[1], version[1]


def ensure_base_image(
    client: docker.DockerClient, image: str, version: str, workbench_base: str
) -> tuple[str, str]:
    """The image to build FROM and what it is: MLflow's python:<version>-slim when it is here or
    can be pulled, else the workbench's stand-in, built FROM workbench/base under its own name
    (never the official one, which every other project on the machine would then build on)."""
    stand_in = f"{STAND_IN_REPOSITORY}:{version}"
    try:
        found = client.images.get(image)
        if STAND_IN_LABEL not in (found.labels or {}):
            return image, f"{image} (present)"
        # An older workbench tagged its stand-in with the official name: its label says so.
        found.tag(STAND_IN_REPOSITORY, version)
        client.images.remove(image)  # only the official name goes; the image stays as stand_in
        say(f"{image} here was an older workbench's stand-in: it is {stand_in} now")
    except ImageNotFound:
        pass
    say(f"pulling {image}")
    repo, tag = image.split(":", 1)
    try:
        client.images.pull(repo, tag=tag)
        return image, f"{image} (pulled)"
    except APIError as exc:
        reason = (exc.explanation or str(exc)).splitlines()[0][:160]
    try:
        client.images.get(stand_in)
        return stand_in, f"{stand_in} (the workbench's stand-in: {image} cannot be pulled: {reason})"
    except ImageNotFound:
        pass
    base_python = (
        client.containers.run(
            workbench_base,
            ["python3", "-c", "import platform; print(platform.python_version())"],
            remove=True,
            network_mode="none",
        )
        .decode()
        .strip()
    )
    if base_python != version:
        raise Failure(
            f"{image} cannot be pulled ({reason}), and the workbench's stand-in has Python "
            f"{base_python}, not the model's {version}. Load the image on this machine "
            f"(`docker load -i python-{version}-slim.tar`, saved where a registry is reachable) "
            "or log the model from the jupyter container."
        )
    say(
        f"{image} cannot be pulled ({reason}): building the stand-in {stand_in} "
        f"FROM {workbench_base} (Debian bookworm's Python {base_python}, the same CA certificates)"
    )
    try:
        client.images.build(
            path=str(STAND_IN),
            tag=stand_in,
            rm=True,
            pull=False,
            buildargs={"WORKBENCH_BASE": workbench_base, "PYTHON_VERSION": version},
        )
    except BuildError as exc:
        raise Failure(f"building the stand-in {stand_in} failed: {exc.msg}") from None
    return stand_in, f"{stand_in} (the workbench's stand-in, built now)"


def from_build_argument(dockerfile: str) -> str:
    """MLflow's `FROM python:<version>-slim` as `FROM ${BASE_IMAGE}`, that name its default: the
    build argument BASE_IMAGE names the image ensure_base_image chose."""
    return re.sub(
        r"^FROM\s+(\S+)",
        lambda m: f"ARG BASE_IMAGE={m[1]}\nFROM ${{BASE_IMAGE}}",
        dockerfile,
        count=1,
        flags=re.M,
    )


def add_workbench_steps(context: Path, dockerfile: str) -> tuple[str, int]:
    """No pip cache and the extra CA certificates (if any), right after MLflow's FROM line."""
    block = PIP_BLOCK
    certs = sorted(CA_DIR.glob("*.crt"))
    if certs:
        target = context / "workbench-ca-certificates"
        target.mkdir()
        for cert in certs:
            shutil.copy(cert, target / cert.name)
        block += CA_BLOCK
    lines = dockerfile.split("\n")
    at = next(i for i, line in enumerate(lines) if line.startswith("FROM "))
    return "\n".join(lines[: at + 1] + block.split("\n") + lines[at + 1 :]), len(certs)


def share_dependency_layer(context: Path, dockerfile: str, model_dir: Path) -> tuple[str, bool]:
    """DEPS_BLOCK and SPEED_BLOCK before MLflow's COPY of the model (True), or SPEED_BLOCK at
    the end where that line or the model's requirements.txt is not there (False)."""
    lines = dockerfile.split("\n")
    at = next((i for i, line in enumerate(lines) if MODEL_COPY.match(line)), None)
    requirements = model_dir / "requirements.txt"
    if at is None or not requirements.is_file():
        return dockerfile + SPEED_BLOCK, False
    shutil.copy(requirements, context / "workbench-requirements.txt")
    block = (DEPS_BLOCK + SPEED_BLOCK).split("\n")
    return "\n".join(lines[:at] + block + lines[at:]), True


def pip_mirror_secret(dockerfile: str) -> str:
    """Every shell-form RUN that runs pip or python (MLflow's installs and the workbench's) with
    the build secret pip-index-url mounted and, when it is there, PIP_INDEX_URL set from it for
    that one step: the mirror's URL and any token in it reach pip, never a layer or the history."""
    return re.sub(
        r"^RUN (?!\[|--mount=type=secret,id=pip-index-url )(?=.*\b(?:pip|python)\b)",
        lambda m: "RUN " + PIP_SECRET_PREFIX,
        dockerfile,
        flags=re.M,
    )


def compose_value(text: str) -> str:
    """A value Compose takes verbatim: `$` escaped from its interpolation."""
    return text.replace("$", "$$")


def build(
    context: Path, tag: str, labels: dict[str, str], buildargs: dict[str, str], pip_index_url: str
) -> None:
    """Build with Docker Compose (BuildKit, through the engine's API; the Docker SDK has only the
    classic builder, which has no build secrets), printing the build's output as it comes. The
    PyPI mirror reaches the build as the secret pip-index-url, from this process's environment;
    the Compose file (JSON, its values escaped) holds no secret."""
    spec = {
        "name": "workbench-model-build",
        "services": {
            "model": {
                "image": compose_value(tag),
                "build": {
                    "context": str(context),
                    "args": {k: compose_value(v) for k, v in buildargs.items()},
                    "labels": {k: compose_value(v) for k, v in labels.items()},
                    "secrets": ["pip-index-url"],
                },
            }
        },
        "secrets": {"pip-index-url": {"environment": "PIP_INDEX_URL"}},
    }
    with tempfile.NamedTemporaryFile("w", suffix=".json", prefix="model-build-") as file:
        json.dump(spec, file)
        file.flush()
        env = {**os.environ, "PIP_INDEX_URL": pip_index_url, "DOCKER_BUILDKIT": "1"}
        process = subprocess.Popen(
            ["docker-compose", "-f", file.name, "--progress", "plain", "build"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        tail: list[str] = []
        for line in process.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            tail = (tail + [line])[-30:]
        if process.wait() != 0:
            raise Failure("the image build failed:\n" + "".join(tail).strip())


def model_dir_in(context: Path, uri: str) -> Path:
    """Where generate-dockerfile downloaded the model: its model_dir folder, or for a runs:/ URI
    the artifact path's folder inside it (MLflow downloads <path> into model_dir/<its last part>)."""
    found = sorted((context / "model_dir").rglob("MLmodel"), key=lambda path: len(path.parts))
    if not found:
        raise Failure(f"mlflow models generate-dockerfile downloaded no MLmodel file for {uri}")
    return found[0].parent


def example_payload(context: Path) -> str:
    """The model's serving_input_example.json (MLflow writes it when logged with input_example),
    on one line: the curl example `make serve` prints (kept as a label of the image)."""
    for path in context.rglob("serving_input_example.json"):
        try:
            payload = json.loads(path.read_text())
        except ValueError:
            break
        text = json.dumps(payload, separators=(",", ":"))
        if len(text) > 2000 and isinstance(payload.get("dataframe_split"), dict):
            payload["dataframe_split"]["data"] = payload["dataframe_split"]["data"][:1]
            text = json.dumps(payload, separators=(",", ":"))
        return text
    return ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--project", required=True)
    parser.add_argument("--workbench-base", default="workbench/base:local")
    parser.add_argument("--rebuild", action="store_true")
    args = parser.parse_args()

    settings = read_stdin()
    password, proxies = settings.get("password", ""), build_settings(settings)
    if not password:
        raise Failure("no MLflow password on stdin")
    os.environ["MLFLOW_TRACKING_PASSWORD"] = password
    client = docker.from_env()

    model = resolve(args.model)
    name, version = model.name, model.version
    image = f"workbench-model/{slug(name)}:{version}"
    say(f"{args.model} is {model.what} ({model.source})")
    result("name", name)
    result("slug", slug(name))
    result("version", version)
    result("what", model.what)
    result("image", image)

    labels = {
        "org.workbench.model.name": name,
        "org.workbench.model.version": version,
        "org.workbench.model.source": model.source,
        "org.workbench.model.run-id": model.run_id,
        "org.workbench.project": args.project,
        "org.workbench.serving.recipe": recipe(),
        "org.opencontainers.image.title": f"MLflow model {name} version {version}",
    }
    existing = None
    try:
        existing = client.images.get(image)
    except ImageNotFound:
        pass
    with tempfile.TemporaryDirectory(prefix="model-image-") as tmp:
        context = Path(tmp)
        built_labels = (existing.labels or {}) if existing is not None else {}
        if (
            existing is not None
            and not args.rebuild
            and all(
                built_labels.get(key) == labels[key]
                for key in ("org.workbench.model.source", "org.workbench.serving.recipe")
            )
        ):
            say(f"{image} is already built from this model version (REBUILD=1 rebuilds it)")
        else:
            started = time.monotonic()
            say(
                "downloading the model and generating its Dockerfile "
                "(mlflow models generate-dockerfile --env-manager local)"
            )
            gen = subprocess.run(
                [
                    "mlflow",
                    "models",
                    "generate-dockerfile",
                    "-m",
                    model.uri,
                    "-d",
                    str(context),
                    "--env-manager",
                    "local",
                ],
                capture_output=True,
                text=True,
            )
            if gen.returncode != 0:
                raise Failure(f"mlflow models generate-dockerfile failed:\n{gen.stderr[-3000:]}")
            dockerfile = (context / "Dockerfile").read_text()
            base_image, python_version = python_of(dockerfile)
            base_image, what_base = ensure_base_image(client, base_image, python_version, args.workbench_base)
            say(f"base image: {what_base}")
            dockerfile = from_build_argument(dockerfile)
            dockerfile, n_certs = add_workbench_steps(context, dockerfile)
            model_dir = model_dir_in(context, model.uri)
            for suffix, keys in (("", True), ("-nokeys", False)):
                (context / f"workbench-openapi{suffix}.json").write_text(
                    json.dumps(openapi.document(model_dir, name, version, keys=keys), indent=1)
                )
            dockerfile, shared = share_dependency_layer(context, dockerfile, model_dir)
            if not shared:
                say(
                    "MLflow's Dockerfile has no `COPY <model> /opt/ml/model` line or the model no "
                    "requirements.txt: its requirements are installed by MLflow's own step only "
                    "(no layer shared with other models' images)"
                )
            dockerfile += OPENAPI_BLOCK
            (context / "Dockerfile").write_text(pip_mirror_secret(dockerfile))
            if n_certs:
                say(f"the image trusts {n_certs} extra CA certificate(s) (base/ca-certificates)")
            if proxies:
                say(f"settings for the build: {', '.join(sorted(proxies))}")
            buildargs = {"BASE_IMAGE": base_image}
            for key, value in proxies.items():  # both spellings: apt reads lower case, pip both
                if key == "PIP_INDEX_URL":
                    continue  # a build secret (build()), never a build argument
                buildargs.setdefault(key.lower(), value)
                buildargs.setdefault(key.upper(), value)
            say(
                f"building {image}: apt installs nginx, pip installs MLflow {mlflow_version()} "
                "and the model's requirements (a few minutes the first time)"
            )
            labels["org.workbench.model.example"] = example_payload(context)
            build(context, image, labels, buildargs, proxies.get("PIP_INDEX_URL", ""))
            say(f"built {image} in {time.monotonic() - started:.0f} s")
            if existing is not None and client.images.get(image).id != existing.id:
                result("replaced", existing.id)  # serve.sh removes it once no container uses it
    built = client.images.get(image)
    result("size", f"{built.attrs['Size'] / 1e6:.0f} MB")
    result("example", (built.labels or {}).get("org.workbench.model.example", ""))
    return 0


def mlflow_version() -> str:
    import mlflow

    return mlflow.__version__


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Failure as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        sys.exit(1)
