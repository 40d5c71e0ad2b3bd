"""A data scientist's first journey: log a run from JupyterLab, find it everywhere it must be.

The run is logged by real MLflow client code inside the jupyter container (as a notebook
would), then looked for in Postgres (psql in the postgres container), on the FTP volume (inside
the ftpd container) and through the REST API from the host, with credentials.
"""

from __future__ import annotations

import hashlib
import json
import urllib.parse

import pytest

from utils.stack import http_session

LOG_RUN = r"""
import hashlib, json, os, tempfile
import mlflow
from mlflow.models import infer_signature
from sklearn.datasets import load_diabetes
from sklearn.linear_model import ElasticNet

EXPERIMENT = {experiment!r}
mlflow.set_experiment(EXPERIMENT)
X, y = load_diabetes(return_X_y=True, as_frame=True)
with mlflow.start_run() as run:
    mlflow.log_params({{"alpha": 0.1, "l1_ratio": 0.5}})
    for step, value in enumerate([3.0, 2.0, 1.5]):
        mlflow.log_metric("rmse", value, step=step)
    mlflow.set_tag("journey", "first")
    model = ElasticNet(alpha=0.1, l1_ratio=0.5).fit(X, y)
    payload = os.urandom(100_000)
    path = os.path.join(tempfile.mkdtemp(), "blob.bin")
    open(path, "wb").write(payload)
    mlflow.log_artifact(path, artifact_path="data")
    info = mlflow.sklearn.log_model(model, name="model", input_example=X.head(3),
                                    signature=infer_signature(X, model.predict(X)))
print(json.dumps({{"run_id": run.info.run_id, "experiment_id": run.info.experiment_id,
                  "artifact_uri": run.info.artifact_uri, "model_id": info.model_id,
                  "blob_sha256": hashlib.sha256(payload).hexdigest()}}))
"""


@pytest.fixture(scope="module")
def logged_run(stack):
    out = stack.python("jupyter", LOG_RUN.format(experiment="journey"))
    return json.loads(out.strip().splitlines()[-1])


def test_run_rows_are_in_postgres(stack, logged_run):
    run_id = logged_run["run_id"]
    assert stack.psql(f"SELECT key, value FROM params WHERE run_uuid = '{run_id}' ORDER BY key") == [
        ["alpha", "0.1"],
        ["l1_ratio", "0.5"],
    ]
    rows = stack.psql(
        f"SELECT step, value FROM metrics WHERE run_uuid = '{run_id}' AND key = 'rmse' ORDER BY step"
    )
    assert [(int(s), float(v)) for s, v in rows] == [(0, 3.0), (1, 2.0), (2, 1.5)]
    assert stack.psql(f"SELECT value FROM tags WHERE run_uuid = '{run_id}' AND key = 'journey'") == [
        ["first"]
    ]


def test_run_files_are_on_the_ftp_volume(stack, logged_run):
    experiment, run_id, model_id = (logged_run[k] for k in ("experiment_id", "run_id", "model_id"))
    base = f"/srv/ftp/artifacts/{experiment}"
    blob = stack.exec("ftpd", "sha256sum", f"{base}/{run_id}/artifacts/data/blob.bin").stdout.split()[0]
    assert blob == logged_run["blob_sha256"]
    files = stack.exec("ftpd", "find", f"{base}/models/{model_id}/artifacts", "-type", "f").stdout
    assert f"{base}/models/{model_id}/artifacts/MLmodel" in files.split()


def test_run_is_served_by_the_rest_api_with_credentials(stack, mlflow_url, admin_auth, logged_run):
    http = http_session(admin_auth)
    run = http.get(
        f"{mlflow_url}/api/2.0/mlflow/runs/get", params={"run_id": logged_run["run_id"]}, timeout=10
    )
    assert run.status_code == 200, run.text
    data = run.json()["run"]["data"]
    assert {p["key"]: p["value"] for p in data["params"]} == {"alpha": "0.1", "l1_ratio": "0.5"}
    assert {m["key"]: m["value"] for m in data["metrics"]} == {"rmse": 1.5}
    blob = http.get(
        f"{mlflow_url}/get-artifact",
        timeout=30,
        params={"run_uuid": logged_run["run_id"], "path": "data/blob.bin"},
    )
    assert blob.status_code == 200
    assert hashlib.sha256(blob.content).hexdigest() == logged_run["blob_sha256"]


def test_artifact_uri_holds_no_ftp_credentials(stack, mlflow_url, admin_auth, logged_run):
    ftp_password = stack.read_secret("ftpd", "ftpd-password")
    assert logged_run["artifact_uri"].startswith("mlflow-artifacts:/")
    http = http_session(admin_auth)
    experiments = http.post(
        f"{mlflow_url}/api/2.0/mlflow/experiments/search", json={"max_results": 1000}, timeout=10
    ).json()["experiments"]
    locations = [e["artifact_location"] for e in experiments]
    assert all(loc.startswith("mlflow-artifacts:/") for loc in locations), locations
    run = http.get(
        f"{mlflow_url}/api/2.0/mlflow/runs/get", params={"run_id": logged_run["run_id"]}, timeout=10
    ).text
    assert "ftp://" not in run and ftp_password not in run


def test_model_registers_takes_an_alias_and_loads_back(stack, unique_name):
    out = stack.python(
        "jupyter",
        f"""
import mlflow, json
from mlflow import MlflowClient
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
X, y = load_iris(return_X_y=True, as_frame=True)
mlflow.set_experiment("registry-journey")
with mlflow.start_run():
    model = LogisticRegression(max_iter=1000).fit(X, y)
    info = mlflow.sklearn.log_model(model, name="model", input_example=X.head(2),
                                    registered_model_name={unique_name!r})
client = MlflowClient()
client.set_registered_model_alias({unique_name!r}, "champion", info.registered_model_version)
loaded = mlflow.pyfunc.load_model("models:/{unique_name}@champion")
print(json.dumps({{"version": int(info.registered_model_version),
                  "same": loaded.predict(X).tolist() == model.predict(X).tolist()}}))
""",
    )
    result = json.loads(out.strip().splitlines()[-1])
    assert result == {"version": 1, "same": True}
    rows = stack.psql(f"SELECT alias, version FROM registered_model_aliases WHERE name = '{unique_name}'")
    assert rows == [["champion", "1"]]


def test_errors_never_show_ftp_credentials_and_missing_is_404(stack, mlflow_url, admin_auth, logged_run):
    ftp_password = stack.read_secret("ftpd", "ftpd-password")
    encoded = urllib.parse.quote(ftp_password, safe="")
    http = http_session(admin_auth)
    base = f"{mlflow_url}/api/2.0/mlflow-artifacts/artifacts/{logged_run['experiment_id']}/{logged_run['run_id']}/artifacts"
    for response in (
        http.get(f"{base}/data/no-such-file.bin", timeout=30),
        http.get(
            f"{mlflow_url}/get-artifact",
            timeout=30,
            params={"run_uuid": logged_run["run_id"], "path": "data/no-such-file.bin"},
        ),
    ):
        assert response.status_code == 404, (response.status_code, response.text[:300])
        for secret in (ftp_password, encoded):
            assert secret not in response.text, "the FTP password is in an error message"
