"""The tutorial notebooks: each runs top to bottom in JupyterLab's kernel and logs what it promises.

Every notebook in notebooks/ is executed inside the jupyter container with papermill (as a user
running "Restart kernel and run all cells" would; output to /tmp, the stored notebook untouched),
any cell error fails the test. Then the experiments, runs, artifacts and registered models the
notebook's intro table names are looked for through the REST API from the host (traces and their
spans in Postgres), restricted to the runs this execution started (the notebooks are re-runnable:
earlier runs stay on the server).
"""

from __future__ import annotations

import json
import re

import pytest

from utils.mlflow_rest import MlflowRest, metrics, now_ms, params, tags
from utils.serving import served_model
from utils.stack import REPO, http_session

NOTEBOOKS = sorted(p.name for p in (REPO / "notebooks").glob("[0-9][0-9]-*.ipynb"))


def run_notebook(stack, name: str, **parameters: str) -> None:
    """papermill inside the jupyter container; fails with the failing cell's traceback."""
    options = [arg for key, value in parameters.items() for arg in ("-p", key, value)]
    result = stack.exec(
        "jupyter",
        "papermill",
        "--no-progress-bar",
        *options,
        f"notebooks/{name}",
        f"/tmp/executed-{name}",
        check=False,
        timeout=600,
    )
    assert result.returncode == 0, f"notebooks/{name} failed when run top to bottom:\n{result.stderr[-6000:]}"
    # What the user sees: no cell prints a warning (tqdm's "IProgress not found" did, in every
    # notebook, until ipywidgets was installed; MLflow's progress bars are widgets now).
    warnings = stack.python(
        "jupyter",
        f"""
import json
cells = json.load(open("/tmp/executed-{name}"))["cells"]
print(json.dumps([(i, "".join(o.get("text", ""))) for i, c in enumerate(cells) for o in c.get("outputs", [])
                  if o.get("name") == "stderr" and "Warning" in "".join(o.get("text", ""))]))
""",
    )
    assert json.loads(warnings.strip().splitlines()[-1]) == [], f"notebooks/{name} prints warnings"


@pytest.fixture
def api(mlflow_url, admin_auth) -> MlflowRest:
    return MlflowRest(mlflow_url, admin_auth)


def test_there_are_notebooks():
    assert {
        "01-tracking-quickstart.ipynb",
        "02-experiment-management.ipynb",
        "03-regression-elasticnet.ipynb",
        "04-model-registry.ipynb",
        "05-serving-client.ipynb",
        "06-genai-tracing-and-evaluation.ipynb",
    } <= set(NOTEBOOKS)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_stored_clean_and_introduced(name):
    notebook = json.loads((REPO / "notebooks" / name).read_text())
    first = notebook["cells"][0]
    assert first["cell_type"] == "markdown" and "teaches" in "".join(first["source"]), (
        f"{name} must open with a markdown cell saying what it teaches"
    )
    dirty = [
        i
        for i, c in enumerate(notebook["cells"])
        if c["cell_type"] == "code" and (c.get("outputs") or c.get("execution_count") is not None)
    ]
    assert not dirty, f"{name} is stored with outputs/execution counts in cells {dirty}: clear them"


# ---- what each notebook promises, checked on the server ----


def check_01(stack, api: MlflowRest, since: int) -> None:
    experiment = api.experiment("tracking-quickstart")
    assert experiment, "experiment 'tracking-quickstart' was not created"
    runs = api.runs("tracking-quickstart", "tags.mlflow.runName = 'quickstart'", since_ms=since)
    assert len(runs) == 1, f"expected one new 'quickstart' run, found {len(runs)}"
    run = runs[0]
    run_id = run["info"]["run_id"]
    assert run["info"]["status"] == "FINISHED"
    assert {"learning_rate", "eta0", "alpha", "epochs"} <= set(params(run))
    assert {"team": "workbench", "stage": "tutorial"}.items() <= tags(run).items()
    history = api.metric_history(run_id, "rmse")
    assert [step for step, _ in history] == list(range(20)), "rmse must be logged at steps 0..19"
    assert {"mae", "r2"} <= set(metrics(run))
    datasets = run["inputs"]["dataset_inputs"]
    assert [d["dataset"]["name"] for d in datasets] == ["diabetes-train"], datasets
    assert {"mlflow.data.context": "training"} == tags(datasets[0])
    files = api.artifacts(run_id)
    assert {"input_data/train.csv", "output_data/predictions.csv", "plots/predicted_vs_actual.png"} <= set(
        files
    ), files
    models = api.logged_models(experiment["experiment_id"], run_id)
    assert [m["name"] for m in models] == ["model"], models
    # The model loads back and its signature and input example were saved with it.
    out = stack.python(
        "jupyter",
        f"""
import json, mlflow
info = mlflow.models.get_model_info("models:/{models[0]["model_id"]}")
print(json.dumps({{"inputs": [c["name"] for c in info.signature.inputs.to_dict()],
                  "example": info.saved_input_example_info is not None}}))
""",
    )
    info = json.loads(out.strip().splitlines()[-1])
    assert info == {
        "inputs": ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"],
        "example": True,
    }


