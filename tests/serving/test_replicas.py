"""`make serve REPLICAS=3`: replicas behind the gateway, a killed one, a rolling update (issue 15 §2).

Black-box, under load: a bounded client (4 threads on 127.0.0.1, one keep-alive connection each,
no retries of its own) sends predictions through the gateway while a replica is killed, and while
`make serve` runs again after the registered model's alias moved from version 1 to version 2.
Version 1 always predicts 1.0 and version 2 always 2.0, so every answer says which version gave
it. What is counted (requests, failures, p50 and p99 latency, the answers' versions) goes to the
figures section of the run and is asserted: no failed request, and only version 2 once the roll
is done.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import threading
import time
import uuid

import pytest
import requests

from utils.serving import bearer, free_port, issue_key, model_images_removed_afterwards, serve

pytestmark = pytest.mark.slow

# Two versions of one registered model (scikit-learn's DummyRegressor), told apart by their answer.
REGISTER = r"""
import json
import mlflow
import pandas as pd
from mlflow import MlflowClient
from sklearn.dummy import DummyRegressor

NAME = {name!r}
X = pd.DataFrame({{"x": [0.0, 1.0, 2.0]}})
mlflow.set_experiment("replica-tests")
for constant in (1.0, 2.0):
    with mlflow.start_run():
        model = DummyRegressor(strategy="constant", constant=constant).fit(X, [constant] * 3)
        mlflow.sklearn.log_model(model, name="model", input_example=X, registered_model_name=NAME)
