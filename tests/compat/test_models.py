"""MLflow's model documentation, run unchanged in JupyterLab: every flavor the workbench ships
logs, loads back with the same predictions, registers, and is served by `make serve`.

Each kind of model is logged once per test session (the `logged_models` fixture, on first use)
and then used by the load test and by the one parametrized serving test.
"""

from __future__ import annotations

import json
import subprocess
import textwrap
import uuid

import pytest

from compat.conftest import run_snippet
from utils.serving import STAND_IN, build_scoring_image, free_port, remove_model_images, serve
from utils.stack import http_session, image_present

# What every snippet adds at its end: the ids, and the predictions of the model loaded back as
# its own flavor and as a pyfunc, on the input the serving test sends too.
REPORT = """
import json as _json
import mlflow as _mlflow
import numpy as _np
_pyfunc = _mlflow.pyfunc.load_model(model_info.model_uri)
_sample = SAMPLE.head(5)
_version = _mlflow.register_model(model_info.model_uri, "REGISTERED")
print("COMPAT", _json.dumps({
    "model_uri": model_info.model_uri, "model_id": model_info.model_id,
    "run_id": model_info.run_id, "registered": "REGISTERED", "version": _version.version,
    "flavors": sorted(model_info.flavors), "sample": _sample.to_dict(orient="split"),
    "pyfunc": _np.asarray(_pyfunc.predict(_sample)).tolist(),
    "native": _np.asarray(NATIVE).tolist()}))
"""

# https://mlflow.org/docs/latest/ml/traditional-ml/sklearn/ ("Model logging", "Loading")
SKLEARN = """
import mlflow
from sklearn.datasets import load_iris
from sklearn.ensemble import {estimator}

mlflow.set_experiment("EXPERIMENT")
X, y = load_iris(return_X_y=True, as_frame=True)
with mlflow.start_run():
    model = {estimator}().fit(X, y)
    model_info = mlflow.sklearn.log_model(model, name="model"{example})

loaded_model = mlflow.sklearn.load_model(model_info.model_uri)
SAMPLE, NATIVE = X, loaded_model.predict(X.head(5))
"""