def check_02(stack, api: MlflowRest, since: int) -> None:
    runs = api.runs("experiment-management", since_ms=since)
    by_name = {}
    for run in runs:
        by_name.setdefault(run["info"]["run_name"], []).append(run)
    # Autologging: the estimator's parameters are on the run though the notebook logs only `model`.
    autologged = {"linear": "fit_intercept", "random-forest": "n_estimators", "xgboost": "num_boost_round"}
    for family_run, family in (
        ("linear", "linear"),
        ("random-forest", "random_forest"),
        ("xgboost", "xgboost"),
    ):
        assert family_run in by_name, f"no {family_run!r} run; runs: {sorted(by_name)}"
        run = by_name[family_run][0]
        assert params(run)["model"] == family
        assert {"rmse", "mae", "r2"} <= set(metrics(run))
        assert autologged[family_run] in params(run), (
            f"{family_run}: not autologged (params: {sorted(params(run))})"
        )
    assert params(by_name["random-forest"][0])["n_estimators"] == "100"
    parent = by_name["xgboost-sweep"][0]
    children = [r for r in runs if tags(r).get("mlflow.parentRunId") == parent["info"]["run_id"]]
    assert len(children) == 4, f"the sweep must have 4 nested runs, found {len(children)}"
    assert all(params(c)["model"] == "xgboost" and "rmse" in metrics(c) for c in children)
    good = api.runs("experiment-management", "metrics.rmse < 60 and params.model = 'xgboost'", since_ms=since)
    assert len(good) == 5, "the notebook's filter string finds the xgboost run and the 4 trials"
    comparison = by_name["comparison"][0]
    best_rmse = min(metrics(r)["rmse"] for r in runs if "rmse" in metrics(r))
    best = [r for r in runs if r["info"]["run_id"] == tags(comparison)["best_run_id"]]
    assert best and metrics(best[0])["rmse"] == best_rmse, "best_run_id must be the lowest rmse"
    assert {"comparison.png", "comparison.csv"} <= set(api.artifacts(comparison["info"]["run_id"]))


def check_03(stack, api: MlflowRest, since: int) -> None:
    experiment = api.experiment("regression-elasticnet")
    runs = api.runs("regression-elasticnet", since_ms=since)
    names = [r["info"]["run_name"] for r in runs]
    baseline = next(r for r in runs if r["info"]["run_name"] == "elasticnet-baseline")
    tuning = next(r for r in runs if r["info"]["run_name"] == "elasticnet-tuning")
    for run in (baseline, tuning):
        assert {"alpha", "l1_ratio"} <= set(params(run)), params(run)
        assert {"rmse", "mae", "r2"} <= set(metrics(run)), metrics(run)
        files = set(api.artifacts(run["info"]["run_id"]))
        assert {"coefficients.json", "coefficients.csv", "feature_importance.png"} <= files, files
        models = api.logged_models(experiment["experiment_id"], run["info"]["run_id"])
        assert [m["name"] for m in models] == ["model"]
    trials = [r for r in runs if tags(r).get("mlflow.parentRunId") == tuning["info"]["run_id"]]
    assert len(trials) == int(params(tuning)["n_trials"]) == 8, names
    assert all({"alpha", "l1_ratio"} <= set(params(t)) and "cv_rmse" in metrics(t) for t in trials)
    best_trial = min(trials, key=lambda t: metrics(t)["cv_rmse"])
    assert float(params(tuning)["alpha"]) == pytest.approx(float(params(best_trial)["alpha"]))
    assert metrics(tuning)["rmse"] < metrics(baseline)["rmse"], "tuning must beat the baseline"


