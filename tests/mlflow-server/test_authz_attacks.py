"""Attacks on MLflow 3.17.2's basic-auth app, tried as two limited users, that the workbench's
request guard (mlflow-server/server-app/workbench_guard.py) refuses: issue 17's five bypasses
(MLflow's permission check reading one parameter while its handler acts on another) and issue
14's artifact path bypass and whole-store download.

A fixture builds a victim (an admin's experiment, run with an artifact, registered model with a
version, alias and tags, a trace) and two users each with their own experiment, run, model and
trace: `dora`, denied the victim's experiment and model, and `rita`, with no grant (the default
READ). Each test tries an attack and asserts the refusal and that the victim's data is unchanged
and unread (the file on the FTP volume, the rows in Postgres); the legitimate calls next to
them keep working. Every test runs twice (the `server` fixture, conftest.py): against the stack's
mlflow-server (fast paths on) and a second one whose fast paths are off: the guard must hold
either way.
"""

from __future__ import annotations

import gzip
import json
import re
import subprocess
import uuid

import pytest
import requests

from utils.stack import http_session

SECRET = b"victim's secret artifact 5b1e"


# ---- the victim and the two users -------------------------------------------------------------


def ok(response: requests.Response) -> dict:
    assert response.status_code == 200, (
        f"{response.request.method} {response.url}: {response.status_code} {response.text[:300]}"
    )
    return response.json() if response.content else {}


def start_trace(http, url: str, experiment_id: str, trace_id: str | None = None) -> str:
    trace_id = trace_id or f"tr-{uuid.uuid4().hex}"
    ok(
        http.post(
            f"{url}/api/3.0/mlflow/traces",
            timeout=30,
            json={
                "trace": {
                    "trace_info": {
                        "trace_id": trace_id,
                        "request_time": "2024-01-01T00:00:00Z",
                        "execution_duration": "0.5s",
                        "state": "OK",
                        "trace_location": {
                            "type": "MLFLOW_EXPERIMENT",
                            "mlflow_experiment": {"experiment_id": experiment_id},
                        },
                    }
                }
            },
        )
    )
    return trace_id


def otlp_span(trace_id: str, name: str) -> dict:
    """An OTLP/JSON batch of one root span of an MLflow trace (tr-<32 hex> is the OTel trace id)."""
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": []},
                "scopeSpans": [
                    {
                        "scope": {"name": "t"},
                        "spans": [
                            {
                                "traceId": trace_id.removeprefix("tr-"),
                                "spanId": uuid.uuid4().hex[:16],
                                "name": name,
                                "kind": 1,
                                "startTimeUnixNano": "1700000000000000000",
                                "endTimeUnixNano": "1700000001000000000",
                            }
                        ],
                    }
                ],
            }
        ]
    }


def owned_by(http, url: str, tag: str) -> dict:
    """An experiment, run (with an artifact), registered model (version 1, alias, tags) and trace."""
    experiment = ok(
        http.post(f"{url}/api/2.0/mlflow/experiments/create", json={"name": f"attacks-{tag}"}, timeout=30)
    )["experiment_id"]
    run = ok(http.post(f"{url}/api/2.0/mlflow/runs/create", json={"experiment_id": experiment}, timeout=30))[
        "run"
    ]["info"]["run_id"]
    ok(
        http.put(
            f"{url}/api/2.0/mlflow-artifacts/artifacts/{experiment}/{run}/artifacts/data/secret.txt",
            data=SECRET,
            timeout=30,
        )
    )
    model = f"model-{tag}"
    ok(http.post(f"{url}/api/2.0/mlflow/registered-models/create", json={"name": model}, timeout=30))
    ok(
        http.post(
            f"{url}/api/2.0/mlflow/registered-models/set-tag",
            json={"name": model, "key": "team", "value": "x"},
            timeout=30,
        )
    )
    ok(
        http.post(
            f"{url}/api/2.0/mlflow/model-versions/create",
            timeout=30,
            json={
                "name": model,
                "source": f"mlflow-artifacts:/{experiment}/{run}/artifacts/data",
                "run_id": run,
            },
        )
    )
    ok(
        http.post(
            f"{url}/api/2.0/mlflow/model-versions/set-tag",
            timeout=30,
            json={"name": model, "version": "1", "key": "team", "value": "x"},
        )
    )
    ok(
        http.post(
            f"{url}/api/2.0/mlflow/registered-models/alias",
            timeout=30,
            json={"name": model, "alias": "champion", "version": "1"},
        )
    )
    return {"experiment": experiment, "run": run, "model": model, "trace": start_trace(http, url, experiment)}


