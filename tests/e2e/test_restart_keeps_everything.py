"""`docker compose down` (volumes kept) then up again: every run, metric, model version and
artifact is still there, artifacts byte for byte."""

from __future__ import annotations

import hashlib
import json

import pytest

from utils.stack import http_session

SNAPSHOT = """
import hashlib, json, mlflow
from mlflow import MlflowClient
client = MlflowClient()
exp = client.get_experiment_by_name("persistence")
runs = client.search_runs([exp.experiment_id])
out = {"runs": {}, "versions": {}}
for run in runs:
    files = {}
    for f in client.list_artifacts(run.info.run_id, "data"):
        path = client.download_artifacts(run.info.run_id, f.path)
        files[f.path] = hashlib.sha256(open(path, "rb").read()).hexdigest()
    history = [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "loss")]
    out["runs"][run.info.run_id] = {"params": run.data.params, "loss": history, "files": files}
for mv in client.search_model_versions("name = 'persistence-model'"):
    out["versions"][mv.version] = {"run_id": mv.run_id, "aliases": sorted(mv.aliases)}
print(json.dumps(out, sort_keys=True))
"""

CREATE = """
import os, tempfile, mlflow
from mlflow import MlflowClient
from sklearn.datasets import load_wine
from sklearn.linear_model import LogisticRegression
mlflow.set_experiment("persistence")
X, y = load_wine(return_X_y=True, as_frame=True)
for i in range(2):
    with mlflow.start_run():
        mlflow.log_param("i", i)
        for step in range(50):
            mlflow.log_metric("loss", 1.0 / (step + 1 + i), step=step)
        d = tempfile.mkdtemp()
        for name, size in (("small.txt", 10), ("big.bin", 3_000_000)):
            open(os.path.join(d, name), "wb").write(os.urandom(size))
        mlflow.log_artifacts(d, artifact_path="data")
        info = mlflow.sklearn.log_model(LogisticRegression(max_iter=2000).fit(X, y), name="model",
                                        registered_model_name="persistence-model")
MlflowClient().set_registered_model_alias("persistence-model", "champion", 2)
"""


@pytest.mark.slow
def test_down_and_up_keeps_runs_metrics_versions_and_artifacts(stack, admin_auth):
    stack.python("jupyter", CREATE)
    before = json.loads(stack.python("jupyter", SNAPSHOT).strip().splitlines()[-1])
    assert len(before["runs"]) == 2 and len(before["versions"]) == 2
    ftp_before = stack.exec("ftpd", "sh", "-c",
                            "cd /srv/ftp && find . -type f -print0 | sort -z | xargs -0 sha256sum").stdout

    stack.down()  # volumes kept
    stack.up()

    after = json.loads(stack.python("jupyter", SNAPSHOT).strip().splitlines()[-1])
    assert after == before
    ftp_after = stack.exec("ftpd", "sh", "-c",
                           "cd /srv/ftp && find . -type f -print0 | sort -z | xargs -0 sha256sum").stdout
    assert ftp_after == ftp_before
    # And through the REST API from the host, with the same credentials as before.
    mlflow_url = stack.url("mlflow-server", 5000)
    run_id = next(iter(before["runs"]))
    blob = http_session(admin_auth).get(f"{mlflow_url}/get-artifact", timeout=30,
                                        params={"run_uuid": run_id, "path": "data/big.bin"})
    assert hashlib.sha256(blob.content).hexdigest() == before["runs"][run_id]["files"]["data/big.bin"]