SNIPPETS = {
    # The issue's own reproduction: a forest, no input example.
    "sklearn-random-forest": SKLEARN.format(estimator="RandomForestClassifier", example=""),
    "sklearn-extra-trees": SKLEARN.format(
        estimator="ExtraTreesClassifier", example=", input_example=X.head(3)"
    ),
    "sklearn-gradient-boosting": SKLEARN.format(
        estimator="GradientBoostingClassifier", example=", input_example=X.head(3)"
    ),
    "sklearn-hist-gradient-boosting": SKLEARN.format(
        estimator="HistGradientBoostingClassifier", example=", input_example=X.head(3)"
    ),
    # https://mlflow.org/docs/latest/ml/traditional-ml/sklearn/ (a tree, with a signature)
    "sklearn-decision-tree": """
        import mlflow
        from mlflow.models import infer_signature
        from sklearn.datasets import load_wine
        from sklearn.tree import DecisionTreeClassifier

        mlflow.set_experiment("EXPERIMENT")
        X, y = load_wine(return_X_y=True, as_frame=True)
        with mlflow.start_run():
            model = DecisionTreeClassifier(max_depth=4).fit(X, y)
            signature = infer_signature(X, model.predict(X))
            model_info = mlflow.sklearn.log_model(model, name="model", signature=signature,
                                                  input_example=X.head(2))
        SAMPLE, NATIVE = X, mlflow.sklearn.load_model(model_info.model_uri).predict(X.head(5))
    """,
    # https://mlflow.org/docs/latest/ml/getting-started/quickstart/ (the linear model, pipeline)
    "sklearn-linear": """
        import mlflow
        from sklearn.datasets import load_diabetes
        from sklearn.linear_model import LinearRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        mlflow.set_experiment("EXPERIMENT")
        X, y = load_diabetes(return_X_y=True, as_frame=True)
        with mlflow.start_run():
            model = make_pipeline(StandardScaler(), LinearRegression()).fit(X, y)
            model_info = mlflow.sklearn.log_model(sk_model=model, name="model",
                                                  input_example=X.head(5))
        SAMPLE, NATIVE = X, mlflow.sklearn.load_model(model_info.model_uri).predict(X.head(5))
    """,
    # https://mlflow.org/docs/latest/ml/traditional-ml/xgboost/ (native API: xgb.train)
    "xgboost-native": """
        import mlflow
        import xgboost as xgb
        from sklearn.datasets import load_diabetes

        mlflow.set_experiment("EXPERIMENT")
        X, y = load_diabetes(return_X_y=True, as_frame=True)
        dtrain = xgb.DMatrix(X, label=y)
        params = {"objective": "reg:squarederror", "max_depth": 3, "learning_rate": 0.1}
        with mlflow.start_run():
            booster = xgb.train(params, dtrain, num_boost_round=20)
            model_info = mlflow.xgboost.log_model(booster, name="model", input_example=X.head(3))
        loaded = mlflow.xgboost.load_model(model_info.model_uri)
        SAMPLE, NATIVE = X, loaded.predict(xgb.DMatrix(X.head(5)))
    """,
    # https://mlflow.org/docs/latest/ml/traditional-ml/xgboost/ (scikit-learn API)
    "xgboost-sklearn": """
        import mlflow
        from sklearn.datasets import load_breast_cancer
        from xgboost import XGBClassifier

        mlflow.set_experiment("EXPERIMENT")
        X, y = load_breast_cancer(return_X_y=True, as_frame=True)
        with mlflow.start_run():
            model = XGBClassifier(n_estimators=20, max_depth=3).fit(X, y)
            model_info = mlflow.xgboost.log_model(model, name="model", input_example=X.head(3))
        SAMPLE, NATIVE = X, mlflow.xgboost.load_model(model_info.model_uri).predict(X.head(5))
    """,
    # https://mlflow.org/docs/latest/ml/model/python_model/ (a custom PythonModel)
    "pyfunc-custom": """
        import mlflow
        import pandas as pd


        class AddN(mlflow.pyfunc.PythonModel):
            def __init__(self, n):
                self.n = n

            def predict(self, context, model_input, params=None):
                return model_input.apply(lambda column: column + self.n)


        mlflow.set_experiment("EXPERIMENT")
        with mlflow.start_run():
            model_info = mlflow.pyfunc.log_model(
                name="model", python_model=AddN(n=5),
                input_example=pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.0]}))
        SAMPLE = pd.DataFrame({"a": [float(i) for i in range(5)], "b": [10.0] * 5})
        NATIVE = AddN(n=5).predict(None, SAMPLE.head(5))
    """,
    # https://mlflow.org/docs/latest/ml/model/models-from-code/
    "model-from-code": """
        import tempfile
        from pathlib import Path

        import mlflow
        import pandas as pd

        model_code = '''
        import mlflow
        import pandas as pd
        from mlflow.models import set_model


        class Doubler(mlflow.pyfunc.PythonModel):
            def predict(self, context, model_input: pd.DataFrame, params=None):
                return model_input * 2


        set_model(Doubler())
        '''
        model_path = Path(tempfile.mkdtemp()) / "doubler.py"
        model_path.write_text(model_code)

        mlflow.set_experiment("EXPERIMENT")
        input_example = pd.DataFrame({"x": [1.0, 2.0]})
        with mlflow.start_run():
            model_info = mlflow.pyfunc.log_model(name="model", python_model=str(model_path),
                                                 input_example=input_example)
        SAMPLE = pd.DataFrame({"x": [float(i) for i in range(5)]})
        NATIVE = SAMPLE * 2
    """,
    # https://mlflow.org/docs/latest/ml/tracking/autolog/ (scikit-learn), model logging on
    "autolog-sklearn": """
        import mlflow
        from sklearn.datasets import load_diabetes
        from sklearn.ensemble import RandomForestRegressor
        from sklearn.model_selection import train_test_split

        mlflow.set_experiment("EXPERIMENT")
        mlflow.sklearn.autolog()

        db = load_diabetes(as_frame=True)
        X_train, X_test, y_train, y_test = train_test_split(db.data, db.target)

        rf = RandomForestRegressor(n_estimators=100, max_depth=6, max_features=3)
        rf.fit(X_train, y_train)
        predictions = rf.predict(X_test)

        model_info = mlflow.models.get_model_info(mlflow.last_logged_model().model_uri)
        SAMPLE, NATIVE = X_test, rf.predict(X_test.head(5))
    """,
    # https://mlflow.org/docs/latest/ml/traditional-ml/xgboost/ (autologging), model logging on
    "autolog-xgboost": """
        import mlflow
        import xgboost as xgb
        from sklearn.datasets import load_diabetes

        mlflow.set_experiment("EXPERIMENT")
        mlflow.xgboost.autolog()

        X, y = load_diabetes(return_X_y=True, as_frame=True)
        dtrain = xgb.DMatrix(X, label=y)
        params = {"objective": "reg:squarederror", "max_depth": 3, "learning_rate": 0.1}
        with mlflow.start_run():
            booster = xgb.train(params, dtrain, num_boost_round=20, evals=[(dtrain, "train")])

        model_info = mlflow.models.get_model_info(mlflow.last_logged_model().model_uri)
        SAMPLE, NATIVE = X, booster.predict(xgb.DMatrix(X.head(5)))
    """,
}


