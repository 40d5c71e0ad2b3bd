"""A thin client over MLflow's REST API, from the host, as the e2e tests look at what code logged.

Only `requests`: the host-side test runner has no MLflow. Every call asserts a 200 and says which
call failed, so a test's failure message reads as what is missing on the server.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import requests

from utils.stack import http_session


@dataclass
class MlflowRest:
    url: str
    auth: tuple[str, str]

    def __post_init__(self) -> None:
        self.http: requests.Session = http_session(self.auth)

    def _get(self, endpoint: str, **params) -> dict:
        response = self.http.get(f"{self.url}/api/2.0/mlflow/{endpoint}", params=params, timeout=30)
        assert response.status_code == 200, (
            f"GET {endpoint} {params}: {response.status_code} {response.text[:500]}"
        )
        return response.json()

    def _post(self, endpoint: str, body: dict) -> dict:
        response = self.http.post(f"{self.url}/api/2.0/mlflow/{endpoint}", json=body, timeout=30)
        assert response.status_code == 200, (
            f"POST {endpoint} {body}: {response.status_code} {response.text[:500]}"
        )
        return response.json()

    def _get_or_none(self, endpoint: str, key: str, **params) -> dict | None:
        """GET an entity; None when the server answers 404 (it does not exist)."""
        response = self.http.get(f"{self.url}/api/2.0/mlflow/{endpoint}", params=params, timeout=30)
        if response.status_code == 404:
            return None
        assert response.status_code == 200, response.text[:500]
        return response.json()[key]

    def experiment(self, name: str) -> dict | None:
        return self._get_or_none("experiments/get-by-name", "experiment", experiment_name=name)

    def runs(self, experiment_name: str, filter: str = "", since_ms: int | None = None) -> list[dict]:
        """Every run of an experiment (optionally started at or after since_ms), newest first."""
        experiment = self.experiment(experiment_name)
        assert experiment, f"experiment {experiment_name!r} does not exist on the server"
        clauses = [c for c in (filter, f"attributes.start_time >= {since_ms}" if since_ms else "") if c]
        runs, token = [], None
        while True:
            body = {
                "experiment_ids": [experiment["experiment_id"]],
                "filter": " and ".join(clauses),
                "max_results": 1000,
                "order_by": ["attributes.start_time DESC"],
            }
            if token:
                body["page_token"] = token
            page = self._post("runs/search", body)
            runs += page.get("runs", [])
            token = page.get("next_page_token")
            if not token:
                return runs

    def artifacts(self, run_id: str, path: str = "") -> list[str]:
        """Every file under path in a run's artifacts, recursively (paths relative to the root)."""
        listing = self._get("artifacts/list", run_id=run_id, **({"path": path} if path else {}))
        files = []
        for entry in listing.get("files", []):
            files += self.artifacts(run_id, entry["path"]) if entry["is_dir"] else [entry["path"]]
        return files

    def metric_history(self, run_id: str, key: str) -> list[tuple[int, float]]:
        history = self._get("metrics/get-history", run_id=run_id, metric_key=key).get("metrics", [])
        return sorted((int(m.get("step", 0)), m["value"]) for m in history)

    def logged_models(self, experiment_id: str, run_id: str) -> list[dict]:
        found = self._post(
            "logged-models/search",
            {"experiment_ids": [experiment_id], "filter": f"source_run_id = '{run_id}'"},
        )
        return [m["info"] for m in found.get("models", [])]

    def registered_model(self, name: str) -> dict | None:
        return self._get_or_none("registered-models/get", "registered_model", name=name)

    def model_version(self, name: str, version: str) -> dict:
        return self._get("model-versions/get", name=name, version=version)["model_version"]

    def model_versions(self, name: str) -> list[dict]:
        found = self._get("model-versions/search", filter=f"name = '{name}'", max_results=1000)
        return found.get("model_versions", [])


def tags(entity: dict) -> dict[str, str]:
    """A run's, experiment's or model version's tags as a dict (runs keep them under data)."""
    raw = entity.get("data", entity).get("tags", [])
    return {t["key"]: t["value"] for t in raw}


def params(run: dict) -> dict[str, str]:
    return {p["key"]: p["value"] for p in run["data"].get("params", [])}


def metrics(run: dict) -> dict[str, float]:
    return {m["key"]: m["value"] for m in run["data"].get("metrics", [])}


def now_ms() -> int:
    """The host's clock: the containers share it, and runs carry the client's start time."""
    return int(time.time() * 1000)
