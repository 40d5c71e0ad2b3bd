"""An MLflow release the workbench's fast paths were not verified with, as after an upgrade: put on
PYTHONPATH in a second mlflow-server (tests/mlflow-server/conftest.py), every Python process of
it that imports MLflow sees this version. The fast paths must find it and start off.

The version is set when a process imports mlflow, not here: importing MLflow in every Python
process (the healthcheck too) took over 5 s on a busy machine, and the container was unhealthy."""

import importlib.abc
import importlib.machinery
import sys

VERSION = "3.99.0"


class _AfterMlflowImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != "mlflow":
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        load = spec.loader.exec_module

        def exec_module(module):
            load(module)
            module.__version__ = VERSION

        spec.loader.exec_module = exec_module
        return spec


sys.meta_path.insert(0, _AfterMlflowImport())
