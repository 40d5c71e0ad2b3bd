"""The workbench's server app (mlflow-server/server-app/): metric writes and artifact transfers on
fast paths, downloads streamed from FTP. Real effects: the rows in Postgres, compared with the rows MLflow's own store
writes for the same calls; which path answered, from the server's Prometheus counters; the bytes
and headers a client gets.

Every test runs twice (the `server` fixture, conftest.py): against the stack's server, fast paths
on, and against a second server of the stack whose fast paths are off, where MLflow's own app
answers everything. The rows, the answers and the permissions must be the same; only the
counters (nothing on a fast path when they are off) and the download's headers differ.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time

import pytest

from utils.stack import http_session

NOW = 1_700_000_000_000
# Calls as a client sends them (JSON as MLflow's client writes it, int64s as numbers or strings,
# doubles as numbers or "NaN"/"Infinity"), each with the path it takes: "fast", or "handed-on"
# to MLflow (a metric equal to one already stored).
CALLS = [
    ("log-metric", {"key": "loss", "value": 0.5, "timestamp": NOW, "step": 0}, "fast"),
    ("log-metric", {"key": "loss", "value": 0.25, "timestamp": NOW + 1, "step": 1}, "fast"),
    # The same step, later: the new latest value. An older step, later: not the latest.
    ("log-metric", {"key": "loss", "value": 0.75, "timestamp": NOW + 2, "step": 1}, "fast"),
    ("log-metric", {"key": "loss", "value": 9.0, "timestamp": NOW + 3, "step": -5}, "fast"),
    # NaN is stored as 0 with is_nan; a real 0 with the same step and time is another row, and
    # not newer than the NaN (MLflow compares step, timestamp, value).
    ("log-metric", {"key": "acc", "value": "NaN", "timestamp": NOW, "step": 3}, "fast"),
    ("log-metric", {"key": "acc", "value": 0, "timestamp": NOW, "step": 3}, "fast"),
    ("log-metric", {"key": "big", "value": "Infinity", "timestamp": str(NOW), "step": "7"}, "fast"),
    ("log-metric", {"key": "big", "value": "-Infinity", "timestamp": NOW, "step": 8}, "fast"),
    ("log-metric", {"key": "no step", "value": 3, "timestamp": NOW}, "fast"),
    ("log-metric", {"key": "loss", "value": 0.5, "timestamp": NOW, "step": 0}, "handed-on"),
    (
        "log-batch",
        {
            "metrics": [
                {"key": "b", "value": 1.0, "timestamp": NOW, "step": 2},
                {"key": "b", "value": 1.0, "timestamp": NOW, "step": 2},  # twice in one call: one row
                {"key": "b", "value": 2.0, "timestamp": NOW, "step": 2},  # same step and time, greater
                {"key": "b", "value": "NaN", "timestamp": NOW, "step": 1},
                {"key": "b", "value": "NaN", "timestamp": NOW, "step": 1},
                {"key": "c/d.e-f g", "value": -1e-300, "timestamp": NOW + 5},
                {"key": "loss", "value": 0.1, "timestamp": NOW + 9, "step": 1},
            ]
        },
        "fast",
    ),
    # A training loop's batch: 1,000 metrics over 20 keys, steps out of order.
    (
        "log-batch",
        {
            "metrics": [
                {
                    "key": f"k{i % 20}",
                    "value": (i * 7919 % 1000) / 7,
                    "timestamp": NOW + i % 3,
                    "step": (i * 104729) % 997,
                }
                for i in range(1000)
            ]
        },
        "fast",
    ),
    # One stored metric and one new one: MLflow's store skips the first and writes the second.
    (
        "log-batch",
        {
            "metrics": [
                {"key": "loss", "value": 0.25, "timestamp": NOW + 1, "step": 1},
                {"key": "loss", "value": 0.3, "timestamp": NOW + 10, "step": 2},
            ]
        },
        "handed-on",
    ),
]

# MLflow's own store applying the same calls to another run, parsed the way its Flask handlers
# parse them (protobuf's JSON parser, then the Metric entities), in the mlflow-server container.
BY_MLFLOWS_STORE = r"""
import json, sys, urllib.parse
from mlflow.entities import Metric
from mlflow.protos.service_pb2 import LogBatch, LogMetric
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
from mlflow.utils.proto_json_utils import parse_dict
password = urllib.parse.quote(open("/run/secrets/mlflow-db-password").read(), safe="")
store = SqlAlchemyStore(f"postgresql+psycopg2://mlflow:{password}@postgres:5432/mlflow", "ftp://unused")
run_id, calls = sys.argv[1], json.loads(sys.stdin.read())
for call, body in calls:
    m = LogMetric() if call == "log-metric" else LogBatch()
    parse_dict(body, m)
    if call == "log-metric":
        store.log_metric(run_id, Metric(m.key, m.value, m.timestamp, m.step))
    else:
        store.log_batch(run_id, [Metric.from_proto(p) for p in m.metrics], [], [])
