"""`make score`: a file of inputs is scored with a registered model, in pandas and on Spark.

Black-box, real effects: two models are registered from inside the jupyter container (a
scikit-learn regressor like notebook 04's, an XGBoost classifier), which also generates their
data (a few thousand rows, shuffled ids, the columns in another order than the model's, a column
the model does not use) as CSV and Parquet and predicts it in-process with
`mlflow.pyfunc.load_model(...).predict`. scoring/score.sh (what `make score` runs) then scores
the files for this session's stack with both engines, and the output must hold exactly the
input's ids, in the input's order, each with exactly that in-process prediction. Bad input ends
with a non-zero exit, a readable message and no output file. Only the reusable scoring image is
left behind.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from utils.serving import UNKNOWN, build_scoring_image, run_inspecting
from utils.stack import REPO

SCORE = REPO / "scoring" / "score.sh"
ROWS = 3000
CHUNK = "700"  # several chunks per file, so the progress and the chunk seams are exercised
OTHER_UID = 4321  # a caller who is neither root nor has a passwd entry in the image

REGISTER = r"""
import base64, io, json, warnings
import numpy as np
import pandas as pd
import mlflow
from mlflow import MlflowClient
from sklearn.datasets import load_diabetes, load_iris
from sklearn.linear_model import Ridge
from xgboost import XGBClassifier

ROWS, SUFFIX = {rows}, {suffix!r}
rng = np.random.default_rng(20261123)
mlflow.set_experiment("scoring-tests")
client = MlflowClient()


logged = {{}}  # name -> its LoggedModel's id and run (test_every_model_uri_mlflow_loads)


def register(name, flavor, model, X):
    with mlflow.start_run():
        info = flavor.log_model(model, name="model", input_example=X.head(3),
                                registered_model_name=name)
    client.set_registered_model_alias(name, "champion", info.registered_model_version)
    with warnings.catch_warnings():  # stages are deprecated, and still resolved
        warnings.simplefilter("ignore", FutureWarning)
        client.transition_model_version_stage(name, info.registered_model_version, "Staging")
    logged[name] = {{"model_id": info.model_id, "run_id": info.run_id}}
    return mlflow.pyfunc.load_model(f"models:/{{name}}@champion")


def sample(X):
    # Rows of the real data set with noise: new values, the real ranges.
    rows = X.iloc[rng.integers(0, len(X), ROWS)].reset_index(drop=True)
    return rows + rng.normal(0, 0.1, rows.shape) * X.std().to_numpy()


def files(frame):
    # to_csv writes each float as its shortest repr, which reads back as the very same double
    # (checked here); the Parquet file gets several row groups, Spark's units of work.
    text = frame.to_csv(index=False)
    back = pd.read_csv(io.StringIO(text))
    assert back.equals(frame), "the CSV does not read back exactly"
    parquet = io.BytesIO()
    frame.to_parquet(parquet, index=False, row_group_size=500)
    return {{"csv": base64.b64encode(text.encode()).decode(),
             "parquet": base64.b64encode(parquet.getvalue()).decode()}}


out = {{}}

# A regressor as notebook 04 registers (Ridge on scikit-learn's diabetes data).
X, y = load_diabetes(return_X_y=True, as_frame=True)
name = f"scoring-diabetes-{{SUFFIX}}"
ridge = Ridge(alpha=1.0).fit(X, y)
model = register(name, mlflow.sklearn, ridge, X)
data = sample(X)
expected = [float(p) for p in model.predict(data)]
# How far two summation orders of a row's x·w + b can be apart (test_scores_as_the_loaded_model).
terms = np.abs(data.to_numpy()) @ np.abs(ridge.coef_) + abs(ridge.intercept_)
bounds = [float(b) for b in 2 * (len(ridge.coef_) + 1) * 2.0**-53 * terms]
data["id"] = rng.permutation(np.arange(100_000, 100_000 + 7 * ROWS))[:ROWS]  # unique, shuffled
data["note"] = [f"row {{i}}, not a feature" for i in range(ROWS)]
data = data[list(rng.permutation(data.columns))]  # not the model's column order
out["diabetes"] = {{"model": name, "ids": [str(i) for i in data["id"]], "predictions": expected,
                   "bounds": bounds, "columns": list(X.columns), "files": files(data),
                   "logged": logged[name]}}
