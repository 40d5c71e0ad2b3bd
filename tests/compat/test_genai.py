"""MLflow 3's GenAI documentation, run unchanged in JupyterLab (offline: no LLM is called):
tracing, LoggedModels that traces link to, evaluation with code-based scorers, the prompt
registry."""

from __future__ import annotations

from compat.conftest import run_snippet
from utils.mlflow_rest import tags


def test_tracing_decorator_spans_and_search_traces(stack, experiment):
    # https://mlflow.org/docs/latest/genai/tracing/app-instrumentation/manual-tracing/
    # https://mlflow.org/docs/latest/genai/tracing/search-traces/
    result = run_snippet(
        stack,
        """
        import json

        import mlflow

        experiment = mlflow.set_experiment("EXPERIMENT")


        @mlflow.trace
        def my_func(x, y):
            return x + y


        @mlflow.trace(span_type="func", attributes={"key": "value"})
        def add_one(x):
            return x + 1


        with mlflow.start_span(name="my_span") as span:
            span.set_inputs({"x": 1, "y": 2})
            z = add_one(my_func(1, 2))
            span.set_outputs({"z": z})
            span.set_attribute("key", "value")

        trace_id = mlflow.get_last_active_trace_id()
        trace = mlflow.get_trace(trace_id)
        traces = mlflow.search_traces(filter_string="trace.status = 'OK'")
        print("COMPAT", json.dumps({
            "experiment_id": experiment.experiment_id, "trace_id": trace_id,
            "spans": sorted(s.name for s in trace.data.spans),
            "outputs": trace.data.spans[0].outputs if trace.data.spans[0].name == "my_span" else None,
            "found": traces["trace_id"].tolist()}))
    """,
        EXPERIMENT=experiment,
    )
    trace_id = result["trace_id"]
    assert result["spans"] == ["add_one", "my_func", "my_span"]
    assert result["found"] == [trace_id]
    assert stack.psql(f"SELECT experiment_id, status FROM trace_info WHERE request_id = '{trace_id}'") == [
        [result["experiment_id"], "OK"]
    ]
    names = stack.psql(f"SELECT name FROM spans WHERE trace_id = '{trace_id}' ORDER BY name")
    assert [n[0] for n in names] == ["add_one", "my_func", "my_span"]


def test_logged_model_links_traces_and_is_searchable(stack, experiment):
    # https://mlflow.org/docs/latest/genai/version-tracking/ (set_active_model)
    # https://mlflow.org/docs/latest/ml/model/ (LoggedModel, mlflow.search_logged_models)
    result = run_snippet(
        stack,
        """
        import json

        import mlflow

        experiment = mlflow.set_experiment("EXPERIMENT")
        active_model = mlflow.set_active_model(name="my-agent-v1")


        @mlflow.trace
        def answer(question: str) -> str:
            return "MLflow is an open source platform for the ML lifecycle."


        answer("What is MLflow?")
        answer("What does MLflow track?")

        models = mlflow.search_logged_models(filter_string="name = 'my-agent-v1'",
                                             output_format="list")
        traces = mlflow.search_traces(model_id=active_model.model_id)
        print("COMPAT", json.dumps({
            "experiment_id": experiment.experiment_id, "model_id": active_model.model_id,
            "found": [m.model_id for m in models], "traces": len(traces)}))
    """,
        EXPERIMENT=experiment,
    )
    assert result["found"] == [result["model_id"]]
    assert result["traces"] == 2
    linked = stack.psql(
        "SELECT count(*) FROM trace_request_metadata "
        f"WHERE key = 'mlflow.modelId' AND value = '{result['model_id']}'"
    )
    assert linked == [["2"]]