@pytest.fixture(scope="module")
def world(stack, admin_auth) -> dict:
    url = stack.url("mlflow-server", 5000)
    admin = http_session(admin_auth)
    suffix = uuid.uuid4().hex[:6]
    world = {"victim": owned_by(admin, url, f"victim-{suffix}"), "users": {}}
    for name in ("dora", "rita"):
        user, password = f"{name}-{suffix}", f"{name}'s long password {suffix}"
        ok(
            admin.post(
                f"{url}/api/2.0/mlflow/users/create",
                json={"username": user, "password": password},
                timeout=30,
            )
        )
        http = http_session((user, password))
        world["users"][name] = {"auth": (user, password), **owned_by(http, url, f"{name}-{suffix}")}
    for resource_type, resource_id in (
        ("experiment", world["victim"]["experiment"]),
        ("registered_model", world["victim"]["model"]),
    ):
        ok(
            admin.post(
                f"{url}/api/3.0/mlflow/users/permissions/grant",
                timeout=30,
                json={
                    "username": world["users"]["dora"]["auth"][0],
                    "resource_type": resource_type,
                    "resource_id": resource_id,
                    "permission": "DENY",
                },
            )
        )
    return world


USERS = ["dora", "rita"]


def victim_file(stack, world) -> str:
    v = world["victim"]
    return f"/srv/ftp/artifacts/{v['experiment']}/{v['run']}/artifacts/data"


def victim_state(stack, world) -> dict:
    """Everything of the victim's an attack could change: files, registry rows, trace, spans (one
    query, one listing: every test reads it twice)."""
    v = world["victim"]
    files = stack.exec(
        "ftpd", "sh", "-c", f"cd '{victim_file(stack, world)}' && find . -type f -exec sha256sum {{}} +"
    ).stdout
    model, trace = v["model"], v["trace"]
    pairs = "json_agg(json_build_array({}, {}) ORDER BY {})"
    state = stack.psql(f"""SELECT json_build_object(
        'model', (SELECT json_agg(name) FROM registered_models WHERE name = '{model}'),
        'versions', (SELECT {pairs.format("version", "current_stage", "version")} FROM model_versions
                     WHERE name = '{model}'),
        'aliases', (SELECT {pairs.format("alias", "version", "alias")} FROM registered_model_aliases
                    WHERE name = '{model}'),
        'tags', (SELECT {pairs.format("key", "value", "key")} FROM registered_model_tags WHERE name = '{model}'),
        'version tags', (SELECT {pairs.format("key", "value", "key")} FROM model_version_tags
                         WHERE name = '{model}'),
        'experiment', (SELECT lifecycle_stage FROM experiments WHERE experiment_id = {v["experiment"]}),
        'run', (SELECT lifecycle_stage FROM runs WHERE run_uuid = '{v["run"]}'),
        'trace', (SELECT experiment_id FROM trace_info WHERE request_id = '{trace}'),
        'trace tags', (SELECT {pairs.format("key", "value", "key")} FROM trace_tags WHERE request_id = '{trace}'),
        'spans', (SELECT count(*) FROM spans WHERE trace_id = '{trace}'))""")
    return {"files": sorted(files.splitlines()), **json.loads(state[0][0])}


@pytest.fixture
def unchanged(stack, world):
    """The victim's data is the same after the test as before it."""
    before = victim_state(stack, world)
    assert before["files"] and before["model"] and before["aliases"] and before["trace"], before
    yield
    assert victim_state(stack, world) == before


def raw(session: requests.Session, method: str, url: str, **kwargs) -> requests.Response:
    """Send `url` byte for byte: no client-side normalisation of `.` or percent-escapes."""
    request = session.prepare_request(requests.Request(method, url, **kwargs))
    request.url = url
    return session.send(request, timeout=30)