# The same rows without an id column: the row number is the ID.
out["noid"] = {{"model": name, "ids": [str(i) for i in range(ROWS)], "predictions": expected,
               "bounds": bounds, "columns": list(X.columns), "files": files(data.drop(columns=["id"]))}}

# A classifier on another library (XGBoost), its ID column named `sample` (ID=sample); iris'
# column names have spaces and parentheses.
X, y = load_iris(return_X_y=True, as_frame=True)
name = f"scoring-iris-{{SUFFIX}}"
model = register(name, mlflow.xgboost, XGBClassifier(n_estimators=20, max_depth=3).fit(X, y), X)
data = sample(X)
expected = [int(p) for p in model.predict(data)]
data.insert(2, "sample", [f"s-{{i:05d}}" for i in rng.permutation(ROWS)])
out["iris"] = {{"model": name, "ids": list(data["sample"]), "predictions": expected,
               "columns": list(X.columns), "files": files(data)}}
print(json.dumps(out))
"""

# An output file, read in the jupyter container (where the expected predictions were made):
# column names and dtypes, IDs as text, predictions as numbers (JSON floats are exact reprs).
# Parquet is read with use_threads=False: after pyarrow's thread pool has read from a Python file
# object, the interpreter can abort at exit ("terminate called without an active exception",
# exit 134; apache/arrow#34314, #50482), after the script's output is complete.
READ_OUTPUT = r"""
import base64, io, json
import pandas as pd
data = base64.b64decode({data!r})
if {fmt!r} == "csv":
    frame = pd.read_csv(io.BytesIO(data), dtype={{{id!r}: str}})
else:
    frame = pd.read_parquet(io.BytesIO(data), use_threads=False)
print(json.dumps({{"columns": list(frame.columns), "dtypes": [str(t) for t in frame.dtypes],
                  "ids": [str(i) for i in frame[{id!r}]],
                  "predictions": frame["prediction"].tolist()}}))
"""


def score(stack, *, user: dict | None = None, **settings: str) -> subprocess.CompletedProcess:
    """Run score.sh for this session's stack; as another caller when `user` (other_caller)."""
    env = {
        **os.environ,
        "PROJECT": stack.project,
        "ENV_FILE": str(stack.env_file),
        "CHUNK": CHUNK,
        **settings,
    }
    command = [str(SCORE)]
    if user is not None:
        command = [
            "setpriv",
            f"--reuid={user['uid']}",
            f"--regid={user['uid']}",
            f"--groups={user['docker_gid']}",
            "--",
            *command,
        ]
        env.update(HOME=user["home"], ENV_FILE=user["env_file"])
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)
    assert stack.secrets["MLFLOW_ADMIN_PASSWORD"] not in result.stdout + result.stderr
    return result