@pytest.fixture(scope="module")
def logged_models(stack):
    """Logs a kind of model on first use (one snippet, one run, one registered version)."""
    logged: dict[str, dict] = {}
    suffix = uuid.uuid4().hex[:6]

    def get(kind: str) -> dict:
        if kind not in logged:
            code = textwrap.dedent(SNIPPETS[kind]) + REPORT
            logged[kind] = run_snippet(
                stack, code, EXPERIMENT=f"compat-models-{suffix}", REGISTERED=f"compat-{kind}-{suffix}"
            )
        return logged[kind]

    return get


@pytest.mark.parametrize("kind", SNIPPETS)
def test_model_logs_loads_and_predicts_the_same(stack, logged_models, kind):
    model = logged_models(kind)
    assert model["pyfunc"] == model["native"], "pyfunc and the flavor's own loader disagree"
    assert model["version"] == "1"
    # The model's files are in the workbench's artifact store (FTP), under the LoggedModel.
    found = stack.psql(f"SELECT experiment_id FROM logged_models WHERE model_id = '{model['model_id']}'")
    assert found, f"no LoggedModel row for {model['model_id']}"
    root = f"/srv/ftp/artifacts/{found[0][0]}/models/{model['model_id']}/artifacts"
    files = stack.exec("ftpd", "find", root, "-type", "f").stdout.split()
    assert f"{root}/MLmodel" in files and f"{root}/requirements.txt" in files, files
    if kind.startswith("autolog"):
        # Autologging recorded the estimator's parameters and its training metrics too.
        assert stack.psql(f"SELECT count(*) FROM params WHERE run_uuid = '{model['run_id']}'")[0][0] != "0"
        assert stack.psql(f"SELECT count(*) FROM metrics WHERE run_uuid = '{model['run_id']}'")[0][0] != "0"
    if kind.startswith("sklearn"):
        # log_model's default, safe format: skops (no pickle), loaded without extra arguments.
        # (Autologging keeps MLflow's older default for its own models: pickle.)
        assert f"{root}/model.skops" in files, files
        mlmodel = stack.exec("ftpd", "cat", f"{root}/MLmodel").stdout
        assert "serialization_format: skops" in mlmodel