def refused(response: requests.Response, status: int = 400) -> None:
    assert response.status_code == status, (
        response.request.method,
        response.url,
        response.status_code,
        response.text[:300],
    )
    if response.request.method != "HEAD":
        code = "PERMISSION_DENIED" if status == 403 else "INVALID_PARAMETER_VALUE"
        assert response.json()["error_code"] == code, response.text
        assert SECRET.decode() not in response.text


def as_user(world, name: str) -> requests.Session:
    return http_session(world["users"][name]["auth"])


def scratch(server) -> str:
    """The size of the server's scratch /tmp, where MLflow's own download route stages files."""
    return subprocess.run(
        ["docker", "exec", server.container, "du", "-s", "/tmp"], capture_output=True, text=True, check=True
    ).stdout


# ---- issue 17 #1: run_id and run_uuid naming different runs -----------------------------------


@pytest.mark.parametrize("user", USERS)
def test_run_id_and_run_uuid_must_agree(server, world, user, unchanged):
    http, own, victim = as_user(world, user), world["users"][user]["run"], world["victim"]["run"]
    for prefix in ("/ajax-api", "/api"):
        refused(
            http.post(
                f"{server.url}{prefix}/2.0/mlflow/upload-artifact",
                data=b"poisoned",
                timeout=30,
                params={"run_id": own, "run_uuid": victim, "path": "data/secret.txt"},
                headers={"Content-Type": "application/octet-stream"},
            )
        )
        refused(
            http.get(
                f"{server.url}{prefix}/2.0/mlflow/artifacts/list",
                timeout=30,
                params={"run_id": own, "run_uuid": victim, "path": "data"},
            )
        )
        # In the body, in both spellings protobuf reads, and query against body.
        for body, params in (
            ({"run_id": own, "run_uuid": victim}, {}),
            ({"runId": victim, "run_uuid": own}, {}),
            ({"run_id": own}, {"run_uuid": victim}),
        ):
            refused(
                http.post(
                    f"{server.url}{prefix}/2.0/mlflow/runs/log-param",
                    params=params,
                    timeout=30,
                    json={**body, "key": "poison", "value": "1"},
                )
            )
    refused(
        http.get(
            f"{server.url}/get-artifact",
            params={"run_id": own, "run_uuid": victim, "path": "data/secret.txt"},
            timeout=30,
        )
    )


# ---- issue 17 #2: a body MLflow's check does not read ------------------------------------------


def registry_deletes(own: dict, victim: dict) -> list[tuple[str, dict, dict]]:
    """(route, the query the check reads: the attacker's own, the body the handler acts on)."""
    return [
        ("registered-models/delete", {"name": own["model"]}, {"name": victim["model"]}),
        (
            "model-versions/delete",
            {"name": own["model"], "version": "1"},
            {"name": victim["model"], "version": "1"},
        ),
        (
            "registered-models/alias",
            {"name": own["model"], "alias": "champion"},
            {"name": victim["model"], "alias": "champion"},
        ),
        (
            "registered-models/delete-tag",
            {"name": own["model"], "key": "team"},
            {"name": victim["model"], "key": "team"},
        ),
        (
            "model-versions/delete-tag",
            {"name": own["model"], "version": "1", "key": "team"},
            {"name": victim["model"], "version": "1", "key": "team"},
        ),
    ]


@pytest.mark.parametrize("user", USERS)
@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_delete_with_a_body_that_is_not_json(server, world, user, content_type, unchanged):
    http = as_user(world, user)
    headers = {"Content-Type": content_type} if content_type else {}
    for prefix in ("/api", "/ajax-api"):
        for route, query, body in registry_deletes(world["users"][user], world["victim"]):
            response = http.delete(
                f"{server.url}{prefix}/2.0/mlflow/{route}",
                params=query,
                data=json.dumps(body),
                headers=headers,
                timeout=30,
            )
            if content_type is None:  # requests sends none: MLflow's handler still parses the body
                assert "Content-Type" not in response.request.headers
            refused(response)
        # The POST deletes (MLflow's check refuses these itself: the guard says why first).
        v = world["victim"]
        for route, body in (
            ("experiments/delete", {"experiment_id": v["experiment"]}),
            ("runs/delete", {"run_id": v["run"]}),
        ):
            refused(
                http.post(
                    f"{server.url}{prefix}/2.0/mlflow/{route}",
                    data=json.dumps(body),
                    headers=headers,
                    timeout=30,
                )
            )


