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
   built FROM workbench/base when the model's Python is the one Debian bookworm ships;
5. add the extra CA certificates this image trusts (base/ca-certificates) to the Dockerfile,
   right after FROM, so apt and pip trust a TLS-inspecting proxy in a real python:*-slim too;
6. append the model's OpenAPI document (openapi.py, from its signature and input example), which
   MLflow's nginx then serves at /openapi.json;
7. build it through the Docker API (the engine's own API version is negotiated, so any engine
   from 20.10 on works), streaming the build's output, with the proxy settings as build args.

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
import urllib.parse
import warnings
from pathlib import Path
from typing import NamedTuple

import docker
from docker.errors import APIError, BuildError, ImageNotFound

import openapi

CA_DIR = Path("/usr/local/share/ca-certificates")
STAND_IN = Path("/opt/serving/python-slim")
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
# Added by the workbench (serving/model_image.py): the model's OpenAPI document at /openapi.json.
COPY workbench-openapi.json /opt/workbench/openapi.json
RUN conf="$(python -c 'import mlflow.models, pathlib; print(pathlib.Path(mlflow.models.__file__).parent / "container/scoring_server/nginx.conf")')" \
 && grep -q '^    location / {' "$conf" \
 && sed -i 's|^    location / {|    location = /openapi.json {\n      root /opt/workbench;\n      default_type application/json;\n      add_header Access-Control-Allow-Origin "*";\n    }\n\n    location / {|' "$conf" \
 && grep -q 'location = /openapi.json' "$conf"
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


def say(message: str) -> None:
    print(f"==> {message}", flush=True)


def result(key: str, value: object) -> None:
    print(f"::serve:: {key}={value}", flush=True)


class Failure(Exception):
    """An error with a message meant for the user."""


def read_stdin() -> tuple[str, dict[str, str]]:
    password, proxies = "", {}
    for line in sys.stdin.read().split("\n"):
        key, sep, value = line.partition("=")
        if not sep:
            continue
        if key == "password":
            password = value
        elif (key.upper() in PROXY_VARS or key == "PIP_INDEX_URL") and value:
            proxies[key] = value
    return password, proxies


def slug(name: str) -> str:
    """A model name as a Docker repository / container name component."""
    s = re.sub(r"[^a-z0-9._-]+", "-", name.lower()).strip("._-")
    s = re.sub(r"[._-]{2,}", "-", s)
    return s[:100] or "model"


# Model URIs: the same code (MODEL_FORMS to one_line) in serving/model_image.py and
# scoring/score.py. Each image is built from its own folder only, so neither can import the
# other's copy; tests/scoring checks that the two stay identical.
MODEL_FORMS = ("models:/<name>/<version>, models:/<name>/<stage>, models:/<name>/latest, "
               "models:/<name>@<alias>, models:/<model_id> or runs:/<run_id>/<path>")
# MlflowClient.get_latest_versions is deprecated (stages are), but it is what MLflow itself still
# resolves models:/<name>/<stage> and models:/<name>/latest with; only its own warning is silenced.
LATEST_VERSIONS_WARNING = (r"``mlflow\.tracking\.client\.MlflowClient\.get_latest_versions`` "
                           "is deprecated")


class ResolvedModel(NamedTuple):
    """A model URI resolved once: `uri` names exactly what was resolved (what is downloaded),
    `name` and `version` identify it in image tags, labels and container names (`version` is a
    valid Docker tag: a version number, a LoggedModel's id, or run-<its run's id>)."""

    uri: str
    name: str
    version: str
    source: str  # where its files are: an image built from another source is rebuilt
    run_id: str
    what: str  # for the user: "version 3 of 'iris'"


def docker_tag(text: str) -> str:
    tag = re.sub(r"[^A-Za-z0-9_.-]+", "-", text)
    return (tag if re.match(r"\w", tag) else f"v{tag}")[:128]


def parse_model_uri(uri: str) -> dict[str, str]:
    """The parts of a model URI, split as MLflow's own parsers split them (the registry's
    models:/ forms, a LoggedModel's id, a run's artifact path)."""
    parsed = urllib.parse.urlparse(uri, allow_fragments=False)
    path = parsed.path[1:] if parsed.path.startswith("/") else ""
    parts = path.split("/")
    if parsed.scheme == "runs" and not parsed.netloc and parts[0] and "/".join(parts[1:]):
        return {"run_id": parts[0], "path": "/".join(parts[1:])}
    if parsed.scheme != "models" or parsed.netloc or not parts[0].strip() or len(parts) > 2:
        raise Failure(f"MODEL={uri!r}: give one of {MODEL_FORMS}")
    if len(parts) == 2:
        name, suffix = parts
        if not suffix.strip():
            raise Failure(f"MODEL={uri!r}: give one of {MODEL_FORMS}")
        if suffix.isdigit():
            return {"name": name, "version": suffix}
        if suffix.lower() == "latest":
            return {"name": name, "stage": ""}
        return {"name": name, "stage": suffix}
    if "@" in path:
        name, _, alias = path.rpartition("@")
        if not alias.strip():
            raise Failure(f"MODEL={uri!r}: give one of {MODEL_FORMS}")
        return {"name": name, "alias": alias}
    return {"model_id": path}


