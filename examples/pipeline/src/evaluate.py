"""Step 2, `evaluate`: score the model of a `train` run on the test split that run logged."""

from __future__ import annotations

import argparse

import mlflow
import pandas as pd
from sklearn.metrics import mean_absolute_error, r2_score, root_mean_squared_error


def evaluate(train_run_id: str) -> str:
    test_set = pd.read_csv(
        mlflow.artifacts.download_artifacts(run_id=train_run_id, artifact_path="data/test.csv")
    )
    X, y = test_set.drop(columns="target"), test_set["target"]
    model_uri = mlflow.get_run(train_run_id).data.tags["model_uri"]  # models:/<model_id>
    model = mlflow.pyfunc.load_model(model_uri)
    predictions = model.predict(X)
    metrics = {
        "rmse": root_mean_squared_error(y, predictions),
        "mae": mean_absolute_error(y, predictions),
        "r2": r2_score(y, predictions),
    }
    with mlflow.start_run() as run:
        mlflow.log_param("train_run_id", train_run_id)
        mlflow.set_tag("model_uri", model_uri)
        mlflow.log_metrics(metrics)
        mlflow.log_dict({"model_uri": model_uri, **metrics}, "evaluation.json")
        print(f"evaluated {model_uri}: " + ", ".join(f"{k}={v:.3f}" for k, v in metrics.items()))
        return run.info.run_id


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--train-run-id", required=True)
    evaluate(parser.parse_args(argv).train_run_id)


if __name__ == "__main__":
    main()