@pytest.mark.parametrize("user", USERS)
def test_query_and_body_must_agree(server, world, user, unchanged):
    http = as_user(world, user)
    for prefix in ("/api", "/ajax-api"):
        for route, query, body in registry_deletes(world["users"][user], world["victim"]):
            refused(
                http.delete(f"{server.url}{prefix}/2.0/mlflow/{route}", params=query, json=body, timeout=30)
            )
            # and the other way round: the victim in the query, the attacker's own in the body
            refused(
                http.delete(f"{server.url}{prefix}/2.0/mlflow/{route}", params=body, json=query, timeout=30)
            )


# ---- issue 17 #3, #4, #5: traces ----------------------------------------------------------------


@pytest.mark.parametrize("user", USERS)
def test_trace_takeover_is_refused(server, world, user, unchanged):
    http, own = as_user(world, user), world["users"][user]
    for prefix in ("/api", "/ajax-api"):
        body = {
            "trace": {
                "trace_info": {
                    "trace_id": world["victim"]["trace"],
                    "request_time": "2024-01-01T00:00:00Z",
                    "state": "OK",
                    "trace_location": {
                        "type": "MLFLOW_EXPERIMENT",
                        "mlflow_experiment": {"experiment_id": own["experiment"]},
                    },
                }
            }
        }
        refused(http.post(f"{server.url}{prefix}/3.0/mlflow/traces", json=body, timeout=30), 403)
        camel = {
            "trace": {
                "traceInfo": {
                    **body["trace"]["trace_info"],
                    "traceId": body["trace"]["trace_info"]["trace_id"],
                }
            }
        }
        del camel["trace"]["traceInfo"]["trace_id"]
        refused(http.post(f"{server.url}{prefix}/3.0/mlflow/traces", json=camel, timeout=30), 403)
    # A new trace of one's own still starts.
    start_trace(http, server.url, own["experiment"])


@pytest.mark.parametrize("user", USERS)
def test_location_trace_tags_are_refused(server, stack, world, user, unchanged):
    http, own = as_user(world, user), world["users"][user]
    location = (
        f"mlflow-artifacts:/{world['victim']['experiment']}/traces/{world['victim']['trace']}/artifacts"
    )
    before = stack.psql(f"SELECT key, value FROM trace_tags WHERE request_id = '{own['trace']}' ORDER BY key")
    for prefix in ("/api", "/ajax-api"):
        for version in ("2.0", "3.0"):
            for key in (
                "mlflow.artifactLocation",
                "mlflow.trace.archiveLocation",
                "mlflow.trace.spansLocation",
            ):
                refused(
                    http.patch(
                        f"{server.url}{prefix}/{version}/mlflow/traces/{own['trace']}/tags",
                        json={"key": key, "value": location},
                        timeout=30,
                    )
                )
        tagged = {
            "trace": {
                "trace_info": {
                    "trace_id": f"tr-{uuid.uuid4().hex}",
                    "request_time": "2024-01-01T00:00:00Z",
                    "state": "OK",
                    "tags": {"mlflow.artifactLocation": location},
                    "trace_location": {
                        "type": "MLFLOW_EXPERIMENT",
                        "mlflow_experiment": {"experiment_id": own["experiment"]},
                    },
                }
            }
        }
        refused(http.post(f"{server.url}{prefix}/3.0/mlflow/traces", json=tagged, timeout=30))
    assert (
        stack.psql(f"SELECT key, value FROM trace_tags WHERE request_id = '{own['trace']}' ORDER BY key")
        == before
    )
    # Other tags of one's own trace: fine.
    ok(
        http.patch(
            f"{server.url}/api/3.0/mlflow/traces/{own['trace']}/tags",
            json={"key": "note", "value": "x"},
            timeout=30,
        )
    )