def resolve(uri: str) -> ResolvedModel:
    """Any model URI MLflow loads -> the model it names now, pinned: models:/<name>/<version> for
    the registry's forms, models:/<model_id> for a LoggedModel, the runs:/ URI itself for a
    run's artifacts. A URI MLflow cannot resolve fails with MLflow's own message, on one line."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    parts = parse_model_uri(uri)
    client = MlflowClient()
    try:
        if "model_id" in parts:
            model = client.get_logged_model(parts["model_id"])
            return ResolvedModel(f"models:/{model.model_id}", model.name,
                                 docker_tag(model.model_id), str(model.artifact_location),
                                 str(model.source_run_id or ""),
                                 f"logged model {model.model_id} ({model.name!r})")
        if "run_id" in parts:
            run = client.get_run(parts["run_id"])
            run_id, path = run.info.run_id, parts["path"].strip("/")
            pinned = f"runs:/{run_id}/{path}"
            files = mlflow.artifacts.list_artifacts(artifact_uri=pinned)
            if not any(f.path.rsplit("/", 1)[-1] == "MLmodel" for f in files):
                raise Failure(f"{uri}: run {run_id} has no MLflow model at {path!r} (no MLmodel "
                              "file there)")
            return ResolvedModel(pinned, path, f"run-{run_id[:12]}",
                                 f"{run.info.artifact_uri}/{path}", run_id,
                                 f"the model at {path!r} of run {run_id}")
        if "alias" in parts:
            mv = client.get_model_version_by_alias(parts["name"], parts["alias"])
        elif "version" in parts:
            mv = client.get_model_version(parts["name"], parts["version"])
        else:
            stage = parts["stage"]
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", LATEST_VERSIONS_WARNING, FutureWarning)
                latest = client.get_latest_versions(parts["name"], [stage] if stage else None)
            if not latest:  # MLflow's own words (mlflow.store.artifact.utils.models)
                raise Failure(f"{uri} is not in the workbench's registry: No versions of model "
                              f"with name '{parts['name']}'"
                              + (f" and stage '{stage}'" if stage else "") + " found")
            mv = max(latest, key=lambda v: int(v.version))
    except MlflowException as exc:
        message = one_line(exc.message)
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            where = "registry" if "name" in parts else "tracking server"
            if not parts.get("model_id", "m-").startswith("m-"):  # a registered model's name?
                message += (f" (a registered model is models:/{parts['model_id']}/<version>, "
                            "/<stage>, /latest or @<alias>)")
            raise Failure(f"{uri} is not in the workbench's {where}: {message}") from None
        raise Failure(f"{uri} cannot be resolved: {message}") from None
    return ResolvedModel(f"models:/{mv.name}/{mv.version}", mv.name, str(mv.version),
                         str(mv.source), str(mv.run_id or ""),
                         f"version {mv.version} of {mv.name!r}")


def one_line(message: str) -> str:
    return " ".join(str(message).split())


def python_of(dockerfile: str) -> tuple[str, str]:
    """The FROM image of MLflow's generated Dockerfile and its Python version."""
    base = re.search(r"^FROM\s+(\S+)", dockerfile, re.M)
    if not base:
        raise Failure("MLflow generated a Dockerfile without FROM")
    version = re.fullmatch(r"python:(\d+\.\d+\.\d+)-slim", base[1])
    if not version:
        raise Failure(f"MLflow chose the base image {base[1]}: the model has no python_env.yaml "
                      "with a Python version (or needs Java); the workbench serves pyfunc models "
                      "logged with MLflow 2.x/3.x from Python")
    return base[1], version[1]


