"""Team mode: the TLS gateway in front of MLflow and JupyterLab (team-gateway/README.md).

A stack of its own, started as a team would: COMPOSE_PROFILES=team and WORKBENCH_PUBLIC_NAME in
its env file, `make team-ca` for the local CA and the gateway's certificate, then `up`. The
clients here trust only that CA (requests' verify=<ca.pem>; MLflow's own client with
MLFLOW_TRACKING_SERVER_CERT_PATH), never the system store. The public names resolve to 127.0.0.1
in this process only (an /etc/hosts entry would do the same on a laptop).
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import uuid

import pytest
import requests

from conftest import HOSTILE_SECRETS, _env_file
from utils.stack import Stack, run_make
from utils.team import ADMIN, JUPYTER_HOST, MLFLOW_HOST, NAME, Team, public_names, team_stack
from utils.wait import wait_until

pytestmark = pytest.mark.slow  # a stack of its own

TOKEN = HOSTILE_SECRETS["JUPYTER_TOKEN"]


@pytest.fixture(scope="module")
def team(tmp_path_factory, request):
    with public_names(), team_stack(tmp_path_factory, request, "team") as team:
        yield team


def test_make_team_ca_leaves_the_ca_key_outside_the_gateway(team):
    files = {path.name: path.stat().st_mode & 0o777 for path in (team.directory / "ca").iterdir()}
    assert files == {"ca.pem": 0o644, "ca.key": 0o600, "server.crt": 0o644, "server.key": 0o600}
    mounts = {mount["Source"] for mount in team.stack.inspect("team-gateway")["Mounts"]}
    ca_dir = str(team.directory / "ca")
    assert {source for source in mounts if source.startswith(ca_dir)} == {
        f"{ca_dir}/server.crt",
        f"{ca_dir}/server.key",
    }
    found = team.stack.exec(
        "team-gateway", "sh", "-c", "grep -rl 'PRIVATE KEY' /run /etc 2>/dev/null || true"
    )
    assert found.stdout.split() == ["/run/secrets/team-tls.pem.key"]


def test_the_gateway_reads_the_key_as_root_then_runs_as_haproxy_without_capabilities(team):
    proc = team.stack.exec("team-gateway", "cat", "/proc/1/status").stdout
    status = dict(line.split(":\t", 1) for line in proc.splitlines())
    assert status["Name"] == "haproxy"
    haproxy_uid = team.stack.exec("team-gateway", "id", "-u", "haproxy").stdout.strip()
    assert status["Uid"].split() == [haproxy_uid] * 4
    assert int(status["CapEff"], 16) == 0 and int(status["CapPrm"], 16) == 0


def test_a_client_trusting_only_the_ca_logs_in_and_logs_a_run(team):
    search = team.url(MLFLOW_HOST, "/api/2.0/mlflow/experiments/search")
    assert team.session(auth=None).post(search, json={"max_results": 1}, timeout=10).status_code == 401
    http = team.session()
    assert http.post(search, json={"max_results": 1}, timeout=10).status_code == 200

    api = team.url(MLFLOW_HOST, "/api/2.0/mlflow")
    name = f"team-tls-{uuid.uuid4().hex[:8]}"
    experiment = http.post(f"{api}/experiments/create", json={"name": name}, timeout=10).json()[
        "experiment_id"
    ]
    run = http.post(f"{api}/runs/create", json={"experiment_id": experiment}, timeout=10).json()["run"]
    run_id = run["info"]["run_id"]
    logged = http.post(
        f"{api}/runs/log-metric",
        json={"run_id": run_id, "key": "rmse", "value": 0.25, "timestamp": 0, "step": 1},
        timeout=10,
    )
    assert logged.status_code == 200, logged.text
    # The row in Postgres, as any other run's.
    assert team.stack.psql(f"SELECT value FROM metrics WHERE run_uuid = '{run_id}' AND key = 'rmse'") == [
        ["0.25"]
    ]


def test_mlflows_client_with_its_cert_path_setting_logs_a_run(team):
    # MLflow's documented setting, in the jupyter container (its MLflow): the public URL, the CA
    # file as the only trust; the name resolves to the gateway there (as DNS would for a team).
    code = f"""
import json, os, socket
real = socket.getaddrinfo
socket.getaddrinfo = lambda host, *a, **k: real("team-gateway" if str(host).endswith({NAME!r}) else host, *a, **k)
for name in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "CURL_CA_BUNDLE"):
    os.environ.pop(name, None)
open("/tmp/team-ca.pem", "w").write({team.ca.read_text()!r})
os.environ.update(
    MLFLOW_TRACKING_URI="https://{MLFLOW_HOST}:8443",
    MLFLOW_TRACKING_SERVER_CERT_PATH="/tmp/team-ca.pem",
    MLFLOW_TRACKING_USERNAME="admin",
    MLFLOW_TRACKING_PASSWORD={ADMIN[1]!r},
    MLFLOW_HTTP_REQUEST_MAX_RETRIES="0",
)
import mlflow
mlflow.set_experiment("team-tls-client")
with mlflow.start_run() as run:
    mlflow.log_param("through", "team-gateway")
    mlflow.log_metric("accuracy", 0.75)
