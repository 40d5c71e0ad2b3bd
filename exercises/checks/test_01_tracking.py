"""Exercise 1 (exercises/01-tracking.ipynb): the latest run of the experiment has it all."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def experiment(server, experiment_name) -> dict:
    found = server.get("experiments/get-by-name", experiment_name=experiment_name)
    assert found, (
        f"there is no experiment named {experiment_name!r}: Task 1 is to make it the "
        "active experiment with mlflow.set_experiment(EXPERIMENT_NAME)"
    )
    return found["experiment"]


@pytest.fixture(scope="module")
def run(server, experiment, experiment_name) -> dict:
    runs = server.post(
        "runs/search",
        {
            "experiment_ids": [experiment["experiment_id"]],
            "max_results": 1,
            "order_by": ["attributes.start_time DESC"],
        },
    ).get("runs", [])
    assert runs, f"the experiment {experiment_name!r} has no run yet: run the notebook"
    return runs[0]


def test_experiment_exists(experiment, experiment_name):
    assert experiment["name"] == experiment_name


def test_run_is_tagged_as_an_exercise(run):
    tags = {t["key"]: t["value"] for t in run["data"].get("tags", [])}
    assert tags.get("notebook-type") == "exercise", (
        f"the latest run has no tag notebook-type=exercise (its tags: "
        f"{sorted(k for k in tags if not k.startswith('mlflow.'))}): Task 2, mlflow.set_tag(...)"
    )


def test_input_data_is_logged(server, run):
    files = server.artifacts(run["info"]["run_id"], "input_data")
    assert files, (
        "no artifact under input_data/: Task 3, mlflow.log_artifact(path, artifact_path='input_data')"
    )


def test_output_data_is_logged(server, run):
    files = server.artifacts(run["info"]["run_id"], "output_data")
    assert files, (
        "no artifact under output_data/: Task 7, log the predictions with artifact_path='output_data'"
    )


def test_number_of_trees_is_the_param_num_trees(run):
    params = {p["key"]: p["value"] for p in run["data"].get("params", [])}
    assert "num_trees" in params, (
        f"no parameter num_trees (the run's parameters: {sorted(params)}): "
        "Task 4, mlflow.log_param('num_trees', N_ESTIMATORS)"
    )
    assert params["num_trees"].isdigit() and int(params["num_trees"]) > 0, (
        f"num_trees must be the number of trees, is {params['num_trees']!r}"
    )


def test_accuracy_is_a_metric(run):
    metrics = {m["key"]: m["value"] for m in run["data"].get("metrics", [])}
    assert "accuracy" in metrics, f"no metric accuracy (the run's metrics: {sorted(metrics)}): Task 6"
    assert 0.0 <= metrics["accuracy"] <= 1.0, f"accuracy must be a fraction, is {metrics['accuracy']}"


def test_model_is_logged_as_model(server, experiment, run):
    found = server.post(
        "logged-models/search",
        {
            "experiment_ids": [experiment["experiment_id"]],
            "filter": f"source_run_id = '{run['info']['run_id']}'",
        },
    ).get("models", [])
    names = [m["info"]["name"] for m in found]
    assert "model" in names, (
        f"the latest run logged no model named 'model' (models: {names}): "
        "Task 7, mlflow.sklearn.log_model(model, name='model', ...)"
    )
