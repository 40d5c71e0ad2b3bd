"""MLflow's tracking documentation, run unchanged in JupyterLab: runs, artifacts, datasets,
system metrics, deleting and restoring."""

from __future__ import annotations

from compat.conftest import ftp_files, run_snippet
from utils.mlflow_rest import metrics, params, tags


def test_params_metrics_steps_tags_nested_runs_and_search_runs(stack, api, experiment):
    # https://mlflow.org/docs/latest/ml/tracking/tracking-api/ (logging functions, nested runs)
    # https://mlflow.org/docs/latest/ml/search/search-runs/ (mlflow.search_runs -> pandas)
    result = run_snippet(
        stack,
        """
        import json
        import mlflow

        mlflow.set_experiment("EXPERIMENT")

        with mlflow.start_run(run_name="parent") as parent_run:
            mlflow.log_param("learning_rate", 0.01)
            mlflow.log_params({"epochs": 5, "batch_size": 32})
            for epoch in range(5):
                mlflow.log_metric("loss", 1.0 / (epoch + 1), step=epoch)
            mlflow.log_metrics({"accuracy": 0.90, "f1": 0.85})
            mlflow.set_tag("team", "compat")
            mlflow.set_tags({"stage": "dev", "owner": "data-science"})
            with mlflow.start_run(run_name="child", nested=True) as child_run:
                mlflow.log_param("child_param", "x")
                mlflow.log_metric("accuracy", 0.95)

        runs = mlflow.search_runs(experiment_names=["EXPERIMENT"],
                                  filter_string="metrics.accuracy > 0.92")
        everything = mlflow.search_runs(experiment_names=["EXPERIMENT"],
                                        order_by=["metrics.accuracy DESC"])
        print("COMPAT", json.dumps({
            "parent": parent_run.info.run_id, "child": child_run.info.run_id,
            "experiment_id": parent_run.info.experiment_id, "type": type(runs).__name__,
            "found": runs["run_id"].tolist(), "columns": sorted(runs.columns),
            "ordered": everything["run_id"].tolist()}))
    """,
        EXPERIMENT=experiment,
    )
    parent, child = result["parent"], result["child"]
    assert result["type"] == "DataFrame"
    assert result["found"] == [child]
    assert result["ordered"] == [child, parent]
    assert {"params.child_param", "metrics.accuracy", "tags.mlflow.runName"} <= set(result["columns"])
    # The rows in Postgres, the history through the API.
    assert stack.psql(f"SELECT key, value FROM params WHERE run_uuid = '{parent}' ORDER BY key") == [
        ["batch_size", "32"],
        ["epochs", "5"],
        ["learning_rate", "0.01"],
    ]
    assert stack.psql(f"SELECT count(*) FROM metrics WHERE run_uuid = '{parent}' AND key = 'loss'") == [["5"]]
    assert api.metric_history(parent, "loss") == [(step, 1.0 / (step + 1)) for step in range(5)]
    runs = {r["info"]["run_id"]: r for r in api.runs(experiment)}
    assert {"team": "compat", "stage": "dev", "owner": "data-science"}.items() <= tags(runs[parent]).items()
    assert tags(runs[child])["mlflow.parentRunId"] == parent
    assert params(runs[child]) == {"child_param": "x"} and metrics(runs[child]) == {"accuracy": 0.95}


