"""jupyter: token required, API answers with it, MLflow preset and the server's version, nothing
asks to reach the internet."""

from __future__ import annotations

import json
import re

from conftest import HOSTILE_SECRETS
from utils.stack import REPO, http_session


def test_api_without_token_refuses(stack):
    url = stack.url("jupyter", 8888)
    assert http_session().get(f"{url}/api/contents", timeout=10).status_code == 403


def test_api_with_token_answers(stack):
    url = stack.url("jupyter", 8888)
    response = http_session().get(
        f"{url}/api/contents/notebooks",
        timeout=10,
        headers={"Authorization": f"token {HOSTILE_SECRETS['JUPYTER_TOKEN']}"},
    )
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


def test_jupyterlab_asks_nothing_and_fetches_nothing_from_the_internet(stack):
    """No "Would you like to get notified about official Jupyter news?": the image's settings
    overrides (jupyter/overrides.json) answer it with Never and turn the update check off, and the
    server's news feed and update check are off (tests/browser checks the page itself)."""
    url, token = stack.url("jupyter", 8888), HOSTILE_SECRETS["JUPYTER_TOKEN"]
    http = http_session()
    http.headers["Authorization"] = f"token {token}"
    answer = http.get(f"{url}/lab/api/settings/@jupyterlab/apputils-extension:notification", timeout=10)
    assert answer.status_code == 200, answer.text
    setting = answer.json()
    # Overrides become the schema's defaults; no user setting of this fresh stack says otherwise.
    defaults = {
        key: setting["schema"]["properties"][key]["default"] for key in ("fetchNews", "checkForUpdates")
    }
    assert defaults == {"fetchNews": "false", "checkForUpdates": False}
    assert setting["settings"] == {}
    # Even asked directly (a user who switched the news on), the server fetches nothing: its news
    # feed is off in the page's configuration (LabApp.news_url = None), and so are its answers.
    page = http.get(f"{url}/lab", timeout=10).text
    config = json.loads(
        re.search(
            r'<script id="jupyter-config-data" type="application/json">(.*?)</script>', page, re.S
        ).group(1)
    )
    assert config["news"] == {"disabled": True}
    assert http.get(f"{url}/lab/api/news", timeout=10).json() == {"news": []}
    assert http.get(f"{url}/lab/api/update", timeout=10).json() == {"notification": None}
