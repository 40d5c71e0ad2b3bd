"""jupyter: token required, API answers with it, MLflow preset and the server's version."""

from __future__ import annotations

import re

from conftest import HOSTILE_SECRETS
from utils.stack import REPO, http_session


def test_api_without_token_refuses(stack):
    url = stack.url("jupyter", 8888)
    assert http_session().get(f"{url}/api/contents", timeout=10).status_code == 403


def test_api_with_token_answers(stack):
    url = stack.url("jupyter", 8888)
    response = http_session().get(f"{url}/api/contents/notebooks", timeout=10,
                                  headers={"Authorization": f"token {HOSTILE_SECRETS['JUPYTER_TOKEN']}"})
    assert response.status_code == 200, response.text
    assert response.json()["type"] == "directory"


def test_lab_page_redirects_to_login_without_token(stack):
    url = stack.url("jupyter", 8888)
    response = http_session().get(f"{url}/lab", timeout=10, allow_redirects=False)
    assert response.status_code in (302, 403) and "login" in response.headers.get("Location", "login")


def test_runs_as_non_root(stack):
    assert stack.exec("jupyter", "id", "-un").stdout.strip() == "jovyan"


def test_same_mlflow_as_the_server(stack):
    code = "import mlflow; print(mlflow.__version__)"
    assert stack.python("jupyter", code) == stack.python("mlflow-server", code)
    pinned = re.search(r"^mlflow==(\S+)", (REPO / "mlflow-server/requirements.txt").read_text(), re.M)
    assert stack.python("jupyter", code).strip() == pinned.group(1)


def test_notebooks_folder_is_the_hosts(stack):
    listing = stack.exec("jupyter", "ls", "/home/jovyan/work/notebooks").stdout.split()
    assert sorted(listing) == sorted(p.name for p in (REPO / "notebooks").iterdir())


def test_mlflow_is_preset_with_zero_setup(stack):
    code = "import mlflow; print(mlflow.get_tracking_uri()); print(len(mlflow.search_experiments()) >= 1)"
    assert stack.python("jupyter", code).split() == ["http://mlflow-server:5000", "True"]
