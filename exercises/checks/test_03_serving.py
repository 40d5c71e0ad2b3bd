"""Exercise 3 (exercises/03-serving.ipynb): the served IrisModel answers /invocations.

Looks for the model server at WORKBENCH_SERVING_URL: `make exercise-check` (in the jupyter container)
sets it to http://serve-5002:8080, where `make serve MODEL=models:/IrisModel@staging PORT=5002` serves it.
Run by hand without it, this check is skipped, saying so.
"""

from __future__ import annotations

import os

import pytest
import requests

SERVING_URL = os.environ.get("WORKBENCH_SERVING_URL")
# The key `make serve` gave JupyterLab (none: the model was served with WORKBENCH_SERVING_KEYS=off).
KEY_FILE = "/run/secrets/serving-key"
AUTH = {"Authorization": "Bearer " + open(KEY_FILE).read().strip()} if os.path.exists(KEY_FILE) else {}
# One setosa (class 0) and one virginica (class 2) from the iris data set.
COLUMNS = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.3, 3.3, 6.0, 2.5]]

pytestmark = pytest.mark.skipif(
    not SERVING_URL,
    reason="no model server to check: set WORKBENCH_SERVING_URL (make exercise-check "
    "sets it to http://serve-5002:8080, where `make serve MODEL=models:/IrisModel@staging PORT=5002` serves)",
)


def _get(url: str) -> requests.Response:
    try:
        return requests.get(url, timeout=10)
    except requests.ConnectionError:
        pytest.fail(
            f"nothing answers at {SERVING_URL}: serve your model first, on the host: "
            "make serve MODEL=models:/IrisModel@staging PORT=5002",
            pytrace=False,
        )


def test_the_served_model_is_the_exercise_model(model_name):
    """`make serve` images publish /openapi.json naming the registered model they serve."""
    url = SERVING_URL.rstrip("/")
    assert _get(f"{url}/ping").status_code == 200, f"{url}/ping does not answer 200: is the model loaded?"
    document = _get(f"{url}/openapi.json")
    if document.status_code == 404:
        pytest.skip(
            f"{url} publishes no /openapi.json (not served by `make serve`): cannot tell which model it is"
        )
    served = document.json()["info"]["x-mlflow-model"]
    assert served["name"] == model_name, (
        f"{url} serves {served['uri']}, not a version of {model_name!r}: "
        f"make serve MODEL=models:/{model_name}@staging PORT=5002"
    )


def test_served_model_predicts_two_iris_rows():
    url = SERVING_URL.rstrip("/")
    _get(f"{url}/ping")
    response = requests.post(
        f"{url}/invocations",
        timeout=30,
        headers=AUTH,
        json={"dataframe_split": {"columns": COLUMNS, "data": ROWS}},
    )
    assert response.status_code == 200, (
        f"POST {url}/invocations: {response.status_code} {response.text[:300]}"
    )
    predictions = response.json().get("predictions")
    assert predictions is not None, f"the answer has no 'predictions': {response.text[:300]}"
    assert [int(p) for p in predictions] == [0, 2], (
        f"expected classes [0, 2] (setosa, virginica), got {predictions}"
    )
