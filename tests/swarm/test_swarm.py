"""The workbench on a one-node Docker Swarm (swarm/README.md): `make deploy`, a run logged from
JupyterLab, a model served with 2 replicas, scaled to 3, rolled to version 2, and `make deploy-rm`.

Needs an engine that is a Swarm manager (`make swarm-init`; .ci/run does it before the suite):
the test does not turn a developer's engine into one, as that cuts the DNS of the Compose stacks
running on it (machine notes, section 8). One test: each step needs the one before.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid

import pytest
import requests

from utils.serving import bearer, free_port
from utils.stack import REPO
from utils.wait import wait_until

# Trains, registers and aliases a model in JupyterLab's task, as a notebook would (MLflow's
# docs, "Track machine learning training", https://mlflow.org/docs/latest/ml/tracking/quickstart/:
# set_experiment, start_run, log_params/log_metric, sklearn.log_model with registered_model_name).
TRAIN = """
import sys, mlflow
from mlflow import MlflowClient
from sklearn.datasets import load_diabetes
from sklearn.dummy import DummyRegressor
from sklearn.linear_model import LinearRegression
name, kind = sys.argv[1], sys.argv[2]
X, y = load_diabetes(return_X_y=True, as_frame=True)
mlflow.set_experiment(name)
with mlflow.start_run() as run:
    model = LinearRegression() if kind == "linear" else DummyRegressor(strategy="constant", constant=42.0)
    model.fit(X, y)
    mlflow.log_params({"kind": kind})
    mlflow.log_metric("r2", model.score(X, y))
    mlflow.log_text("swarm", "notes/where.txt")
    info = mlflow.sklearn.log_model(model, name="model", input_example=X.head(2), registered_model_name=name)