@pytest.fixture(scope="module")
def other_caller(stack):
    """A caller who is not root and has no passwd entry in the image (uid OTHER_UID): in the
    docker group for the socket, with a HOME of their own holding the Compose plugin (here it
    is installed under root's home) and a copy of the stack's env file (the original is in
    pytest's root-only temporary directory; it holds ports, no secret)."""
    plugin = subprocess.run(
        [
            "docker",
            "info",
            "-f",
            '{{range .ClientInfo.Plugins}}{{if eq .Name "compose"}}{{.Path}}{{end}}{{end}}',
        ],
        capture_output=True,
        text=True,
    ).stdout.strip()
    if not plugin:
        pytest.skip("the Docker Compose plugin's path cannot be found, to install it for another user")
    home = Path(tempfile.mkdtemp(prefix="wbscore-home-"))
    plugins = home / ".docker" / "cli-plugins"
    plugins.mkdir(parents=True)
    shutil.copy(plugin, plugins / "docker-compose")
    shutil.copy(stack.env_file, home / "test.env")
    for path in [home, *home.rglob("*")]:
        os.chown(path, OTHER_UID, OTHER_UID)
    yield {
        "uid": OTHER_UID,
        "home": str(home),
        "env_file": str(home / "test.env"),
        "docker_gid": os.stat("/var/run/docker.sock").st_gid,
    }
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="module")
def data(stack):
    out = stack.python("jupyter", REGISTER.format(rows=ROWS, suffix=uuid.uuid4().hex[:8]))
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def workdir():
    """The input files, in a directory every caller can use (also the uid OTHER_UID)."""
    path = Path(tempfile.mkdtemp(prefix="wbscore-"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def inputs(data, workdir) -> dict[tuple[str, str], Path]:
    files = {}
    for case, content in data.items():
        for fmt, encoded in content["files"].items():
            path = workdir / f"{case}.{fmt}"
            path.write_bytes(base64.b64decode(encoded))
            path.chmod(0o644)
            files[case, fmt] = path
    return files


@pytest.fixture(scope="module", autouse=True)
def no_container_left(stack):
    yield
    left = subprocess.run(
        [
            "docker",
            "ps",
            "-a",
            "-q",
            "--filter",
            "label=org.workbench.scoring=true",
            "--filter",
            f"label=org.workbench.project={stack.project}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert not left, f"scoring containers left behind: {left}"


def read_output(stack, path: Path, id_column: str) -> dict:
    fmt = path.suffix[1:]
    code = READ_OUTPUT.format(data=base64.b64encode(path.read_bytes()).decode(), fmt=fmt, id=id_column)
    return json.loads(stack.python("jupyter", code).strip().splitlines()[-1])


def check_predictions(stack, output: Path, id_column: str, expected: dict) -> dict:
    """The output holds the input's IDs, in its order, each with the in-process prediction."""
    got = read_output(stack, output, id_column)
    assert got["columns"] == [id_column, "prediction"]
    assert got["ids"] == expected["ids"], "the output's IDs are not the input's, in its order"
    if "bounds" in expected:
        # The regressor (Ridge: x·w + b in doubles) may differ in the last bits, and only there:
        # numpy's BLAS (OpenBLAS' dgemv) adds up the products of the last (batch size mod 4) rows
        # of a batch in another order than the rows before them, so a row's last bits depend on
        # where the batch it is in was cut. The in-process predict has one batch of 3000 rows,
        # pandas chunks of 700 (both multiples of 4: exact), Spark cuts its partitions by bytes.
        # Two orders of adding the same n = 11 terms differ by at most 2·n·u·Σ|terms| (u = 2⁻⁵³):
        # each row must be within that bound (~1e-12 here; neighbouring rows' predictions are
        # ~10 apart, so any row mixed up or mis-parsed would fail).
        for row, (g, want, bound) in enumerate(
            zip(got["predictions"], expected["predictions"], expected["bounds"], strict=True)
        ):
            assert abs(g - want) <= bound, f"row {row}: {g!r} != {want!r} (bound {bound:.2e})"
    else:
        # The classifier: labels, exactly (XGBoost's trees compare each value to thresholds;
        # no arithmetic across rows or batches).
        assert got["predictions"] == expected["predictions"]
    return got


# engine, data, input format, output format, ID setting, run by another caller (uid OTHER_UID)
CASES = [
    ("pandas", "diabetes", "csv", "csv", "", False),
    ("pandas", "diabetes", "parquet", "parquet", "", True),
    ("pandas", "iris", "csv", "parquet", "sample", False),
    ("pandas", "noid", "parquet", "csv", "", False),
    ("spark", "diabetes", "csv", "parquet", "", True),
    ("spark", "diabetes", "parquet", "csv", "", False),
    ("spark", "iris", "parquet", "csv", "sample", False),
    ("spark", "noid", "csv", "parquet", "", False),
]


@pytest.mark.parametrize(
    "engine,case,in_fmt,out_fmt,id_setting,as_other",
    CASES,
    ids=[f"{c[0]}-{c[1]}-{c[2]}-to-{c[3]}{'-uid' if c[5] else ''}" for c in CASES],
)
def test_scores_as_the_loaded_model(
    stack, data, inputs, workdir, request, engine, case, in_fmt, out_fmt, id_setting, as_other
):
    user = request.getfixturevalue("other_caller") if as_other else None
    expected = data[case]
    out_dir = workdir / f"out-{uuid.uuid4().hex[:8]}"  # created by score.sh, as the caller
    output = out_dir / f"predictions.{out_fmt}"
    result = score(
        stack,
        user=user,
        MODEL=f"models:/{expected['model']}@champion",
        INPUT=str(inputs[case, in_fmt]),
        OUTPUT=str(output),
        ID=id_setting,
        ENGINE=engine,
    )
    assert result.returncode == 0, f"{result.stdout[-6000:]}\n{result.stderr[-6000:]}"

    id_column = id_setting or ("row" if case == "noid" else "id")
    got = check_predictions(stack, output, id_column, expected)
    if case == "iris":
        assert got["dtypes"][1] == "int64", "a classifier's labels stay integers"
    if in_fmt == out_fmt == "parquet":
        assert got["dtypes"][0] == "int64", "Parquet IDs keep their type"

    owner = output.stat()
    caller = (OTHER_UID, OTHER_UID) if as_other else (os.getuid(), os.getgid())
    assert (owner.st_uid, owner.st_gid) == caller, "the output is not the caller's"
    assert [p.name for p in out_dir.iterdir()] == [output.name], "temporary files left behind"

    progress = re.findall(r"^==> chunk \d+/\d+: ([\d,]+) / ([\d,]+) rows scored", result.stdout, re.M)
    assert progress and progress[-1] == (f"{ROWS:,}", f"{ROWS:,}"), result.stdout
    if engine == "pandas":
        assert len(progress) == -(-ROWS // int(CHUNK)), result.stdout  # one line per chunk
    assert f"wrote {ROWS:,} predictions to {output}" in result.stdout


def test_the_container_gets_the_input_file_read_only_and_a_new_output_directory(stack, data, inputs):
    """A model is code (unpickled in the container): it sees two host paths, the input file alone,
    read-only, and a new empty directory next to OUTPUT, writable, and nothing else, with a
    read-only root, no capability and memory and process limits. A relative OUTPUT under the
    repository's predictions/ folder (git-ignored) is allowed: the file lands there, the
    directory is gone."""
    expected = data["diabetes"]
    name = f"mounts-{uuid.uuid4().hex[:8]}.csv"
    output = REPO / "predictions" / name
    env = {
        **os.environ,
        "PROJECT": stack.project,
        "ENV_FILE": str(stack.env_file),
        "CHUNK": CHUNK,
        "MODEL": f"models:/{expected['model']}@champion",
        "INPUT": str(inputs["diabetes", "csv"]),
        "OUTPUT": f"predictions/{name}",
    }
    try:
        container, result = run_inspecting(
            [str(SCORE)],
            env=env,
            labels=["org.workbench.scoring=true", f"org.workbench.project={stack.project}"],
        )
        assert result.returncode == 0, f"{result.stdout[-6000:]}\n{result.stderr[-6000:]}"
        assert container, "no scoring container seen"
        mounts = sorted((m["Type"], m["Source"], m["Destination"], m["RW"]) for m in container["Mounts"])
        stage = [m[1] for m in mounts if m[3]]
        assert len(stage) == 1 and re.fullmatch(rf"\.{re.escape(name)}\.[\d-]+\.d", Path(stage[0]).name), (
            mounts
        )
        assert Path(stage[0]).parent == output.parent and not Path(stage[0]).exists()
        input_file = str(inputs["diabetes", "csv"].resolve())
        assert mounts == sorted([("bind", input_file, input_file, False), ("bind", stage[0], stage[0], True)])
        host = container["HostConfig"]
        assert host["ReadonlyRootfs"] is True and host["CapDrop"] == ["ALL"]
        assert "no-new-privileges:true" in host["SecurityOpt"]
        assert (host["Memory"], host["PidsLimit"]) == (4 * 1024**3, 4096)
        check_predictions(stack, output, "id", expected)
        assert not list(output.parent.glob(f".{name}.*")), "the output directory was left behind"
    finally:
        output.unlink(missing_ok=True)


# A URI form -> what score.py says it is ({name}: the diabetes model, whose only version 1 is
# in the Staging stage and has the alias champion; {model_id} and {run_id}: version 1's).
URI_FORMS = [
    pytest.param("models:/{name}/Staging", "version 1 of '{name}'", id="stage"),
    pytest.param("models:/{name}/staging", "version 1 of '{name}'", id="stage-lower-case"),
    pytest.param("models:/{name}/latest", "version 1 of '{name}'", id="latest"),
    pytest.param("models:/{name}@champion", "version 1 of '{name}'", id="alias"),
    pytest.param("models:/{name}/1", "version 1 of '{name}'", id="version"),
    pytest.param("models:/{model_id}", "logged model {model_id} ('model')", id="logged-model-id"),
    pytest.param("runs:/{run_id}/model", "the model at 'model' of run {run_id}", id="run"),
]


@pytest.mark.parametrize("form,what", URI_FORMS)
def test_every_model_uri_mlflow_loads_scores_the_same(stack, data, inputs, workdir, form, what):
    """Each form MLflow's own load_model accepts is resolved once (the deprecated stage URI
    without a deprecation warning) and scores exactly as the model loaded in-process."""
    expected = data["diabetes"]
    fill = {"name": expected["model"], **expected["logged"]}
    uri = form.format(**fill)
    output = workdir / f"uri-{uuid.uuid4().hex[:8]}.csv"
    result = score(stack, MODEL=uri, INPUT=str(inputs["diabetes", "csv"]), OUTPUT=str(output))
    assert result.returncode == 0, f"{result.stdout[-6000:]}\n{result.stderr[-6000:]}"
    assert f"==> {uri} is {what.format(**fill)} (" in result.stdout, result.stdout
    assert "get_latest_versions" not in result.stdout + result.stderr
    check_predictions(stack, output, "id", expected)


def test_the_scoring_image_has_jupyters_library_versions():
    """A model logged in JupyterLab loads with the very libraries it was logged with."""

    def pins(path: Path) -> dict[str, str]:
        return dict(re.findall(r"^([a-z0-9._-]+)==(\S+)", path.read_text(), re.M))

    jupyter, scoring = (
        pins(REPO / "jupyter" / "requirements.txt"),
        pins(REPO / "scoring" / "requirements.txt"),
    )
    for package in (
        "mlflow",
        "scikit-learn",
        "xgboost-cpu",
        "pandas",
        "numpy",
        "scipy",
        "pyarrow",
        "cloudpickle",
        "skops",
    ):
        assert scoring[package] == jupyter[package], package
    assert not {p for p in scoring if p.startswith("nvidia")}, "GPU libraries in the scoring image"


# ---- a Spark cluster ----------------------------------------------------------------------------


@pytest.fixture
def spark_cluster(stack, workdir):
    """Makes a Spark standalone cluster beside the stack: a master and one worker (1 core), from
    the scoring image, with the data directory mounted at the same path (the storage a real
    cluster's workers share). On the stack's frontend network, or `remote`: on a network of its
    own, which reaches this machine, and so the driver, only through published ports, as a
    cluster elsewhere would. Removed afterwards."""
    image = build_scoring_image()
    suffix = uuid.uuid4().hex[:6]
    master, worker = f"{stack.project}-spark-master-{suffix}", f"{stack.project}-spark-worker-{suffix}"
    network = f"{stack.project}-spark-{suffix}"
    made = {"network": False}

    def make(remote: bool = False) -> dict:
        cluster = {"master": master}
        on = f"{stack.project}_frontend"
        publish = []
        if remote:
            subprocess.run(["docker", "network", "create", network], check=True, capture_output=True)
            made["network"] = True
            on = network
            gateway = subprocess.run(
                ["docker", "network", "inspect", network, "-f", "{{(index .IPAM.Config 0).Gateway}}"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
            port = free_port()
            publish = ["-p", f"{gateway}:{port}:7077"]
            cluster.update(gateway=gateway, url=f"spark://{gateway}:{port}")
        else:
            cluster["url"] = f"spark://{master}:7077"
        run = [
            "docker",
            "run",
            "-d",
            "--network",
            on,
            "--init",
            "--read-only",
            "--tmpfs",
            "/tmp:rw,exec",
            "--cap-drop",
            "ALL",
            "--security-opt",
            "no-new-privileges:true",
            "--label",
            f"org.workbench.project={stack.project}",
            "--entrypoint",
            "spark-class",
        ]
        subprocess.run(
            [
                *run,
                "--name",
                master,
                *publish,
                image,
                "org.apache.spark.deploy.master.Master",
                "--host",
                master,
                "--port",
                "7077",
                "--webui-port",
                "8080",
            ],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [
                *run,
                "--name",
                worker,
                "-v",
                f"{workdir}:{workdir}",
                image,
                "org.apache.spark.deploy.worker.Worker",
                f"spark://{master}:7077",
                "--cores",
                "1",
                "--memory",
                "1g",
                "--work-dir",
                "/tmp/work",
            ],
            check=True,
            capture_output=True,
        )
        state = {}
        for _ in range(120):  # the worker registers within seconds; give a busy machine time
            state = master_state(master)
            if state.get("aliveworkers") == 1:
                break
            time.sleep(1)
        assert state.get("aliveworkers") == 1, f"the worker did not register: {state}"
        return cluster

    try:
        yield make
    finally:
        subprocess.run(["docker", "rm", "-f", master, worker], capture_output=True)
        if made["network"]:
            subprocess.run(["docker", "network", "rm", network], capture_output=True)


def free_port() -> int:
    """A free port on this machine whose successor is free too (the driver uses both)."""
    while True:
        with socket.socket() as first, socket.socket() as second:
            first.bind(("", 0))
            port = first.getsockname()[1]
            try:
                second.bind(("", port + 1))
            except OSError:
                continue
            return port


def master_state(master: str) -> dict:
    """The standalone master's state (its web UI's JSON), read inside its container."""
    out = subprocess.run(
        [
            "docker",
            "exec",
            master,
            "python3",
            "-c",
            "import json, urllib.request; print(urllib.request.urlopen("
            "'http://localhost:8080/json/', timeout=5).read().decode())",
        ],
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        return {}
    try:
        return json.loads(out.stdout)
    except json.JSONDecodeError:
        # While the master starts, its UI can answer /json/ with an HTML page (seen once in
        # CI): not ready yet, the caller asks again and asserts on the state it last read.
        return {}


@pytest.mark.parametrize(
    "remote", [False, pytest.param(True, marks=pytest.mark.slow)], ids=["same-network", "remote"]
)
def test_the_same_job_runs_on_a_spark_cluster(stack, data, inputs, workdir, spark_cluster, remote):
    """MASTER=spark://host:7077 is the only change: the driver (the scoring container) reaches
    the tracking server, the executors get the model from the driver (spark_udf ships it) and
    read and write the shared directory. A remote cluster also needs DRIVER_HOST (and a free
    DRIVER_PORT): the executors connect back to the driver through its published ports."""
    cluster = spark_cluster(remote)
    expected = data["diabetes"]
    output = workdir / f"cluster-{uuid.uuid4().hex[:8]}.csv"
    settings = {"DRIVER_HOST": cluster["gateway"], "DRIVER_PORT": str(free_port())} if remote else {}
    result = score(
        stack,
        MODEL=f"models:/{expected['model']}@champion",
        INPUT=str(inputs["diabetes", "csv"]),
        OUTPUT=str(output),
        ENGINE="spark",
        MASTER=cluster["url"],
        **settings,
    )
    assert result.returncode == 0, f"{result.stdout[-6000:]}\n{result.stderr[-6000:]}"
    assert f"Spark 4.3.0 on {cluster['url']}" in result.stdout
    check_predictions(stack, output, "id", expected)
    apps = master_state(cluster["master"]).get("completedapps", [])
    assert [(a["name"], a["state"]) for a in apps] == [("workbench-score", "FINISHED")], apps


# ---- bad input --------------------------------------------------------------------------------


def bad(stack, inputs, workdir, **settings: str) -> subprocess.CompletedProcess:
    if "MODEL" not in settings:
        settings["MODEL"] = f"models:/{settings.pop('model')}@champion"
    settings.setdefault("INPUT", str(inputs["diabetes", "csv"]))
    output = Path(settings.setdefault("OUTPUT", str(workdir / f"bad-{uuid.uuid4().hex[:8]}.csv")))
    result = score(stack, **settings)
    assert result.returncode != 0, result.stdout
    assert not output.exists(), "a failed run left an output file"
    assert not list(output.parent.glob(f".{output.name}.*")), "a failed run left a temporary file"
    return result


@pytest.mark.parametrize("where", ["repository", "new-folder", "symlink"])
def test_an_output_inside_the_repository_is_refused(stack, data, inputs, workdir, where):
    """The repository holds .env (every secret) and the code make runs: an OUTPUT there, relative
    (make's directory), in a folder of it that does not exist yet, or reached through a symlink
    from outside, is refused before anything runs, and nothing is created."""
    name = f"refused-{uuid.uuid4().hex[:8]}.csv"
    link = workdir / f"repo-link-{uuid.uuid4().hex[:8]}"
    output = {"repository": name, "new-folder": f"scoring/{name[:-4]}/{name}", "symlink": str(link / name)}[
        where
    ]
    if where == "symlink":
        link.symlink_to(REPO)
    try:
        result = score(
            stack,
            MODEL=f"models:/{data['diabetes']['model']}@champion",
            INPUT=str(inputs["diabetes", "csv"]),
            OUTPUT=output,
        )
    finally:
        link.unlink(missing_ok=True)
    assert result.returncode != 0
    assert result.stderr.startswith(
        f"error: OUTPUT={output} is inside the workbench's repository "
        f"({REPO.resolve()}): write it outside, or under predictions/"
    ), result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert not (REPO / name).exists() and not (REPO / "scoring" / name[:-4]).exists()
    assert not list(REPO.glob(f".{name}.*")), "a directory was made in the repository"


def test_a_missing_input_file(stack, data, inputs, workdir):
    result = bad(stack, inputs, workdir, model=data["diabetes"]["model"], INPUT=str(workdir / "nope.csv"))
    assert f"error: INPUT={workdir / 'nope.csv'}: no such file" in result.stderr


@pytest.mark.parametrize("setting", ["INPUT", "OUTPUT"])
def test_an_unknown_extension(stack, data, inputs, workdir, setting):
    path = workdir / f"data-{setting.lower()}.json"
    if setting == "INPUT":
        path.write_text("{}")
    result = bad(stack, inputs, workdir, model=data["diabetes"]["model"], **{setting: str(path)})
    assert f"error: {setting}={path}: unknown extension; give a .csv or .parquet file" in result.stderr


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_an_unknown_id_column(stack, data, inputs, workdir, fmt):
    result = bad(
        stack,
        inputs,
        workdir,
        model=data["diabetes"]["model"],
        INPUT=str(inputs["diabetes", fmt]),
        ID="customer",
    )
    assert (
        f"error: ID=customer: {inputs['diabetes', fmt]} has no column 'customer'; its columns:"
        in result.stderr
    )


def test_columns_the_signature_requires_are_missing(stack, data, inputs, workdir):
    lines = inputs["diabetes", "csv"].read_text().splitlines()
    header = lines[0].split(",")
    drop = [header.index("bmi"), header.index("s5")]
    path = workdir / "without-bmi-s5.csv"
    path.write_text(
        "\n".join(",".join(v for i, v in enumerate(line.split(",")) if i not in drop) for line in lines[:50])
        + "\n"
    )
    result = bad(stack, inputs, workdir, model=data["diabetes"]["model"], INPUT=str(path))
    assert "lacks column(s) the model's signature requires: bmi, s5" in result.stderr, result.stderr


@pytest.mark.parametrize("form", list(UNKNOWN))
def test_a_model_that_is_not_there(stack, inputs, workdir, form):
    """One readable line: the URI and MLflow's own words; no traceback (score() checks that no
    password is printed)."""
    hex_id = uuid.uuid4().hex
    uri = form.format(hex=hex_id)
    where, mlflow_says = UNKNOWN[form]
    result = bad(stack, inputs, workdir, MODEL=uri)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith(f"error: {uri} is not in the workbench's {where}: "), errors
    assert errors[0].endswith(mlflow_says.format(hex=hex_id)), errors
    assert "Traceback" not in result.stdout + result.stderr


@pytest.mark.parametrize("engine", ["pandas", "spark"])
def test_a_value_that_is_not_a_number(stack, data, inputs, workdir, engine):
    lines = inputs["diabetes", "csv"].read_text().splitlines()
    column = lines[0].split(",").index("bmi")
    row = lines[1500].split(",")
    row[column] = "n/a?"
    path = workdir / f"text-in-bmi-{engine}.csv"
    path.write_text("\n".join(lines[:1500] + [",".join(row)] + lines[1501:]) + "\n")
    result = bad(stack, inputs, workdir, model=data["diabetes"]["model"], INPUT=str(path), ENGINE=engine)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert errors and "n/a?" in errors[-1], result.stderr[-4000:]
    assert "Traceback" not in result.stderr
