"""`make gc`: MLflow's own `mlflow gc` (mlflow-server/gc.py) purges deleted runs and experiments:
their rows from Postgres and their files from the FTP volume, through the tracking server and the
FTP plugin's delete_artifacts. Everything else keeps every row and every byte. Driven through the
real make target, against the session's stack.
"""

from __future__ import annotations

import json
import subprocess
import urllib.parse

import pytest

from utils.stack import run_make

ARTIFACTS = "/srv/ftp/artifacts"
RUN_TABLES = ["runs", "metrics", "latest_metrics", "params", "tags"]

# Two experiments; runs with metrics, params, tags and files in nested folders.
CREATE = r"""
import json
import mlflow
from mlflow import MlflowClient
client = MlflowClient()

def log_run(experiment_id, name):
    with mlflow.start_run(experiment_id=experiment_id, run_name=name) as run:
        mlflow.log_param("who", name)
        mlflow.set_tag("kind", "gc-test")
        for step in range(3):
            mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
        mlflow.log_text(f"top of {name}", "top.txt")
        mlflow.log_text(f"deep in {name}\n" * 500, "a/b/c/deep.txt")
        mlflow.log_text(name, "a/other.txt")
    return run.info.run_id

experiments = {role: client.create_experiment(f"{prefix}-{role}") for role in roles}
runs = {name: log_run(experiments[role], name) for role, name in run_names}
print(json.dumps({"experiments": experiments, "runs": runs}))
"""
DELETE = r"""
from mlflow import MlflowClient
client = MlflowClient()
for run_id in runs:
    client.delete_run(run_id)
for experiment_id in experiments:
    client.delete_experiment(experiment_id)
"""


def create(stack, prefix: str, roles: list[str], runs: list[tuple[str, str]]) -> dict:
    out = stack.python("jupyter", f"prefix, roles, run_names = {prefix!r}, {roles!r}, {runs!r}\n" + CREATE)
    return json.loads(out.strip().splitlines()[-1])


def delete(stack, runs: list[str] = (), experiments: list[str] = ()) -> None:
    stack.python("jupyter", f"runs, experiments = {list(runs)!r}, {list(experiments)!r}\n" + DELETE)


def make_gc(stack, **options: str) -> subprocess.CompletedProcess:
    """`make gc` as a user types it, for the session's stack."""
    result = run_make(stack, "gc", *(f"{name}={value}" for name, value in options.items()))
    output = result.stdout + result.stderr
    for name in ("MLFLOW_DB_PASSWORD", "MLFLOW_ADMIN_PASSWORD", "FTPD_PASSWORD"):
        secret = stack.secrets[name]
        assert secret not in output and urllib.parse.quote(secret, safe="") not in output, (
            f"{name} in the output of make gc"
        )
    return result


def rows(stack, run_id: str) -> dict[str, list]:
    """Every row of a run, table by table (sorted, without the run's own timestamps' noise)."""
    return {
        table: sorted(map(tuple, stack.psql(f"SELECT * FROM {table} WHERE run_uuid = '{run_id}'")))
        for table in RUN_TABLES
    }


def ftp_files(stack) -> dict[str, str]:
    """sha256 of every file on the artifact volume (uploads in progress left out)."""
    out = stack.exec(
        "ftpd", "sh", "-c", f"find {ARTIFACTS} -type f ! -name '.*.partial' -exec sha256sum {{}} +"
    ).stdout
    return {path: digest for digest, path in (line.split(None, 1) for line in out.splitlines())}


def exists(stack, path: str) -> bool:
    return stack.exec("ftpd", "test", "-e", path, check=False).returncode == 0


def deleted_folders(stack) -> list[str]:
    """The folders gc may remove: those of every run and experiment deleted on this stack."""
    runs = stack.psql("SELECT experiment_id, run_uuid FROM runs WHERE lifecycle_stage = 'deleted'")
    experiments = stack.psql("SELECT experiment_id FROM experiments WHERE lifecycle_stage = 'deleted'")
    return [f"{ARTIFACTS}/{e}/{r}/" for e, r in runs] + [f"{ARTIFACTS}/{e}/" for (e,) in experiments]


