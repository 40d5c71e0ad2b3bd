"""Exercise 3 (exercises/03-serving.ipynb): a served IrisModel answers /invocations.

Runs only with WORKBENCH_SERVING_URL set to the model server (e.g. http://127.0.0.1:5001 where
that port is reachable): the workbench does not run a model server of its own yet.
"""

from __future__ import annotations

import os

import pytest
import requests

SERVING_URL = os.environ.get("WORKBENCH_SERVING_URL")
# One setosa (class 0) and one virginica (class 2) from the iris data set.
COLUMNS = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.3, 3.3, 6.0, 2.5]]

pytestmark = pytest.mark.skipif(
    not SERVING_URL, reason="no model server: the workbench does not run one yet; start "
    "`mlflow models serve` (see exercises/03-serving.ipynb) and set WORKBENCH_SERVING_URL to check it")


def test_served_model_predicts_two_iris_rows():
    url = SERVING_URL.rstrip("/")
    try:
        response = requests.post(f"{url}/invocations", timeout=30,
                                 json={"dataframe_split": {"columns": COLUMNS, "data": ROWS}})
    except requests.ConnectionError:
        pytest.fail(f"nothing answers at WORKBENCH_SERVING_URL={url}: is `mlflow models serve` running, "
                    "and is its port reachable from here?", pytrace=False)
    assert response.status_code == 200, f"POST {url}/invocations: {response.status_code} {response.text[:300]}"
    predictions = response.json().get("predictions")
    assert predictions is not None, f"the answer has no 'predictions': {response.text[:300]}"
    assert [int(p) for p in predictions] == [0, 2], f"expected classes [0, 2] (setosa, virginica), got {predictions}"