@pytest.mark.parametrize("user", USERS)
@pytest.mark.parametrize("encoding", [None, "gzip"])
def test_span_injection_is_refused(server, stack, world, user, encoding, unchanged):
    http, own = as_user(world, user), world["users"][user]

    def export(trace_id: str, headers: dict | None = None) -> requests.Response:
        body = json.dumps(otlp_span(trace_id, "injected")).encode()
        extra = {"Content-Encoding": "gzip"} if encoding else {}
        return http.post(
            f"{server.url}/v1/traces",
            data=gzip.compress(body) if encoding else body,
            timeout=30,
            headers={
                "Content-Type": "application/json",
                "X-Mlflow-Experiment-Id": own["experiment"],
                **extra,
                **(headers or {}),
            },
        )

    refused(export(world["victim"]["trace"]), 403)
    refused(export(f"tr-{uuid.uuid4().hex}", {"X-Mlflow-Run-Id": world["victim"]["run"]}), 403)
    # Spans of one's own trace, and of a new one, are taken.
    assert export(own["trace"]).status_code == 200
    assert export(f"tr-{uuid.uuid4().hex}", {"X-Mlflow-Run-Id": own["run"]}).status_code == 200


# ---- issue 14 #1, #2 and issue 17 #6: artifact paths --------------------------------------------


def non_canonical(experiment: str, run: str) -> list[str]:
    rest = f"{run}/artifacts/data/secret.txt"
    return [
        f"%2e/{experiment}/{rest}",
        f"%2E/{experiment}/{rest}",
        f"./{experiment}/{rest}",
        f"{experiment}/./{rest}",
        f".%2f{experiment}/{rest}",
        f"%252e/{experiment}/{rest}",
        f"/{experiment}/{rest}",
        f"{experiment}//{rest}",
        f"%2e%2e/{experiment}/{rest}",
        f"x/../{experiment}/{rest}",
        f"x%2f..%2f{experiment}/{rest}",
        f".%5c{experiment}/{rest}",
        f"%25252e/{experiment}/{rest}",
    ]


@pytest.mark.parametrize("user", USERS)
@pytest.mark.parametrize("method", ["GET", "HEAD", "PUT", "DELETE"])
def test_non_canonical_artifact_paths_are_refused(server, world, user, method, unchanged):
    http, v = as_user(world, user), world["victim"]
    for prefix in ("/api", "/ajax-api"):
        for path in non_canonical(v["experiment"], v["run"]):
            response = raw(
                http,
                method,
                f"{server.url}{prefix}/2.0/mlflow-artifacts/artifacts/{path}",
                data=b"overwritten" if method == "PUT" else None,
            )
            refused(response)


@pytest.mark.parametrize("user", USERS)
def test_non_canonical_listing_paths(server, world, user, unchanged):
    http, v, own = as_user(world, user), world["victim"], world["users"][user]
    for path in (
        f"./{v['experiment']}/{v['run']}/artifacts",
        f"%2e/{v['experiment']}/{v['run']}/artifacts",
        f"/{v['experiment']}/{v['run']}/artifacts",
        f"{v['experiment']}//{v['run']}/artifacts",
    ):
        for prefix in ("/api", "/ajax-api"):
            refused(
                http.get(
                    f"{server.url}{prefix}/2.0/mlflow-artifacts/artifacts", params={"path": path}, timeout=30
                )
            )
    for path in ("./data", "data/.", "%2e%2e/x", "data//secret.txt", "data\\secret.txt", "/data"):
        for prefix in ("/api", "/ajax-api"):
            refused(
                http.get(
                    f"{server.url}{prefix}/2.0/mlflow/artifacts/list",
                    timeout=30,
                    params={"run_id": own["run"], "path": path},
                )
            )
        refused(
            http.get(f"{server.url}/get-artifact", params={"run_id": own["run"], "path": path}, timeout=30)
        )
    # Canonical listings of one's own run: fine.
    listing = ok(
        http.get(
            f"{server.url}/api/2.0/mlflow/artifacts/list",
            params={"run_id": own["run"], "path": "data"},
            timeout=30,
        )
    )
    assert [f["path"] for f in listing["files"]] == ["data/secret.txt"]
    assert ok(
        http.get(f"{server.url}/api/2.0/mlflow/artifacts/list", params={"run_id": own["run"]}, timeout=30)
    )["files"]


