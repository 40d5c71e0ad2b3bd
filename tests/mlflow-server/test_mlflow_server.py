"""mlflow-server: authentication on, UI served, secrets out of sight, proxied artifacts."""

from __future__ import annotations

import pytest

from utils.stack import REPO, http_session


def test_tracking_api_without_credentials_answers_401(mlflow_url):
    response = http_session().post(
        f"{mlflow_url}/api/2.0/mlflow/experiments/search", json={"max_results": 1}, timeout=10
    )
    assert response.status_code == 401


def test_tracking_api_with_a_wrong_password_answers_401(mlflow_url):
    response = http_session(("admin", "not-the-password")).post(
        f"{mlflow_url}/api/2.0/mlflow/experiments/search", json={"max_results": 1}, timeout=10
    )
    assert response.status_code == 401


def test_ui_serves_the_mlflow_page(mlflow_url, admin_auth):
    response = http_session(admin_auth).get(f"{mlflow_url}/", timeout=10)
    assert response.status_code == 200
    assert "<title>MLflow</title>" in response.text


def test_health_answers(mlflow_url):
    assert http_session().get(f"{mlflow_url}/health", timeout=10).status_code == 200


def test_other_containers_reach_it_by_its_service_name(stack):
    # The Host-header protection must admit `mlflow-server`, the name jupyter uses.
    code = "import urllib.request; print(urllib.request.urlopen('http://mlflow-server:5000/health').status)"
    assert stack.python("jupyter", code).strip() == "200"


def test_unknown_host_header_is_refused(mlflow_url, admin_auth):
    # DNS-rebinding protection: a name not in MLFLOW_SERVER_ALLOWED_HOSTS gets 403, even with
    # valid credentials.
    response = http_session(admin_auth).post(
        f"{mlflow_url}/api/2.0/mlflow/experiments/search",
        json={"max_results": 1},
        timeout=10,
        headers={"Host": "evil.example"},
    )
    assert response.status_code == 403


@pytest.mark.parametrize("service", ["mlflow-server", "postgres", "ftpd", "jupyter"])
def test_no_secret_in_docker_inspect(stack, service):
    inspected = repr(stack.inspect(service))
    for name in (
        "mlflow-db-password",
        "ftpd-password",
        "mlflow-admin-password",
        "postgres-password",
        "jupyter-token",
    ):
        for holder in ("postgres", "ftpd", "mlflow-server", "jupyter"):
            result = stack.exec(holder, "cat", f"/run/secrets/{name}", check=False)
            if result.returncode == 0 and result.stdout:
                assert result.stdout not in inspected, f"{name} visible in docker inspect {service}"


def test_no_secret_in_the_compose_file(stack):
    compose = (REPO / "docker-compose.yml").read_text()
    password = stack.read_secret("mlflow-server", "mlflow-admin-password")
    assert password not in compose


PROCESSES = """
import os
for pid in sorted((p for p in os.listdir("/proc") if p.isdigit()), key=int):
    if int(pid) == os.getpid():
        continue
    try:
        uid = os.stat(f"/proc/{pid}").st_uid
        cmd = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\\0", b" ").decode().strip()
    except OSError:
        continue
    print(uid, cmd)
"""


def test_server_runs_as_non_root_without_the_job_runner(stack):
    processes = stack.python("mlflow-server", PROCESSES).splitlines()
    assert processes and all(line.startswith("1002 ") for line in processes), processes
    # tini (init: true), the mlflow CLI, uvicorn's supervisor, multiprocessing's resource
    # tracker and MLFLOW_WORKERS=2 workers; the default server (job runner on) starts 15.
    assert len(processes) <= 6, processes


def test_prometheus_metrics_are_exposed(mlflow_url, admin_auth):
    http = http_session(admin_auth)
    http.post(f"{mlflow_url}/api/2.0/mlflow/experiments/search", json={"max_results": 1}, timeout=10)
    metrics = http.get(f"{mlflow_url}/metrics", timeout=10)
    assert metrics.status_code == 200
    assert "mlflow_http_request_total" in metrics.text