def check_04(stack, api: MlflowRest, since: int) -> None:
    model = api.registered_model("diabetes-regressor")
    assert model, "registered model 'diabetes-regressor' does not exist"
    assert "diabetes" in model.get("description", "")
    assert {"task": "regression"}.items() <= tags(model).items()
    new = [v for v in api.model_versions("diabetes-regressor") if int(v["creation_timestamp"]) >= since]
    assert len(new) == 2, f"this execution must add 2 versions, added {len(new)}"
    baseline, challenger = sorted(new, key=lambda v: int(v["version"]))
    aliases = {a["alias"]: a["version"] for a in model.get("aliases", [])}
    assert aliases.get("champion") == challenger["version"], f"challenger not promoted: {aliases}"
    assert "challenger" not in aliases, "the challenger alias is removed after promotion"
    champion = api.model_version("diabetes-regressor", challenger["version"])
    assert tags(champion) == {"candidate": "challenger", "validation_status": "approved"}
    assert champion["description"].startswith("LinearRegression")
    assert champion["current_stage"] == "Production"
    assert api.model_version("diabetes-regressor", baseline["version"])["current_stage"] == "Staging"
    out = stack.python(
        "jupyter",
        """
import mlflow
from sklearn.datasets import load_diabetes
X, _ = load_diabetes(return_X_y=True, as_frame=True)
print(len(mlflow.pyfunc.load_model("models:/diabetes-regressor@champion").predict(X.head(4))))
""",
    )
    assert out.strip().splitlines()[-1] == "4"


def check_05(stack, api: MlflowRest, name: str, url: str) -> None:
    """The serving client logs nothing: what it saw is in its last cell's SUMMARY line."""
    executed = json.loads(stack.exec("jupyter", "cat", f"/tmp/executed-{name}").stdout)
    lines = [
        line
        for cell in executed["cells"]
        for output in cell.get("outputs", [])
        for line in "".join(output.get("text", "")).splitlines()
        if line.startswith("SUMMARY ")
    ]
    assert lines, f"{name} printed no SUMMARY line"
    summary = json.loads(lines[-1].removeprefix("SUMMARY "))
    champion = {a["alias"]: a["version"] for a in api.registered_model("diabetes-regressor")["aliases"]}
    assert summary["model"] == f"models:/diabetes-regressor/{champion['champion']}"
    assert summary["formats"] == {
        f: 200 for f in ("dataframe_split", "dataframe_records", "instances", "inputs", "text/csv")
    }
    assert summary["same_as_in_process"] is True
    assert len(summary["bad_input"]) == 6
    assert all(400 <= status < 500 for status in summary["bad_input"].values()), summary
    assert http_session().get(f"{url}/ping", timeout=10).status_code == 200


