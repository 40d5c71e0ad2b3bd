"""The tracking server as replicas (issue 15 §3; mlflow-server/README.md, "Replicas").

A team-mode stack of its own with MLFLOW_SERVER_REPLICAS=2 and JupyterLab's tracking URI on the
gateway (WORKBENCH_MLFLOW_INTERNAL_URL=http://team-gateway:5000). Each replica is reached
directly, by its address on the frontend network, from the jupyter container: a user created on
one logs in on the other at once, a form signed (CSRF) by one is accepted by the other,
permissions refuse the same write on both, and both answer metric writes on their fast path.
Then one replica is killed (`docker kill`) while MLflow's own client writes through the gateway,
over TLS trusting only the team's CA, and through the gateway's port for containers: every
acknowledged write is in Postgres, the client errors are counted, and the p99 during the kill is
reported (the `figure` fixture).
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid

import pytest

from conftest import _env_file
from utils.faults import (
    check_acknowledged_writes,
    errors,
    finish,
    healthy,
    last_errors,
    latencies,
    percentile,
    start_load,
)
from utils.stack import Stack, run_make
from utils.team import ADMIN, MLFLOW_HOST, NAME, Team, public_names, team_stack
from utils.wait import wait_until

pytestmark = pytest.mark.slow  # a stack of its own

REPLICAS = 2


@pytest.fixture(scope="module")
def team(tmp_path_factory, request):
    # As .env.example says for replicas: WORKBENCH_MLFLOW_PORT=0 (conftest's env file already has
    # it) and smaller pools, so that both replicas' connections fit postgres' max_connections.
    settings = (
        f"MLFLOW_SERVER_REPLICAS={REPLICAS}\nWORKBENCH_MLFLOW_INTERNAL_URL=http://team-gateway:5000\n"
        "MLFLOW_SQLALCHEMYSTORE_POOL_SIZE=3\nMLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW=2\n"
    )
    with public_names(), team_stack(tmp_path_factory, request, "replicas", settings) as team:
        yield team


def replica_addresses(team: Team) -> list[str]:
    """Each running mlflow-server replica's address on the frontend network, replica 1 first."""
    network = f"{team.stack.project}_frontend"
    addresses = []
    for container in team.stack.container_ids("mlflow-server"):
        inspected = json.loads(
            subprocess.run(
                ["docker", "inspect", container], capture_output=True, text=True, check=True
            ).stdout
        )[0]
        addresses.append(inspected["NetworkSettings"]["Networks"][network]["IPAddress"])
    return addresses


# Requests to each replica directly (http://<address>:5000, Host mlflow-server as MLflow allows
# for containers), from the jupyter container: `calls` is a list of [replica index, method, path,
# user or null, JSON body or null]; prints each answer's status and JSON (or its text).
ON_REPLICAS = r"""
import json, sys, requests
addresses, users, calls = json.loads(sys.stdin.readline()), json.loads(sys.stdin.readline()), json.loads(sys.stdin.readline())
out = []
for replica, method, path, user, body in calls:
    answer = requests.request(method, f"http://{addresses[replica]}:5000{path}", json=body,
                              auth=tuple(users[user]) if user else None,
                              headers={"Host": "mlflow-server"}, timeout=30)
    try:
        data = answer.json()
    except ValueError:
        data = answer.text[:300]
    out.append([answer.status_code, data])
print(json.dumps(out))
"""


def on_replicas(team: Team, users: dict, calls: list) -> list:
    code = f"import sys, io\nsys.stdin = io.StringIO({_stdin(team, users, calls)!r})\n" + ON_REPLICAS
    return json.loads(team.stack.python("jupyter", code).strip().splitlines()[-1])


def _stdin(team: Team, users: dict, calls: list) -> str:
    return (
        "\n".join(json.dumps(x) for x in (replica_addresses(team), {"admin": ADMIN, **users}, calls)) + "\n"
    )


def test_both_replicas_run_behind_the_gateway(team):
    assert len(replica_addresses(team)) == REPLICAS
    wait_until(
        lambda: team.replicas_up() == REPLICAS, timeout=60, what=f"{REPLICAS} replicas UP in the gateway"
    )
    http = team.session()
    search = team.url(MLFLOW_HOST, "/api/2.0/mlflow/experiments/search")
    assert all(http.post(search, json={"max_results": 1}, timeout=10).status_code == 200 for _ in range(20))
    logs = team.stack.logs("team-gateway")
    assert "mlflow/mlflow-1 " in logs and "mlflow/mlflow-2 " in logs, "both replicas answered"
    # JupyterLab's client goes through the gateway's port for containers.
    assert team.stack.python("jupyter", "import os; print(os.environ['MLFLOW_TRACKING_URI'])").strip() == (
        "http://team-gateway:5000"
    )


