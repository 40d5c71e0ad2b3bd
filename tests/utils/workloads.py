"""Client code run inside the jupyter container to create, and then fingerprint, a workbench's
content: runs with params, metric histories and artifacts, and registered model versions with
an alias. Two fingerprints are equal when nothing was lost or changed."""

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
    out["versions"][mv.version] = {"run_id": mv.run_id, "aliases": sorted(mv.aliases),
                                   "source": mv.source}
print(json.dumps(out, sort_keys=True))
"""

# sha256 of every file on the FTP volume, sorted: the artifact tree byte for byte.
FTP_CHECKSUMS = ["sh", "-c", "cd /srv/ftp && find . -type f -print0 | sort -z | xargs -0 -r sha256sum"]

# The audit trail (mlflow-server/server-app/workbench_audit.py), every row and column, for
# stack.psql: CREATE's calls leave rows there, and a restart or a restore must keep them all.
AUDIT_TRAIL = "SELECT id, at, username, method, route, status, targets::text FROM workbench_audit ORDER BY id"
