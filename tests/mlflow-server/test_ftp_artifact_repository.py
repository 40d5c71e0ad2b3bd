"""The workbench's FTP artifact repository (mlflow-server/ftp-plugin/): pooled connections, one
MLSD per listing, in-progress uploads hidden, uploads streamed from the request into FTP. Real
effects: files through the proxy from the jupyter container, ftpd's own log of logins, the files
on the FTP volume.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import subprocess
import urllib.parse
from datetime import UTC, datetime

from utils.stack import http_session
from utils.wait import wait_until

FILES = 60
LOG_MANY = r"""
import hashlib, json, os, tempfile
import mlflow
mlflow.set_experiment({experiment!r})
src = tempfile.mkdtemp()
for i in range({files}):
    folder = os.path.join(src, "a" if i % 2 else "b", "deeper" if i % 3 == 0 else "")
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, f"f{{i:03d}}.txt"), "w") as f:
        f.write(f"file {{i}} " * (i + 1))
with mlflow.start_run() as run:
    mlflow.log_artifacts(src, "many")
dst = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="many")
def digest(root):
    return {{os.path.relpath(os.path.join(d, n), root): hashlib.sha256(open(os.path.join(d, n), "rb").read()).hexdigest()
            for d, _, names in os.walk(root) for n in names}}
print(json.dumps({{"run_id": run.info.run_id, "same": digest(src) == digest(dst), "count": len(digest(dst))}}))
"""


def ftp_logins_since(stack, since: str) -> int:
    out = subprocess.run(
        ["docker", "logs", "--since", since, stack.container_id("ftpd")],
        capture_output=True,
        text=True,
        check=True,
    )
    return sum("logged in" in line for line in (out.stdout + out.stderr).splitlines())


def test_many_small_artifacts_reuse_pooled_ftp_connections(stack, unique_name):
    since = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    out = stack.python("jupyter", LOG_MANY.format(experiment=unique_name, files=FILES))
    result = json.loads(out.strip().splitlines()[-1])
    assert result["same"] and result["count"] == FILES, result
    logins = ftp_logins_since(stack, since)
    # 60 uploads + listings + 60 downloads went through the server: the built-in repository logs
    # in for each (> 120); the pool keeps at most 4 connections per server worker (2 workers).
    assert 1 <= logins <= 2 * 4 + 2, f"{logins} FTP logins for {FILES} files up and down"


def test_listing_gives_sizes_and_hides_uploads_in_progress(stack, mlflow_url, admin_auth, unique_name):
    out = stack.python(
        "jupyter",
        f"""
import mlflow
mlflow.set_experiment({unique_name!r})
with mlflow.start_run() as run:
    mlflow.log_text("x" * 1234, "listing/data.txt")
    mlflow.log_text("y", "listing/sub/inner.txt")
