"""The exercise checks' connection to your MLflow server: only `requests`, the REST API.

`make exercise-check` runs them in the workbench's jupyter container, whose environment already
holds the server's URL and credentials. Settings (environment variables):
  MLFLOW_TRACKING_URI       the server, as seen from where the checks run (http://127.0.0.1:5000;
                            in the jupyter container http://mlflow-server:5000)
  MLFLOW_TRACKING_USERNAME  default admin
  MLFLOW_TRACKING_PASSWORD  the admin password (`make credentials` prints it), or
  MLFLOW_TRACKING_PASSWORD_FILE  a file holding it (the jupyter container's secret)
  EXERCISE_EXPERIMENT       default Tracking-Exercise
  EXERCISE_MODEL            default IrisModel
  WORKBENCH_SERVING_URL     the model server of exercise 3, e.g. http://serve-5002:8080 from the jupyter
                            container (its check is skipped without it; make exercise-check sets it)
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import requests


class Server:
    def __init__(self, url: str, auth: tuple[str, str]):
        self.url, self.http = url.rstrip("/"), requests.Session()
        self.http.auth = auth

    def call(self, method: str, endpoint: str, **kwargs) -> requests.Response:
        try:
            response = self.http.request(
                method, f"{self.url}/api/2.0/mlflow/{endpoint}", timeout=30, **kwargs
            )
        except requests.ConnectionError:
            response = None
        if response is None:
            pytest.fail(
                f"cannot reach the MLflow server at {self.url}: is the workbench up "
                "(`make up`)? is MLFLOW_TRACKING_URI right?",
                pytrace=False,
            )
        if response.status_code in (401, 403):
            pytest.fail(
                f"the MLflow server at {self.url} refused the credentials "
                "(MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD)",
                pytrace=False,
            )
        return response

    def get(self, endpoint: str, **params) -> dict | None:
        response = self.call("GET", endpoint, params=params)
        if response.status_code == 404 or (
            response.status_code == 400 and "RESOURCE_DOES_NOT_EXIST" in response.text
        ):
            return None
        assert response.status_code == 200, f"GET {endpoint}: {response.status_code} {response.text[:300]}"
        return response.json()

    def post(self, endpoint: str, body: dict) -> dict:
        response = self.call("POST", endpoint, json=body)
        assert response.status_code == 200, f"POST {endpoint}: {response.status_code} {response.text[:300]}"
        return response.json()

    def artifacts(self, run_id: str, path: str) -> list[str]:
        """The files under path in a run's artifacts (recursively); [] if there is none."""
        listing = self.get("artifacts/list", run_id=run_id, path=path) or {}
        files = []
        for entry in listing.get("files", []):
            files += self.artifacts(run_id, entry["path"]) if entry["is_dir"] else [entry["path"]]
        return files


@pytest.fixture(scope="session")
def server() -> Server:
    password = os.environ.get("MLFLOW_TRACKING_PASSWORD")
    if not password and os.environ.get("MLFLOW_TRACKING_PASSWORD_FILE"):
        password = Path(os.environ["MLFLOW_TRACKING_PASSWORD_FILE"]).read_text()
    if not password:
        pytest.fail(
            "MLFLOW_TRACKING_PASSWORD(_FILE) is not set: run the checks with `make exercise-check`, "
            "or set MLFLOW_TRACKING_URI / _USERNAME / _PASSWORD yourself",
            pytrace=False,
        )
    return Server(
        os.environ.get("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000"),
        (os.environ.get("MLFLOW_TRACKING_USERNAME", "admin"), password),
    )


@pytest.fixture(scope="session")
def experiment_name() -> str:
    return os.environ.get("EXERCISE_EXPERIMENT") or "Tracking-Exercise"


@pytest.fixture(scope="session")
def model_name() -> str:
    return os.environ.get("EXERCISE_MODEL") or "IrisModel"