MlflowClient().set_registered_model_alias(name, "champion", info.registered_model_version)
print(run.info.run_id, info.registered_model_version)
"""


def manager() -> bool:
    state = subprocess.run(
        ["docker", "info", "--format", "{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    return state == "active true"


pytestmark = pytest.mark.skipif(
    not manager(),
    reason="the Docker engine is not a Swarm manager: run `make swarm-init` first (.ci/run does)",
)


def task_container(stack: str, service: str) -> str:
    ids = subprocess.run(
        ["docker", "ps", "-q", "--filter", f"label=com.docker.swarm.service.name={stack}_{service}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert ids, f"no running task of {stack}_{service}"
    return ids[0]


def docker_exec(stack: str, service: str, *command: str, stdin: str | None = None) -> str:
    result = subprocess.run(
        ["docker", "exec", "-i", task_container(stack, service), *command],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def replicas(service: str) -> tuple[int, int]:
    """Running and wanted tasks of a Swarm service (`docker service ls`'s REPLICAS)."""
    out = subprocess.run(
        ["docker", "service", "ls", "--filter", f"name={service}", "--format", "{{.Name}} {{.Replicas}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    line = next(line for line in out if line.split(" ")[0] == service)
    running, wanted = line.split(" ")[1].split("/")
    return int(running), int(wanted)


def docker_ids(*command: str) -> list[str]:
    return subprocess.run(["docker", *command], capture_output=True, text=True, check=True).stdout.split()


def service_image(service: str) -> str:
    return subprocess.run(
        ["docker", "service", "inspect", "-f", "{{.Spec.TaskTemplate.ContainerSpec.Image}}", service],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


@pytest.fixture(scope="module")
def swarm(tmp_path_factory):
    stack = f"wbswarm{uuid.uuid4().hex[:6]}"
    directory = tmp_path_factory.mktemp("swarm")
    env_file = directory / "test.env"
    env_file.write_text("WORKBENCH_VERSION=local\n")
    settings = {
        "STACK": stack,
        "ENV_FILE": str(env_file),
        "WORKBENCH_SWARM_SECRETS_DIR": str(directory / "secrets"),
        "WORKBENCH_MLFLOW_PORT": str(free_port()),
        "WORKBENCH_JUPYTER_PORT": str(free_port()),
        "MLFLOW_SERVER_REPLICAS": "2",
    }

    def make(target: str, **more: str) -> subprocess.CompletedProcess:
        result = subprocess.run(
            ["make", "--no-print-directory", target],
            cwd=REPO,
            env={**os.environ, **settings, **more},
            capture_output=True,
            text=True,
            timeout=1800,
        )
        print(f"$ make {target} {more}\n{result.stdout}{result.stderr}")
        return result

    yield stack, settings, make
    make("deploy-rm")
    volumes = docker_ids("volume", "ls", "-q", "--filter", f"name={stack}_")
    subprocess.run(["docker", "volume", "rm", "-f", *volumes], capture_output=True)
    shutil.rmtree(directory, ignore_errors=True)


def test_deploy_log_serve_scale_update_remove(swarm, figure):
    stack, settings, make = swarm
    secrets = settings["WORKBENCH_SWARM_SECRETS_DIR"]
    mlflow = f"http://127.0.0.1:{settings['WORKBENCH_MLFLOW_PORT']}"

    # 1. Deploy: every service converged, two tracking servers behind the edge.
    result = make("deploy")
    assert result.returncode == 0, result.stdout + result.stderr
    assert replicas(f"{stack}_mlflow-server") == (2, 2)
    for service in ("postgres", "ftpd", "jupyter", "edge"):
        assert replicas(f"{stack}_{service}") == (1, 1), service
    admin = ("admin", open(f"{secrets}/mlflow-admin-password").read())
    assert (
        requests.get(f"{mlflow}/api/2.0/mlflow/experiments/search?max_results=1", timeout=10).status_code
        == 401
    )
    # The secrets are Swarm secrets, owned by the service's user, not files in a volume.
    assert (
        docker_exec(stack, "mlflow-server", "stat", "-c", "%u %a", "/run/secrets/mlflow-admin-password")
        == "1002 400\n"
    )

    # 2. A run logged from JupyterLab's task (through the edge to either tracking server): its row
    # in Postgres, its artifact on the FTP volume, and the same run read back from the host.
    name = f"swarm-{uuid.uuid4().hex[:8]}"
    run_id, version = docker_exec(stack, "jupyter", "python3", "-", name, "linear", stdin=TRAIN).split()[-2:]
    assert version == "1"
    rows = docker_exec(
        stack,
        "postgres",
        "psql",
        "-U",
        "postgres",
        "-d",
        "mlflow",
        "-tAc",
        f"SELECT p.value FROM runs r JOIN params p USING (run_uuid) WHERE r.run_uuid = '{run_id}' AND p.key = 'kind'",
    )
    assert rows.strip() == "linear"
    files = docker_exec(stack, "ftpd", "find", "/srv/ftp", "-path", f"*{run_id}*", "-name", "where.txt")
    assert files.strip(), f"no artifact of run {run_id} on the FTP volume"
    for _ in range(4):  # a few times: the edge balances the two servers
        answer = requests.get(
            f"{mlflow}/api/2.0/mlflow/runs/get", params={"run_id": run_id}, auth=admin, timeout=30
        )
        assert answer.status_code == 200 and answer.json()["run"]["data"]["params"] == [
            {"key": "kind", "value": "linear"}
        ]

    # 3. The model served with 2 replicas behind its gateway, which asks for a key.
    port = free_port()
    model = f"models:/{name}@champion"
    result = make("deploy-serve", MODEL=model, PORT=str(port), REPLICAS="2")
    assert result.returncode == 0, result.stdout + result.stderr
    service = f"{stack}-serve-{port}_serve-{port}-model"
    assert replicas(service) == (2, 2)
    result = make("serve-key", PROJECT=stack, NAME="swarm-test")
    assert result.returncode == 0, result.stdout + result.stderr
    key = next(line for line in result.stdout.splitlines() if line.startswith("wbk_"))
    url = f"http://127.0.0.1:{port}/invocations"
    body = {
        "dataframe_split": {
            "columns": ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"],
            "data": [[0.03, 0.05, 0.06, 0.02, -0.04, -0.03, -0.04, 0.0, 0.02, -0.02]],
        }
    }
    assert requests.post(url, json=body, timeout=30).status_code == 401
    answer = requests.post(url, json=body, headers=bearer(key), timeout=30)
    assert answer.status_code == 200, answer.text
    linear = answer.json()["predictions"][0]
    assert linear != 42.0

    # 4. Scaled to 3: three tasks, each UP in the gateway.
    result = make("deploy-serve", MODEL=model, PORT=str(port), REPLICAS="3")
    assert result.returncode == 0, result.stdout + result.stderr
    assert replicas(service) == (3, 3)

    def up_in_gateway() -> int:
        gateway = task_container(f"{stack}-serve-{port}", f"serve-{port}")
        listing = subprocess.run(
            ["docker", "exec", gateway, "gateway-replicas", "list"], capture_output=True, text=True
        )
        return sum(line.split("\t")[2] == "UP" for line in listing.stdout.splitlines())

    wait_until(lambda: up_in_gateway() == 3, timeout=60, what="3 replicas UP in the gateway")

    # 5. Version 2 registered and made champion, deployed again: a rolling update (start-first),
    # after which every answer is version 2's.
    run_2, version = docker_exec(stack, "jupyter", "python3", "-", name, "constant", stdin=TRAIN).split()[-2:]
    assert version == "2"
    image_1 = service_image(service)
    result = make("deploy-serve", MODEL=model, PORT=str(port), REPLICAS="3")
    assert result.returncode == 0, result.stdout + result.stderr
    assert service_image(service) != image_1
    assert replicas(service) == (3, 3)
    answers = {
        requests.post(url, json=body, headers=bearer(key), timeout=30).json()["predictions"][0]
        for _ in range(12)
    }
    assert answers == {42.0}, answers
    figure(
        f"[swarm] one-node swarm: 2 tracking servers, a model on 2 -> 3 replicas, rolled v1 -> v2 (predictions {linear:.1f} -> 42.0)"
    )

    # 6. Removed: no service, no container of the stacks; the data volume stays.
    result = make("deploy-rm")
    assert result.returncode == 0, result.stdout + result.stderr
    assert docker_ids("service", "ls", "-q", "--filter", f"name={stack}") == []
    assert docker_ids("network", "ls", "-q", "--filter", f"name={stack}_") == []
    assert docker_ids("volume", "ls", "-q", "--filter", f"name={stack}_postgres-data") == [
        f"{stack}_postgres-data"
    ]
