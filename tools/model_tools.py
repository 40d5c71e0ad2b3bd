"""What the workbench's model tools share: make serve's tools container (serving/model_image.py)
and make score's container (scoring/score.py). One copy, put next to each script in its image
(tools/image-context.sh adds it to both build contexts; tools/README.md).

- `Failure`: an error whose message is meant for the user (the scripts print `error: <it>`);
- `say`: a progress line, `==> <message>`;
- `read_stdin`: the `key=value` lines the shell script writes on the container's stdin (the
  MLflow admin password, so it is never on a command line or in `docker inspect`);
- `resolve`: any model URI MLflow loads, resolved once on the workbench's tracking server
  (MLFLOW_TRACKING_URI) to what it names now, pinned (`ResolvedModel`).
"""

from __future__ import annotations

import re
import sys
import urllib.parse
import warnings
from typing import NamedTuple

MODEL_FORMS = (
    "models:/<name>/<version>, models:/<name>/<stage>, models:/<name>/latest, "
    "models:/<name>@<alias>, models:/<model_id> or runs:/<run_id>/<path>"
)
# MlflowClient.get_latest_versions is deprecated (stages are), but it is what MLflow itself still
# resolves models:/<name>/<stage> and models:/<name>/latest with; only its own warning is silenced.
LATEST_VERSIONS_WARNING = (
    r"``mlflow\.tracking\.client\.MlflowClient\.get_latest_versions`` "
    "is deprecated"
)


class Failure(Exception):
    """An error with a message meant for the user."""


def say(message: str) -> None:
    print(f"==> {message}", flush=True)


def one_line(message: str) -> str:
    return " ".join(str(message).split())


def read_stdin() -> dict[str, str]:
    """The `key=value` lines on stdin (the first `=` splits; lines without one are ignored; a
    later line wins). The password is `password`."""
    settings = {}
    for line in sys.stdin.read().split("\n"):
        key, sep, value = line.partition("=")
        if sep:
            settings[key] = value
    return settings


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
            return ResolvedModel(
                f"models:/{model.model_id}",
                model.name,
                docker_tag(model.model_id),
                str(model.artifact_location),
                str(model.source_run_id or ""),
                f"logged model {model.model_id} ({model.name!r})",
            )
        if "run_id" in parts:
            run = client.get_run(parts["run_id"])
            run_id, path = run.info.run_id, parts["path"].strip("/")
            pinned = f"runs:/{run_id}/{path}"
            files = mlflow.artifacts.list_artifacts(artifact_uri=pinned)
            if not any(f.path.rsplit("/", 1)[-1] == "MLmodel" for f in files):
                raise Failure(f"{uri}: run {run_id} has no MLflow model at {path!r} (no MLmodel file there)")
            return ResolvedModel(
                pinned,
                path,
                f"run-{run_id[:12]}",
                f"{run.info.artifact_uri}/{path}",
                run_id,
                f"the model at {path!r} of run {run_id}",
            )
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
                raise Failure(
                    f"{uri} is not in the workbench's registry: No versions of model "
                    f"with name '{parts['name']}'" + (f" and stage '{stage}'" if stage else "") + " found"
                )
            mv = max(latest, key=lambda v: int(v.version))
    except MlflowException as exc:
        message = one_line(exc.message)
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            where = "registry" if "name" in parts else "tracking server"
            if not parts.get("model_id", "m-").startswith("m-"):  # a registered model's name?
                message += (
                    f" (a registered model is models:/{parts['model_id']}/<version>, "
                    "/<stage>, /latest or @<alias>)"
                )
            raise Failure(f"{uri} is not in the workbench's {where}: {message}") from None
        raise Failure(f"{uri} cannot be resolved: {message}") from None
    return ResolvedModel(
        f"models:/{mv.name}/{mv.version}",
        mv.name,
        str(mv.version),
        str(mv.source),
        str(mv.run_id or ""),
        f"version {mv.version} of {mv.name!r}",
    )