def test_a_user_created_on_one_replica_logs_in_on_the_other_at_once(team):
    user = (f"replica-{uuid.uuid4().hex[:8]}", f"pw {uuid.uuid4().hex} 'x'")
    wrong = (user[0], "not the password")
    search = "/api/2.0/mlflow/experiments/search?max_results=1"
    answers = on_replicas(
        team,
        {"user": user, "wrong": wrong},
        [
            [0, "POST", "/api/2.0/mlflow/users/create", "admin", {"username": user[0], "password": user[1]}],
            [1, "GET", search, "user", None],
            [0, "GET", search, "user", None],
            [1, "GET", search, "wrong", None],
            [0, "GET", search, "wrong", None],
            [1, "GET", search, None, None],
        ],
    )
    assert [status for status, _ in answers] == [200, 200, 200, 401, 401, 401], answers


# The sign-up form of MLflow's basic-auth app, as a browser uses it: the form (its CSRF token,
# signed with the Flask secret key, and the session cookie) from one replica, posted to the other.
SIGNUP = r"""
import json, re, sys, requests
a, b, admin, username, password = json.loads(sys.stdin.readline())
admin = tuple(admin)
host = {"Host": "mlflow-server"}
form = requests.get(f"http://{a}:5000/signup", auth=admin, headers=host, timeout=30)
token = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
action = re.search(r'<form action="([^"]+)"', form.text).group(1)
cookie = "; ".join(f"{c.name}={c.value}" for c in form.cookies)
fields = {"csrf_token": token, "username": username, "password": password}
signed = requests.post(f"http://{b}:5000{action}", data=fields, auth=admin, headers={**host, "Cookie": cookie}, timeout=30)
unsigned = requests.post(f"http://{b}:5000{action}", data={**fields, "username": username + "-x"}, auth=admin,
                         headers=host, timeout=30)
exists = [requests.get(f"http://{b}:5000/api/2.0/mlflow/users/get", params={"username": name}, auth=admin,
                       headers=host, timeout=30).status_code for name in (username, username + "-x")]
print(json.dumps([signed.status_code, unsigned.status_code, exists]))
"""


def test_a_form_signed_by_one_replica_is_accepted_by_the_other(team):
    # One Flask secret key (the secrets volume) for every replica: a CSRF token and session made
    # by replica 1 validate on replica 2; without the session, the same token is refused.
    a, b = replica_addresses(team)[:2]
    username = f"signup-{uuid.uuid4().hex[:8]}"
    data = json.dumps([a, b, ADMIN, username, f"pw-{uuid.uuid4().hex}"])
    code = f"import sys, io\nsys.stdin = io.StringIO({data + chr(10)!r})\n" + SIGNUP
    signed, unsigned, exists = json.loads(team.stack.python("jupyter", code).strip().splitlines()[-1])
    assert signed == 200 and exists[0] == 200, (signed, exists)
    assert unsigned == 400 and exists[1] == 404, (unsigned, exists)


def test_a_replica_restarting_clears_only_scratch_no_running_replica_holds(team):
    # The scratch volume (MLflow's staged downloads) is shared: each replica works in
    # /tmp/<hostname> under a lock it holds for its life (mlflow-server/entrypoint.sh). What a
    # stopped server left (a folder whose lock is free, a loose file) goes when a replica starts;
    # the other replica's folder, busy, stays.
    first, second = team.stack.container_ids("mlflow-server")[:2]

    def docker(*args: str) -> str:
        return subprocess.run(["docker", *args], capture_output=True, text=True, check=True).stdout

    hostnames = [docker("inspect", "-f", "{{.Config.Hostname}}", c).strip() for c in (first, second)]
    docker("exec", second, "touch", f"/tmp/{hostnames[1]}/in-use")
    docker(
        "exec",
        first,
        "sh",
        "-c",
        "mkdir /tmp/stale0000 && touch /tmp/stale0000/x /tmp/stale0000.lock /tmp/loose",
    )
    docker("restart", first)
    wait_until(lambda: healthy(first), timeout=180, interval=1, what="the restarted replica healthy")
    left = set(docker("exec", second, "ls", "-A", "/tmp").split())
    assert left == {hostnames[0], f"{hostnames[0]}.lock", hostnames[1], f"{hostnames[1]}.lock"}, left
    assert docker("exec", second, "ls", "-A", f"/tmp/{hostnames[1]}").split() == ["in-use"]
    docker("exec", second, "rm", f"/tmp/{hostnames[1]}/in-use")