def test_gc_purges_deleted_runs_and_experiments_and_keeps_everything_else(stack, unique_name):
    made = create(
        stack,
        unique_name,
        ["kept", "doomed"],
        [
            ("kept", "kept-1"),
            ("kept", "kept-2"),
            ("kept", "deleted"),
            ("doomed", "doomed-1"),
            ("doomed", "doomed-2"),
        ],
    )
    kept_exp, doomed_exp = made["experiments"]["kept"], made["experiments"]["doomed"]
    runs = made["runs"]
    deleted_run = runs["deleted"]
    assert exists(stack, f"{ARTIFACTS}/{kept_exp}/{deleted_run}/artifacts/a/b/c/deep.txt")
    assert exists(stack, f"{ARTIFACTS}/{doomed_exp}/{runs['doomed-1']}/artifacts/a/b/c/deep.txt")
    delete(stack, runs=[deleted_run], experiments=[doomed_exp])

    kept_rows = {name: rows(stack, runs[name]) for name in ("kept-1", "kept-2")}
    assert all(len(r["metrics"]) == 3 and r["params"] and r["tags"] for r in kept_rows.values())
    may_go = tuple(deleted_folders(stack))
    files_before = ftp_files(stack)

    result = make_gc(stack)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Run with ID {deleted_run} has been permanently deleted." in result.stdout
    assert f"Experiment with ID {doomed_exp} has been permanently deleted." in result.stdout

    # The deleted run: no row in any table, no folder on FTP.
    for run_id in (deleted_run, runs["doomed-1"], runs["doomed-2"]):
        assert rows(stack, run_id) == {table: [] for table in RUN_TABLES}, run_id
    assert not exists(stack, f"{ARTIFACTS}/{kept_exp}/{deleted_run}")
    # The deleted experiment: its rows and its whole folder.
    assert stack.psql(f"SELECT count(*) FROM experiments WHERE experiment_id = {doomed_exp}") == [["0"]]
    assert stack.psql(f"SELECT count(*) FROM experiment_tags WHERE experiment_id = {doomed_exp}") == [["0"]]
    assert not exists(stack, f"{ARTIFACTS}/{doomed_exp}")

    # Everything else: the kept runs' rows, and every byte of every other file on the volume.
    assert {name: rows(stack, runs[name]) for name in kept_rows} == kept_rows
    files_after = ftp_files(stack)
    kept_files = {p: d for p, d in files_before.items() if not p.startswith(may_go)}
    assert {p: files_after.get(p) for p in kept_files} == kept_files
    assert {
        f"{ARTIFACTS}/{kept_exp}/{runs[name]}/artifacts/{file}"
        for name in kept_rows
        for file in ("top.txt", "a/other.txt", "a/b/c/deep.txt")
    } <= set(files_after)
    assert stack.psql(f"SELECT lifecycle_stage FROM experiments WHERE experiment_id = {kept_exp}") == [
        ["active"]
    ]


def test_gc_run_ids_and_older_than_limit_what_goes(stack, unique_name):
    made = create(stack, unique_name, ["exp"], [("exp", "named"), ("exp", "unnamed")])
    experiment, named, unnamed = made["experiments"]["exp"], made["runs"]["named"], made["runs"]["unnamed"]
    delete(stack, runs=[named, unnamed])

    # Deleted just now: not older than a day, so kept.
    result = make_gc(stack, OLDER_THAN="1d")
    assert result.returncode == 0, result.stdout + result.stderr
    for run_id in (named, unnamed):
        assert stack.psql(f"SELECT lifecycle_stage FROM runs WHERE run_uuid = '{run_id}'") == [["deleted"]]
        assert exists(stack, f"{ARTIFACTS}/{experiment}/{run_id}/artifacts/a/b/c/deep.txt")

    # Naming a run that is too young is refused, with MLflow's reason, and nothing goes.
    result = make_gc(stack, OLDER_THAN="1d", RUN_IDS=named)
    assert result.returncode != 0
    assert f"Run {named} is not older than the required age" in result.stdout + result.stderr
    assert stack.psql(f"SELECT count(*) FROM runs WHERE run_uuid = '{named}'") == [["1"]]

    # RUN_IDS: only the run named goes; the other deleted run stays, rows and files.
    unnamed_rows = rows(stack, unnamed)
    result = make_gc(stack, RUN_IDS=named)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Run with ID {named} has been permanently deleted." in result.stdout
    assert unnamed not in result.stdout
    assert rows(stack, named) == {table: [] for table in RUN_TABLES}
    assert not exists(stack, f"{ARTIFACTS}/{experiment}/{named}")
    assert rows(stack, unnamed) == unnamed_rows
    assert exists(stack, f"{ARTIFACTS}/{experiment}/{unnamed}/artifacts/a/b/c/deep.txt")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"OLDER_THAN": "thirty days"}, "Could not parse any time information from 'thirty days'"),
        (
            {"RUN_IDS": "0123456789abcdef0123456789abcdef"},
            "Run with id=0123456789abcdef0123456789abcdef not found",
        ),
        ({"EXPERIMENT_IDS": "0"}, "not in the deleted lifecycle stage"),
    ],
)
def test_gc_bad_values_get_mlflows_message_and_fail(stack, options, message):
    result = make_gc(stack, **options)
    assert result.returncode != 0
    assert message in result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_gc_says_when_the_tracking_server_is_not_running(stack, unique_name):
    """Without the server no file could be deleted: gc refuses before touching any row."""
    made = create(stack, unique_name, ["exp"], [("exp", "deleted")])
    run_id = made["runs"]["deleted"]
    delete(stack, runs=[run_id])
    result = stack.compose(
        "run",
        "--rm",
        "--no-deps",
        "-T",
        "-e",
        "MLFLOW_GC_TRACKING_URI=http://no-such-server:5000",
        "-e",
        f"RUN_IDS={run_id}",
        "mlflow-migrate",
        "gc",
        check=False,
    )
    assert result.returncode != 0
    assert "mlflow-server is not running" in result.stdout
    assert stack.psql(f"SELECT lifecycle_stage FROM runs WHERE run_uuid = '{run_id}'") == [["deleted"]]


