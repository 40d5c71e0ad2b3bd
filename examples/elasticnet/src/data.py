"""The data and metrics shared by train.py and tune.py.

MLflow's public ElasticNet example uses the wine-quality CSV, which cannot be downloaded in the
workbench (offline): scikit-learn's built-in diabetes regression data set stands in for it.
"""

from __future__ import annotations

from sklearn.datasets import load_diabetes
from sklearn.metrics import mean_absolute_error, r2_score, root_mean_squared_error
from sklearn.model_selection import train_test_split


def load_split(test_size: float = 0.25, random_state: int = 42):
    X, y = load_diabetes(return_X_y=True, as_frame=True)
    return train_test_split(X, y, test_size=test_size, random_state=random_state)


def scores(y_true, y_pred) -> dict[str, float]:
    return {
        "rmse": root_mean_squared_error(y_true, y_pred),
        "mae": mean_absolute_error(y_true, y_pred),
        "r2": r2_score(y_true, y_pred),
    }