# The URI forms are the registry's and the tracking store's, not the flavor's: a skops model and
# a pickled Python model cover both ways a model is read back.
@pytest.mark.parametrize("kind", ["sklearn-random-forest", "pyfunc-custom"])
def test_every_model_form_loads_by_each_uri(stack, logged_models, kind):
    """models:/<name>/<version>, @alias, /<stage>, /latest, models:/<model_id>, runs:/<run>/model."""
    model = logged_models(kind)
    name, version = model["registered"], model["version"]
    # https://mlflow.org/docs/latest/ml/model-registry/workflow/ (aliases, stages, loading)
    out = run_snippet(
        stack,
        """
        import json

        import mlflow
        import numpy as np
        import pandas as pd
        from mlflow import MlflowClient

        client = MlflowClient()
        client.set_registered_model_alias("NAME", "champion", "VERSION")
        client.transition_model_version_stage(name="NAME", version="VERSION", stage="Staging")
        sample = pd.DataFrame(**json.loads('SAMPLE'))
        uris = ["models:/NAME/VERSION", "models:/NAME@champion", "models:/NAME/Staging",
                "models:/NAME/latest", "models:/MODEL_ID", "runs:/RUN_ID/model"]
        predictions = {uri: np.asarray(mlflow.pyfunc.load_model(uri).predict(sample)).tolist() for uri in uris}
        print("COMPAT", json.dumps(predictions))
    """,
        NAME=name,
        VERSION=version,
        MODEL_ID=model["model_id"],
        RUN_ID=model["run_id"],
        SAMPLE=json.dumps({k: model["sample"][k] for k in ("columns", "data")}),
    )
    expected = model["pyfunc"]
    for uri, predictions in out.items():
        assert _flat(predictions) == _flat(expected), uri


@pytest.fixture(scope="module")
def model_images(logged_models):
    """The model images the serving test builds stay until the module ends: models logged from
    one environment share their requirements' layer (serving/model_image.py), so each image after
    the first of its kind builds in seconds. Then they all go, and the python stand-in too when
    this module built it."""
    names: list[str] = []
    stand_in_existed = image_present(STAND_IN)
    yield names
    for name in names:
        remove_model_images(name)
    if not stand_in_existed:
        subprocess.run(["docker", "image", "rm", STAND_IN], capture_output=True)


# One of each flavor and each way it is saved (skops, pickle from autologging, xgboost's own
# format from the native and the autologged API, a pickled PythonModel, a model from code): the
# other kinds are the same flavor saved the same way, and each image costs a build and a start.
SERVED = [
    "sklearn-random-forest",
    "sklearn-linear",
    "autolog-sklearn",
    "xgboost-native",
    "autolog-xgboost",
    "pyfunc-custom",
    "model-from-code",
]


@pytest.mark.parametrize("kind", SERVED)
def test_every_logged_model_is_served_by_make_serve(stack, logged_models, model_images, kind):
    """`make serve` of each kind's registered version answers POST /invocations with the
    predictions of the model loaded in-process."""
    model = logged_models(kind)
    uri = f"models:/{model['registered']}/{model['version']}"
    model_images.append(model["registered"])
    port = free_port()
    try:
        # About model kinds, not keys (tests/serving checks those): the gateway without them.
        served = serve(stack, "serve", MODEL=uri, PORT=str(port), WORKBENCH_SERVING_KEYS="off")
        assert served.returncode == 0, (
            f"make serve {uri} failed\n{served.stdout[-6000:]}\n{served.stderr[-3000:]}"
        )
        payload = {"dataframe_split": {k: model["sample"][k] for k in ("columns", "data")}}
        response = http_session().post(f"http://127.0.0.1:{port}/invocations", json=payload, timeout=60)
        assert response.status_code == 200, response.text
        assert _flat(response.json()["predictions"]) == _flat(model["pyfunc"])
    finally:
        serve(stack, "stop", MODEL=uri, PORT="")


def test_mlflow_models_predict_from_the_cli(stack, logged_models):
    # https://mlflow.org/docs/latest/ml/deployment/deploy-model-locally/ (mlflow models predict)
    model = logged_models("sklearn-linear")
    sample = json.dumps({"dataframe_split": {k: model["sample"][k] for k in ("columns", "data")}})
    stack.exec("jupyter", "sh", "-c", "cat > /tmp/compat-input.json", input=sample)
    result = stack.exec(
        "jupyter",
        "mlflow",
        "models",
        "predict",
        "-m",
        model["model_uri"],
        "-i",
        "/tmp/compat-input.json",
        "-t",
        "json",
        "--env-manager",
        "local",
    )
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert _flat(answer["predictions"]) == _flat(model["pyfunc"])