print("done")
"""


def fast_path_counts(http, mlflow_url) -> dict[tuple[str, str], float]:
    text = http.get(f"{mlflow_url}/metrics", timeout=10).text
    pattern = r'^workbench_fast_path_requests_total\{call="([^"]+)",path="([^"]+)"\} (\S+)$'
    return {(call, path): float(n) for call, path, n in re.findall(pattern, text, re.M)}


def counted(before, after) -> dict[tuple[str, str], int]:
    return {k: int(after.get(k, 0) - before.get(k, 0)) for k in after if after.get(k, 0) != before.get(k, 0)}


def paths(server, expected: dict[tuple[str, str], int]) -> dict[tuple[str, str], int]:
    """What the fast path counters should count: `expected`, or nothing when they are off."""
    return expected if server.fast_paths else {}


def new_run(http, mlflow_url, experiment_id: str) -> str:
    response = http.post(
        f"{mlflow_url}/api/2.0/mlflow/runs/create", json={"experiment_id": experiment_id}, timeout=10
    )
    assert response.status_code == 200, response.text
    return response.json()["run"]["info"]["run_id"]


def new_experiment(http, mlflow_url, name: str) -> str:
    response = http.post(f"{mlflow_url}/api/2.0/mlflow/experiments/create", json={"name": name}, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()["experiment_id"]


def grant(http, mlflow_url, username: str, experiment_id: str, permission: str) -> None:
    response = http.post(
        f"{mlflow_url}/api/3.0/mlflow/users/permissions/grant",
        timeout=10,
        json={
            "username": username,
            "resource_type": "experiment",
            "resource_id": experiment_id,
            "permission": permission,
        },
    )
    assert response.status_code == 200, response.text


def rows(stack, table: str, run_id: str) -> list[list[str]]:
    return stack.psql(
        f"SELECT key, value, timestamp, step, is_nan FROM {table} "
        f"WHERE run_uuid = '{run_id}' ORDER BY key, timestamp, step, value, is_nan"
    )


def test_fast_path_writes_what_mlflows_store_writes(stack, server, admin_auth, unique_name):
    mlflow_url = server.url
    http = http_session(admin_auth)
    experiment_id = new_experiment(http, mlflow_url, unique_name)
    fast_run, store_run = new_run(http, mlflow_url, experiment_id), new_run(http, mlflow_url, experiment_id)

    before = fast_path_counts(http, mlflow_url)
    for call, body, _ in CALLS:
        response = http.post(
            f"{mlflow_url}/api/2.0/mlflow/runs/{call}", json={"run_id": fast_run, **body}, timeout=30
        )
        assert response.status_code == 200, (call, body, response.text)
        assert response.json() == {}
        assert response.headers["x-content-type-options"] == "nosniff"  # MLflow's security headers
    expected = {}
    for call, _, path in CALLS:
        expected[(call, path)] = expected.get((call, path), 0) + 1
    assert counted(before, fast_path_counts(http, mlflow_url)) == paths(server, expected)

    out = stack.exec(
        "mlflow-server",
        "python3",
        "-c",
        BY_MLFLOWS_STORE,
        store_run,
        input=json.dumps([(call, body) for call, body, _ in CALLS]),
    ).stdout
    assert out.strip().endswith("done"), out
    for table in ("metrics", "latest_metrics"):
        fast, by_store = rows(stack, table, fast_run), rows(stack, table, store_run)
        assert fast == by_store, (
            f"{table}: the fast path wrote {len(fast)} rows, MLflow's store {len(by_store)}"
        )
    assert len(rows(stack, "metrics", fast_run)) == 1015
    latest = {
        key: (value, step, is_nan) for key, value, _, step, is_nan in rows(stack, "latest_metrics", fast_run)
    }
    assert latest["acc"] == ("0", "3", "t") and latest["big"] == ("-1.7976931348623157e+308", "8", "f"), (
        latest
    )


@pytest.mark.parametrize(
    "case, status, error_code",
    [
        ("no such run", 404, "RESOURCE_DOES_NOT_EXIST"),
        ("deleted run", 400, "INVALID_PARAMETER_VALUE"),
        ("bad metric name", 400, "INVALID_PARAMETER_VALUE"),
        ("negative timestamp", 400, "INVALID_PARAMETER_VALUE"),
        ("value not a number", 400, "INVALID_PARAMETER_VALUE"),
        ("not JSON", 400, "INVALID_PARAMETER_VALUE"),
        ("no credentials", 401, None),
        ("wrong password", 401, None),
    ],
)
def test_what_the_fast_path_does_not_answer_mlflow_answers(
    stack, server, admin_auth, unique_name, case, status, error_code
):
    mlflow_url = server.url
    http = http_session(admin_auth)
    run_id = new_run(http, mlflow_url, new_experiment(http, mlflow_url, unique_name))
    body = {"run_id": run_id, "key": "m", "value": 1.0, "timestamp": NOW, "step": 0}
    auth = admin_auth
    if case == "no such run":
        body["run_id"] = "0" * 32
    elif case == "deleted run":
        assert http.post(f"{mlflow_url}/api/2.0/mlflow/runs/delete", json={"run_id": run_id}, timeout=10).ok
    elif case == "bad metric name":
        body["key"] = "../escape"
    elif case == "negative timestamp":
        body["timestamp"] = -1
    elif case == "value not a number":
        body["value"] = "many"
    elif case == "no credentials":
        auth = None
    elif case == "wrong password":
        auth = ("admin", "not the password")
    data = "{not json" if case == "not JSON" else json.dumps(body)
    before = fast_path_counts(http, mlflow_url)
    response = http_session(auth).post(
        f"{mlflow_url}/api/2.0/mlflow/runs/log-metric",
        data=data,
        timeout=30,
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == status, response.text
    if error_code:
        assert response.json()["error_code"] == error_code, response.text
    assert counted(before, fast_path_counts(http, mlflow_url)) == paths(
        server, {("log-metric", "handed-on"): 1}
    )
    assert stack.psql(f"SELECT count(*) FROM metrics WHERE run_uuid = '{run_id}'") == [["0"]]


def test_an_old_clients_run_uuid_goes_to_mlflow(stack, server, admin_auth, unique_name):
    mlflow_url = server.url
    # run_uuid, run_id's old name: MLflow's handler takes either; the fast path only run_id.
    http = http_session(admin_auth)
    run_id = new_run(http, mlflow_url, new_experiment(http, mlflow_url, unique_name))
    before = fast_path_counts(http, mlflow_url)
    response = http.post(
        f"{mlflow_url}/api/2.0/mlflow/runs/log-metric",
        timeout=30,
        json={"run_uuid": run_id, "key": "m", "value": 1.0, "timestamp": NOW, "step": 0},
    )
    assert response.status_code == 200, response.text
    assert counted(before, fast_path_counts(http, mlflow_url)) == paths(
        server, {("log-metric", "handed-on"): 1}
    )
    assert rows(stack, "metrics", run_id) == [["m", "1", str(NOW), "0", "f"]]


def test_a_batch_with_params_and_tags_goes_to_mlflow_whole(stack, server, admin_auth, unique_name):
    mlflow_url = server.url
    http = http_session(admin_auth)
    run_id = new_run(http, mlflow_url, new_experiment(http, mlflow_url, unique_name))
    before = fast_path_counts(http, mlflow_url)
    response = http.post(
        f"{mlflow_url}/api/2.0/mlflow/runs/log-batch",
        timeout=30,
        json={
            "run_id": run_id,
            "metrics": [{"key": "m", "value": 1.0, "timestamp": NOW, "step": 0}],
            "params": [{"key": "alpha", "value": "0.5"}],
            "tags": [{"key": "team", "value": "blue"}],
        },
    )
    assert response.status_code == 200, response.text
    assert counted(before, fast_path_counts(http, mlflow_url)) == paths(
        server, {("log-batch", "handed-on"): 1}
    )
    run = http.get(f"{mlflow_url}/api/2.0/mlflow/runs/get", params={"run_id": run_id}, timeout=10).json()[
        "run"
    ]
    assert {p["key"]: p["value"] for p in run["data"]["params"]} == {"alpha": "0.5"}
    assert {"team": "blue"}.items() <= {t["key"]: t["value"] for t in run["data"]["tags"]}.items()
    assert [m["key"] for m in run["data"]["metrics"]] == ["m"]


def test_a_user_who_is_not_an_admin_is_authorized_by_mlflow(stack, server, admin_auth, unique_name):
    mlflow_url = server.url
    admin = http_session(admin_auth)
    experiment_id = new_experiment(admin, mlflow_url, unique_name)
    run_id = new_run(admin, mlflow_url, experiment_id)
    user, password = f"bob-{unique_name[-8:]}", "bob's long password"
    created = admin.post(
        f"{mlflow_url}/api/2.0/mlflow/users/create", json={"username": user, "password": password}, timeout=10
    )
    assert created.status_code == 200, created.text
    bob = http_session((user, password))
    body = {"run_id": run_id, "key": "m", "value": 1.0, "timestamp": NOW, "step": 0}

    # default_permission = READ: reading yes, writing to the admin's run no (MLflow's own 403).
    before = fast_path_counts(admin, mlflow_url)
    refused = bob.post(f"{mlflow_url}/api/2.0/mlflow/runs/log-metric", json=body, timeout=30)
    assert refused.status_code == 403, refused.text
    assert counted(before, fast_path_counts(admin, mlflow_url)) == paths(
        server, {("log-metric", "handed-on"): 1}
    )
    assert stack.psql(f"SELECT count(*) FROM metrics WHERE run_uuid = '{run_id}'") == [["0"]]

    grant(admin, mlflow_url, user, experiment_id, "EDIT")
    before = fast_path_counts(admin, mlflow_url)
    written = bob.post(f"{mlflow_url}/api/2.0/mlflow/runs/log-metric", json=body, timeout=30)
    assert written.status_code == 200, written.text
    assert counted(before, fast_path_counts(admin, mlflow_url)) == paths(server, {("log-metric", "fast"): 1})
    assert stack.psql(f"SELECT count(*) FROM metrics WHERE run_uuid = '{run_id}'") == [["1"]]


def test_a_demoted_or_deleted_admin_loses_its_rights_on_every_worker_within_a_second(
    stack, server, admin_auth, unique_name
):
    """Each worker caches a successful login (MLFLOW_AUTH_CACHE_TTL_SECONDS, 1 s) with the user's
    admin flag; MLflow drops it only in the worker that answered the change. Every worker holds
    both admins' logins (new connections spread over them), then one is demoted and one deleted:
    a second later no worker lets either write to a run they have no permission on."""
    mlflow_url = server.url
    admin = http_session(admin_auth)
    run_id = new_run(admin, mlflow_url, new_experiment(admin, mlflow_url, unique_name))
    body = {"run_id": run_id, "key": "m", "value": 1.0, "timestamp": NOW}
    users = {f"{change}-{unique_name[-8:]}": change for change in ("demoted", "deleted")}
    for user in users:
        created = admin.post(
            f"{mlflow_url}/api/2.0/mlflow/users/create",
            timeout=10,
            json={"username": user, "password": f"{user} long password"},
        )
        assert created.status_code == 200, created.text
        promoted = admin.patch(
            f"{mlflow_url}/api/2.0/mlflow/users/update-admin",
            timeout=10,
            json={"username": user, "is_admin": True},
        )
        assert promoted.status_code == 200, promoted.text

    def writes(user: str, step: int) -> int:  # a new connection each time: any worker
        return (
            http_session((user, f"{user} long password"))
            .post(f"{mlflow_url}/api/2.0/mlflow/runs/log-metric", json={**body, "step": step}, timeout=30)
            .status_code
        )

    assert {writes(user, step) for user in users for step in range(20)} == {200}
    assert (
        admin.patch(
            f"{mlflow_url}/api/2.0/mlflow/users/update-admin",
            timeout=10,
            json={"username": "demoted-" + unique_name[-8:], "is_admin": False},
        ).status_code
        == 200
    )
    assert (
        admin.delete(
            f"{mlflow_url}/api/2.0/mlflow/users/delete",
            timeout=10,
            json={"username": "deleted-" + unique_name[-8:]},
        ).status_code
        == 200
    )
    written = int(stack.psql(f"SELECT count(*) FROM metrics WHERE run_uuid = '{run_id}'")[0][0])
    time.sleep(1.5)  # the cache's bound (1 s), and a margin
    answers = {change: {writes(user, 100 + step) for step in range(20)} for user, change in users.items()}
    assert answers == {"demoted": {403}, "deleted": {401}}
    assert stack.psql(f"SELECT count(*) FROM metrics WHERE run_uuid = '{run_id}'") == [[str(written)]]


def test_the_fast_path_keeps_mlflows_host_and_origin_checks(server, admin_auth, unique_name):
    mlflow_url = server.url
    http = http_session(admin_auth)
    run_id = new_run(http, mlflow_url, new_experiment(http, mlflow_url, unique_name))
    body = {"run_id": run_id, "key": "m", "value": 1.0, "timestamp": NOW, "step": 0}
    url = f"{mlflow_url}/api/2.0/mlflow/runs/log-metric"
    assert http.post(url, json=body, headers={"Host": "evil.example"}, timeout=10).status_code == 403
    assert http.post(url, json=body, headers={"Origin": "http://evil.example"}, timeout=10).status_code == 403


def test_concurrent_batches_into_one_run_keep_the_latest_of_each_key(stack, server, admin_auth, unique_name):
    mlflow_url = server.url
    http = http_session(admin_auth)
    run_id = new_run(http, mlflow_url, new_experiment(http, mlflow_url, unique_name))
    errors: list[str] = []

    def client(n: int) -> None:
        session = http_session(admin_auth)
        for call in range(10):
            keys = [f"k{(n + j) % 8}" for j in range(8)]  # every client in another key order
            metrics = [{"key": k, "value": float(n), "timestamp": NOW, "step": call * 100 + n} for k in keys]
            response = session.post(
                f"{mlflow_url}/api/2.0/mlflow/runs/log-batch",
                timeout=30,
                json={"run_id": run_id, "metrics": metrics},
            )
            if response.status_code != 200:
                errors.append(response.text)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(6)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors, errors[:3]
    assert stack.psql(f"SELECT count(*) FROM metrics WHERE run_uuid = '{run_id}'") == [[str(6 * 10 * 8)]]
    # The greatest step is client 5's last call (900 + 5), for every key.
    latest = stack.psql(
        f"SELECT key, step, value FROM latest_metrics WHERE run_uuid = '{run_id}' ORDER BY key"
    )
    assert latest == [[f"k{i}", "905", "5"] for i in range(8)], latest


# ---- streamed downloads ----------------------------------------------------------------------

UPLOAD = r"""
import hashlib, os, mlflow
mlflow.set_experiment({experiment!r})
data = os.urandom({size})
with mlflow.start_run() as run:
    path = "/tmp/streamed.bin"
    open(path, "wb").write(data)
    mlflow.log_artifact(path, "files")
