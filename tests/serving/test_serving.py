"""`make serve`: a model registered from JupyterLab is built into an image and served over HTTP.

Black-box, real effects: two versions of a scikit-learn model are registered from inside the
jupyter container, served with serving/serve.sh (what `make serve` runs) for this session's
stack, side by side on two ports, and scored over HTTP in every input format of MLflow 3's
scoring protocol. Each answer must equal what `mlflow.pyfunc.load_model(...).predict` gives in
the jupyter container. Bad requests get a 4xx with a readable message, and the server stays up.
The served containers and model images are removed at the end (the python:*-slim stand-in too,
when this module built it).
"""

from __future__ import annotations

import concurrent.futures
import csv
import io
import json
import os
import re
import socket
import subprocess
import uuid

import pytest
import requests

from utils.serving import (
    SERVE,
    UNKNOWN,
    bearer,
    free_port,
    issue_key,
    model_images_removed_afterwards,
    remove_image,
    resolve,
    run_inspecting,
    serve,
)
from utils.stack import http_session
from utils.wait import wait_until

REGISTER = r"""
import json
import warnings
import mlflow
from mlflow import MlflowClient
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

NAME = {name!r}
X, y = load_iris(return_X_y=True, as_frame=True)
mlflow.set_experiment("serving-tests")
client = MlflowClient()
predictions, logged = {{}}, {{}}
for version_c in (1.0, 0.01):  # two versions that disagree on some rows
    with mlflow.start_run():
        model = LogisticRegression(C=version_c, max_iter=1000).fit(X, y)
        info = mlflow.sklearn.log_model(model, name="model", input_example=X.head(3),
                                        registered_model_name=NAME)
    version = info.registered_model_version
    loaded = mlflow.pyfunc.load_model(f"models:/{{NAME}}/{{version}}")
    predictions[str(version)] = [int(p) for p in loaded.predict(X)]
    logged[str(version)] = {{"model_id": info.model_id, "run_id": info.run_id}}
client.set_registered_model_alias(NAME, "champion", "1")
client.set_registered_model_alias(NAME, "challenger", "2")
with warnings.catch_warnings():  # stages are deprecated, still resolved (test_every_model_uri...)
    warnings.simplefilter("ignore", FutureWarning)
    client.transition_model_version_stage(NAME, "2", "Staging")
print(json.dumps({{"columns": list(X.columns), "data": X.values.tolist(),
                  "predictions": predictions, "logged": logged}}))
"""


@pytest.fixture(scope="module")
def model(stack):
    name = f"serving-iris-{uuid.uuid4().hex[:8]}"
    out = stack.python("jupyter", REGISTER.format(name=name))
    return {"name": name, **json.loads(out.strip().splitlines()[-1])}


# The module's API key (for every model), issued by `served` once the gateways run (so they take
# it through HAProxy's runtime API): predict() sends it.
KEY: dict[str, str] = {}


@pytest.fixture(scope="module")
def served(stack, model):
    """Both versions served side by side, each behind its gateway; everything this created is
    removed afterwards."""
    servers = {}
    with model_images_removed_afterwards(model["name"]):
        try:
            for alias, version in (("champion", "1"), ("challenger", "2")):
                port = free_port()
                uri = f"models:/{model['name']}@{alias}"
                result = serve(stack, "serve", MODEL=uri, PORT=str(port), WORKERS="2")
                assert result.returncode == 0, (
                    f"serve {uri} failed\n{result.stdout[-6000:]}\n{result.stderr[-4000:]}"
                )
                servers[version] = {
                    "url": f"http://127.0.0.1:{port}",
                    "port": port,
                    "uri": uri,
                    "output": result.stdout,
                }
            KEY["key"] = issue_key(stack, f"serving-tests-{uuid.uuid4().hex[:8]}")
            yield servers
        finally:
            for server in servers.values():
                serve(stack, "stop", MODEL=server["uri"], PORT="")