def test_mlflow_models_evaluate_a_classifier(stack, api, experiment):
    # https://mlflow.org/docs/latest/ml/evaluation/model-eval/ (mlflow.models.evaluate, classifier)
    result = run_snippet(
        stack,
        """
        import json

        import mlflow
        from sklearn.datasets import load_breast_cancer
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import train_test_split

        mlflow.set_experiment("EXPERIMENT")
        X, y = load_breast_cancer(return_X_y=True, as_frame=True)
        X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=42)
        model = LogisticRegression(max_iter=10000).fit(X_train, y_train)

        eval_data = X_test.copy()
        eval_data["label"] = y_test
        with mlflow.start_run() as run:
            model_info = mlflow.sklearn.log_model(model, name="model", input_example=X_test.head(3))
            result = mlflow.models.evaluate(
                model_info.model_uri, eval_data, targets="label", model_type="classifier",
                evaluators=["default"])
        print("COMPAT", json.dumps({"run_id": run.info.run_id, "metrics": result.metrics,
                                    "artifacts": sorted(result.artifacts)}, default=float))
    """,
        EXPERIMENT=experiment,
    )
    assert 0.9 < result["metrics"]["accuracy_score"] <= 1.0
    assert {"f1_score", "roc_auc", "log_loss"} <= set(result["metrics"])
    files = set(api.artifacts(result["run_id"]))
    assert any("confusion_matrix" in f for f in files), files
    run = next(r for r in api.runs(experiment) if r["info"]["run_id"] == result["run_id"])
    assert "accuracy_score" in {m["key"] for m in run["data"]["metrics"]}


SPARK_UDF = r"""
import json, os, sys
os.environ["MLFLOW_TRACKING_PASSWORD"] = sys.stdin.readline().rstrip("\n")

# https://mlflow.org/docs/latest/api_reference/python_api/mlflow.pyfunc.html#mlflow.pyfunc.spark_udf
import mlflow
import pandas as pd
from pyspark.sql import SparkSession
from pyspark.sql.functions import struct

spark = SparkSession.builder.master("local[1]").getOrCreate()
pyfunc_udf = mlflow.pyfunc.spark_udf(spark, model_uri=MODEL_URI)
df = spark.createDataFrame(pd.DataFrame(**SAMPLE))
df = df.withColumn("prediction", pyfunc_udf(struct(*df.columns)))
print("COMPAT", json.dumps([row["prediction"] for row in df.collect()]))
"""


def test_spark_udf_in_the_scoring_image(stack, logged_models, admin_auth):
    """A registered model applied to a Spark DataFrame with MLflow's spark_udf, in the scoring
    image (make score's), on the stack's network, as a batch job would."""
    model = logged_models("sklearn-random-forest")
    image = build_scoring_image()
    code = SPARK_UDF.replace("MODEL_URI", repr(f"models:/{model['registered']}/{model['version']}")).replace(
        "SAMPLE", repr({k: model["sample"][k] for k in ("columns", "data")})
    )
    result = subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            "-i",
            "--network",
            f"{stack.project}_frontend",
            "-e",
            "MLFLOW_TRACKING_URI=http://mlflow-server:5000",
            "-e",
            "MLFLOW_TRACKING_USERNAME=admin",
            "--tmpfs",
            "/tmp:rw,exec",
            "--entrypoint",
            "python3",
            image,
            "-c",
            code,
        ],
        input=admin_auth[1] + "\n",
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    line = next(out for out in result.stdout.splitlines() if out.startswith("COMPAT "))
    assert _flat(json.loads(line.removeprefix("COMPAT "))) == _flat(model["pyfunc"])


def _flat(predictions) -> list:
    """Predictions as one flat list of numbers (a pyfunc returns a Series, array or frame;
    the server answers lists or records)."""
    if isinstance(predictions, dict):
        predictions = list(predictions.values())
    out = []
    for p in predictions:
        if isinstance(p, dict):
            out += _flat(list(p.values()))
        elif isinstance(p, list):
            out += _flat(p)
        else:
            out.append(round(float(p), 4))
    return out