print(run.info.artifact_uri, hashlib.sha256(data).hexdigest())
"""


def test_downloads_stream_from_ftp_with_their_length(stack, server, admin_auth, unique_name):
    mlflow_url = server.url
    size = 24 * 1024 * 1024 + 7
    out = stack.python("jupyter", UPLOAD.format(experiment=unique_name, size=size))
    artifact_uri, digest = out.strip().splitlines()[-1].split()
    url = (
        f"{mlflow_url}/api/2.0/mlflow-artifacts/artifacts/{artifact_uri.split(':/', 1)[1]}/files/streamed.bin"
    )
    http = http_session(admin_auth)
    before = fast_path_counts(http, mlflow_url)
    with http.get(url, stream=True, timeout=60) as response:
        assert response.status_code == 200, response.text
        # MLflow's own route (fast paths off) copies the file to the server's /tmp and sends it
        # chunked, without a length; the streamed one passes on FTP's SIZE.
        if server.fast_paths:
            assert response.headers["Content-Length"] == str(size)
            assert "Transfer-Encoding" not in response.headers
        else:
            assert response.headers.get("Transfer-Encoding") == "chunked", response.headers
        assert response.headers["Content-Type"] == "application/octet-stream"
        assert (
            response.headers["Content-Disposition"] == "attachment; filename=streamed.bin"
        )  # MLflow's helper
        assert response.headers["x-content-type-options"] == "nosniff"
        assert hashlib.sha256(response.raw.read()).hexdigest() == digest
    assert counted(before, fast_path_counts(http, mlflow_url)) == paths(
        server, {("artifact-download", "fast"): 1}
    )
    # A download the client breaks off leaves the server's FTP pool usable: the next ones are whole.
    with http.get(url, stream=True, timeout=60) as response:
        response.raw.read(1024 * 1024)
    for _ in range(3):
        again = http.get(url, timeout=60)
        assert again.status_code == 200 and hashlib.sha256(again.content).hexdigest() == digest
    # What is not a plain file is MLflow's route's answer.
    missing = http.get(url.replace("streamed.bin", "missing.bin"), timeout=30)
    assert missing.status_code == 404 and missing.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST", (
        missing.text
    )


def test_artifact_transfers_keep_mlflows_authorization(stack, server, admin_auth, unique_name):
    mlflow_url = server.url
    http = http_session(admin_auth)
    experiment_id = new_experiment(http, mlflow_url, unique_name)
    run_id = new_run(http, mlflow_url, experiment_id)
    artifact_uri = http.get(
        f"{mlflow_url}/api/2.0/mlflow/runs/get", params={"run_id": run_id}, timeout=10
    ).json()["run"]["info"]["artifact_uri"]
    url = f"{mlflow_url}/api/2.0/mlflow-artifacts/artifacts/{artifact_uri.split(':/', 1)[1]}/up/data.bin"
    data = bytes(range(256)) * 4096
    before = fast_path_counts(http, mlflow_url)
    assert http.put(url, data=data, timeout=60).status_code == 200
    assert counted(before, fast_path_counts(http, mlflow_url)) == paths(
        server, {("artifact-upload", "fast"): 1}
    )
    on_ftp = stack.exec(
        "ftpd", "sh", "-c", f"find /srv/ftp -path '*/{run_id}/artifacts/up/data.bin' -exec sha256sum {{}} +"
    ).stdout.split()
    assert on_ftp and on_ftp[0] == hashlib.sha256(data).hexdigest(), on_ftp

    # A user denied the experiment: MLflow's own 403, for both directions, and nothing written.
    user, password = f"eve-{unique_name[-8:]}", "eve's long password"
    assert (
        http.post(
            f"{mlflow_url}/api/2.0/mlflow/users/create",
            json={"username": user, "password": password},
            timeout=10,
        ).status_code
        == 200
    )
    grant(http, mlflow_url, user, experiment_id, "DENY")
    eve = http_session((user, password))
    before = fast_path_counts(http, mlflow_url)
    assert eve.get(url, timeout=30).status_code == 403
    assert eve.put(url.replace("data.bin", "eve.bin"), data=b"x", timeout=30).status_code == 403
    assert http_session(None).get(url, timeout=30).status_code == 401
    assert counted(before, fast_path_counts(http, mlflow_url)) == paths(
        server,
        {
            ("artifact-download", "handed-on"): 2,
            ("artifact-upload", "handed-on"): 1,
        },
    )
    assert not stack.exec("ftpd", "find", "/srv/ftp", "-name", "eve.bin").stdout.strip()
    # Granted READ instead: downloads yes (the fast path), uploads still MLflow's 403.
    revoked = http.post(
        f"{mlflow_url}/api/3.0/mlflow/users/permissions/revoke",
        timeout=10,
        json={"username": user, "resource_type": "experiment", "resource_id": experiment_id},
    )
    assert revoked.status_code == 200, revoked.text
    grant(http, mlflow_url, user, experiment_id, "READ")
    before = fast_path_counts(http, mlflow_url)
    assert eve.get(url, timeout=30).content == data
    assert eve.put(url.replace("data.bin", "eve.bin"), data=b"x", timeout=30).status_code == 403
    assert counted(before, fast_path_counts(http, mlflow_url)) == paths(
        server,
        {
            ("artifact-download", "fast"): 1,
            ("artifact-upload", "handed-on"): 1,
        },
    )