def test_artifact_logging_functions_and_download_of_a_directory(stack, api, experiment):
    # https://mlflow.org/docs/latest/ml/tracking/tracking-api/ (log_artifact(s))
    # https://mlflow.org/docs/latest/api_reference/python_api/mlflow.html: the examples of
    # mlflow.log_figure, log_table, log_dict, log_text, log_image and
    # mlflow.artifacts.download_artifacts
    result = run_snippet(
        stack,
        """
        import hashlib
        import json
        import os
        import tempfile
        from pathlib import Path

        import matplotlib.pyplot as plt
        import mlflow
        import numpy as np

        mlflow.set_experiment("EXPERIMENT")

        tmp = Path(tempfile.mkdtemp())
        (tmp / "features.txt").write_text("rooms, zipcode, median_price, school_rating, transport")
        reports = tmp / "reports"
        (reports / "nested").mkdir(parents=True)
        (reports / "summary.csv").write_text("a,b\\n1,2\\n")
        (reports / "nested" / "blob.bin").write_bytes(os.urandom(200_000))

        with mlflow.start_run() as run:
            mlflow.log_artifact(str(tmp / "features.txt"))
            mlflow.log_artifacts(str(reports), artifact_path="reports")

            fig, ax = plt.subplots()
            ax.plot([0, 1], [2, 3])
            mlflow.log_figure(fig, "figure.png")

            table_dict = {
                "inputs": ["What is MLflow?", "What is Databricks?"],
                "outputs": ["MLflow is ...", "Databricks is ..."],
                "toxicity": [0.0, 0.0],
            }
            mlflow.log_table(data=table_dict, artifact_file="qabot_eval_results.json")

            dictionary = {"k": "v"}
            mlflow.log_dict(dictionary, "data.json")
            mlflow.log_dict(dictionary, "data.yml")

            mlflow.log_text("text1", "file1.txt")
            mlflow.log_text("text2", "dir/file2.txt")

            image = np.random.randint(0, 256, size=(100, 100, 3), dtype=np.uint8)
            mlflow.log_image(image, "image.png")

        downloaded = mlflow.artifacts.download_artifacts(
            run_id=run.info.run_id, artifact_path="reports", dst_path=str(tmp / "download"))
        same = all(
            (Path(downloaded) / p).read_bytes() == (reports / p).read_bytes()
            for p in ("summary.csv", "nested/blob.bin"))
        print("COMPAT", json.dumps({
            "run_id": run.info.run_id, "experiment_id": run.info.experiment_id,
            "downloaded_same": same,
            "blob_sha256": hashlib.sha256((reports / "nested" / "blob.bin").read_bytes()).hexdigest(),
            "table": mlflow.load_table("qabot_eval_results.json", run_ids=[run.info.run_id]).shape,
            "text": mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/dir/file2.txt"),
            "dict": mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/data.json")}))
    """,
        EXPERIMENT=experiment,
    )
    run_id = result["run_id"]
    expected = {
        "features.txt",
        "reports/summary.csv",
        "reports/nested/blob.bin",
        "figure.png",
        "qabot_eval_results.json",
        "data.json",
        "data.yml",
        "file1.txt",
        "dir/file2.txt",
        "image.png",
    }
    assert expected <= set(api.artifacts(run_id))
    assert expected <= ftp_files(stack, result["experiment_id"], run_id)
    blob = f"/srv/ftp/artifacts/{result['experiment_id']}/{run_id}/artifacts/reports/nested/blob.bin"
    assert stack.exec("ftpd", "sha256sum", blob).stdout.split()[0] == result["blob_sha256"]
    assert result["downloaded_same"] is True
    assert result["table"] == [2, 3]
    assert result["text"] == "text2" and result["dict"] == {"k": "v"}
    for image in ("figure.png", "image.png"):
        path = blob.replace("reports/nested/blob.bin", image)
        assert stack.python("ftpd", f"print(open({path!r}, 'rb').read(4) == b'\\x89PNG')").strip() == "True"