@pytest.mark.parametrize("who", ["admin", "rita"])
def test_the_store_root_is_refused(server, stack, world, admin_auth, who, unchanged):
    http = http_session(admin_auth) if who == "admin" else as_user(world, who)
    before = scratch(server)
    for prefix in ("/api", "/ajax-api"):
        base = f"{server.url}{prefix}/2.0/mlflow-artifacts/artifacts"
        for url in (f"{base}/", f"{base}/%2e", f"{base}/%2e/", f"{base}/.", f"{base}//"):
            refused(raw(http, "GET", url))
        refused(http.get(base, timeout=30))  # the listing of every experiment id
        refused(http.get(base, params={"path": ""}, timeout=30))
    assert scratch(server) == before, "something was staged"


def test_directory_downloads_are_refused(server, stack, world, admin_auth, unchanged):
    v, own = world["victim"], world["users"]["rita"]
    before = scratch(server)
    for auth, (experiment, run) in (
        (admin_auth, (v["experiment"], v["run"])),
        (world["users"]["rita"]["auth"], (v["experiment"], v["run"])),
        (world["users"]["rita"]["auth"], (own["experiment"], own["run"])),
    ):
        for path in (f"{experiment}/{run}/artifacts/data", f"{experiment}/{run}", experiment):
            refused(
                http_session(auth).get(f"{server.url}/api/2.0/mlflow-artifacts/artifacts/{path}", timeout=30)
            )
    # Dora may not read it: MLflow's own 403, which says nothing about what the path is.
    denied = as_user(world, "dora").get(
        f"{server.url}/api/2.0/mlflow-artifacts/artifacts/{v['experiment']}/{v['run']}", timeout=30
    )
    assert denied.status_code == 403, denied.text
    assert scratch(server) == before, "something was staged"
    # A file of one's own still downloads.
    got = as_user(world, "rita").get(
        f"{server.url}/api/2.0/mlflow-artifacts/artifacts/{own['experiment']}/"
        f"{own['run']}/artifacts/data/secret.txt",
        timeout=30,
    )
    assert got.status_code == 200 and got.content == SECRET


# ---- informational: GraphQL -------------------------------------------------------------------


def test_graphql_without_a_json_body_is_a_4xx(server, admin_auth):
    http = http_session(admin_auth)
    refused(
        http.get(
            f"{server.url}/graphql",
            params={"query": "{ mlflowGetExperiment { experiment { name } } }"},
            timeout=30,
        )
    )
    refused(
        http.post(f"{server.url}/graphql", data="query", headers={"Content-Type": "text/plain"}, timeout=30)
    )
    answer = ok(
        http.post(
            f"{server.url}/graphql",
            timeout=30,
            json={
                "query": 'query { mlflowGetExperiment(input: {experimentId: "0"}) { experiment { name } } }'
            },
        )
    )
    assert answer["data"]["mlflowGetExperiment"]["experiment"]["name"] == "Default", answer


# ---- what keeps working -----------------------------------------------------------------------


CLIENT = r"""
import json, os, sys
os.environ["MLFLOW_TRACKING_URI"] = sys.argv[1]
import mlflow
from mlflow.tracking import MlflowClient
from sklearn.linear_model import LinearRegression
mlflow.set_experiment(sys.argv[2])
with mlflow.start_run() as run:
    mlflow.log_param("alpha", 0.5)
    mlflow.log_metric("loss", 0.25)
    open("/tmp/guard-note.txt", "w").write("note")
    mlflow.log_artifact("/tmp/guard-note.txt", "notes")
    info = mlflow.sklearn.log_model(LinearRegression().fit([[0], [1]], [0, 1]), name="model",
                                    registered_model_name=sys.argv[2])
client = MlflowClient()
# MLflow's client sends run_id and run_uuid, equal, on these.
client.log_param(run.info.run_id, "beta", "1")
versions = client.search_model_versions(f"name = '{sys.argv[2]}'")
print(json.dumps({"run": run.info.run_id, "files": [f.path for f in client.list_artifacts(run.info.run_id)],
                  "versions": [v.version for v in versions]}))
"""