def containers(stack, model, label: str = "") -> list[dict]:
    """The served-model containers of this module's model (or those with `label`)."""
    label = label or f"org.workbench.model.name={model['name']}"
    filters = [
        "--filter",
        "label=org.workbench.serving=true",
        "--filter",
        f"label=org.workbench.project={stack.project}",
        "--filter",
        f"label={label}",
    ]
    ids = subprocess.run(
        ["docker", "ps", "-a", "-q", *filters], capture_output=True, text=True, check=True
    ).stdout.split()
    if not ids:
        return []
    out = subprocess.run(["docker", "inspect", *ids], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def predict(url: str, body, content_type: str = "application/json", key: str | None = None, **headers):
    """POST /invocations with the module's key (or `key`; "" sends none)."""
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    key = KEY.get("key", "") if key is None else key
    headers = {"Content-Type": content_type, **(bearer(key) if key else {}), **headers}
    return http_session().post(f"{url}/invocations", data=data, timeout=30, headers=headers)


def gateway(stack, port: int) -> dict:
    out = subprocess.run(
        ["docker", "inspect", f"{stack.project}-gateway-p{port}"], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)[0]


def payloads(model) -> dict[str, tuple[object, str]]:
    columns, data = model["columns"], model["data"]
    records = [dict(zip(columns, row, strict=False)) for row in data]
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([[repr(v) for v in row] for row in data])
    return {
        "dataframe_split": ({"dataframe_split": {"columns": columns, "data": data}}, "application/json"),
        "dataframe_records": ({"dataframe_records": records}, "application/json"),
        "instances": ({"instances": records}, "application/json"),
        "inputs": (
            {"inputs": {c: [row[i] for row in data] for i, c in enumerate(columns)}},
            "application/json",
        ),
        "text/csv": (text.getvalue(), "text/csv"),
    }


FORMATS = ["dataframe_split", "dataframe_records", "instances", "inputs", "text/csv"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_input_format_predicts_as_the_loaded_model(served, model, fmt):
    body, content_type = payloads(model)[fmt]
    for version, server in served.items():
        response = predict(server["url"], body, content_type)
        assert response.status_code == 200, response.text
        assert response.json() == {"predictions": model["predictions"][version]}, fmt


def test_two_versions_are_served_side_by_side(stack, served, model):
    assert model["predictions"]["1"] != model["predictions"]["2"], "the two versions must differ"
    running = {c["Config"]["Labels"]["org.workbench.model.version"]: c for c in containers(stack, model)}
    assert set(running) == {"1", "2"}
    for version, server in served.items():
        c = running[version]
        assert (
            c["Name"].lstrip("/") == f"{stack.project}-serve-{model['name']}-v{version}-p{server['port']}-1"
        )
        assert c["Config"]["Image"] == f"workbench-model/{model['name']}:{version}"
        assert c["State"]["Health"]["Status"] == "healthy"
        assert c["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
        # The model publishes no port: only its gateway, which holds the port and the alias.
        assert not c["HostConfig"]["PortBindings"], c["HostConfig"]["PortBindings"]
        assert not any(c["NetworkSettings"]["Ports"].values()), c["NetworkSettings"]["Ports"]
        # The gateway starts once the model answers: its first health check may be still to come.
        wait_until(
            lambda port=server["port"]: gateway(stack, port)["State"]["Health"]["Status"] == "healthy",
            timeout=60,
            interval=1,
            what=f"the gateway on {server['port']} healthy",
        )
        g = gateway(stack, server["port"])
        assert g["HostConfig"]["PortBindings"]["8080/tcp"] == [
            {"HostIp": "127.0.0.1", "HostPort": str(server["port"])}
        ]
        assert (
            f"serve-{server['port']}"
            in g["NetworkSettings"]["Networks"][f"{stack.project}_frontend"]["Aliases"]
        )
        model_aliases = c["NetworkSettings"]["Networks"][f"{stack.project}_frontend"]["Aliases"] or []
        assert f"serve-{server['port']}" not in model_aliases
        assert f"serve-{server['port']}-model" in model_aliases  # the gateway's upstream
        assert {"MLFLOW_MODELS_WORKERS=2", "UVICORN_ACCESS_LOG=false"} <= set(c["Config"]["Env"])
        # uvicorn's fast loop and parser are in the image (it picks them up when installed).
        subprocess.run(
            ["docker", "exec", c["Id"], "python", "-c", "import uvloop, httptools"],
            check=True,
            capture_output=True,
        )
    ps = serve(stack, "ps")
    assert all(served[v]["uri"] in ps.stdout for v in served), ps.stdout


def test_serve_prints_the_image_size_and_a_curl_example_that_works(served):
    output = served["1"]["output"]
    image = re.search(r"^\s+image\s+(\S+)\s+(\d+) MB$", output, re.M)
    assert image, output
    assert 100 < int(image[2]) < 3000
    curl = re.search(
        r"^\s+curl -s (\S+) -H \"Authorization: Bearer \$KEY\" -H 'Content-Type: application/json' -d '(.+)'$",
        output,
        re.M,
    )
    assert curl, output
    assert curl[1] == f"{served['1']['url']}/invocations"
    example = json.loads(curl[2].replace("'\\''", "'"))
    response = predict(served["1"]["url"], example)
    assert response.status_code == 200, response.text
    assert len(response.json()["predictions"]) == 3


def test_no_secret_reaches_the_served_container(stack, served, model):
    password = stack.secrets["MLFLOW_ADMIN_PASSWORD"]
    for c in containers(stack, model):
        assert password not in json.dumps(c)
        assert not any(m.get("Source", "").endswith("docker.sock") for m in c["Mounts"])


def assert_hardened(container: dict, memory: int, pids: int) -> None:
    """Not root, no capability, no privilege gain, a read-only root file system with tmpfs for
    what MLflow's scoring server writes, memory and process limits, no host path."""
    host = container["HostConfig"]
    assert container["Config"]["User"] == "65534:65534"
    assert host["CapDrop"] == ["ALL"] and not host["CapAdd"]
    assert "no-new-privileges:true" in host["SecurityOpt"]
    assert host["ReadonlyRootfs"] is True
    assert set(host["Tmpfs"]) == {"/tmp", "/var/lib/nginx", "/var/log/nginx"}
    assert (host["Memory"], host["PidsLimit"]) == (memory, pids)
    assert container["Mounts"] == []


def test_served_containers_run_hardened(stack, served, model):
    """Hardened like the workbench's services (every other test here gets its answers from these
    containers): the defaults MEMORY=2g, PIDS=512; every process of them runs as nobody."""
    running = containers(stack, model)
    assert len(running) == 2
    for c in running:
        assert_hardened(c, 2 * 1024**3, 512)
        top = subprocess.run(
            ["docker", "top", c["Id"], "-o", "pid,uid,comm"], capture_output=True, text=True, check=True
        ).stdout.splitlines()[1:]
        assert top and all(line.split()[1] == "65534" for line in top), top


BAD_REQUESTS = {
    "malformed JSON": ('{"dataframe_split": {"columns": ', "application/json", 400, "JSON"),
    "missing columns": (
        {"dataframe_split": {"columns": ["sepal length (cm)"], "data": [[5.1]]}},
        "application/json",
        400,
        "missing inputs",
    ),
    "wrong columns": (
        {"dataframe_records": [{"a": 1.0, "b": 2.0}]},
        "application/json",
        400,
        "missing inputs",
    ),
    "wrong types": (None, "application/json", 400, "convert"),
    "unknown format key": (
        {"rows": [[1, 2, 3, 4]]},
        "application/json",
        400,
        "exactly one of the input fields",
    ),
    "empty body": ("", "application/json", 400, "JSON"),
    "wrong content type": ("5.1,3.5,1.4,0.2", "text/plain", 415, "content types"),
    "bad CSV": ("nonsense\n", "text/csv", 400, "missing inputs"),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_bad_input_gets_a_readable_4xx_and_the_server_stays_up(served, model, case):
    body, content_type, status, phrase = BAD_REQUESTS[case]
    if case == "wrong types":
        record = dict(zip(model["columns"], model["data"][0], strict=False))
        record[model["columns"][0]] = "not a number"
        body = {"dataframe_records": [record]}
    url = served["1"]["url"]
    response = predict(url, body, content_type)
    assert response.status_code == status, response.text
    assert phrase in response.text, response.text
    still_up(url, model)


def test_an_oversized_body_is_refused_without_being_read(served, model):
    """The gateway refuses bodies over BODY_LIMIT (10m by default) from the header alone:
    announce 11 MB, send a few bytes, get 413 at once (bounded: nothing big is sent)."""
    port = served["1"]["port"]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(
            b"POST /invocations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {KEY['key']}\r\n".encode()
            + b"Content-Length: 11534336\r\nConnection: close\r\n\r\n{}"
        )
        answer = s.recv(4096).decode(errors="replace")
    assert answer.startswith("HTTP/1.1 413"), answer
    assert "REQUEST_TOO_LARGE" in answer
    still_up(served["1"]["url"], model)


def test_a_chunked_body_that_could_hide_its_size_is_refused(served, model):
    """Transfer-Encoding: chunked announces no size, so the body limit could not see it: an
    attacker's way around BODY_LIMIT with a valid key. The gateway answers 411."""
    body, _ = payloads(model)["dataframe_split"]
    chunks = iter([json.dumps(body).encode()])  # a generator: requests sends it chunked
    response = http_session().post(
        f"{served['1']['url']}/invocations",
        data=chunks,
        timeout=30,
        headers={"Content-Type": "application/json", **bearer(KEY["key"])},
    )
    assert response.status_code == 411, response.text
    assert "LENGTH_REQUIRED" in response.text
    still_up(served["1"]["url"], model)


def still_up(url: str, model) -> None:
    assert http_session().get(f"{url}/ping", timeout=10).status_code == 200
    body, content_type = payloads(model)["dataframe_split"]
    response = predict(url, body, content_type)
    assert response.status_code == 200 and response.json()["predictions"] == model["predictions"]["1"]


# ---- the OpenAPI document each served model publishes ----


@pytest.fixture(scope="module")
def openapi(served) -> dict[str, dict]:
    documents = {}
    for version, server in served.items():
        response = http_session().get(f"{server['url']}/openapi.json", timeout=10)
        assert response.status_code == 200, response.text
        assert response.headers["Content-Type"].startswith("application/json")
        documents[version] = response.json()
    return documents


def test_openapi_document_is_valid_and_describes_the_served_version(openapi, model):
    from openapi_spec_validator import validate

    for version, document in openapi.items():
        validate(document)  # raises with the offending path when invalid
        assert document["info"]["title"] == f"MLflow model {model['name']}, version {version}"
        assert document["info"]["version"] == version
        schemas = document["components"]["schemas"]
        # From the signature: the four iris columns, all required, all doubles.
        assert list(schemas["Row"]["properties"]) == model["columns"]
        assert schemas["Row"]["required"] == model["columns"]
        assert {p["type"] for p in schemas["Row"]["properties"].values()} == {"number"}
        assert schemas["Predictions"]["properties"]["predictions"]["items"]["type"] == "integer"
        assert set(document["paths"]) == {"/invocations", "/ping"}  # what nginx routes
        # The gateway asks for a key: the document says how to give it.
        assert document["components"]["securitySchemes"]["apiKey"] == {
            **document["components"]["securitySchemes"]["apiKey"],
            "type": "http",
            "scheme": "bearer",
        }
        assert {"apiKey": []} in document["paths"]["/invocations"]["post"]["security"]
        assert {"401", "403", "413", "429"} <= set(document["paths"]["/invocations"]["post"]["responses"])


def _request_schema(document: dict, content_type: str = "application/json") -> dict:
    """The request body's schema as a standalone JSON Schema (its $refs resolve in the root)."""
    body = document["paths"]["/invocations"]["post"]["requestBody"]["content"][content_type]
    return {**body["schema"], "components": document["components"]}


def test_requests_built_from_the_documents_examples_succeed(openapi, served, model):
    """Every example the document gives (one per JSON format, and CSV) is a request that the
    server answers with exactly the loaded model's predictions for those rows (the model's
    input example: its first 3 rows)."""
    import jsonschema

    for version, document in openapi.items():
        content = document["paths"]["/invocations"]["post"]["requestBody"]["content"]
        examples = content["application/json"]["examples"]
        assert set(examples) == {"dataframe_split", "dataframe_records", "instances", "inputs"}
        expected = {"predictions": model["predictions"][version][:3]}
        for fmt, example in examples.items():
            jsonschema.validate(example["value"], _request_schema(document))
            response = predict(served[version]["url"], example["value"])
            assert response.status_code == 200, f"{fmt}: {response.text}"
            assert response.json() == expected, fmt
        response = predict(served[version]["url"], content["text/csv"]["example"], "text/csv")
        assert response.status_code == 200 and response.json() == expected, response.text


def test_the_documents_schema_refuses_what_the_server_refuses(openapi):
    """Bodies the server answers with 400 (missing or unknown columns, wrong types) are invalid
    for the document too: a client can check its requests before sending them."""
    import jsonschema

    schema = _request_schema(openapi["1"])
    bad = [
        BAD_REQUESTS["missing columns"][0],
        BAD_REQUESTS["wrong columns"][0],
        BAD_REQUESTS["unknown format key"][0],
        {
            "dataframe_records": [
                {
                    "sepal length (cm)": "x",
                    "sepal width (cm)": 1.0,
                    "petal length (cm)": 1.0,
                    "petal width (cm)": 1.0,
                }
            ]
        },
    ]
    for body in bad:
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(body, schema)


def test_the_served_model_is_reachable_from_jupyterlab(stack, served, model):
    """The served model's gateway joins the workbench's frontend network as serve-<port>: what
    notebooks/05-serving-client.ipynb calls, with the key `make serve` gave JupyterLab."""
    port = served["1"]["port"]
    body = json.dumps(payloads(model)["dataframe_split"][0])
    out = stack.python(
        "jupyter",
        f"""
import json, requests
key = open("/run/secrets/serving-key").read().strip()
r = requests.post("http://serve-{port}:8080/invocations", data={body!r},
                  headers={{"Content-Type": "application/json", "Authorization": "Bearer " + key}},
                  timeout=30)
print(r.status_code, json.dumps(r.json()))
""",
    )
    status, answer = out.strip().splitlines()[-1].split(" ", 1)
    assert status == "200" and json.loads(answer) == {"predictions": model["predictions"]["1"]}


# ---- the gateway: API keys, their scope, revocation, counts, limits ----


def test_no_key_or_a_wrong_key_gets_401_and_a_valid_one_200(served, model):
    url, body = served["1"]["url"], payloads(model)["dataframe_split"][0]
    for key in ("", "wbk_" + "0" * 64, KEY["key"] + "0"):
        response = predict(url, body, key=key)
        assert response.status_code == 401, (key, response.text)
        assert response.headers["WWW-Authenticate"].startswith("Bearer"), response.headers
        assert response.json()["error_code"] == "UNAUTHENTICATED"
    expected = {"predictions": model["predictions"]["1"]}
    assert predict(url, body).json() == expected  # Authorization: Bearer <key>
    assert predict(url, body, key="", **{"X-API-Key": KEY["key"]}).json() == expected
    # /ping (health) and the OpenAPI document need no key.
    assert http_session().get(f"{url}/ping", timeout=10).status_code == 200


def test_a_key_for_another_model_gets_403_one_for_this_model_200(stack, served, model):
    url, body = served["1"]["url"], payloads(model)["dataframe_split"][0]
    other = issue_key(stack, f"other-{uuid.uuid4().hex[:8]}", model="some-other-model")
    response = predict(url, body, key=other)
    assert response.status_code == 403, response.text
    assert response.json()["error_code"] == "PERMISSION_DENIED"
    mine = issue_key(stack, f"mine-{uuid.uuid4().hex[:8]}", model=model["name"])
    assert predict(url, body, key=mine).json() == {"predictions": model["predictions"]["1"]}


def test_a_revoked_key_is_refused_at_once_without_restarting_the_gateway(stack, served, model):
    url, body = served["1"]["url"], payloads(model)["dataframe_split"][0]
    name = f"revoked-{uuid.uuid4().hex[:8]}"
    key = issue_key(stack, name)
    started = gateway(stack, served["1"]["port"])["State"]["StartedAt"]
    assert predict(url, body, key=key).status_code == 200
    result = serve(stack, "key-revoke", NAME=name)
    assert result.returncode == 0, result.stderr
    assert predict(url, body, key=key).status_code == 401
    assert predict(url, body, key=key, **{"X-API-Key": key}).status_code == 401
    assert gateway(stack, served["1"]["port"])["State"]["StartedAt"] == started
    assert name not in serve(stack, "keys").stdout
    again = serve(stack, "key-revoke", NAME=name)
    assert again.returncode != 0 and f"no key named {name}" in again.stderr


@pytest.mark.parametrize("name", ["", "a b", "x;touch /tmp/pwned", "$(id)", "k" * 65, "ü"])
def test_a_key_name_that_is_not_letters_digits_dash_underscore_is_refused(stack, name):
    result = serve(stack, "key", NAME=name)
    assert result.returncode != 0
    assert "is not a key name: 1-64 letters, digits, - or _" in result.stderr, result.stderr
    assert "wbk_" not in result.stdout


def test_keys_are_counted_per_key_in_serve_keys_and_prometheus(stack, served, model):
    """3 answered requests and 1 bad one (400) with a new key: `make serve-keys` and the
    gateway's /metrics/keys (HAProxy's stick table) say so; HAProxy's own exporter answers at
    /metrics."""
    url, body = served["2"]["url"], payloads(model)["dataframe_split"][0]
    name = f"counted-{uuid.uuid4().hex[:8]}"
    key = issue_key(stack, name)
    for _ in range(3):
        assert predict(url, body, key=key).status_code == 200
    assert predict(url, "{", key=key).status_code == 400
    listed = [line.split() for line in serve(stack, "keys").stdout.splitlines()]
    assert listed[0] == ["NAME", "MODEL", "CREATED", "REQUESTS", "4XX", "5XX", "REFUSED"]
    row = next(r for r in listed if r[0] == name)
    assert row[1] == "*" and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", row[2]), row
    assert row[3:] == ["4", "1", "0", "0"], row
    assert key not in serve(stack, "keys").stdout
    port = served["2"]["port"]
    out = stack.python(
        "jupyter",
        f"""
import requests
for path in ("/metrics/keys", "/metrics"):
    print(requests.get("http://serve-{port}:8405" + path, timeout=10).text)
""",
    )
    labels = f'key="{name}",model="{model["name"]}"'
    assert f"workbench_gateway_key_requests_total{{{labels}}} 4" in out, out[:3000]
    assert f"workbench_gateway_key_client_errors_total{{{labels}}} 1" in out
    assert 'haproxy_frontend_http_requests_total{proxy="api"}' in out


def test_keys_off_limits_the_rate_and_the_body_size(stack, served, model):
    """A second gateway for version 1 (its image is reused) with WORKBENCH_SERVING_KEYS=off,
    RATE_LIMIT=5 and BODY_LIMIT=1k: no key needed (and its OpenAPI document asks for none), the
    sixth request within 10 s gets 429 with Retry-After, a body over 1 KiB 413."""
    port = free_port()
    settings = {"WORKBENCH_SERVING_KEYS": "off", "RATE_LIMIT": "5", "BODY_LIMIT": "1k"}
    try:
        result = serve(stack, "serve", MODEL=served["1"]["uri"], PORT=str(port), **settings)
        assert result.returncode == 0, f"{result.stdout[-4000:]}\n{result.stderr[-3000:]}"
        assert "-H 'Content-Type: application/json'" in result.stdout
        assert "Bearer" not in result.stdout
        url = f"http://127.0.0.1:{port}"
        document = http_session().get(f"{url}/openapi.json", timeout=10).json()
        assert "securitySchemes" not in document["components"]
        assert "security" not in document["paths"]["/invocations"]["post"]
        body = {"dataframe_split": {"columns": model["columns"], "data": model["data"][:2]}}
        big = {"dataframe_split": {"columns": model["columns"], "data": model["data"][:80]}}
        assert len(json.dumps(big)) > 1024
        response = predict(url, big, key="")
        assert response.status_code == 413, response.text
        # Ten at once: one after another, on a busy machine, ten predictions can take more than
        # the 10 s window (a CI run saw 10 times 200). HAProxy's rate is a sliding 10 s window,
        # estimated from the current and previous period, and the 413 above counted: 4 to 6 go
        # through, the rest get 429.
        # Sent without http_session(): urllib3's Retry honours a 429's Retry-After (it would wait
        # the 10 s out and send again, and get 200).
        with concurrent.futures.ThreadPoolExecutor(10) as pool:
            responses = list(
                pool.map(
                    lambda _: requests.post(
                        f"{url}/invocations",
                        json=body,
                        timeout=30,
                        headers={"Content-Type": "application/json"},
                    ),
                    range(10),
                )
            )
        statuses = sorted(r.status_code for r in responses)
        assert set(statuses) == {200, 429} and 4 <= statuses.count(200) <= 6, statuses
        limited = next(r for r in responses if r.status_code == 429)
        assert limited.headers["Retry-After"] == "10", limited.headers
        assert limited.json()["error_code"] == "RESOURCE_EXHAUSTED"
    finally:
        serve(stack, "stop", PORT=str(port), MODEL="")
    assert not gateway_ids(stack, port)


def gateway_ids(stack, port) -> list[str]:
    return subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"name=^{stack.project}-gateway-p{port}$"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()


def test_a_port_taken_by_another_model_is_refused_with_a_hint(stack, served):
    result = serve(stack, "serve", MODEL=served["2"]["uri"], PORT=str(served["1"]["port"]))
    assert result.returncode != 0
    assert f"port {served['1']['port']} already serves {served['1']['uri']}" in result.stderr
    assert "make serve-stop" in result.stderr


def test_a_port_in_use_by_another_program_fails_and_leaves_no_container(stack, served, model):
    """Also: the tools container (which holds the Docker socket) gets nothing else writable."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = {
            **os.environ,
            "PROJECT": stack.project,
            "ENV_FILE": str(stack.env_file),
            "MODEL": served["1"]["uri"],
            "PORT": str(port),
        }
        tools, result = run_inspecting(
            [str(SERVE), "serve"],
            env=env,
            labels=["org.workbench.serving.tools=true", f"org.workbench.project={stack.project}"],
        )
    assert tools, f"no tools container seen\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    host = tools["HostConfig"]
    assert host["ReadonlyRootfs"] is True and host["CapDrop"] == ["ALL"]
    assert "no-new-privileges:true" in host["SecurityOpt"]
    assert host["Memory"] > 0 and host["PidsLimit"] > 0
    binds = [(m["Destination"], m["RW"]) for m in tools["Mounts"] if m["Type"] == "bind"]
    assert binds == [("/var/run/docker.sock", False)], tools["Mounts"]
    volumes = [m for m in tools["Mounts"] if m["Type"] == "volume"]
    assert [m["Destination"] for m in volumes] == ["/tmp"]  # anonymous: gone with the container
    assert re.fullmatch(r"[0-9a-f]{64}", volumes[0]["Name"]), volumes
    assert result.returncode != 0
    assert f"is port {port} in use by something else?" in result.stderr, result.stderr
    assert "already built from this model version" in result.stdout  # no second build
    assert {c["Config"]["Labels"]["org.workbench.serving.port"] for c in containers(stack, model)} == {
        str(served["1"]["port"]),
        str(served["2"]["port"]),
    }


# ---- every model URI MLflow loads ----

# A URI form -> the registered version it names now (version 2 is in the Staging stage, the
# latest; champion is version 1; the LoggedModel and the run are version 1's), and what it
# resolves to: the pinned URI the image is built from, and the name and "version" of its image
# tag and container name. {name}, {model_id}, {run_id} and {run12} (the run id's first 12
# characters) come from the module's model.
URI_FORMS = [
    pytest.param("models:/{name}/Staging", "2", "models:/{name}/2", "{name}", "2", id="stage"),
    pytest.param("models:/{name}/staging", "2", "models:/{name}/2", "{name}", "2", id="stage-lower-case"),
    pytest.param("models:/{name}/latest", "2", "models:/{name}/2", "{name}", "2", id="latest"),
    pytest.param("models:/{name}@champion", "1", "models:/{name}/1", "{name}", "1", id="alias"),
    pytest.param("models:/{name}/1", "1", "models:/{name}/1", "{name}", "1", id="version"),
    pytest.param(
        "models:/{model_id}", "1", "models:/{model_id}", "model", "{model_id}", id="logged-model-id"
    ),
    pytest.param("runs:/{run_id}/model", "1", "runs:/{run_id}/model", "model", "run-{run12}", id="run"),
]
# Served end to end: the stage (its image is version 2's, built by `served`: reused, no build),
# and the run's model, the one more image this builds (from the same files as version 1: the
# build cache has its layers).
SERVED_FORMS = {"models:/{name}/Staging", "runs:/{run_id}/model"}


@pytest.mark.parametrize("form,version,pinned,image_name,image_version", URI_FORMS)
def test_every_model_uri_mlflow_loads_is_served(
    stack, served, model, form, version, pinned, image_name, image_version
):
    """Each form MLflow's own load_model accepts resolves (in serve.sh's tools container) to the
    immutable URI of what it names now, tagged by a name and version Docker accepts; the
    deprecated stage URI without a deprecation warning. Two forms are served and answer as the
    loaded model they name."""
    logged = model["logged"]["1"]
    fill = {"name": model["name"], **logged, "run12": logged["run_id"][:12]}
    uri = form.format(**fill)
    resolved, stderr = resolve(stack, uri)
    assert "error" not in resolved, resolved
    assert (resolved["uri"], resolved["name"], resolved["version"]) == (
        pinned.format(**fill),
        image_name.format(**fill),
        image_version.format(**fill),
    )
    assert re.fullmatch(r"\w[\w.-]{0,127}", resolved["version"]), "not a Docker tag"
    assert "get_latest_versions" not in stderr, stderr

    if form not in SERVED_FORMS:
        return
    port = free_port()
    image = f"workbench-model/{image_name.format(**fill)}:{resolved['version']}"
    limits = {"MEMORY": "1g", "PIDS": "300"} if form.startswith("runs:") else {}
    try:
        result = serve(stack, "serve", MODEL=uri, PORT=str(port), **limits)
        output = result.stdout + result.stderr
        assert result.returncode == 0, f"serve {uri} failed\n{output[-8000:]}"
        assert stack.secrets["MLFLOW_ADMIN_PASSWORD"] not in output
        assert "get_latest_versions" not in output
        assert f"Serving {uri} ({resolved['what']}) at http://127.0.0.1:{port}" in result.stdout
        if image_name == "{name}":
            assert "already built from this model version" in result.stdout  # version 2's image
        running = containers(stack, model, label=f"org.workbench.model.uri={uri}")
        assert [c["Name"].lstrip("/") for c in running] == [
            f"{stack.project}-serve-{image_name.format(**fill)}-v{resolved['version']}-p{port}-1"
        ]
        assert running[0]["Config"]["Image"] == image
        labels = running[0]["Config"]["Labels"]
        assert labels["org.workbench.model.version"] == resolved["version"]
        if limits:  # MEMORY= and PIDS= reach the container
            assert_hardened(running[0], 1024**3, 300)
        response = predict(f"http://127.0.0.1:{port}", *payloads(model)["dataframe_split"])
        assert response.status_code == 200, response.text
        assert response.json() == {"predictions": model["predictions"][version]}
    finally:
        serve(stack, "stop", MODEL=uri, PORT="")
        if image_name != "{name}":  # the module's own images are removed at its end
            remove_image(image)


@pytest.mark.parametrize("form", list(UNKNOWN))
def test_an_unknown_model_fails_with_mlflows_message(stack, form):
    """One readable line: the URI and MLflow's own words; no traceback, no password."""
    hex_id = uuid.uuid4().hex
    uri = form.format(hex=hex_id)
    where, mlflow_says = UNKNOWN[form]
    result = serve(stack, "serve", MODEL=uri, PORT=str(free_port()))
    output = result.stdout + result.stderr
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith(f"error: {uri} is not in the workbench's {where}: "), errors
    assert errors[0].endswith(mlflow_says.format(hex=hex_id)), errors
    assert "Traceback" not in output
    assert stack.secrets["MLFLOW_ADMIN_PASSWORD"] not in output


def test_serve_stop_by_port_removes_only_that_model(stack, served, model):
    """Last in the module (pytest runs in file order): stops version 2."""
    result = serve(stack, "stop", PORT=str(served["2"]["port"]), MODEL="")
    assert result.returncode == 0, result.stderr
    assert [c["Config"]["Labels"]["org.workbench.model.version"] for c in containers(stack, model)] == ["1"]
    assert not gateway_ids(stack, served["2"]["port"]) and gateway_ids(stack, served["1"]["port"])
    assert http_session().get(f"{served['1']['url']}/ping", timeout=10).status_code == 200