def test_log_input_of_a_pandas_dataset(stack, api, experiment):
    # https://mlflow.org/docs/latest/ml/dataset/ (mlflow.data.from_pandas, mlflow.log_input)
    result = run_snippet(
        stack,
        """
        import json

        import mlflow.data
        from mlflow.data.pandas_dataset import PandasDataset
        from sklearn.datasets import load_wine

        mlflow.set_experiment("EXPERIMENT")
        dataset_source_url = "https://example.org/wine-quality-white.csv"
        raw_data = load_wine(as_frame=True).frame
        dataset: PandasDataset = mlflow.data.from_pandas(
            raw_data, source=dataset_source_url, name="wine quality - white", targets="target")

        with mlflow.start_run() as run:
            mlflow.log_input(dataset, context="training")

        logged_run = mlflow.get_run(run.info.run_id)
        dataset_info = logged_run.inputs.dataset_inputs[0].dataset
        dataset_source = mlflow.data.get_source(dataset_info)
        print("COMPAT", json.dumps({
            "run_id": run.info.run_id, "name": dataset_info.name, "digest": dataset_info.digest,
            "source": dataset_source.url, "profile": json.loads(dataset_info.profile)}))
    """,
        EXPERIMENT=experiment,
    )
    assert result["name"] == "wine quality - white"
    assert result["source"] == "https://example.org/wine-quality-white.csv"
    assert result["profile"]["num_rows"] == 178
    run = next(r for r in api.runs(experiment) if r["info"]["run_id"] == result["run_id"])
    inputs = run["inputs"]["dataset_inputs"]
    assert [(i["dataset"]["name"], i["dataset"]["digest"]) for i in inputs] == [
        ("wine quality - white", result["digest"])
    ]
    assert tags(inputs[0]) == {"mlflow.data.context": "training"}
    assert stack.psql(f"SELECT name FROM datasets WHERE digest = '{result['digest']}'") == [
        ["wine quality - white"]
    ]


def test_system_metrics(stack, api, experiment):
    # https://mlflow.org/docs/latest/ml/tracking/system-metrics/
    result = run_snippet(
        stack,
        """
        import json
        import time

        import mlflow

        mlflow.set_experiment("EXPERIMENT")
        mlflow.set_system_metrics_sampling_interval(1)
        with mlflow.start_run(log_system_metrics=True) as run:
            time.sleep(4)
        print("COMPAT", json.dumps({"run_id": run.info.run_id}))
    """,
        EXPERIMENT=experiment,
    )
    run = next(r for r in api.runs(experiment) if r["info"]["run_id"] == result["run_id"])
    system = {key for key in metrics(run) if key.startswith("system/")}
    assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"} <= system, system
    assert len(api.metric_history(result["run_id"], "system/cpu_utilization_percentage")) >= 2


def test_delete_and_restore_runs_and_experiments(stack, api, experiment):
    # https://mlflow.org/docs/latest/api_reference/python_api/mlflow.client.html
    # (MlflowClient.delete_run / restore_run / delete_experiment / restore_experiment)
    result = run_snippet(
        stack,
        """
        import json

        import mlflow
        from mlflow import MlflowClient

        experiment_id = mlflow.create_experiment("EXPERIMENT")
        with mlflow.start_run(experiment_id=experiment_id) as run:
            mlflow.log_metric("m", 1.0)

        client = MlflowClient()
        stages = []
        client.delete_run(run.info.run_id)
        stages.append(client.get_run(run.info.run_id).info.lifecycle_stage)
        client.restore_run(run.info.run_id)
        stages.append(client.get_run(run.info.run_id).info.lifecycle_stage)
        client.delete_experiment(experiment_id)
        stages.append(client.get_experiment(experiment_id).lifecycle_stage)
        client.restore_experiment(experiment_id)
        stages.append(client.get_experiment(experiment_id).lifecycle_stage)
        print("COMPAT", json.dumps({"run_id": run.info.run_id, "experiment_id": experiment_id,
                                    "stages": stages}))
    """,
        EXPERIMENT=experiment,
    )
    assert result["stages"] == ["deleted", "active", "deleted", "active"]
    assert stack.psql(f"SELECT lifecycle_stage FROM runs WHERE run_uuid = '{result['run_id']}'") == [
        ["active"]
    ]
    assert stack.psql(
        f"SELECT lifecycle_stage FROM experiments WHERE experiment_id = {int(result['experiment_id'])}"
    ) == [["active"]]
    assert [r["info"]["run_id"] for r in api.runs(experiment)] == [result["run_id"]]