def fast_metric_writes(team: Team) -> list[float]:
    """workbench_fast_path_requests_total{call="log-metric",path="fast"} of each replica."""
    code = r"""
import json, re, sys, requests
addresses, admin = json.loads(sys.stdin.readline())
counts = []
for address in addresses:
    text = requests.get(f"http://{address}:5000/metrics", auth=tuple(admin), headers={"Host": "mlflow-server"}, timeout=30).text
    found = re.search(r'^workbench_fast_path_requests_total\{call="log-metric",path="fast"\} (\S+)$', text, re.M)
    counts.append(float(found.group(1)) if found else 0.0)
print(json.dumps(counts))
"""
    data = json.dumps([replica_addresses(team), ADMIN]) + "\n"
    return json.loads(
        team.stack.python("jupyter", f"import sys, io\nsys.stdin = io.StringIO({data!r})\n" + code)
    )


def test_permissions_and_the_fast_paths_are_the_same_on_both_replicas(team):
    reader = (f"reader-{uuid.uuid4().hex[:8]}", f"pw-{uuid.uuid4().hex}")
    api = "/api/2.0/mlflow"
    setup = on_replicas(
        team,
        {},
        [
            [0, "POST", f"{api}/users/create", "admin", {"username": reader[0], "password": reader[1]}],
            [1, "POST", f"{api}/experiments/create", "admin", {"name": f"replicas-{uuid.uuid4().hex[:8]}"}],
        ],
    )
    assert [status for status, _ in setup] == [200, 200], setup
    experiment = setup[1][1]["experiment_id"]
    [(status, run)] = on_replicas(
        team, {}, [[0, "POST", f"{api}/runs/create", "admin", {"experiment_id": experiment}]]
    )
    assert status == 200, (status, run)
    run_id = run["run"]["info"]["run_id"]

    def metric(step: int) -> dict:
        return {"run_id": run_id, "key": "m", "value": float(step), "timestamp": 1, "step": step}

    before = fast_metric_writes(team)
    answers = on_replicas(
        team,
        {"reader": reader},
        [
            # READ, MLflow's default permission: reads on both, writes refused on both.
            [0, "GET", f"{api}/runs/get?run_id={run_id}", "reader", None],
            [1, "GET", f"{api}/runs/get?run_id={run_id}", "reader", None],
            [0, "POST", f"{api}/runs/log-metric", "reader", metric(100)],
            [1, "POST", f"{api}/runs/log-metric", "reader", metric(101)],
            # The owner's metric writes: answered by each replica's fast path.
            [0, "POST", f"{api}/runs/log-metric", "admin", metric(0)],
            [1, "POST", f"{api}/runs/log-metric", "admin", metric(1)],
        ],
    )
    after = fast_metric_writes(team)
    assert [status for status, _ in answers] == [200, 200, 403, 403, 200, 200], answers
    assert all("Permission denied" in str(a) for _, a in answers[2:4]), answers  # MLflow's own answer
    assert [after[i] - before[i] for i in range(REPLICAS)] == [1.0] * REPLICAS, (before, after)
    assert team.stack.psql(f"SELECT step FROM metrics WHERE run_uuid = '{run_id}' ORDER BY step") == [
        ["0"],
        ["1"],
    ]


