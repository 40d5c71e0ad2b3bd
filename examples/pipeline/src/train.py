"""Step 1, `train`: split the data, fit a ridge regression, log the model and the test split.

The test split is logged as the artifact `data/test.csv`: `evaluate` downloads it from this run;
the model's URI is the run's tag `model_uri`.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import mlflow
from mlflow.models import infer_signature
from sklearn.datasets import load_diabetes
from sklearn.linear_model import Ridge
from sklearn.model_selection import train_test_split


def train(alpha: float, test_size: float) -> str:
    data = load_diabetes(as_frame=True).frame
    train_set, test_set = train_test_split(data, test_size=test_size, random_state=42)
    X, y = train_set.drop(columns="target"), train_set["target"]
    with mlflow.start_run() as run:
        mlflow.log_params({"alpha": alpha, "test_size": test_size, "rows_train": len(train_set)})
        model = Ridge(alpha=alpha).fit(X, y)
        info = mlflow.sklearn.log_model(
            model, name="model", input_example=X.head(3), signature=infer_signature(X, model.predict(X))
        )
        # MLflow 3 keeps models apart from run artifacts (models:/<model_id>): the next steps
        # find this run's model through this tag.
        mlflow.set_tag("model_uri", info.model_uri)
        folder = Path(tempfile.mkdtemp())
        test_set.to_csv(folder / "test.csv", index=False)
        mlflow.log_artifact(str(folder / "test.csv"), artifact_path="data")
        print(f"trained Ridge(alpha={alpha}) in run {run.info.run_id}")
        return run.info.run_id


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--alpha", type=float, default=1.0)
    parser.add_argument("--test-size", type=float, default=0.25)
    args = parser.parse_args(argv)
    train(args.alpha, args.test_size)


if __name__ == "__main__":
    main()