MlflowClient().set_registered_model_alias(NAME, "champion", "1")
print(json.dumps({{"ok": True}}))
"""

MOVE_ALIAS = r"""
from mlflow import MlflowClient
MlflowClient().set_registered_model_alias({name!r}, "champion", {version!r})
"""

REPLICAS = 3
CLIENTS = 4
BODY = json.dumps({"dataframe_split": {"columns": ["x"], "data": [[0.5]]}})


@pytest.fixture(scope="module")
def model(stack):
    name = f"replicas-{uuid.uuid4().hex[:8]}"
    out = stack.python("jupyter", REGISTER.format(name=name))
    assert json.loads(out.strip().splitlines()[-1]) == {"ok": True}
    return name


@pytest.fixture(scope="module")
def served(stack, model):
    """models:/<model>@champion (version 1) in 3 replicas, 1 worker each (2 cores)."""
    port = free_port()
    uri = f"models:/{model}@champion"
    settings = {"MODEL": uri, "PORT": str(port), "REPLICAS": str(REPLICAS), "WORKERS": "1"}
    with model_images_removed_afterwards(model):
        try:
            result = serve(stack, "serve", **settings)
            assert result.returncode == 0, f"{result.stdout[-6000:]}\n{result.stderr[-4000:]}"
            key = issue_key(stack, f"replica-tests-{uuid.uuid4().hex[:8]}")
            yield {
                "url": f"http://127.0.0.1:{port}",
                "port": port,
                "uri": uri,
                "key": key,
                "settings": settings,
                "output": result.stdout,
            }
        finally:
            serve(stack, "stop", MODEL=uri, PORT="")


def replicas(stack, port: int) -> list[dict]:
    ids = subprocess.run(
        [
            "docker",
            "ps",
            "-a",
            "-q",
            "--filter",
            "label=org.workbench.serving=true",
            "--filter",
            f"label=org.workbench.project={stack.project}",
            "--filter",
            f"label=org.workbench.serving.port={port}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    if not ids:
        return []
    return json.loads(
        subprocess.run(["docker", "inspect", *ids], capture_output=True, text=True, check=True).stdout
    )


def gateway_view(stack, port: int) -> list[dict]:
    """The gateway's slots that hold a replica: address, status, requests answered."""
    out = subprocess.run(
        ["docker", "exec", f"{stack.project}-gateway-p{port}", "gateway-replicas", "list"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rows = [line.split("\t") for line in out.splitlines()]
    return [
        {"slot": r[0], "addr": r[1], "status": r[2], "answered": int(r[5])}
        for r in rows
        if r[1] not in ("", "-", "0.0.0.0")
    ]


class Load:
    """CLIENTS threads POSTing /invocations through the gateway until stopped. Each request's
    start time, latency, outcome and answer are kept."""

    def __init__(self, url: str, key: str):
        self.url, self.key = f"{url}/invocations", key
        self.results: list[tuple[float, float, str, float | None]] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(CLIENTS)]

    def _run(self):
        session = requests.Session()  # no retries: a failure the gateway lets through is counted
        headers = {"Content-Type": "application/json", **bearer(self.key)}
        while not self._stop.is_set():
            start = time.monotonic()
            answer, outcome = None, "ok"
            try:
                r = session.post(self.url, data=BODY, headers=headers, timeout=60)
                if r.status_code == 200:
                    answer = float(r.json()["predictions"][0])
                else:
                    outcome = f"HTTP {r.status_code}: {r.text[:200]}"
            except requests.RequestException as exc:
                outcome = f"{type(exc).__name__}: {exc}"
            with self._lock:
                self.results.append((start, time.monotonic() - start, outcome, answer))

    def __enter__(self):
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for t in self._threads:
            t.join(timeout=90)

    def summary(self, what: str, since: float = 0.0) -> str:
        done = [r for r in self.results if r[0] >= since]
        latencies = sorted(r[1] * 1000 for r in done)
        failed = [r for r in done if r[2] != "ok"]
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
        return (
            f"{what}: {len(done)} requests from {CLIENTS} clients, {len(failed)} failed, "
            f"p50 {statistics.median(latencies):.0f} ms, p99 {p99:.0f} ms, max {latencies[-1]:.0f} ms"
        )


def test_replicas_run_behind_the_gateway_and_share_the_requests(stack, served):
    running = [c for c in replicas(stack, served["port"]) if c["State"]["Health"]["Status"] == "healthy"]
    assert len(running) == REPLICAS, [c["Name"] for c in replicas(stack, served["port"])]
    assert "replicas" in served["output"] and f"({REPLICAS}; each" in served["output"]
    session, headers = requests.Session(), {"Content-Type": "application/json", **bearer(served["key"])}
    for _ in range(30):
        r = session.post(f"{served['url']}/invocations", data=BODY, headers=headers, timeout=30)
        assert r.status_code == 200 and r.json()["predictions"] == [1.0], r.text
    view = gateway_view(stack, served["port"])
    addresses = {c["NetworkSettings"]["Networks"][f"{stack.project}_frontend"]["IPAddress"] for c in running}
    assert {s["addr"] for s in view} == addresses, view
    assert all(s["status"].startswith("UP") for s in view), view
    assert all(s["answered"] > 0 for s in view), f"a replica got no request: {view}"


def test_killing_a_replica_under_load_fails_no_request(stack, served, figure):
    victim = replicas(stack, served["port"])[0]
    with Load(served["url"], served["key"]) as load:
        time.sleep(3)
        subprocess.run(["docker", "kill", victim["Id"]], capture_output=True, check=True)
        killed_at = time.monotonic()
        time.sleep(8)
    text = load.summary("a replica killed under load (kill at 3 s, 8 s after)")
    figure(text)
    failed = [r for r in load.results if r[2] != "ok"]
    assert not failed, f"{text}\n{failed[:5]}"
    assert len([r for r in load.results if r[0] > killed_at]) > 0, "no request after the kill"
    assert {r[3] for r in load.results} == {1.0}
    # The gateway took the dead replica out (health check) and the others answered.
    view = gateway_view(stack, served["port"])
    dead = victim["NetworkSettings"]["Networks"][f"{stack.project}_frontend"]["IPAddress"]
    assert not any(s["addr"] == dead and s["status"].startswith("UP") for s in view), view
    assert sum(s["status"].startswith("UP") for s in view) >= REPLICAS - 1, view


def test_a_rolling_update_to_the_aliased_version_fails_no_request(stack, served, model, figure):
    stack.python("jupyter", MOVE_ALIAS.format(name=model, version="2"))
    with Load(served["url"], served["key"]) as load:
        time.sleep(2)
        started = time.monotonic()
        result = serve(stack, "serve", **served["settings"])
        rolled = time.monotonic()
        time.sleep(3)
    assert result.returncode == 0, f"{result.stdout[-6000:]}\n{result.stderr[-4000:]}"
    assert "rolling" in result.stdout, result.stdout[-3000:]
    during = [r for r in load.results if started <= r[0] < rolled]
    after = [r for r in load.results if r[0] >= rolled]
    text = load.summary(
        f"rolling update v1 -> v2 of {REPLICAS} replicas ({rolled - started:.0f} s)", since=started
    )
    figure(text)
    failed = [r for r in load.results if r[2] != "ok"]
    assert not failed, f"{text}\n{failed[:5]}"
    assert {r[3] for r in during} <= {1.0, 2.0} and 2.0 in {r[3] for r in during}, text
    assert after and {r[3] for r in after} == {2.0}, "an answer from version 1 after the roll"
    # Only version 2's replicas are left, every one of them healthy and up in the gateway.
    left = replicas(stack, served["port"])
    assert len(left) == REPLICAS, [c["Name"] for c in left]
    assert {c["Config"]["Labels"]["org.workbench.model.version"] for c in left} == {"2"}
    assert sum(s["status"].startswith("UP") for s in gateway_view(stack, served["port"])) == REPLICAS


@pytest.mark.parametrize("replicas_setting", ["0", "17", "3x", "-1"])
def test_a_replica_count_that_is_not_1_to_16_is_refused(stack, replicas_setting):
    result = serve(
        stack, "serve", MODEL="models:/any@champion", PORT=str(free_port()), REPLICAS=replicas_setting
    )
    assert result.returncode != 0
    assert f"REPLICAS={replicas_setting} is not a number of replicas from 1 to 16" in result.stderr