def test_a_replica_killed_under_load_loses_no_acknowledged_write(team, figure):
    wait_until(
        lambda: team.replicas_up() == REPLICAS, timeout=60, what=f"{REPLICAS} replicas UP in the gateway"
    )
    team.stack.exec("jupyter", "sh", "-c", "cat > /tmp/team-ca.pem", input=team.ca.read_text())
    # MLflow's own client, as a team member's laptop runs it: https://mlflow.<name>, trusting only
    # the team's CA (MLflow's documented setting), the name resolved to the gateway.
    tls = {
        "env": {"MLFLOW_TRACKING_SERVER_CERT_PATH": "/tmp/team-ca.pem"},
        "unset": ["REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "CURL_CA_BUNDLE"],
        "resolve": [NAME, "team-gateway"],
    }
    duration, retries = 25, 6
    public = start_load(
        team.stack, "replica-kill", duration, retries, uri=f"https://{MLFLOW_HOST}:8443", settings=tls
    )
    # JupyterLab's own URI: the gateway's port for containers.
    inside = start_load(team.stack, "replica-kill", duration, retries)
    time.sleep(8)  # the load runs on both replicas before the kill
    victim = team.stack.container_ids("mlflow-server")[0]
    killed_at = time.time()
    subprocess.run(["docker", "kill", victim], check=True, capture_output=True)
    wait_until(
        lambda: team.replicas_up() == REPLICAS - 1, timeout=30, what="the gateway to mark the replica DOWN"
    )
    down_after = time.time() - killed_at
    reports = finish(public, timeout=240), finish(inside, timeout=240)

    for report in reports:
        for run in report.values():
            assert run["first_ack"] < killed_at < run["last_ack"], "a client's load did not span the kill"
    acked, found = check_acknowledged_writes(team.stack, *reports)  # 0 lost, or it fails here
    failed = errors(reports[0]) + errors(reports[1])
    window = [d for report in reports for d in latencies(report, killed_at - 1, killed_at + 10)]
    every = [d for report in reports for d in latencies(report)]
    window.sort()
    every.sort()
    figure(
        f"[tracking replica killed] {REPLICAS} replicas behind the team gateway, one `docker kill`ed "
        f"under 2 clients x 2 threads of MLflow's log_metric (TLS to https://{MLFLOW_HOST} trusting only "
        f"the CA, and http://team-gateway:5000), {duration} s: acknowledged {acked}, found {found}, lost "
        f"{acked - found}; client errors {failed}; p50/p99/max {percentile(every, 0.5) * 1000:.0f}/"
        f"{percentile(every, 0.99) * 1000:.0f}/{every[-1] * 1000:.0f} ms overall, p99/max "
        f"{percentile(window, 0.99) * 1000:.0f}/{window[-1] * 1000:.0f} ms in the 11 s around the kill "
        f"({len(window)} calls); the gateway marked it DOWN after {down_after:.1f} s"
    )
    assert failed == 0, f"client errors: {last_errors(reports[0]) + last_errors(reports[1])}"


def test_make_refuses_replicas_it_cannot_run(tmp_path):
    # No stack: `make check-replicas` (the first step of make up) reads the settings as Compose
    # resolves them and refuses, with the reason, what cannot run; one replica is the default.
    env_file = _env_file(tmp_path)
    for name in ("server.crt", "server.key"):
        (tmp_path / name).write_text("")
    stack = Stack(f"wbreplicas{uuid.uuid4().hex[:6]}", env_file)
    team_mode = {
        "COMPOSE_PROFILES": "team",
        "WORKBENCH_PUBLIC_NAME": NAME,
        "WORKBENCH_TEAM_CERT_FILE": str(tmp_path / "server.crt"),
        "WORKBENCH_TEAM_KEY_FILE": str(tmp_path / "server.key"),
    }
    small_pools = {"MLFLOW_SQLALCHEMYSTORE_POOL_SIZE": "3", "MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW": "2"}
    cases = [
        ({}, 0, ""),
        ({**team_mode, **small_pools, "MLFLOW_SERVER_REPLICAS": "2"}, 0, ""),
        ({**team_mode, "MLFLOW_SERVER_REPLICAS": "2"}, 2, "136 database connections"),
        ({"MLFLOW_SERVER_REPLICAS": "2"}, 2, "needs team mode"),
        (
            {**team_mode, "MLFLOW_SERVER_REPLICAS": "2", "WORKBENCH_MLFLOW_PORT": "5000"},
            2,
            "WORKBENCH_MLFLOW_PORT=0",
        ),
        ({**team_mode, "MLFLOW_SERVER_REPLICAS": "0"}, 2, "1 to 4"),
        ({**team_mode, "MLFLOW_SERVER_REPLICAS": "5"}, 2, "1 to 4"),
        ({"MLFLOW_SERVER_REPLICAS": "two"}, 2, "must be a whole number"),
        ({"MLFLOW_SERVER_REPLICAS": "$(touch /tmp/pwned)"}, 2, "must be a whole number"),
    ]
    for settings, code, says in cases:
        stack.secrets = settings
        made = run_make(stack, "check-replicas")
        assert made.returncode == code and says in made.stderr, (settings, made.returncode, made.stderr)
