"""Issue 14, finding 13: slow readers holding streamed downloads used up ftpd's connections.

An attacker with a valid account and READ on an experiment that holds a large artifact opens
more downloads of it than the server will stream at once, reads a few bytes of each and stalls.
The FTP plugin (mlflow-server/ftp-plugin/) refuses the downloads over its bound with a 503 and
cuts the stalled ones after MLFLOW_FTP_STALL_TIMEOUT_SECONDS; meanwhile another user's metric
writes, small uploads and downloads and the UI keep answering.
"""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import uuid
from datetime import UTC, datetime

import requests

from utils.wait import wait_until

BIG = 64 << 20  # far more than every socket buffer between ftpd and the client holds


def ok(response: requests.Response) -> dict:
    assert response.status_code == 200, (
        f"{response.request.method} {response.url}: {response.status_code} {response.text[:300]}"
    )
    return response.json() if response.content else {}


def container_env(stack, service: str) -> dict[str, str]:
    return dict(item.split("=", 1) for item in stack.inspect(service)["Config"]["Env"])


def stalled_download(
    address: str, path: str, auth: tuple[str, str]
) -> tuple[socket.socket, int, dict, bytes]:
    """GET path, read the status line, the headers and a few bytes, then read nothing more: the
    socket, the status, the headers (lower-case names) and the body bytes read with the headers."""
    host, port = address.rsplit(":", 1)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window: stalls sooner
    sock.settimeout(60)
    sock.connect((host, int(port)))
    token = base64.b64encode(":".join(auth).encode()).decode()
    sock.sendall(
        f"GET {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Basic {token}\r\n"
        "Connection: close\r\n\r\n".encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1024)
        assert chunk, f"the server closed the connection before answering: {head!r}"
        head += chunk
    head, start = head.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    return sock, int(lines[0].split()[1]), headers, start


def read_all(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(1 << 16):
        data += chunk
    return data


def read_to_end(sock: socket.socket) -> int:
    """Bytes until the server closes (a reset counts as closed)."""
    received = 0
    try:
        while chunk := sock.recv(1 << 20):
            received += len(chunk)
    except ConnectionResetError:
        pass
    return received


def cuts_since(stack, since: str) -> int:
    out = subprocess.run(
        ["docker", "logs", "--since", since, stack.container_id("mlflow-server")],
        capture_output=True,
        text=True,
        check=True,
    )
    return (out.stdout + out.stderr).count("cut a download whose client took no data")


def test_stalled_downloads_are_bounded_and_cut_while_others_are_answered(stack, mlflow_url, admin_auth):
    env = container_env(stack, "mlflow-server")
    bound = int(env["MLFLOW_WORKERS"]) * int(env["MLFLOW_FTP_MAX_DOWNLOADS"])
    url, address = mlflow_url, mlflow_url.removeprefix("http://")
    suffix = uuid.uuid4().hex[:6]
    admin = requests.Session()
    admin.auth = admin_auth

    # The large artifact, in an experiment the attacker may READ.
    experiment = ok(
        admin.post(
            f"{url}/api/2.0/mlflow/experiments/create", timeout=30, json={"name": f"slow-readers-{suffix}"}
        )
    )["experiment_id"]
    run = ok(admin.post(f"{url}/api/2.0/mlflow/runs/create", json={"experiment_id": experiment}, timeout=30))[
        "run"
    ]["info"]["run_id"]
    big_path = f"/api/2.0/mlflow-artifacts/artifacts/{experiment}/{run}/artifacts/big.bin"
    ok(admin.put(f"{url}{big_path}", data=os.urandom(1 << 20) * (BIG >> 20), timeout=120))
    users = {}
    for name in ("sloth", "busy"):
        users[name] = (f"{name}-{suffix}", f"{name}'s password {suffix}")
        ok(
            admin.post(
                f"{url}/api/2.0/mlflow/users/create",
                timeout=30,
                json={"username": users[name][0], "password": users[name][1]},
            )
        )
    ok(
        admin.post(
            f"{url}/api/3.0/mlflow/users/permissions/grant",
            timeout=30,
            json={
                "username": users["sloth"][0],
                "resource_type": "experiment",
                "resource_id": experiment,
                "permission": "READ",
            },
        )
    )
    # The other user's own experiment and run (no retries: every answer must come at once).
    busy = requests.Session()
    busy.auth = users["busy"]
    own = ok(
        busy.post(f"{url}/api/2.0/mlflow/experiments/create", timeout=30, json={"name": f"busy-{suffix}"})
    )["experiment_id"]
    own_run = ok(busy.post(f"{url}/api/2.0/mlflow/runs/create", json={"experiment_id": own}, timeout=30))[
        "run"
    ]["info"]["run_id"]

    since = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    held: list[tuple[socket.socket, int]] = []
    try:
        refused = 0
        for _ in range(bound + 4):
            sock, status, headers, start = stalled_download(address, big_path, users["sloth"])
            length = int(headers.get("content-length", 0))
            if status == 200:
                assert length == BIG
                held.append((sock, length))
            else:
                body = start + read_all(sock)
                sock.close()
                assert status == 503, f"a download over the bound got {status}"
                refused += 1
                assert b"The artifact store is busy" in body, body[:300]
                assert headers.get("retry-after") == "5", headers
        # Bounded: never more than the workers' download slots stream at once.
        assert len(held) <= bound and refused >= 4, (len(held), refused)

        # Meanwhile the other user is answered: a metric, a small upload, its download, the UI.
        ok(
            busy.post(
                f"{url}/api/2.0/mlflow/runs/log-metric",
                timeout=30,
                json={"run_id": own_run, "key": "loss", "value": 0.5, "timestamp": 1, "step": 0},
            )
        )
        small = f"{url}/api/2.0/mlflow-artifacts/artifacts/{own}/{own_run}/artifacts/small.txt"
        ok(busy.put(small, data=b"small and quick " * 64, timeout=30))
        download = busy.get(small, timeout=30)
        assert download.status_code == 200 and download.content == b"small and quick " * 64
        assert busy.get(f"{url}/", timeout=30).status_code == 200
        metric = stack.psql(f"SELECT value FROM metrics WHERE run_uuid = '{own_run}' AND key = 'loss'")
        assert metric == [["0.5"]], metric

        # Cut: the stalled downloads end short of their length, their slots free again.
        wait_until(
            lambda: cuts_since(stack, since) >= len(held),
            what="the stalled downloads cut",
            timeout=3 * float(env["MLFLOW_FTP_STALL_TIMEOUT_SECONDS"]) + 30,
        )
        for sock, length in held:
            assert read_to_end(sock) < length
        again = admin.get(f"{url}{big_path}", timeout=120)
        assert again.status_code == 200 and len(again.content) == BIG
    finally:
        for sock, _ in held:
            sock.close()
