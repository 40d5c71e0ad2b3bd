"""The serving benchmark's model, registered from the jupyter container (run there by
bench/serving.sh, fed on stdin): a scikit-learn Ridge regressor on the diabetes data, as
notebooks/04-model-registry.ipynb registers `diabetes-regressor`, with a signature and an input
example. Registered once per stack, as `bench-diabetes-regressor`, alias `bench`; later runs on
that stack reuse that version (and so the image `make serve` built from it; `make bench` starts a
stack of its own each run). Prints {"uri": ..., "version": ...}.
Another name: `python3 - <name>` (the test of the harness uses its own)."""

import json
import sys

import mlflow
from mlflow import MlflowClient
from mlflow.models import infer_signature
from sklearn.datasets import load_diabetes
from sklearn.linear_model import Ridge

NAME = sys.argv[1] if len(sys.argv) > 1 else "bench-diabetes-regressor"
ALIAS = "bench"
client = MlflowClient()
try:
    version = client.get_model_version_by_alias(NAME, ALIAS).version
except mlflow.exceptions.MlflowException:
    X, y = load_diabetes(return_X_y=True, as_frame=True)
    mlflow.set_experiment("bench-serving")
    with mlflow.start_run(run_name="bench-ridge"):
        model = Ridge(alpha=10.0).fit(X, y)
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            input_example=X.head(3),
            signature=infer_signature(X, model.predict(X)),
            registered_model_name=NAME,
        )
    version = info.registered_model_version
    client.set_registered_model_alias(NAME, ALIAS, version)
print(json.dumps({"uri": f"models:/{NAME}@{ALIAS}", "version": str(version)}))
