"""An MLflow release the workbench's fast paths were not verified with, as after an upgrade: put on
PYTHONPATH in a second mlflow-server (tests/mlflow-server/conftest.py), every Python process of
it sees this version. The fast paths must find it and start off."""

import mlflow

mlflow.__version__ = "3.99.0"
