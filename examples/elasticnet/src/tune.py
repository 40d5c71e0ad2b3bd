"""Entry point `tune`: random search over alpha and l1_ratio, one nested run per trial.

Optuna/Hyperopt are not installed in the workbench: scikit-learn's ParameterSampler draws the
trials, each scored by 5-fold cross-validation; the best is refit and logged with its model.
"""

from __future__ import annotations

import argparse

import mlflow
from mlflow.models import infer_signature
from scipy.stats import loguniform, uniform
from sklearn.linear_model import ElasticNet
from sklearn.model_selection import ParameterSampler, cross_val_score

from data import load_split, scores


def tune(n_trials: int) -> str:
    X_train, X_test, y_train, y_test = load_split()
    space = {"alpha": loguniform(1e-4, 1.0), "l1_ratio": uniform(0.0, 1.0)}
    with mlflow.start_run() as parent:
        mlflow.log_param("n_trials", n_trials)
        best = None
        for i, point in enumerate(ParameterSampler(space, n_iter=n_trials, random_state=42)):
            with mlflow.start_run(run_name=f"trial-{i:02d}", nested=True):
                model = ElasticNet(random_state=42, max_iter=10_000, **point)
                cv_rmse = -cross_val_score(
                    model, X_train, y_train, cv=5, scoring="neg_root_mean_squared_error"
                ).mean()
                mlflow.log_params(point)
                mlflow.log_metric("cv_rmse", cv_rmse)
            if best is None or cv_rmse < best[1]:
                best = (point, cv_rmse)
        point, cv_rmse = best
        model = ElasticNet(random_state=42, max_iter=10_000, **point).fit(X_train, y_train)
        predictions = model.predict(X_test)
        mlflow.log_params({f"best_{k}": v for k, v in point.items()})
        mlflow.log_metrics({"best_cv_rmse": cv_rmse, **scores(y_test, predictions)})
        mlflow.sklearn.log_model(
            model, name="model", input_example=X_test.head(3), signature=infer_signature(X_test, predictions)
        )
        print(f"best of {n_trials} trials: {point} cv_rmse={cv_rmse:.3f}")
        return parent.info.run_id


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n-trials", type=int, default=6)
    tune(parser.parse_args(argv).n_trials)


if __name__ == "__main__":
    main()