print(json.dumps(run.info.run_id))
"""
    run_id = json.loads(team.stack.python("jupyter", code).strip().splitlines()[-1])
    got = team.session().get(
        team.url(MLFLOW_HOST, "/api/2.0/mlflow/runs/get"), params={"run_id": run_id}, timeout=10
    )
    data = got.json()["run"]["data"]
    assert data["params"] == [{"key": "through", "value": "team-gateway"}]
    assert [(m["key"], m["value"]) for m in data["metrics"]] == [("accuracy", 0.75)]


def test_a_client_with_the_system_cas_only_is_refused(team):
    with pytest.raises(requests.exceptions.SSLError, match="CERTIFICATE_VERIFY_FAILED"):
        team.session(verify=True).get(team.url(MLFLOW_HOST, "/health"), timeout=10)
    context = ssl.create_default_context()  # the system's trust store, and nothing else
    with socket.create_connection(("127.0.0.1", team.https_port), timeout=10) as raw:
        with pytest.raises(ssl.SSLCertVerificationError):
            context.wrap_socket(raw, server_hostname=MLFLOW_HOST)


def test_plain_http_to_the_tls_port_gets_no_http_answer(team):
    with socket.create_connection(("127.0.0.1", team.https_port), timeout=10) as raw:
        raw.sendall(f"GET /health HTTP/1.1\r\nHost: {MLFLOW_HOST}\r\n\r\n".encode())
        try:
            answer = raw.recv(1024)
        except ConnectionResetError:
            answer = b""
    assert not answer.startswith(b"HTTP/"), answer
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"http://{MLFLOW_HOST}:{team.https_port}/health", timeout=10)


def test_the_plain_http_port_redirects_to_https(team):
    path = "/api/2.0/mlflow/experiments/search?max_results=1"
    answer = requests.get(f"http://{MLFLOW_HOST}:{team.http_port}{path}", timeout=10, allow_redirects=False)
    assert answer.status_code == 308
    assert answer.headers["Location"] == team.url(MLFLOW_HOST, path)
    answer = requests.get(
        f"http://{JUPYTER_HOST}:{team.http_port}/lab?reset", timeout=10, allow_redirects=False
    )
    assert answer.headers["Location"] == team.url(JUPYTER_HOST, "/lab?reset")
    # Followed, by a client trusting the CA: MLflow's login (requests drops the credentials on
    # a redirect to another port, as a browser would ask for them again).
    followed = team.session().get(f"http://{MLFLOW_HOST}:{team.http_port}/", timeout=10)
    assert followed.url == team.url(MLFLOW_HOST, "/")
    assert followed.status_code == 401 and "Basic" in followed.headers["WWW-Authenticate"]
    assert "max-age" in followed.headers["Strict-Transport-Security"]


def test_a_wrong_host_header_is_refused_by_mlflow(team):
    search = team.url(MLFLOW_HOST, "/api/2.0/mlflow/experiments/search")
    http = team.session()
    for host in ("evil.example", f"evil.example:{team.https_port}", NAME):
        answer = http.post(search, json={"max_results": 1}, headers={"Host": host}, timeout=10)
        assert answer.status_code == 403, (host, answer.status_code, answer.text)
    ok = http.post(
        search, json={"max_results": 1}, headers={"Host": f"{MLFLOW_HOST}:{team.https_port}"}, timeout=10
    )
    assert ok.status_code == 200


def test_cors_allows_the_public_https_origin_only(team):
    search = team.url(MLFLOW_HOST, "/api/2.0/mlflow/experiments/search")
    http = team.session()
    origin = f"https://{MLFLOW_HOST}:{team.https_port}"
    ok = http.post(search, json={"max_results": 1}, headers={"Origin": origin}, timeout=10)
    assert ok.status_code == 200 and ok.headers.get("Access-Control-Allow-Origin") == origin
    refused = http.post(
        search, json={"max_results": 1}, headers={"Origin": "https://evil.example"}, timeout=10
    )
    assert refused.status_code == 403


def _websocket_upgrade(team: Team, path: str) -> bytes:
    """The first line of the answer to a websocket handshake sent over TLS (trusting the CA)."""
    context = ssl.create_default_context(cafile=str(team.ca))
    with socket.create_connection(("127.0.0.1", team.https_port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname=JUPYTER_HOST) as tls:
            tls.sendall(
                (
                    f"GET {path} HTTP/1.1\r\nHost: {JUPYTER_HOST}:{team.https_port}\r\n"
                    f"Origin: https://{JUPYTER_HOST}:{team.https_port}\r\n"
                    "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                    f"Authorization: token {TOKEN}\r\n\r\n"
                ).encode()
            )
            return tls.recv(4096).split(b"\r\n", 1)[0]


def test_jupyterlab_through_the_gateway_with_its_websockets(team):
    http = team.session(auth=None)
    assert http.get(team.url(JUPYTER_HOST, "/api/status"), timeout=10).status_code == 403
    http.headers["Authorization"] = f"token {TOKEN}"
    assert http.get(team.url(JUPYTER_HOST, "/api/status"), timeout=10).status_code == 200
    assert "JupyterLab" in http.get(team.url(JUPYTER_HOST, "/lab"), timeout=30).text
    kernel = http.post(team.url(JUPYTER_HOST, "/api/kernels"), json={"name": "python3"}, timeout=60).json()[
        "id"
    ]
    try:
        assert (
            _websocket_upgrade(team, f"/api/kernels/{kernel}/channels") == b"HTTP/1.1 101 Switching Protocols"
        )
    finally:
        http.delete(team.url(JUPYTER_HOST, f"/api/kernels/{kernel}"), timeout=30)


def test_the_plain_ports_stay_on_127_0_0_1(team):
    for service, port in (("mlflow-server", "5000/tcp"), ("jupyter", "8888/tcp")):
        bindings = team.stack.inspect(service)["HostConfig"]["PortBindings"][port]
        assert {binding["HostIp"] for binding in bindings} == {"127.0.0.1"}, (service, bindings)


def test_a_certificate_and_key_from_files(team, tmp_path):
    # A team's own certificate (here self-signed, made with the base image's openssl), its key
    # owned by another uid with mode 0600, as such files often are: the gateway still reads it.
    own = tmp_path / "own"
    own.mkdir()
    subprocess.run(
        [
            "docker", "run", "--rm", "--network", "none", "-v", f"{own}:/out",
            f"workbench/base:{os.environ.get('WORKBENCH_VERSION', 'local')}",
            "sh", "-c",
            "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=team"
            f" -addext subjectAltName=DNS:{MLFLOW_HOST},DNS:{JUPYTER_HOST} -keyout /out/team.key -out /out/team.crt"
            " && chown 4321:4321 /out/team.key && chmod 0600 /out/team.key",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    env_file = tmp_path / "own.env"
    env_file.write_text(
        team.stack.env_file.read_text()
        + f"WORKBENCH_TEAM_CERT_FILE={own / 'team.crt'}\nWORKBENCH_TEAM_KEY_FILE={own / 'team.key'}\n"
    )
    own_stack = Stack(team.stack.project, env_file, team.stack.secrets)
    # Compose does not see a secret's file change: the gateway is recreated by hand.
    recreate = ("up", "-d", "--no-deps", "--force-recreate", "--wait", "team-gateway")
    try:
        own_stack.compose(*recreate)
        search = team.url(MLFLOW_HOST, "/api/2.0/mlflow/experiments/search")
        answer = team.session(verify=str(own / "team.crt")).post(search, json={"max_results": 1}, timeout=10)
        assert answer.status_code == 200
        with pytest.raises(requests.exceptions.SSLError):
            team.session().post(search, json={"max_results": 1}, timeout=10)  # the local CA's no more
    finally:
        team.stack.compose(*recreate)  # back to make team-ca's certificate


def test_the_gateway_finds_every_mlflow_server_replica_by_dns(team):
    # Issue 15 §3's shape: a second mlflow-server on the same stack is found through Docker's DNS,
    # checked on /health and given requests; when it goes, the gateway keeps answering.
    assert team.replicas_up() == 1
    scale = ("up", "-d", "--no-deps", "--wait", "--scale", "mlflow-server=2", "mlflow-server")
    try:
        team.stack.compose(*scale, timeout=600)
        wait_until(
            lambda: team.replicas_up() == 2, timeout=60, what="two mlflow-server replicas UP in the gateway"
        )
        http = team.session()
        search = team.url(MLFLOW_HOST, "/api/2.0/mlflow/experiments/search")
        assert all(
            http.post(search, json={"max_results": 1}, timeout=10).status_code == 200 for _ in range(20)
        )
        logs = team.stack.logs("team-gateway")
        assert "mlflow/mlflow-1 " in logs and "mlflow/mlflow-2 " in logs, "both replicas answered"
    finally:
        team.stack.compose("up", "-d", "--no-deps", "--wait", "--scale", "mlflow-server=1", "mlflow-server")
    wait_until(lambda: team.replicas_up() == 1, timeout=60, what="the gateway back to one replica")
    assert team.session().post(search, json={"max_results": 1}, timeout=10).status_code == 200


def test_make_team_ca_refuses_a_name_that_is_not_a_dns_name(tmp_path):
    # The name reaches openssl (a certificate's subject and SAN) as data: anything but a DNS name is
    # refused before, with the reason, and nothing is written.
    env_file = _env_file(tmp_path)
    with env_file.open("a") as env:
        env.write(f"WORKBENCH_TEAM_CA_DIR={tmp_path / 'ca'}\n")
    stack = Stack(f"wbteamca{uuid.uuid4().hex[:6]}", env_file)
    for name in ("team.test/CN=evil", "x,DNS:evil.example", "$(touch /tmp/pwned)", "-team.test"):
        stack.secrets = {"WORKBENCH_PUBLIC_NAME": name}
        made = run_make(stack, "team-ca")
        assert made.returncode != 0 and "is not a DNS name" in made.stderr, (name, made.stderr)
    assert list((tmp_path / "ca").iterdir()) == []