def ensure_base_image(client: docker.DockerClient, image: str, version: str,
                      workbench_base: str) -> str:
    """Present, else pulled, else the stand-in built FROM workbench/base. Says which."""
    try:
        found = client.images.get(image)
        kind = "workbench stand-in" if "org.workbench.python-stand-in" in (found.labels or {}) else "present"
        return f"{image} ({kind})"
    except ImageNotFound:
        pass
    say(f"pulling {image}")
    repo, tag = image.split(":", 1)
    try:
        client.images.pull(repo, tag=tag)
        return f"{image} (pulled)"
    except APIError as exc:
        reason = exc.explanation or str(exc)
    base_python = client.containers.run(
        workbench_base, ["python3", "-c", "import platform; print(platform.python_version())"],
        remove=True, network_mode="none").decode().strip()
    if base_python != version:
        raise Failure(
            f"{image} cannot be pulled ({reason}), and the workbench's stand-in has Python "
            f"{base_python}, not the model's {version}. Load the image on this machine "
            f"(`docker load -i python-{version}-slim.tar`, saved where a registry is reachable) "
            "or log the model from the jupyter container.")
    say(f"{image} cannot be pulled ({reason.splitlines()[0][:160]}): building the stand-in "
        f"FROM {workbench_base} (Debian bookworm's Python {base_python}, the same CA certificates)")
    try:
        client.images.build(path=str(STAND_IN), tag=image, rm=True, pull=False,
                            buildargs={"WORKBENCH_BASE": workbench_base, "PYTHON_VERSION": version})
    except BuildError as exc:
        raise Failure(f"building the stand-in {image} failed: {exc.msg}") from None
    return f"{image} (workbench stand-in, built now)"


def add_workbench_steps(context: Path, dockerfile: str, pip_index: bool) -> tuple[str, int]:
    """No pip cache, the PyPI mirror (if any) and the extra CA certificates (if any), right
    after MLflow's FROM line."""
    block = PIP_BLOCK + ("ARG PIP_INDEX_URL\n" if pip_index else "")
    certs = sorted(CA_DIR.glob("*.crt"))
    if certs:
        target = context / "workbench-ca-certificates"
        target.mkdir()
        for cert in certs:
            shutil.copy(cert, target / cert.name)
        block += CA_BLOCK
    lines = dockerfile.split("\n")
    at = next(i for i, line in enumerate(lines) if line.startswith("FROM "))
    return "\n".join(lines[: at + 1] + block.split("\n") + lines[at + 1:]), len(certs)


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


def build(client: docker.DockerClient, context: Path, tag: str, labels: dict[str, str],
          buildargs: dict[str, str]) -> None:
    """Build through the Docker API, printing the build's output as it comes."""
    stream = client.api.build(path=str(context), tag=tag, labels=labels, buildargs=buildargs,
                              rm=True, forcerm=True, pull=False, decode=True)
    error = None
    for chunk in stream:
        if "stream" in chunk:
            sys.stdout.write(chunk["stream"])
            sys.stdout.flush()
        elif "status" in chunk:
            print(chunk["status"], chunk.get("progress", ""), flush=True)
        if "error" in chunk:
            error = chunk["error"]
    if error:
        raise Failure(f"the image build failed: {error.strip()}")


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

    password, proxies = read_stdin()
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
        if existing is not None and not args.rebuild and all(
                built_labels.get(key) == labels[key]
                for key in ("org.workbench.model.source", "org.workbench.serving.recipe")):
            say(f"{image} is already built from this model version (REBUILD=1 rebuilds it)")
        else:
            started = time.monotonic()
            say("downloading the model and generating its Dockerfile "
                "(mlflow models generate-dockerfile --env-manager local)")
            gen = subprocess.run(["mlflow", "models", "generate-dockerfile", "-m", model.uri,
                                  "-d", str(context), "--env-manager", "local"],
                                 capture_output=True, text=True)
            if gen.returncode != 0:
                raise Failure(f"mlflow models generate-dockerfile failed:\n{gen.stderr[-3000:]}")
            dockerfile = (context / "Dockerfile").read_text()
            base_image, python_version = python_of(dockerfile)
            say(f"base image: {ensure_base_image(client, base_image, python_version, args.workbench_base)}")
            dockerfile, n_certs = add_workbench_steps(context, dockerfile, "PIP_INDEX_URL" in proxies)
            model_dir = model_dir_in(context, model.uri)
            (context / "workbench-openapi.json").write_text(
                json.dumps(openapi.document(model_dir, name, version), indent=1))
            dockerfile, shared = share_dependency_layer(context, dockerfile, model_dir)
            if not shared:
                say("MLflow's Dockerfile has no `COPY <model> /opt/ml/model` line or the model no "
                    "requirements.txt: its requirements are installed by MLflow's own step only "
                    "(no layer shared with other models' images)")
            dockerfile += OPENAPI_BLOCK
            (context / "Dockerfile").write_text(dockerfile)
            if n_certs:
                say(f"the image trusts {n_certs} extra CA certificate(s) (base/ca-certificates)")
            if proxies:
                say(f"settings for the build: {', '.join(sorted(proxies))}")
            buildargs = dict(proxies)
            for key, value in proxies.items():  # both spellings: apt reads lower case, pip both
                if key == "PIP_INDEX_URL":
                    continue
                buildargs.setdefault(key.lower(), value)
                buildargs.setdefault(key.upper(), value)
            say(f"building {image}: apt installs nginx, pip installs MLflow {mlflow_version()} "
                "and the model's requirements (a few minutes the first time)")
            labels["org.workbench.model.example"] = example_payload(context)
            build(client, context, image, labels, buildargs)
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
