"""The compatibility suite's runner: MLflow's documented snippets, run as a user runs them.

Each test holds a snippet as MLflow 3's documentation writes it (the page is cited above it),
runs it in the jupyter container against the live stack (`python3 -` in the container, where
MLFLOW_TRACKING_URI and the credentials are preset, as in a notebook), and then asserts the
effect: the run and its rows in Postgres, the files on the FTP volume, the loaded model's
predictions. The only lines a snippet gains are a unique experiment or model name (tests share
one server) and a last `print("COMPAT", json.dumps(...))` that hands the ids to the test.
"""

from __future__ import annotations

import json
import textwrap

import pytest

from utils.mlflow_rest import MlflowRest
from utils.stack import Stack

MARKER = "COMPAT "


def run_snippet(stack: Stack, code: str, timeout: float = 900, **names: str) -> dict:
    """Runs `code` in the jupyter container with each NAME placeholder replaced; returns the
    JSON the snippet printed after COMPAT. A failing snippet fails the test with its traceback."""
    code = textwrap.dedent(code)
    for placeholder, value in names.items():
        code = code.replace(placeholder, value)
    result = stack.exec("jupyter", "python3", "-", input=code, check=False, timeout=timeout)
    assert result.returncode == 0, (
        f"the documented snippet failed in the jupyter container:\n{result.stderr[-6000:]}"
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith(MARKER)]
    assert lines, f"the snippet printed no {MARKER.strip()} line:\n{result.stdout[-3000:]}"
    return json.loads(lines[-1].removeprefix(MARKER))


@pytest.fixture
def api(mlflow_url, admin_auth) -> MlflowRest:
    return MlflowRest(mlflow_url, admin_auth)


@pytest.fixture
def experiment(unique_name) -> str:
    return f"compat-{unique_name}"


def ftp_files(stack: Stack, experiment_id: str, run_id: str) -> set[str]:
    """The files of a run's artifacts as they lie on the FTP volume (paths below artifacts/)."""
    root = f"/srv/ftp/artifacts/{experiment_id}/{run_id}/artifacts"
    out = stack.exec("ftpd", "find", root, "-type", "f", check=False).stdout
    return {line.removeprefix(root + "/") for line in out.splitlines() if line}
