"""mlflow-server/server-app/workbench_guard.py without MLflow: the rules that read only the
request (artifact paths must be canonical, run_id and run_uuid agree, a body agrees with the
query, no trace location tags, GraphQL's body), through the guard's ASGI app: a refused request
gets MLflow's error shape and never reaches the app behind; one that passes reaches it with its
body intact. The attacks themselves, against the real server, are in
tests/mlflow-server/test_authz_attacks.py."""

from __future__ import annotations

import asyncio
import json
import urllib.parse

import pytest

import workbench_guard as guard


class App:
    """The app behind the guard (MLflow's, on the server): records what reaches it."""

    def __init__(self):
        self.reached = []

    async def __call__(self, scope, receive, send):
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.reached.append((scope["method"], scope["path"], body))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})


def call(method: str, raw_path: str, body=None, content_type="application/json", chunks: int = 1):
    """(status, answer's JSON, what reached the app) for one HTTP request through the guard.
    `raw_path` as sent on the wire (with its query); the path is its percent-decoding, as uvicorn
    gives it."""
    path, _, query = raw_path.partition("?")
    data = body if isinstance(body, bytes) else (json.dumps(body).encode() if body is not None else b"")
    headers = [(b"content-type", content_type.encode())] if content_type else []
    if data:
        headers.append((b"content-length", str(len(data)).encode()))
    scope = {
        "type": "http",
        "method": method,
        "path": urllib.parse.unquote(path),
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "headers": headers,
    }
    size = -(-len(data) // chunks) or 1
    parts = [data[i : i + size] for i in range(0, len(data), size)] or [b""]
    messages = [
        {"type": "http.request", "body": part, "more_body": i < len(parts) - 1}
        for i, part in enumerate(parts)
    ]
    sent = []

    async def receive():
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    app = App()
    asyncio.run(guard.RequestGuard(app)(scope, receive, send))
    answer = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], json.loads(answer), app.reached


UPLOAD = "/api/2.0/mlflow-artifacts/artifacts/"


@pytest.mark.parametrize(
    "path",
    [
        "1/abc/artifacts/./model.pkl",
        "1/abc/artifacts/../../2/def/artifacts/model.pkl",
        "1/abc//artifacts/model.pkl",
        "%2e/2/def/artifacts/model.pkl",  # '.' percent-encoded: MLflow's check does not decode it
        "1/abc/artifacts%2f..%2f..%2f2/x",
        "1/abc/artifacts/%252e%252e/x",  # decodes to an escape MLflow decodes again
        "1/abc/artifacts\\..\\x",
        "",  # the whole store
    ],
)
def test_a_non_canonical_artifact_path_is_refused_before_mlflow(path):
    status, answer, reached = call("PUT", UPLOAD + path, b"bytes", "application/octet-stream")
    assert status == 400 and answer["error_code"] == "INVALID_PARAMETER_VALUE", answer
    assert reached == []


@pytest.mark.parametrize(
    "raw_path",
    [
        "/api/2.0/mlflow/artifacts/list?run_id=abc&path=../other",
        "/ajax-api/2.0/mlflow/get-artifact?run_id=abc&path=./model/MLmodel",
        "/api/2.0/mlflow-artifacts/artifacts?path=1/abc/artifacts/%2e%2e",
        "/api/2.0/mlflow-artifacts/artifacts",  # a listing of the store's root: every experiment
    ],
)
def test_a_non_canonical_path_in_the_query_is_refused(raw_path):
    status, _, reached = call("GET", raw_path)
    assert status == 400 and reached == []


def test_a_canonical_upload_reaches_mlflow_with_its_body_intact():
    data = bytes(range(256)) * 1000
    status, _, reached = call(
        "PUT", UPLOAD + "1/abc/artifacts/model/model.pkl", data, "application/octet-stream", chunks=7
    )
    assert status == 200 and reached == [
        ("PUT", "/api/2.0/mlflow-artifacts/artifacts/1/abc/artifacts/model/model.pkl", data)
    ]
    # MLflow's client deletes a directory as <path>/.
    assert call("DELETE", UPLOAD + "1/abc/artifacts/model/")[0] == 200


def test_run_id_and_run_uuid_must_name_one_run():
    batch = "/api/2.0/mlflow/runs/log-batch"
    metrics = [{"key": "k", "value": 1.0, "timestamp": 1, "step": 0}]
    status, answer, reached = call(
        "POST", batch, {"run_id": "mine", "run_uuid": "victims", "metrics": metrics}
    )
    assert status == 400 and "run_id and run_uuid" in answer["message"] and reached == []
    assert call("POST", f"{batch}?run_uuid=victims", {"run_id": "mine", "metrics": metrics})[0] == 400
    body = {"run_id": "mine", "run_uuid": "mine", "metrics": metrics}  # as MLflow's client sends it
    status, _, reached = call("POST", batch, body)
    assert status == 200 and json.loads(reached[0][2]) == body


def test_a_body_must_be_json_and_agree_with_the_query():
    delete = "/api/2.0/mlflow/registered-models/delete?name=mine"
    status, answer, reached = call("DELETE", delete, b'{"name": "victims"}', "text/plain")
    assert status == 400 and "must be JSON" in answer["message"] and reached == []
    status, answer, reached = call("DELETE", delete, {"name": "victims"})
    assert status == 400 and "'name'" in answer["message"] and reached == []
    assert call("DELETE", delete, {"name": "mine"})[0] == 200
    # Uploads carry the file as their body, not JSON.
    upload = "/api/2.0/mlflow/upload-artifact?run_uuid=abc&path=model.pkl"
    assert call("POST", upload, b"\x00file", "application/octet-stream")[0] == 200


@pytest.mark.parametrize("tag", sorted(guard.LOCATION_TAGS))
def test_trace_tags_that_locate_trace_data_are_the_servers(tag):
    status, _, reached = call("PATCH", "/api/2.0/mlflow/traces/tr-1/tags", {"key": tag, "value": "tr-2"})
    assert status == 400 and reached == []
    assert call("DELETE", f"/api/3.0/mlflow/traces/tr-1/tags?key={urllib.parse.quote(tag)}")[0] == 400
    assert call("PATCH", "/api/2.0/mlflow/traces/tr-1/tags", {"key": "note", "value": tag})[0] == 200


def test_graphql_takes_a_json_body_with_a_query():
    assert call("GET", "/graphql?query={test}", content_type=None)[0] == 400
    assert call("POST", "/graphql", {"query": "{ test }"})[0] == 200