@pytest.mark.parametrize(
    "source",
    [
        "file:///etc/passwd",
        "/etc",
        "ftp://ftpd/artifacts/1",
        "mlflow-artifacts:/1/../../etc",
        "s3://bucket/model",
        # prompts' placeholder sources are admitted exactly, nothing more
        "dummy-source/../../etc",
        "prompt-template:file:///etc",
        "file:///dummy-source",
    ],
)
def test_model_versions_must_point_inside_the_artifact_store(mlflow_url, admin_auth, unique_name, source):
    http = http_session(admin_auth)
    created = http.post(
        f"{mlflow_url}/api/2.0/mlflow/registered-models/create", json={"name": unique_name}, timeout=10
    )
    assert created.status_code == 200, created.text
    response = http.post(
        f"{mlflow_url}/api/2.0/mlflow/model-versions/create",
        json={"name": unique_name, "source": source},
        timeout=10,
    )
    assert response.status_code == 400, response.text
    assert response.json()["error_code"] == "INVALID_PARAMETER_VALUE"


def test_a_second_user_can_be_created_and_reads_but_cannot_administer(mlflow_url, admin_auth, unique_name):
    admin = http_session(admin_auth)
    user, password = f"alice-{unique_name[-8:]}", "alice's long password"
    created = admin.post(
        f"{mlflow_url}/api/2.0/mlflow/users/create", timeout=10, json={"username": user, "password": password}
    )
    assert created.status_code == 200, created.text
    alice = http_session((user, password))
    search = alice.post(
        f"{mlflow_url}/api/2.0/mlflow/experiments/search", json={"max_results": 1}, timeout=10
    )
    assert search.status_code == 200  # default_permission = READ
    # Only an admin may create users.
    refused = alice.post(
        f"{mlflow_url}/api/2.0/mlflow/users/create",
        timeout=10,
        json={"username": f"{user}-2", "password": "x" * 16},
    )
    assert refused.status_code == 403


def test_a_page_on_another_origin_cannot_drive_the_api(mlflow_url, admin_auth):
    http = http_session(admin_auth)
    # The browser's preflight for a cross-origin POST: no permission is granted to that origin.
    preflight = http.options(
        f"{mlflow_url}/api/2.0/mlflow/experiments/create",
        timeout=10,
        headers={
            "Origin": "http://evil.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert preflight.headers.get("Access-Control-Allow-Origin") not in ("*", "http://evil.example")
    # A simple cross-origin state-changing request is refused outright.
    sent = http.post(
        f"{mlflow_url}/api/2.0/mlflow/experiments/create",
        timeout=10,
        json={"name": "cors-should-not-exist"},
        headers={"Origin": "http://evil.example"},
    )
    assert sent.status_code == 403, sent.status_code
    # The UI's own origin is allowed.
    own = http.options(
        f"{mlflow_url}/api/2.0/mlflow/experiments/create",
        timeout=10,
        headers={"Origin": "http://localhost:5000", "Access-Control-Request-Method": "POST"},
    )
    assert own.headers.get("Access-Control-Allow-Origin") == "http://localhost:5000"


def test_any_local_http_origin_is_trusted_with_credentials(mlflow_url, admin_auth, unique_name):
    """What the README says about CORS: MLflow trusts every http://localhost:<port> (and
    127.0.0.1) origin with credentials, whatever MLFLOW_SERVER_CORS_ALLOWED_ORIGINS lists, and
    lets it change state; any other origin gets neither."""
    http = http_session(admin_auth)
    url = f"{mlflow_url}/api/2.0/mlflow/experiments/create"
    for origin in ("http://localhost:1234", "http://127.0.0.1:8888"):
        preflight = http.options(
            url,
            timeout=10,
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type",
            },
        )
        assert preflight.headers.get("Access-Control-Allow-Origin") == origin
        assert preflight.headers.get("Access-Control-Allow-Credentials") == "true"
    # Such a page's credentialed request goes through and its answer is readable to it.
    created = http.post(
        url, timeout=10, json={"name": unique_name}, headers={"Origin": "http://localhost:1234"}
    )
    assert created.status_code == 200, created.text
    assert created.headers.get("Access-Control-Allow-Origin") == "http://localhost:1234"
    assert created.headers.get("Access-Control-Allow-Credentials") == "true"
    # A foreign origin: no grant, and its state change is refused.
    foreign = http.options(
        url,
        timeout=10,
        headers={"Origin": "http://localhost.evil.example:1234", "Access-Control-Request-Method": "POST"},
    )
    assert foreign.headers.get("Access-Control-Allow-Origin") is None
    refused = http.post(
        url,
        timeout=10,
        json={"name": f"{unique_name}-foreign"},
        headers={"Origin": "http://localhost.evil.example:1234"},
    )
    assert refused.status_code == 403