def check_06(stack, api: MlflowRest, since: int) -> None:
    """Traces, their spans and links (Postgres: the REST API has no span search), the evaluation
    run and its assessments, the prompt version and alias, the LoggedModel the traces link to."""
    experiment = api.experiment("genai-tracing-and-evaluation")
    assert experiment, "experiment 'genai-tracing-and-evaluation' was not created"
    experiment_id = experiment["experiment_id"]

    # The prompt registry: this execution's version is the one `production` points to.
    prompt = api.registered_model("sklearn-docs-qa")
    assert prompt and tags(prompt).get("mlflow.prompt.is_prompt") == "true", (
        "prompt 'sklearn-docs-qa' missing"
    )
    production = {a["alias"]: a["version"] for a in prompt.get("aliases", [])}.get("production")
    assert production, f"no 'production' alias: {prompt.get('aliases')}"
    version = api.model_version("sklearn-docs-qa", production)
    assert int(version["creation_timestamp"]) >= since, "'production' must point to the version added now"
    assert {"{{context}}", "{{question}}"} <= set(
        re.findall(r"\{\{\w+\}\}", tags(version)["mlflow.prompt.text"])
    )

    # The app version: one LoggedModel, reused by every execution, with its parameters.
    response = api.http.post(
        f"{api.url}/api/2.0/mlflow/logged-models/search",
        timeout=30,
        json={"experiment_ids": [experiment_id], "filter": "name = 'sklearn-docs-qa-v1'"},
    )
    assert response.status_code == 200, response.text[:500]
    models = response.json().get("models", [])
    assert len(models) == 1, f"one LoggedModel 'sklearn-docs-qa-v1' expected, found {len(models)}"
    model_id = models[0]["info"]["model_id"]
    assert {"retriever": "tfidf", "top_k": "3"}.items() <= params(models[0]).items()
    linked = json.loads(tags(models[0]["info"]).get("mlflow.linkedPrompts", "[]"))
    assert {"name": "sklearn-docs-qa", "version": production} in linked, f"prompt not linked: {linked}"

    # The evaluation run: the scorers' aggregates as metrics.
    runs = api.runs("genai-tracing-and-evaluation", "tags.mlflow.runName = 'evaluation'", since_ms=since)
    assert len(runs) == 1, f"expected one new 'evaluation' run, found {len(runs)}"
    run_id = runs[0]["info"]["run_id"]
    assert tags(runs[0]).get("mlflow.runType") == "genai_evaluate"
    scores = metrics(runs[0])
    assert {
        "contains_expected_answer/mean",
        "retrieved_expected_dataset/mean",
        "latency_ms/mean",
        "latency_ms/max",
    } <= set(scores), sorted(scores)
    assert 0 <= scores["contains_expected_answer/mean"] <= 1
    assert 0 <= scores["retrieved_expected_dataset/mean"] <= 1
    assert 0 < scores["latency_ms/mean"] <= scores["latency_ms/max"]

    # Traces: 3 asked directly, 8 from the evaluation; every one linked to the LoggedModel.
    traces = stack.psql(
        "SELECT t.request_id, coalesce(m.value, ''), coalesce(r.value, '') FROM trace_info t "
        "LEFT JOIN trace_request_metadata m ON m.request_id = t.request_id AND m.key = 'mlflow.modelId' "
        "LEFT JOIN trace_request_metadata r ON r.request_id = t.request_id AND r.key = 'mlflow.sourceRun' "
        f"WHERE t.experiment_id = {int(experiment_id)} AND t.timestamp_ms >= {since}"
    )
    assert {linked_model for _, linked_model, _ in traces} == {model_id}, "a trace is not linked to the model"
    by_run = {}
    for trace_id, _, source_run in traces:
        by_run.setdefault(source_run, []).append(trace_id)
    assert {source: len(ids) for source, ids in by_run.items()} == {"": 3, run_id: 8}, by_run

    # Every trace has the pipeline's spans, typed and nested as the notebook promises.
    ids = ", ".join(f"'{trace_id}'" for trace_id, _, _ in traces)
    spans = {}
    for trace_id, name, span_type, parent in stack.psql(
        "SELECT s.trace_id, s.name, s.type, coalesce(p.name, '') FROM spans s LEFT JOIN spans p "
        f"ON p.trace_id = s.trace_id AND p.span_id = s.parent_span_id WHERE s.trace_id IN ({ids})"
    ):
        spans.setdefault(trace_id, set()).add((name, span_type, parent))
    expected = {
        ("answer_question", "CHAIN", ""),
        ("retrieve", "RETRIEVER", "answer_question"),
        ("embed_query", "EMBEDDING", "retrieve"),
        ("generate", "LLM", "answer_question"),
    }
    assert all(spans.get(trace_id) == expected for trace_id, _, _ in traces), spans

    # The scorers' verdicts are assessments on the evaluation's traces.
    ids = ", ".join(f"'{trace_id}'" for trace_id in by_run[run_id])
    feedback = {}
    for trace_id, name in stack.psql(
        f"SELECT trace_id, name FROM assessments WHERE assessment_type = 'feedback' AND trace_id IN ({ids})"
    ):
        feedback.setdefault(trace_id, set()).add(name)
    assert all(
        feedback.get(trace_id) == {"contains_expected_answer", "retrieved_expected_dataset", "latency_ms"}
        for trace_id in by_run[run_id]
    ), feedback


CHECKS = {"01-": check_01, "02-": check_02, "03-": check_03, "04-": check_04, "06-": check_06}


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_and_logs_what_it_promises(stack, api, name):
    prefix = name[:3]
    if prefix == "05-":
        # The model notebook 04 registered, served as `make serve` serves it by default.
        with served_model(stack, "models:/diabetes-regressor@champion", "diabetes-regressor") as (
            url,
            url_from_jupyter,
        ):
            run_notebook(stack, name, SERVING_URL=url_from_jupyter)
            check_05(stack, api, name, url)
        return
    since = now_ms()
    run_notebook(stack, name)
    check = CHECKS.get(prefix)
    assert check, f"{name} has no server-side check in {__file__}: add one"
    check(stack, api, since)