def test_mlflows_client_logs_with_run_id_and_run_uuid(server, stack, unique_name):
    out = stack.exec("jupyter", "python3", "-c", CLIENT, f"http://{server.host}:5000", unique_name).stdout
    logged = json.loads(out.strip().splitlines()[-1])
    assert "notes" in logged["files"] and logged["versions"] == ["1"], logged
    assert stack.psql(f"SELECT key, value FROM params WHERE run_uuid = '{logged['run']}' ORDER BY key") == [
        ["alpha", "0.5"],
        ["beta", "1"],
    ]


def test_same_user_uploads_and_the_uis_json_deletes_keep_working(server, stack, world, unique_name):
    http, own = as_user(world, "rita"), world["users"]["rita"]
    for prefix in ("/ajax-api",):  # the UI's upload: the file as the body, its keys in the query
        ok(
            http.post(
                f"{server.url}{prefix}/2.0/mlflow/upload-artifact",
                data=b"mine",
                timeout=30,
                params={"run_id": own["run"], "run_uuid": own["run"], "path": "ui/mine.txt"},
                headers={"Content-Type": "application/octet-stream"},
            )
        )
    ok(
        http.put(
            f"{server.url}/api/2.0/mlflow-artifacts/artifacts/{own['experiment']}/{own['run']}/artifacts/put.txt",
            data=b"put",
            timeout=30,
        )
    )
    listing = stack.exec(
        "ftpd", "find", f"/srv/ftp/artifacts/{own['experiment']}/{own['run']}/artifacts", "-type", "f"
    ).stdout
    assert "ui/mine.txt" in listing and "put.txt" in listing, listing
    # The UI's deletes: DELETE with a JSON body, on a model of one's own.
    model = f"ui-{unique_name}"
    ok(
        http.post(
            f"{server.url}/ajax-api/2.0/mlflow/registered-models/create", json={"name": model}, timeout=30
        )
    )
    ok(
        http.post(
            f"{server.url}/ajax-api/2.0/mlflow/registered-models/set-tag",
            timeout=30,
            json={"name": model, "key": "k", "value": "v"},
        )
    )
    ok(
        http.post(
            f"{server.url}/ajax-api/2.0/mlflow/model-versions/create",
            timeout=30,
            json={
                "name": model,
                "source": f"mlflow-artifacts:/{own['experiment']}/{own['run']}/artifacts/data",
                "run_id": own["run"],
            },
        )
    )
    ok(
        http.post(
            f"{server.url}/ajax-api/2.0/mlflow/registered-models/alias",
            timeout=30,
            json={"name": model, "alias": "a", "version": "1"},
        )
    )
    for route, body in (
        ("registered-models/alias", {"name": model, "alias": "a"}),
        ("registered-models/delete-tag", {"name": model, "key": "k"}),
        ("model-versions/delete", {"name": model, "version": "1"}),
        ("registered-models/delete", {"name": model}),
    ):
        ok(http.delete(f"{server.url}/ajax-api/2.0/mlflow/{route}", json=body, timeout=30))
    assert stack.psql(f"SELECT count(*) FROM registered_models WHERE name = '{model}'") == [["0"]]


def test_refusals_are_logged_and_counted(server, world, admin_auth):
    http, (user, password) = as_user(world, "rita"), world["users"]["rita"]["auth"]

    def count() -> float:
        text = http_session(admin_auth).get(f"{server.url}/metrics", timeout=30).text
        found = re.search(
            r'^workbench_guard_refusals_total\{rule="run-id-mismatch"\} (\S+)$', text, re.MULTILINE
        )
        return float(found.group(1)) if found else 0.0

    before = count()
    marker = uuid.uuid4().hex
    refused(
        http.get(
            f"{server.url}/api/2.0/mlflow/artifacts/list",
            timeout=30,
            params={"run_id": world["users"]["rita"]["run"], "run_uuid": marker},
        )
    )
    assert count() == before + 1
    logs = subprocess.run(
        ["docker", "logs", "--tail", "300", server.container], capture_output=True, text=True, check=True
    )
    lines = [line for line in (logs.stdout + logs.stderr).splitlines() if "workbench guard: refused" in line]
    assert any(
        f"rule=run-id-mismatch user={user} GET '/api/2.0/mlflow/artifacts/list'" in line for line in lines
    ), lines[-5:]
    assert not any(password in line for line in lines)