print(run.info.run_id)
""",
    )
    run_id = out.strip().splitlines()[-1]
    # An upload in progress on the FTP volume: ftpd receives it as .<name>.partial.
    folder = stack.exec(
        "ftpd", "find", "/srv/ftp", "-type", "d", "-path", f"*/{run_id}/artifacts/listing"
    ).stdout.strip()
    assert folder, "the run's artifact folder is not on the FTP volume"
    planted = f"{folder}/.big.bin.partial"
    stack.exec("ftpd", "sh", "-c", f"printf partial > '{planted}'")
    try:
        response = http_session(admin_auth).get(
            f"{mlflow_url}/api/2.0/mlflow/artifacts/list",
            params={"run_id": run_id, "path": "listing"},
            timeout=30,
        )
    finally:
        # Not left for a later test to find: ftpd removes partial uploads when it starts (a crash's
        # leftovers), and the down + up test compares the FTP volume file for file.
        stack.exec("ftpd", "rm", "-f", planted)
    assert response.status_code == 200, response.text
    files = {
        f["path"]: (f["is_dir"], int(f["file_size"]) if "file_size" in f else None)
        for f in response.json()["files"]
    }
    assert files == {"listing/data.txt": (False, 1234), "listing/sub": (True, None)}, files


def ftp_files(stack, run_id: str) -> list[str]:
    out = stack.exec("ftpd", "find", "/srv/ftp", "-path", f"*/{run_id}/*", "-type", "f").stdout
    return sorted(line.rsplit("/", 1)[-1] for line in out.split())


def test_upload_streams_into_ftp_and_a_broken_off_one_leaves_nothing(
    stack, mlflow_url, admin_auth, unique_name
):
    session = http_session(admin_auth)
    api = f"{mlflow_url}/api/2.0/mlflow"
    experiment_id = session.post(f"{api}/experiments/create", json={"name": unique_name}, timeout=30).json()[
        "experiment_id"
    ]
    run = session.post(f"{api}/runs/create", json={"experiment_id": experiment_id}, timeout=30).json()
    run_id = run["run"]["info"]["run_id"]
    artifact = f"{experiment_id}/{run_id}/artifacts/big.bin"
    # A client that announces 64 MB, sends 8 MB and then goes away (a killed notebook kernel).
    url = urllib.parse.urlsplit(mlflow_url)
    credentials = base64.b64encode(":".join(admin_auth).encode()).decode()
    client = socket.create_connection((url.hostname, url.port), timeout=30)
    client.sendall(
        (
            f"PUT /api/2.0/mlflow-artifacts/artifacts/{artifact} HTTP/1.1\r\n"
            f"Host: {url.hostname}:{url.port}\r\nAuthorization: Basic {credentials}\r\n"
            f"Content-Type: application/octet-stream\r\nContent-Length: {64 << 20}\r\n\r\n"
        ).encode()
    )
    for _ in range(8):
        client.sendall(b"x" * (1 << 20))
    # Streamed: ftpd is already receiving the file while the request body is still coming (the
    # server no longer collects the whole body in a temporary file first).
    wait_until(
        lambda: ftp_files(stack, run_id) == [".big.bin.partial"],
        timeout=30,
        what="the upload in progress on the FTP volume",
    )
    client.close()
    # The server sends ftpd ABOR for the upload that broke off, and ftpd removes the partial file:
    # nothing is published as an artifact.
    wait_until(lambda: ftp_files(stack, run_id) == [], timeout=30, what="the partial upload removed")
    listing = session.get(f"{api}/artifacts/list", params={"run_id": run_id}, timeout=30)
    assert listing.status_code == 200 and listing.json().get("files", []) == [], listing.text
    # The server's FTP pool is unharmed: a complete upload right after works, byte for byte.
    payload = bytes(range(256)) * 4096
    done = session.put(
        f"{mlflow_url}/api/2.0/mlflow-artifacts/artifacts/{artifact}", data=payload, timeout=60
    )
    assert done.status_code == 200, done.text
    assert ftp_files(stack, run_id) == ["big.bin"]
    back = session.get(f"{mlflow_url}/api/2.0/mlflow-artifacts/artifacts/{artifact}", timeout=60)
    assert back.status_code == 200 and back.content == payload


class _Pattern:
    """`size` bytes of a repeated random block, read in 1 MiB pieces (a body for requests that is
    never held in memory), hashed as it is read."""

    def __init__(self, size: int):
        self.block, self.left, self.sha256 = os.urandom(1 << 20), size, hashlib.sha256()
        self.size = size

    def __len__(self) -> int:
        return self.size

    def read(self, _n: int = -1) -> bytes:
        piece = self.block[: min(len(self.block), self.left)]
        self.left -= len(piece)
        self.sha256.update(piece)
        return piece


def test_an_artifact_bigger_than_the_servers_memory_limit_downloads_whole(
    stack, mlflow_url, admin_auth, unique_name
):
    # MLflow's download route first copies the artifact from FTP into the server's temporary
    # directory. On a tmpfs that copy is memory, counted in mlflow-server's 2 GiB limit: a bigger
    # artifact got the worker killed. The temporary directory is on disk now.
    limit = stack.inspect("mlflow-server")["HostConfig"]["Memory"]
    before = stack.inspect("mlflow-server")["RestartCount"]
    session = http_session(admin_auth)
    api = f"{mlflow_url}/api/2.0/mlflow"
    experiment_id = session.post(f"{api}/experiments/create", json={"name": unique_name}, timeout=30).json()[
        "experiment_id"
    ]
    run_id = session.post(f"{api}/runs/create", json={"experiment_id": experiment_id}, timeout=30).json()[
        "run"
    ]["info"]["run_id"]
    url = f"{mlflow_url}/api/2.0/mlflow-artifacts/artifacts/{experiment_id}/{run_id}/artifacts/huge.bin"
    body = _Pattern(limit + (256 << 20))
    try:
        put = session.put(url, data=body, headers={"Content-Type": "application/octet-stream"}, timeout=600)
        assert put.status_code == 200, put.text
        received, sha256 = 0, hashlib.sha256()
        with session.get(url, stream=True, timeout=600) as got:
            assert got.status_code == 200, got.text
            for chunk in got.iter_content(1 << 20):
                received += len(chunk)
                sha256.update(chunk)
        assert received == body.size
        assert sha256.hexdigest() == body.sha256.hexdigest()
        after = stack.inspect("mlflow-server")
        assert after["RestartCount"] == before and not after["State"]["OOMKilled"]
        # The staged copy is gone once the download ends.
        staged = stack.exec("mlflow-server", "find", "/tmp", "-name", "huge.bin").stdout.split()
        assert staged == []
    finally:
        stack.exec("ftpd", "find", "/srv/ftp", "-path", f"*/{run_id}/*", "-type", "f", "-delete")
