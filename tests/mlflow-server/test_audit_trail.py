"""The audit trail (mlflow-server/server-app/workbench_audit.py): every mutating call to the
tracking server and registry leaves a row in Postgres (workbench_audit) with who, when, the route,
the ids it names and its outcome, refused calls too; reads leave none. Admins read it with `make
audit` and GET /api/2.0/workbench/audit; other users get 403. Counted per user and action at
/metrics.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from utils.stack import http_session, run_make
from utils.wait import wait_until

REPO = Path(__file__).resolve().parents[2]


def trail(stack, since_id: int) -> list[dict]:
    rows = stack.psql(
        "SELECT json_build_object('username', username, 'method', method, 'route', route, 'status', status,"
        f" 'targets', targets) FROM workbench_audit WHERE id > {since_id} ORDER BY at, id"
    )
    return [json.loads(row[0]) for row in rows]


def last_id(stack) -> int:
    return int(stack.psql("SELECT coalesce(max(id), 0) FROM workbench_audit")[0][0])


def test_every_kind_of_mutating_call_leaves_its_record(stack, mlflow_url, admin_auth, unique_name):
    admin = http_session(admin_auth)
    start = last_id(stack)

    def call(method, route, expected=200, session=admin, **kwargs):
        response = session.request(method, f"{mlflow_url}{route}", timeout=30, **kwargs)
        assert response.status_code == expected, (
            f"{method} {route}: {response.status_code} {response.text[:200]}"
        )
        return (
            response.json() if response.content and "json" in response.headers.get("content-type", "") else {}
        )

    experiment = call("POST", "/api/2.0/mlflow/experiments/create", json={"name": unique_name})[
        "experiment_id"
    ]
    run = call("POST", "/api/2.0/mlflow/runs/create", json={"experiment_id": experiment})["run"]["info"][
        "run_id"
    ]
    call(
        "POST",
        "/api/2.0/mlflow/runs/log-metric",
        json={"run_id": run, "key": "loss", "value": 1, "timestamp": 1},
    )
    call("POST", "/api/2.0/mlflow/runs/log-parameter", json={"run_id": run, "key": "alpha", "value": "0.5"})
    call("POST", "/api/2.0/mlflow/runs/set-tag", json={"run_id": run, "key": "team", "value": "a"})
    artifact = f"/api/2.0/mlflow-artifacts/artifacts/{experiment}/{run}/artifacts/notes.txt"
    call("PUT", artifact, data=b"audited")
    call("DELETE", artifact)
    model = f"model-{unique_name}"
    call("POST", "/api/2.0/mlflow/registered-models/create", json={"name": model})
    call(
        "POST",
        "/api/2.0/mlflow/model-versions/create",
        json={"name": model, "source": f"mlflow-artifacts:/{experiment}/{run}/artifacts", "run_id": run},
    )
    call(
        "POST",
        "/api/2.0/mlflow/registered-models/alias",
        json={"name": model, "alias": "champion", "version": "1"},
    )
    call(
        "POST",
        "/api/2.0/mlflow/model-versions/transition-stage",
        json={"name": model, "version": "1", "stage": "Staging", "archive_existing_versions": False},
    )
    alias = {"name": model, "alias": "champion"}  # as MLflow's client sends it: query and body
    call("DELETE", "/api/2.0/mlflow/registered-models/alias", params=alias, json=alias)
    user = f"auditee-{unique_name[-8:]}"
    call("POST", "/api/2.0/mlflow/users/create", json={"username": user, "password": f"{user} long password"})
    call(
        "POST",
        "/api/3.0/mlflow/users/permissions/grant",
        json={
            "username": user,
            "resource_type": "experiment",
            "resource_id": experiment,
            "permission": "READ",
        },
    )
    call("PATCH", "/api/2.0/mlflow/users/update-admin", json={"username": user, "is_admin": False})
    # The user, without EDIT on the run, tries to write to it: refused, and recorded as refused.
    auditee = http_session((user, f"{user} long password"))
    call("POST", "/api/2.0/mlflow/runs/set-tag", 403, auditee, json={"run_id": run, "key": "x", "value": "y"})
    # Reads leave no record, a search by POST neither.
    call("GET", "/api/2.0/mlflow/runs/get", params={"run_id": run})
    call("POST", "/api/2.0/mlflow/runs/search", json={"experiment_ids": [experiment]})
    call("POST", "/api/2.0/mlflow/runs/delete", json={"run_id": run})
    call("DELETE", "/api/2.0/mlflow/users/delete", json={"username": user})

    expected = [
        ("admin", "POST", "/api/2.0/mlflow/experiments/create", 200, {"name": unique_name}),
        ("admin", "POST", "/api/2.0/mlflow/runs/create", 200, {"experiment_id": experiment}),
        ("admin", "POST", "/api/2.0/mlflow/runs/log-metric", 200, {"run_id": run}),
        ("admin", "POST", "/api/2.0/mlflow/runs/log-parameter", 200, {"run_id": run}),
        ("admin", "POST", "/api/2.0/mlflow/runs/set-tag", 200, {"run_id": run}),
        ("admin", "PUT", artifact, 200, {}),
        ("admin", "DELETE", artifact, 200, {}),
        ("admin", "POST", "/api/2.0/mlflow/registered-models/create", 200, {"name": model}),
        ("admin", "POST", "/api/2.0/mlflow/model-versions/create", 200, {"name": model, "run_id": run}),
        (
            "admin",
            "POST",
            "/api/2.0/mlflow/registered-models/alias",
            200,
            {"name": model, "alias": "champion"},
        ),
        ("admin", "POST", "/api/2.0/mlflow/model-versions/transition-stage", 200, {"stage": "Staging"}),
        ("admin", "DELETE", "/api/2.0/mlflow/registered-models/alias", 200, {"alias": "champion"}),
        ("admin", "POST", "/api/2.0/mlflow/users/create", 200, {"username": user}),
        ("admin", "POST", "/api/3.0/mlflow/users/permissions/grant", 200, {"resource_id": experiment}),
        (
            "admin",
            "PATCH",
            "/api/2.0/mlflow/users/update-admin",
            200,
            {"username": user, "is_admin": "False"},
        ),
        (user, "POST", "/api/2.0/mlflow/runs/set-tag", 403, {"run_id": run}),
        ("admin", "POST", "/api/2.0/mlflow/runs/delete", 200, {"run_id": run}),
        ("admin", "DELETE", "/api/2.0/mlflow/users/delete", 200, {"username": user}),
    ]

    ours = {unique_name, experiment, run, model, user}

    def recorded():  # this test's rows (an earlier test's last ones may be flushed after `start`)
        rows = [
            row
            for row in trail(stack, start)
            if run in row["route"]
            or any(row["targets"].get(key) in ours for key in ("name", "experiment_id", "run_id", "username"))
        ]
        return rows if len(rows) >= len(expected) else None

    rows = wait_until(recorded, timeout=30, what="the audit rows (written every 0.25 s)")
    assert len(rows) == len(expected), "\n".join(map(str, rows))
    for row, (username, method, route, status, targets) in zip(rows, expected, strict=True):
        assert (row["username"], row["method"], row["route"], row["status"]) == (
            username,
            method,
            route,
            status,
        ), row
        assert targets.items() <= row["targets"].items(), row

    # Counted per user and action, at /metrics.
    metrics = admin.get(f"{mlflow_url}/metrics", timeout=10).text
    assert re.search(
        r'^workbench_audit_calls_total\{action="runs/delete",outcome="ok",user="admin"\} \d', metrics, re.M
    )
    assert re.search(
        r'^workbench_audit_calls_total\{action="runs/set-tag",outcome="refused",user="-"\} \d', metrics, re.M
    )


def test_only_admins_read_the_trail(stack, mlflow_url, admin_auth, unique_name):
    admin = http_session(admin_auth)
    user, password = f"reader-{unique_name[-8:]}", "a reader's long password"
    created = admin.post(
        f"{mlflow_url}/api/2.0/mlflow/users/create", json={"username": user, "password": password}, timeout=10
    )
    assert created.status_code == 200, created.text
    route = f"{mlflow_url}/api/2.0/workbench/audit"
    assert http_session().get(route, timeout=10).status_code == 401
    refused = http_session((user, password)).get(route, params={"user": user}, timeout=10)
    assert refused.status_code == 403, refused.text
    assert "records" not in refused.text

    def listed():
        answer = admin.get(
            route, params={"user": "admin", "action": "users/create", "limit": "5"}, timeout=10
        )
        assert answer.status_code == 200, answer.text
        return [r for r in answer.json()["records"] if r["targets"].get("username") == user] or None

    record = wait_until(listed, timeout=30, what="the user's creation in the trail")[0]
    assert (record["method"], record["status"]) == ("POST", 200)

    # make audit, as an admin of the machine types it, for the session's stack.
    result = run_make(stack, "audit", "ACTION=users/create", f"TARGET={user}")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [line for line in result.stdout.splitlines() if "/api/2.0/mlflow/users/create" in line]
    assert len(lines) == 1 and " admin " in lines[0] and " 200 " in lines[0], result.stdout
    assert stack.secrets["MLFLOW_DB_PASSWORD"] not in result.stdout + result.stderr