REPOSITORY = r"""
import io, json, os, urllib.parse
from mlflow.exceptions import MlflowException
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

password = urllib.parse.quote(open(os.environ["FTPD_PASSWORD_FILE"]).read().rstrip("\n"), safe="")
repo = get_artifact_repository(f"ftp://mlflow:{password}@ftpd:21/artifacts/{folder}")
"""
DELETE_ARTIFACTS = r"""
for path in ("top.txt", "a/one.txt", "a/b/two.txt", "a/b/c/three.txt", "a/b/.four.txt.partial", "z/keep.txt"):
    parent, name = os.path.split(path)
    repo.log_artifact_from_stream(io.BytesIO(path.encode()), name, parent or None)
result = {"type": type(repo).__name__}
repo.delete_artifacts("a")
repo.delete_artifacts("top.txt")
repo.delete_artifacts("no/such/folder")
repo.delete_artifacts("nothing.txt")
result["left"] = sorted(f.path for f in repo.list_artifacts())
for bad in ("/etc", "../other", "z/../../x"):
    try:
        repo.delete_artifacts(bad)
        result[bad] = "deleted"
    except MlflowException as exc:
        result[bad] = exc.error_code
print(json.dumps(result))
"""
DELETE_HELD = r"""
try:
    repo.delete_artifacts("held")
    print(json.dumps({"deleted": True}))
except MlflowException as exc:
    print(json.dumps({"message": exc.message}))
"""


def in_repository(folder: str, code: str) -> str:
    """Python code for the mlflow-server container, with `repo`: the FTP repository of a folder."""
    return f"folder = {folder!r}\n" + REPOSITORY + code


def test_delete_artifacts_removes_a_tree_deepest_first(stack, unique_name):
    folder = f"delete-test-{unique_name}"
    out = stack.python("mlflow-server", in_repository(folder, DELETE_ARTIFACTS))
    result = json.loads(out.strip().splitlines()[-1])
    assert result["type"] == "WorkbenchFTPArtifactRepository"
    assert result["left"] == ["z"]
    bad = ("/etc", "../other", "z/../../x")
    assert {k: result[k] for k in bad} == dict.fromkeys(bad, "INVALID_PARAMETER_VALUE")
    left = stack.exec("ftpd", "find", f"{ARTIFACTS}/{folder}").stdout.split()
    assert sorted(left) == [
        f"{ARTIFACTS}/{folder}",
        f"{ARTIFACTS}/{folder}/z",
        f"{ARTIFACTS}/{folder}/z/keep.txt",
    ]
    # The whole root of a repository, then again when it is gone.
    stack.python("mlflow-server", in_repository(folder, "repo.delete_artifacts()\nrepo.delete_artifacts()\n"))
    assert not exists(stack, f"{ARTIFACTS}/{folder}")


def test_delete_artifacts_failing_on_ftp_names_the_path_not_the_password(stack, unique_name):
    folder = f"delete-held-{unique_name}"
    held = f"{ARTIFACTS}/{folder}/held"
    # A folder whose files ftpd may not remove.
    stack.exec("ftpd", "sh", "-c", f"mkdir -p '{held}' && echo x > '{held}/f' && chmod 555 '{held}'")
    try:
        out = stack.python("mlflow-server", in_repository(folder, DELETE_HELD))
        result = json.loads(out.strip().splitlines()[-1])
        assert "held" in result["message"] and "550" in result["message"], result
        secret = stack.secrets["FTPD_PASSWORD"]
        assert (
            secret not in result["message"] and urllib.parse.quote(secret, safe="") not in result["message"]
        )
        assert exists(stack, f"{held}/f")
    finally:
        stack.exec("ftpd", "sh", "-c", f"chmod 755 '{held}' && rm -rf '{ARTIFACTS}/{folder}'")
