"""Entry point `train`: fit one ElasticNet, log its params, metrics and model."""

from __future__ import annotations

import argparse

import mlflow
from mlflow.models import infer_signature
from sklearn.linear_model import ElasticNet

from data import load_split, scores


def train(alpha: float, l1_ratio: float) -> str:
    """Returns the run's id. Under `mlflow run`, start_run() picks up the run MLflow created."""
    X_train, X_test, y_train, y_test = load_split()
    with mlflow.start_run() as run:
        model = ElasticNet(alpha=alpha, l1_ratio=l1_ratio, random_state=42).fit(X_train, y_train)
        predictions = model.predict(X_test)
        metrics = scores(y_test, predictions)
        mlflow.log_params({"alpha": alpha, "l1_ratio": l1_ratio})
        mlflow.log_metrics(metrics)
        mlflow.sklearn.log_model(
            model, name="model", input_example=X_test.head(3), signature=infer_signature(X_test, predictions)
        )
        print(
            f"ElasticNet(alpha={alpha}, l1_ratio={l1_ratio}): "
            + ", ".join(f"{k}={v:.3f}" for k, v in metrics.items())
        )
        return run.info.run_id


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--l1-ratio", type=float, default=0.5)
    args = parser.parse_args(argv)
    train(args.alpha, args.l1_ratio)


if __name__ == "__main__":
    main()
