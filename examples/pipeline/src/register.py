"""Step 3, `register`: register the trained model if its evaluation is good enough.

Reads `evaluation.json` from the `evaluate` run; when r2 >= min_r2, registers the train run's
model (its `model_uri` tag, models:/<model_id>) as model_name, tags the version with the
evaluation and points the `candidate` alias at it. Otherwise it says why it did not.
"""

from __future__ import annotations

import argparse

import mlflow
from mlflow import MlflowClient


def register(train_run_id: str, evaluate_run_id: str, model_name: str, min_r2: float) -> str:
    evaluation = mlflow.artifacts.load_dict(f"runs:/{evaluate_run_id}/evaluation.json")
    with mlflow.start_run() as run:
        mlflow.log_params(
            {
                "train_run_id": train_run_id,
                "evaluate_run_id": evaluate_run_id,
                "model_name": model_name,
                "min_r2": min_r2,
            }
        )
        if evaluation["r2"] < min_r2:
            mlflow.set_tag("registered", "false")
            print(f"not registered: r2 {evaluation['r2']:.3f} < min_r2 {min_r2}")
            return run.info.run_id
        model_uri = mlflow.get_run(train_run_id).data.tags["model_uri"]  # models:/<model_id>
        version = mlflow.register_model(model_uri, model_name).version
        client = MlflowClient()
        for key in ("rmse", "mae", "r2"):
            client.set_model_version_tag(model_name, version, key, f"{evaluation[key]:.4f}")
        client.set_model_version_tag(model_name, version, "evaluate_run_id", evaluate_run_id)
        client.set_registered_model_alias(model_name, "candidate", version)
        mlflow.set_tags({"registered": "true", "registered_version": version})
        print(f"registered {model_name} version {version} (alias candidate)")
        return run.info.run_id


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--train-run-id", required=True)
    parser.add_argument("--evaluate-run-id", required=True)
    parser.add_argument("--model-name", default="pipeline-diabetes")
    parser.add_argument("--min-r2", type=float, default=0.3)
    args = parser.parse_args(argv)
    register(args.train_run_id, args.evaluate_run_id, args.model_name, args.min_r2)


if __name__ == "__main__":
    main()
