"""The MLproject examples run with `mlflow run` in JupyterLab's container, and in-process.

Each runs as a user would from JupyterLab's terminal (cwd /home/jovyan/work, examples/ mounted
from the host, --env-manager local), under its own experiment; then its runs are looked for
through the REST API from the host: entry points, parameters (given and defaults), metrics,
nested/child runs, the model, and for the pipeline the registered version it promises.
"""

from __future__ import annotations

import pytest

from utils.mlflow_rest import MlflowRest, metrics, params, tags

ENTRY_POINT = "mlflow.project.entryPoint"


@pytest.fixture
def api(mlflow_url, admin_auth) -> MlflowRest:
    return MlflowRest(mlflow_url, admin_auth)


def in_jupyter(stack, *command: str) -> str:
    result = stack.exec("jupyter", *command, check=False, timeout=600)
    assert result.returncode == 0, (
        f"`{' '.join(command)}` failed in the jupyter container:\n"
        f"{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    )
    return result.stdout + result.stderr


def only(runs: list[dict], what: str) -> dict:
    assert len(runs) == 1, f"expected one {what} run, found {len(runs)}"
    return runs[0]


def test_elasticnet_train_logs_params_metrics_and_model(stack, api, unique_name):
    in_jupyter(
        stack,
        "mlflow",
        "run",
        "examples/elasticnet",
        "-e",
        "train",
        "--env-manager",
        "local",
        "--experiment-name",
        unique_name,
        "-P",
        "alpha=0.3",
    )
    run = only(api.runs(unique_name), "train")
    assert run["info"]["status"] == "FINISHED"
    assert tags(run)[ENTRY_POINT] == "train" and tags(run)["mlflow.source.type"] == "PROJECT"
    assert params(run) == {"alpha": "0.3", "l1_ratio": "0.5"}, "given alpha, default l1_ratio"
    assert {"rmse", "mae", "r2"} <= set(metrics(run))
    models = api.logged_models(run["info"]["experiment_id"], run["info"]["run_id"])
    assert [m["name"] for m in models] == ["model"]


def test_elasticnet_tune_nests_one_run_per_trial(stack, api, unique_name):
    in_jupyter(
        stack,
        "mlflow",
        "run",
        "examples/elasticnet",
        "-e",
        "tune",
        "--env-manager",
        "local",
        "--experiment-name",
        unique_name,
        "-P",
        "n_trials=3",
    )
    runs = api.runs(unique_name)
    parent = only([r for r in runs if "mlflow.parentRunId" not in tags(r)], "tune")
    assert tags(parent)[ENTRY_POINT] == "tune" and params(parent)["n_trials"] == "3"
    trials = [r for r in runs if tags(r).get("mlflow.parentRunId") == parent["info"]["run_id"]]
    assert len(trials) == 3, f"3 trials must be nested under the tune run, found {len(trials)}"
    assert all({"alpha", "l1_ratio"} <= set(params(t)) and "cv_rmse" in metrics(t) for t in trials)
    best = min(trials, key=lambda t: metrics(t)["cv_rmse"])
    assert params(parent)["best_alpha"] == params(best)["alpha"]
    assert metrics(parent)["best_cv_rmse"] == pytest.approx(metrics(best)["cv_rmse"])
    assert {"rmse", "r2"} <= set(metrics(parent))
    models = api.logged_models(parent["info"]["experiment_id"], parent["info"]["run_id"])
    assert [m["name"] for m in models] == ["model"], "the best model is logged on the tune run"


def test_pipeline_chains_child_runs_and_registers(stack, api, unique_name):
    model_name = f"{unique_name}-model"
    in_jupyter(
        stack,
        "mlflow",
        "run",
        "examples/pipeline",
        "--env-manager",
        "local",
        "--experiment-name",
        unique_name,
        "-P",
        f"model_name={model_name}",
    )
    runs = api.runs(unique_name)
    main = only([r for r in runs if tags(r)[ENTRY_POINT] == "main"], "main")
    assert main["info"]["status"] == "FINISHED"
    assert params(main) == {"alpha": "1.0", "test_size": "0.25", "model_name": model_name, "min_r2": "0.3"}, (
        "main's parameters and their defaults"
    )
    children = {
        tags(r)[ENTRY_POINT]: r for r in runs if tags(r).get("mlflow.parentRunId") == main["info"]["run_id"]
    }
    assert sorted(children) == ["evaluate", "register", "train"], (
        f"train, evaluate, register must be child runs of main; children: {sorted(children)}"
    )
    train, evaluate, register = children["train"], children["evaluate"], children["register"]
    assert all(r["info"]["status"] == "FINISHED" for r in children.values())
    # Artifacts handed from step to step.
    assert "data/test.csv" in api.artifacts(train["info"]["run_id"])
    assert params(evaluate)["train_run_id"] == train["info"]["run_id"]
    assert tags(evaluate)["model_uri"] == tags(train)["model_uri"]
    assert "evaluation.json" in api.artifacts(evaluate["info"]["run_id"])
    assert params(register)["evaluate_run_id"] == evaluate["info"]["run_id"]
    assert metrics(main)["r2"] == pytest.approx(metrics(evaluate)["r2"]) and metrics(main)["r2"] > 0.3
    # The registered version, with its evaluation and the `candidate` alias.
    assert tags(register)["registered"] == "true"
    model = api.registered_model(model_name)
    assert model, f"the pipeline did not register {model_name!r}"
    assert {a["alias"]: a["version"] for a in model.get("aliases", [])} == {"candidate": "1"}
    version = api.model_version(model_name, "1")
    assert tags(version)["evaluate_run_id"] == evaluate["info"]["run_id"]
    assert float(tags(version)["r2"]) == pytest.approx(metrics(evaluate)["r2"], abs=1e-4)
    assert version["run_id"] == train["info"]["run_id"]


def test_debug_launcher_runs_an_entry_point_in_process(stack, api, unique_name):
    out = in_jupyter(
        stack,
        "python",
        "examples/debug_launcher.py",
        "elasticnet",
        "train",
        "-P",
        "alpha=0.2",
        "--experiment-name",
        unique_name,
    )
    run = only(api.runs(unique_name), "launcher")
    assert f"run {run['info']['run_id']} FINISHED" in out
    assert run["info"]["status"] == "FINISHED"
    assert tags(run)["workbench.launcher"] == "debug_launcher" and tags(run)[ENTRY_POINT] == "train"
    assert params(run) == {"alpha": "0.2", "l1_ratio": "0.5"}
    assert {"rmse", "mae", "r2"} <= set(metrics(run))


def test_debug_launcher_stops_at_a_breakpoint(stack, unique_name):
    """pdb on the launcher stops inside the entry point's code: the reason it exists."""
    result = stack.exec(
        "jupyter",
        "python",
        "-m",
        "pdb",
        "examples/debug_launcher.py",
        "elasticnet",
        "train",
        "-P",
        "alpha=0.25",
        "--experiment-name",
        unique_name,
        check=False,
        input="b elasticnet/src/train.py:18\nc\np ('seen', alpha, l1_ratio)\nq\n",
        timeout=300,
    )
    assert "('seen', 0.25, 0.5)" in result.stdout, result.stdout[-3000:] + result.stderr[-3000:]
