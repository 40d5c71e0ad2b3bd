"""The artifact API refuses path traversal: `../`, absolute paths and encoded variants, on the
read, list and proxied upload/download endpoints of the running server.

What must hold: no request reads another run's artifact or a file outside the artifact store,
and no upload lands outside the experiment's folder of the store. (A path MLflow treats as a
plain, missing file name inside the store, like `..\\..\\x` on FTP, may answer 404 or 500: that
is not a traversal.)"""

from __future__ import annotations

import json

import pytest
import requests

from utils.stack import http_session

SECRET = "other-run-secret-7f3a"


def traversals(other_run: str) -> list[str]:
    target = f"{other_run}/artifacts/data/secret.txt"
    return [
        f"../../{target}",
        f"data/../../../{target}",
        f"..%2f..%2f{target.replace('/', '%2f')}",
        f"%2e%2e/%2e%2e/{target}",
        f"%252e%252e%252f%252e%252e%252f{target}",
        f"..\\..\\{target}",
        "../../../../../../etc/passwd",
        "/etc/passwd",
        "/srv/ftp/artifacts/1",
    ]


@pytest.fixture(scope="module")
def runs(stack) -> dict:
    out = stack.python(
        "jupyter",
        f"""
import json, mlflow, os, tempfile
exp = mlflow.set_experiment("traversal")
ids = []
for content in ("fine", {SECRET!r}):
    with mlflow.start_run() as run:
        d = tempfile.mkdtemp()
        open(os.path.join(d, "ok.txt" if content == "fine" else "secret.txt"), "w").write(content)
        mlflow.log_artifacts(d, artifact_path="data")
        ids.append(run.info.run_id)
print(json.dumps({{"experiment": exp.experiment_id, "attacker": ids[0], "victim": ids[1]}}))
""",
    )
    return json.loads(out.strip().splitlines()[-1])


def raw(session: requests.Session, method: str, url: str, **kwargs) -> requests.Response:
    """Send `url` byte for byte: no client-side normalisation of `..` or percent-escapes."""
    request = session.prepare_request(requests.Request(method, url, **kwargs))
    request.url = url
    return session.send(request, timeout=10)


def leaked(response: requests.Response) -> bool:
    return response.status_code == 200 and (SECRET in response.text or "root:x:0:0" in response.text)


def test_the_victims_artifact_is_readable_the_normal_way(mlflow_url, admin_auth, runs):
    # The control: the secret really is there, so the refusals below mean something.
    response = http_session(admin_auth).get(
        f"{mlflow_url}/get-artifact",
        timeout=10,
        params={"run_uuid": runs["victim"], "path": "data/secret.txt"},
    )
    assert response.text == SECRET


def test_get_artifact_refuses(mlflow_url, admin_auth, runs):
    session = http_session(admin_auth)
    for path in traversals(runs["victim"]):
        response = session.get(
            f"{mlflow_url}/get-artifact", timeout=10, params={"run_uuid": runs["attacker"], "path": path}
        )
        assert response.status_code != 200 and not leaked(response), (path, response.status_code)


def test_list_artifacts_refuses(mlflow_url, admin_auth, runs):
    session = http_session(admin_auth)
    for path in traversals(runs["victim"]):
        response = session.get(
            f"{mlflow_url}/api/2.0/mlflow/artifacts/list",
            timeout=10,
            params={"run_id": runs["attacker"], "path": path},
        )
        files = response.json().get("files", []) if response.status_code == 200 else []
        assert not files, (path, files)


def test_proxied_download_refuses(mlflow_url, admin_auth, runs):
    session = http_session(admin_auth)
    base = (
        f"{mlflow_url}/api/2.0/mlflow-artifacts/artifacts/{runs['experiment']}/{runs['attacker']}/artifacts"
    )
    for path in traversals(runs["victim"]):
        response = raw(session, "GET", f"{base}/{path}")
        assert response.status_code != 200 and not leaked(response), (path, response.status_code)


def test_proxied_upload_never_lands_outside_the_experiment(stack, mlflow_url, admin_auth, runs):
    session = http_session(admin_auth)
    experiment = runs["experiment"]
    outside = ["find", "/srv/ftp", "-path", f"/srv/ftp/artifacts/{experiment}", "-prune", "-o", "-print"]
    before = stack.exec("ftpd", *outside).stdout
    victim_file = f"/srv/ftp/artifacts/{experiment}/{runs['victim']}/artifacts/data/secret.txt"
    base = f"{mlflow_url}/api/2.0/mlflow-artifacts/artifacts/{experiment}/{runs['attacker']}/artifacts"
    for path in traversals(runs["victim"]):
        raw(session, "PUT", f"{base}/{path}", data=b"overwritten")
    assert stack.exec("ftpd", *outside).stdout == before, "an upload escaped the experiment's folder"
    assert stack.exec("ftpd", "cat", victim_file).stdout == SECRET, "another run's artifact was overwritten"
