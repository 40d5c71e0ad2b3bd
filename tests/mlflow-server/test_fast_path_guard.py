"""The fast paths (mlflow-server/server-app/) run only on the MLflow they were verified with.

create_app resolves every MLflow name they use, compares MLflow's version, its middleware list and
the database's schema revision with what they were verified with, and otherwise starts with them
off: MLflow's own app answers everything, one log line says why, and so do GET /health/fast-paths
and the workbench_fast_paths_enabled gauge. Tried here with a real server start on an MLflow that
says it is 3.99.0 (conftest.py), and in the server's image with a name removed, a function's
parameters changed, and a middleware they do not know.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from utils.stack import http_session

# The one MLflow pin: after a bump the fast paths must be verified again (mlflow-server/README.md,
# "Upgrading MLflow"), and until then the first test says so.
PINNED_MLFLOW = re.search(
    r"^mlflow\[auth\]==(\S+)",
    (Path(__file__).parents[2] / "mlflow-server" / "requirements.in").read_text(),
    re.M,
).group(1)


def status(url: str) -> dict:
    response = http_session().get(f"{url}/health/fast-paths", timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def gauge(http, url: str) -> float:
    text = http.get(f"{url}/metrics", timeout=10).text
    match = re.search(r"^workbench_fast_paths_enabled(?:\{[^}]*\})? (\S+)$", text, re.M)
    assert match, "no workbench_fast_paths_enabled at /metrics"
    return float(match.group(1))


def fast_path_answers(http, url: str) -> float:
    text = http.get(f"{url}/metrics", timeout=10).text
    return sum(
        float(n)
        for n in re.findall(
            r'^workbench_fast_path_requests_total\{[^}]*path="fast"[^}]*\} (\S+)$', text, re.M
        )
    )


def test_the_stacks_server_runs_its_fast_paths(mlflow_url, admin_auth):
    assert status(mlflow_url) == {
        "fast_paths": "on",
        "reason": None,
        "mlflow_version": PINNED_MLFLOW,
        "verified_mlflow_version": PINNED_MLFLOW,
    }
    assert gauge(http_session(admin_auth), mlflow_url) == 1


def test_an_mlflow_they_were_not_verified_with_starts_them_off(
    stack, unverified_mlflow_server, admin_auth, unique_name
):
    url = unverified_mlflow_server.url
    answer = status(url)
    assert answer["fast_paths"] == "off" and answer["mlflow_version"] == "3.99.0", answer
    reason = f"MLflow 3.99.0 is not the version they were verified with ({PINNED_MLFLOW})"
    assert answer["reason"] == reason
    logs = subprocess.run(
        ["docker", "logs", unverified_mlflow_server.container], capture_output=True, text=True, check=False
    )
    assert f"fast paths OFF ({reason})" in logs.stdout + logs.stderr
    http = http_session(admin_auth)
    assert gauge(http, url) == 0

    # MLflow's own app answers what the fast paths would have: a metric, an upload, a download.
    before = fast_path_answers(http, url)
    experiment = http.post(f"{url}/api/2.0/mlflow/experiments/create", json={"name": unique_name}, timeout=30)
    assert experiment.status_code == 200, experiment.text
    experiment_id = experiment.json()["experiment_id"]
    run = http.post(f"{url}/api/2.0/mlflow/runs/create", json={"experiment_id": experiment_id}, timeout=30)
    run_id = run.json()["run"]["info"]["run_id"]
    logged = http.post(
        f"{url}/api/2.0/mlflow/runs/log-metric",
        timeout=30,
        json={"run_id": run_id, "key": "loss", "value": 0.5, "timestamp": 1, "step": 2},
    )
    assert logged.status_code == 200, logged.text
    assert stack.psql(f"SELECT key, value, step FROM metrics WHERE run_uuid = '{run_id}'") == [
        ["loss", "0.5", "2"]
    ]
    path = f"{url}/api/2.0/mlflow-artifacts/artifacts/{experiment_id}/{run_id}/artifacts/note.txt"
    assert http.put(path, data=b"answered by MLflow", timeout=30).status_code == 200
    assert http.get(path, timeout=30).content == b"answered by MLflow"
    assert fast_path_answers(http, url) == before  # none of it by a fast path


# Each change an MLflow release could make, applied in the server's image before the check runs,
# and the reason the fast paths give for staying off.
CHANGED_MLFLOW = r"""
import mlflow.server.auth, mlflow.utils.validation, os, urllib.parse
from starlette.middleware.gzip import GZipMiddleware
from mlflow.server import app as flask_app
from mlflow.server.fastapi_app import create_fastapi_app
import workbench_server_app as w

# The database URI the entrypoint gives the server (the schema revision is one of the checks).
password = urllib.parse.quote(open("/run/secrets/mlflow-db-password").read(), safe="")
os.environ["MLFLOW_BACKEND_STORE_URI"] = f"postgresql+psycopg2://mlflow:{password}@postgres:5432/mlflow"

def reason(app=None):
    return w._why_fast_paths_are_off(app)[0]

app = create_fastapi_app(flask_app)
mlflow.server.auth.add_fastapi_permission_middleware(app)
print("as built:", reason(app))
os.environ["WORKBENCH_FAST_PATHS"] = "false"
print("switched off:", reason(app))
del os.environ["WORKBENCH_FAST_PATHS"]
app.add_middleware(GZipMiddleware)
print("a middleware more:", reason(app))
validate_metric = mlflow.utils.validation._validate_metric
mlflow.utils.validation._validate_metric = lambda key, value, timestamp, step: None
print("parameters changed:", reason())
mlflow.utils.validation._validate_metric = validate_metric
del mlflow.server.auth._find_fastapi_validator
print("a name gone:", reason())
"""


def test_a_changed_mlflow_name_or_middleware_starts_them_off(stack):
    out = stack.python("mlflow-server", CHANGED_MLFLOW)
    assert "as built: None" in out, out
    assert "switched off: WORKBENCH_FAST_PATHS=false" in out
    assert (
        "a middleware more: MLflow's app has a middleware the fast paths do not know: GZipMiddleware" in out
    )
    assert (
        "parameters changed: mlflow.utils.validation._validate_metric changed: parameters "
        "('key', 'value', 'timestamp', 'step'), verified with ('key', 'value', 'timestamp', 'step', 'path')"
    ) in out
    assert "a name gone: mlflow.server.auth._find_fastapi_validator is gone" in out