def test_genai_evaluate_with_code_based_scorers(stack, api, experiment):
    # https://mlflow.org/docs/latest/genai/eval-monitor/scorers/custom/ (code-based scorers)
    # https://mlflow.org/docs/latest/genai/eval-monitor/quickstart/ (mlflow.genai.evaluate)
    result = run_snippet(
        stack,
        """
        import json

        import mlflow
        from mlflow.genai.scorers import scorer

        mlflow.set_experiment("EXPERIMENT")


        @scorer
        def exact_match(outputs, expectations) -> bool:
            return outputs == expectations["expected_response"]


        @scorer
        def is_short(outputs: str) -> bool:
            return len(outputs.split()) <= 5


        eval_dataset = [
            {"inputs": {"question": "What is the capital of France?"},
             "expectations": {"expected_response": "Paris"}},
            {"inputs": {"question": "What is 2 + 2?"},
             "expectations": {"expected_response": "4"}},
        ]


        def predict_fn(question: str) -> str:
            answers = {"What is the capital of France?": "Paris", "What is 2 + 2?": "four"}
            return answers[question]


        results = mlflow.genai.evaluate(data=eval_dataset, predict_fn=predict_fn,
                                        scorers=[exact_match, is_short])
        print("COMPAT", json.dumps({"run_id": results.run_id, "metrics": results.metrics}))
    """,
        EXPERIMENT=experiment,
    )
    assert result["metrics"]["exact_match/mean"] == 0.5
    assert result["metrics"]["is_short/mean"] == 1.0
    run = next(r for r in api.runs(experiment) if r["info"]["run_id"] == result["run_id"])
    stored = {m["key"]: m["value"] for m in run["data"]["metrics"]}
    assert stored["exact_match/mean"] == 0.5 and stored["is_short/mean"] == 1.0
    # One trace per row, with the scorers' assessments on it.
    assessed = stack.psql(
        "SELECT count(DISTINCT a.trace_id) FROM assessments a JOIN trace_info t ON t.request_id = a.trace_id "
        f"WHERE t.experiment_id = {int(run['info']['experiment_id'])} AND a.name = 'exact_match'"
    )
    assert assessed == [["2"]]


def test_prompt_registry_register_alias_load_and_format(stack, api, unique_name):
    # https://mlflow.org/docs/latest/genai/prompt-registry/ (create, alias, load, format)
    name = f"summarization-prompt-{unique_name[-8:]}"
    result = run_snippet(
        stack,
        """
        import json

        import mlflow

        initial_template = \"\"\"\\
        Summarize content you are provided with in {{ num_sentences }} sentences.

        Sentences: {{ sentences }}
        \"\"\"

        prompt = mlflow.genai.register_prompt(
            name="PROMPT_NAME",
            template=initial_template,
            commit_message="Initial commit",
            tags={"author": "author@example.com", "task": "summarization"},
        )
        second = mlflow.genai.register_prompt(
            name="PROMPT_NAME",
            template=initial_template.replace("Summarize", "Briefly summarize"),
            commit_message="Shorter",
        )
        mlflow.genai.set_prompt_alias("PROMPT_NAME", alias="production", version=prompt.version)

        production = mlflow.genai.load_prompt("prompts:/PROMPT_NAME@production")
        latest = mlflow.genai.load_prompt("prompts:/PROMPT_NAME/2")
        print("COMPAT", json.dumps({
            "versions": [prompt.version, second.version],
            "production": production.format(num_sentences=1, sentences="MLflow is great."),
            "latest": latest.format(num_sentences=2, sentences="x")}))
    """,
        PROMPT_NAME=name,
    )
    assert result["versions"] == [1, 2]
    assert result["production"].startswith("Summarize content you are provided with in 1 sentences.")
    assert "Sentences: MLflow is great." in result["production"]
    assert result["latest"].startswith("Briefly summarize content you are provided with in 2 sentences.")
    model = api.registered_model(name)
    assert tags(model).get("mlflow.prompt.is_prompt") == "true"
    assert {a["alias"]: a["version"] for a in model.get("aliases", [])} == {"production": "1"}
